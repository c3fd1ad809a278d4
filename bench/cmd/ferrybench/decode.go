package main

import (
	"context"
	"fmt"
	"log"
	"os"
	"os/exec"
	"time"

	"google.golang.org/grpc"

	capturev1 "github.com/ferry-cdc/ferry/gen/ferry/capture/v1"
	taskv1 "github.com/ferry-cdc/ferry/gen/ferry/task/v1"
	"github.com/ferry-cdc/ferry/platform/grpccodec"
)

// The decode scenario's table and capture's slot and publication; the
// source limit's come from its workload. None is shared with another
// scenario.
const (
	decodeTable   = "bench_decode"
	decodeCapSlot = "bench_decode_cap"
	decodeCapPub  = "bench_decode_cap_pub"
)

// decodeShape is one measurement of the decode scenario: capture's
// StreamChanges against pg_recvlogical over the same WAL.
type decodeShape struct {
	Shape        string        `json:"shape"` // "backlog" or "bigtxn"
	Rows         int           `json:"rows"`
	TxnRows      int           `json:"txn_rows"`
	WriteSeconds float64       `json:"write_seconds"`
	Source       decodeRate    `json:"source"`
	Capture      captureResult `json:"capture"`
	// Share is capture's rows/s over pg_recvlogical's.
	Share float64 `json:"share"`
}

type decodeRate struct {
	Seconds       float64 `json:"seconds"`
	RowsPerSecond float64 `json:"rows_per_second"`
}

// captureResult is the capture process over one stream: the rate, what it
// sent, its CPU over the stream and its peak RSS (VmHWM: the process's whole
// life, which is this one stream's).
type captureResult struct {
	decodeRate
	Events               int     `json:"events"`
	Batches              int     `json:"batches"`
	CPUSeconds           float64 `json:"cpu_seconds"`
	CPUSecondsPerMillion float64 `json:"cpu_seconds_per_million_rows"`
	PeakRSSMB            float64 `json:"peak_rss_mb"`
}

// decodeWorkloads are the two shapes: the backlog's transactions, and one
// transaction of the big-transaction scenario's size.
func decodeWorkloads(c *config) []workload {
	w := workload{table: decodeTable, srcSlot: "bench_decode_src", srcPub: "bench_decode_src_pub"}
	small, big := w, w
	small.rows, small.txnRows = c.decodeRows, c.txnRows
	big.rows, big.txnRows = c.bigRows, c.bigRows
	return []workload{small, big}
}

func shapeName(w workload) string {
	if w.txnRows >= w.rows {
		return "bigtxn"
	}
	return "backlog"
}

// measureDecode creates both slots before the rows are written, so that
// pg_recvlogical and capture decode exactly the same WAL; drains the source
// limit's slot with pg_recvlogical, then capture's through StreamChanges on
// a fresh capture process.
func measureDecode(ctx context.Context, e *benchEnv, w workload, run int) (decodeShape, error) {
	res := decodeShape{Shape: shapeName(w), Rows: w.rows, TxnRows: w.txnRows}
	if err := recreateTable(ctx, e.owner, w.table); err != nil {
		return res, err
	}
	logDir, err := os.MkdirTemp("", "ferrybench-decode-")
	if err != nil {
		return res, fmt.Errorf("creating the log folder: %w", err)
	}
	f, conn, err := startCapture(ctx, e, logDir)
	failed := true
	defer func() { e.cleanupDecode(ctx, f, conn, w, logDir, failed) }()
	if err != nil {
		return res, err
	}
	// A capture slot left behind would resume from its old position and
	// stream another measurement's WAL: drop it first.
	if err := dropSlotWhenInactive(ctx, e.super, decodeCapSlot, decodeCapPub); err != nil {
		return res, err
	}
	if err := createSourceSlot(ctx, e.super, w); err != nil {
		return res, err
	}
	client := capturev1.NewCaptureServiceClient(conn)
	if err := ensureDecodeSlot(ctx, e.c, client, w); err != nil {
		return res, err
	}
	b, err := writeBacklog(ctx, e.owner, w)
	if err != nil {
		return res, err
	}
	res.WriteSeconds = b.took.Seconds()
	took, err := drainWithRecvlogical(ctx, e.c, w, b.end)
	if err != nil {
		return res, err
	}
	res.Source = decodeRate{Seconds: took.Seconds(), RowsPerSecond: float64(w.rows) / took.Seconds()}
	log.Printf("decode run %d, %s: pg_recvlogical %.0f rows/s; capture", run, res.Shape, res.Source.RowsPerSecond)
	start := &capturev1.StartStream{Source: benchSource(e.c), SlotName: decodeCapSlot, PublicationName: decodeCapPub}
	if res.Capture, err = timeCapture(ctx, e.c, f, client, start, w.rows, b.end); err != nil {
		return res, fmt.Errorf("%w (capture's log is in %s)", err, logDir)
	}
	res.Share = res.Capture.RowsPerSecond / res.Source.RowsPerSecond
	log.Printf("decode run %d, %s: capture %.0f rows/s, %.0f%% of pg_recvlogical; peak RSS %.0f MB",
		run, res.Shape, res.Capture.RowsPerSecond, 100*res.Share, res.Capture.PeakRSSMB)
	failed = false
	return res, nil
}

// startCapture starts a capture process of its own, so that its peak RSS is
// this measurement's, and connects to it.
func startCapture(ctx context.Context, e *benchEnv, logDir string) (*ferry, *grpc.ClientConn, error) {
	return startCaptureWith(ctx, e, logDir, nil)
}

// startCaptureWith is startCapture with extra environment for capture.
func startCaptureWith(ctx context.Context, e *benchEnv, logDir string, env []string) (*ferry, *grpc.ClientConn, error) {
	f := &ferry{binDir: e.binDir, logDir: logDir, temporal: e.c.temporalAddress,
		addrs: map[string]string{}, procs: map[string]*exec.Cmd{}, procEnv: map[string][]string{"capture": env}, env: ferryEnv(e.c)}
	addr, err := freePort()
	if err != nil {
		return f, nil, err
	}
	f.addrs["capture"] = addr
	if err := f.start(ctx, "capture"); err != nil {
		return f, nil, err
	}
	conn, err := dialFerry(addr, grpccodec.DialOption())
	if err != nil {
		return f, nil, fmt.Errorf("dialing capture: %w", err)
	}
	return f, conn, nil
}

func benchSource(c *config) *taskv1.SourceEndpoint {
	return &taskv1.SourceEndpoint{Host: c.pgHost, Port: uint32(c.pgPort), Database: c.pgDatabase, User: "ferry",
		Password: &taskv1.SecretRef{Source: &taskv1.SecretRef_File{File: c.pgPasswordFile}}}
}

// ensureDecodeSlot has capture create its slot and publication, as the
// worker does for a task, dropping what an aborted invocation left first.
func ensureDecodeSlot(ctx context.Context, c *config, client capturev1.CaptureServiceClient, w workload) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	_, err := client.EnsureReplication(ctx, &capturev1.EnsureReplicationRequest{
		Source: benchSource(c), SlotName: decodeCapSlot, PublicationName: decodeCapPub,
		Tables: []*taskv1.TableRef{{Schema: "public", Table: w.table}},
	})
	if err != nil {
		return fmt.Errorf("EnsureReplication %s: %w", decodeCapSlot, err)
	}
	return nil
}

// cleanupDecode leaves no process, slot, publication or table behind; after
// a failure capture's log is kept.
func (e *benchEnv) cleanupDecode(ctx context.Context, f *ferry, conn *grpc.ClientConn, w workload, logDir string, failed bool) {
	ctx = context.WithoutCancel(ctx)
	if conn != nil {
		_ = conn.Close()
	}
	f.stop()
	for _, sp := range [][2]string{{w.srcSlot, w.srcPub}, {decodeCapSlot, decodeCapPub}} {
		if err := dropSlotWhenInactive(ctx, e.super, sp[0], sp[1]); err != nil {
			log.Printf("cleanup: %v", err)
		}
	}
	if err := dropTable(ctx, e.owner, w.table); err != nil {
		log.Printf("cleanup: %v", err)
	}
	if failed {
		log.Printf("capture's log is in %s", logDir)
		return
	}
	_ = os.RemoveAll(logDir)
}
