package main

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/jackc/pgx/v5"
)

// Names of the source baseline's own slot and publication; they never clash
// with Ferry's, which start with "ferry_".
const (
	srcSlot = "bench_src_slot"
	srcPub  = "bench_src_pub"
)

// sourceResult is the source limit: how fast PostgreSQL's walsender decodes
// the backlog through pgoutput for a client that does nothing with it.
type sourceResult struct {
	Seconds          float64 `json:"seconds"`
	ChangesPerSecond float64 `json:"changes_per_second"`
	WriteSeconds     float64 `json:"write_seconds"`
}

// measureSource creates the slot before the backlog exists, as Ferry's slot
// does in the Ferry part, so that both decode exactly the same WAL; then it
// drains the slot with pg_recvlogical up to the LSN after the writes.
func measureSource(ctx context.Context, c *config, super, owner *pgx.Conn, w workload) (sourceResult, error) {
	var res sourceResult
	if err := recreateTable(ctx, owner, w.table); err != nil {
		return res, err
	}
	defer func() { _ = dropTable(context.WithoutCancel(ctx), owner, w.table) }()
	defer func() { _ = dropSlotWhenInactive(context.WithoutCancel(ctx), super, w.srcSlot, w.srcPub) }()
	if err := createSourceSlot(ctx, super, w); err != nil {
		return res, err
	}
	b, err := writeBacklog(ctx, owner, w)
	if err != nil {
		return res, err
	}
	res.WriteSeconds = b.took.Seconds()
	took, err := drainWithRecvlogical(ctx, c, w, b.end)
	if err != nil {
		return res, err
	}
	res.Seconds = took.Seconds()
	res.ChangesPerSecond = float64(w.rows) / res.Seconds
	return res, nil
}

// createSourceSlot (re)creates the source limit's publication and pgoutput
// slot for w's table, dropping what an aborted invocation may have left.
func createSourceSlot(ctx context.Context, super *pgx.Conn, w workload) error {
	if err := dropSlotWhenInactive(ctx, super, w.srcSlot, w.srcPub); err != nil {
		return err
	}
	if _, err := super.Exec(ctx, fmt.Sprintf("CREATE PUBLICATION %s FOR TABLE public.%s", w.srcPub, w.table)); err != nil {
		return fmt.Errorf("creating publication %s: %w", w.srcPub, err)
	}
	if _, err := super.Exec(ctx, `SELECT pg_create_logical_replication_slot($1, 'pgoutput')`, w.srcSlot); err != nil {
		return fmt.Errorf("creating slot %s: %w", w.srcSlot, err)
	}
	return nil
}

// drainWithRecvlogical times pg_recvlogical from start to exit; it exits on
// its own once it has received everything up to endLSN.
func drainWithRecvlogical(ctx context.Context, c *config, w workload, endLSN uint64) (time.Duration, error) {
	return drainSlot(ctx, c, w.srcSlot, w.srcPub, endLSN)
}

// drainSlot is drainWithRecvlogical for any pgoutput slot and publication.
func drainSlot(ctx context.Context, c *config, slot, pub string, endLSN uint64) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, c.ferryTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(c.pgBin, "pg_recvlogical"),
		"-d", c.pgSuperDSN, "--slot", slot, "--start", "--plugin=pgoutput",
		"-o", "proto_version=1", "-o", "publication_names="+pub,
		"--endpos="+lsnString(endLSN), "--no-loop", "-f", "/dev/null")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	start := time.Now()
	if err := cmd.Run(); err != nil {
		return 0, fmt.Errorf("pg_recvlogical: %w: %s", err, stderr.String())
	}
	return time.Since(start), nil
}
