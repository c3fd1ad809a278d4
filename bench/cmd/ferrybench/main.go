// Command ferrybench measures Ferry against baselines run beside it in the
// same invocation. The backlog scenario times Ferry's incremental catch-up
// on a backlog of inserts against the source limit (pg_recvlogical draining
// the same WAL) and the Kafka limit (a bare librdkafka producer with Ferry's
// settings sending Ferry's messages). The delivery scenario times the
// delivery service against a plain producer loop sending the same encoded
// messages with delivery's own settings, per format and codec, and its ack
// latency at a fixed rate. The fullsync scenario times a task's full sync of
// generated tables against COPY, the Kafka limit and Debezium's initial
// snapshot, and capture's snapshot read alone against COPY. Figures are
// reported as medians over runs, and as ratios to the baselines, because
// absolute numbers say little about a different machine.
//
// It needs the local stack (`make up`) and exits non-zero unless every run
// delivered every row and the report was written.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

func main() {
	log.SetFlags(log.Ltime)
	log.SetPrefix("ferrybench ")
	if err := run(os.Args[1:]); err != nil {
		log.Printf("FAILED: %v", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	if len(args) == 2 && args[0] == "check-smoke" {
		return checkSmoke(args[1])
	}
	c, err := parseConfig(args)
	if err != nil {
		return err
	}
	// Ctrl-C cancels the context; the deferred clean-ups still run.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	e, closeEnv, err := openEnv(ctx, c)
	if err != nil {
		return err
	}
	defer closeEnv()
	rep := newReport(c)
	runErr := runScenarios(ctx, e, &rep)
	carryOver(c, &rep)
	if err := writeReport(c.outDir, rep); err != nil {
		return err
	}
	fmt.Print(renderMarkdown(rep))
	log.Printf("wrote %s and %s", filepath.Join(c.outDir, "latest.md"), filepath.Join(c.outDir, "latest.json"))
	return runErr
}

// runScenarios runs the chosen scenarios, each even when the other failed,
// and records each one's failure in its part of the report.
func runScenarios(ctx context.Context, e *benchEnv, rep *report) error {
	var errs []error
	if e.c.scenarios["backlog"] {
		if err := runAll(ctx, e, rep); err != nil {
			rep.Error = err.Error()
			errs = append(errs, err)
		}
	}
	if e.c.scenarios["delivery"] {
		rep.Delivery = newDlvReport(e.c)
		if err := runDeliveryScenario(ctx, e, rep.Delivery); err != nil {
			rep.Delivery.Error = err.Error()
			errs = append(errs, err)
		}
	}
	if e.c.scenarios["mixed"] {
		rep.Mixed = newMixedReport(e.c)
		if err := runMixed(ctx, e, rep.Mixed); err != nil {
			rep.Mixed.Error = err.Error()
			errs = append(errs, err)
		}
	}
	if e.c.scenarios["latency"] {
		rep.Latency = newLatencyReport(e.c)
		if err := runLatency(ctx, e, rep.Latency); err != nil {
			rep.Latency.Error = err.Error()
			errs = append(errs, err)
		}
	}
	if e.c.scenarios["fullsync"] {
		rep.FullSync = newFsReport(e.c)
		if err := runFullSyncScenario(ctx, e, rep.FullSync); err != nil {
			rep.FullSync.Error = err.Error()
			errs = append(errs, err)
		}
	}
	if e.c.scenarios["bigtxn"] {
		rep.BigTxn = newBigTxnReport(e.c)
		if err := runBigTxnScenario(ctx, e, rep.BigTxn); err != nil {
			rep.BigTxn.Error = err.Error()
			errs = append(errs, err)
		}
	}
	if e.c.scenarios["decode"] {
		rep.Decode = newDecodeReport()
		if err := runDecodeScenario(ctx, e, rep.Decode); err != nil {
			rep.Decode.Error = err.Error()
			errs = append(errs, err)
		}
	}
	if e.c.scenarios["streamproto"] {
		rep.StreamProto = newStreamProtoReport(e.c)
		if err := runStreamProtoScenario(ctx, e, rep.StreamProto); err != nil {
			rep.StreamProto.Error = err.Error()
			errs = append(errs, err)
		}
	}
	if e.c.scenarios["tables10k"] {
		rep.Tables10k = newT10kReport(e.c)
		if err := runTables10kScenario(ctx, e, rep.Tables10k); err != nil {
			rep.Tables10k.Error = err.Error()
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// carryOver keeps the part of the previous report in the output folder that
// this invocation did not run, so that `-scenarios delivery` updates the
// delivery figures without dropping the backlog's (each part keeps its own
// date).
func carryOver(c *config, rep *report) {
	raw, err := os.ReadFile(filepath.Join(c.outDir, "latest.json"))
	if err != nil {
		return
	}
	var prev report
	if err := json.Unmarshal(raw, &prev); err != nil {
		log.Printf("not carrying over the previous report: %v", err)
		return
	}
	if !c.scenarios["backlog"] {
		rep.Date, rep.Machine, rep.Rows, rep.TxnRows, rep.Runs, rep.Error = prev.Date, prev.Machine, prev.Rows, prev.TxnRows, prev.Runs, prev.Error
		rep.DebeziumVersion, rep.ConnectVersion = prev.DebeziumVersion, prev.ConnectVersion
	}
	if !c.scenarios["delivery"] {
		rep.Delivery = prev.Delivery
	}
	if !c.scenarios["mixed"] {
		rep.Mixed = prev.Mixed
	}
	if !c.scenarios["latency"] {
		rep.Latency = prev.Latency
	}
	if !c.scenarios["fullsync"] {
		rep.FullSync = prev.FullSync
	}
	if !c.scenarios["bigtxn"] {
		rep.BigTxn = prev.BigTxn
	}
	if !c.scenarios["decode"] {
		rep.Decode = prev.Decode
	}
	if !c.scenarios["streamproto"] {
		rep.StreamProto = prev.StreamProto
	}
	if !c.scenarios["tables10k"] {
		rep.Tables10k = prev.Tables10k
	}
}

// runAll runs the backlog scenario c.runs times and stops at the first run that
// fails or loses a row: a figure for an incomplete delivery means nothing.
func runAll(ctx context.Context, e *benchEnv, rep *report) error {
	for i := 1; i <= e.c.runs; i++ {
		r, err := runOnce(ctx, e, backlogWorkload(e.c), e.c.backlogCombos, true, i)
		if err != nil {
			return err
		}
		rep.Runs = append(rep.Runs, r)
	}
	return nil
}

// openEnv builds Ferry and opens the connections every run shares.
func openEnv(ctx context.Context, c *config) (*benchEnv, func(), error) {
	binDir, err := os.MkdirTemp("", "ferrybench-bin-")
	if err != nil {
		return nil, nil, fmt.Errorf("creating the binary folder: %w", err)
	}
	cleanups := []func(){func() { _ = os.RemoveAll(binDir) }}
	closeAll := func() {
		for i := len(cleanups) - 1; i >= 0; i-- {
			cleanups[i]()
		}
	}
	fail := func(err error) (*benchEnv, func(), error) { closeAll(); return nil, nil, err }
	var dbzLibs string
	withDbz := c.scenarios["backlog"] || c.scenarios["mixed"] || c.scenarios["latency"] || c.scenarios["fullsync"] ||
		c.scenarios["bigtxn"] && c.bigDebezium
	if withDbz && c.debezium {
		libs, err := debeziumLibs(ctx, c.repoRoot)
		if err != nil {
			return fail(err)
		}
		dbzLibs = libs
	} else if withDbz || c.scenarios["bigtxn"] {
		log.Printf("the Debezium baseline is skipped (-debezium=false, or -bigtxn-debezium=false for bigtxn alone)")
	}
	log.Printf("building Ferry")
	if err := buildFerry(ctx, c.repoRoot, binDir); err != nil {
		return fail(err)
	}
	super, err := connect(ctx, c.pgSuperDSN)
	if err != nil {
		return fail(err)
	}
	cleanups = append(cleanups, func() { _ = super.Close(context.Background()) })
	dsn, err := c.ferryDSN()
	if err != nil {
		return fail(err)
	}
	owner, err := connect(ctx, dsn)
	if err != nil {
		return fail(err)
	}
	cleanups = append(cleanups, func() { _ = owner.Close(context.Background()) })
	admin, err := kafka.NewAdminClient(&kafka.ConfigMap{"bootstrap.servers": c.kafkaBootstrap})
	if err != nil {
		return fail(fmt.Errorf("creating the Kafka admin client: %w", err))
	}
	cleanups = append(cleanups, admin.Close)
	return &benchEnv{c: c, binDir: binDir, dbzLibs: dbzLibs, super: super, owner: owner, admin: admin}, closeAll, nil
}
