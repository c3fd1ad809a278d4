package main

import (
	"context"
	"fmt"
	"strings"
	"time"
)

// bigTxnReport is the big-transaction scenario's part of latest.json: the
// backlog's measurements (runResult) for one transaction of Rows rows.
type bigTxnReport struct {
	Date    string      `json:"date"`
	Machine machine     `json:"machine"`
	Rows    int         `json:"rows"`
	Runs    []runResult `json:"runs"`
	Error   string      `json:"error,omitempty"`
	// The Debezium baseline's versions; empty when it was skipped.
	DebeziumVersion string `json:"debezium_version,omitempty"`
	ConnectVersion  string `json:"kafka_connect_version,omitempty"`
}

// bigTxnWorkload is one INSERT … SELECT generate_series of -bigtxn-n rows:
// a single transaction, in a table and slots of its own.
func bigTxnWorkload(c *config) workload {
	return workload{table: "bench_bigtxn", rows: c.bigRows, txnRows: c.bigRows,
		srcSlot: "bench_bigtxn_src", srcPub: "bench_bigtxn_src_pub",
		dbzSlot: "bench_bigtxn_dbz", dbzPub: "bench_bigtxn_dbz_pub"}
}

func newBigTxnReport(c *config) *bigTxnReport {
	rep := &bigTxnReport{Date: time.Now().UTC().Format(time.RFC3339), Machine: describeMachine(), Rows: c.bigRows}
	if c.debezium && c.bigDebezium {
		rep.DebeziumVersion, rep.ConnectVersion = debeziumVersion, connectVersion
	}
	return rep
}

// runBigTxnScenario runs the backlog's measurements (source limit, Ferry
// and the Kafka limit per format and codec, Debezium) on one transaction,
// c.runs times, and stops at the first run that fails. Every Ferry
// measurement starts its own processes, so each peak RSS is that
// transaction's.
func runBigTxnScenario(ctx context.Context, e *benchEnv, rep *bigTxnReport) error {
	w := bigTxnWorkload(e.c)
	for i := 1; i <= e.c.runs; i++ {
		r, err := runOnce(ctx, e, w, e.c.bigCombos, e.c.bigDebezium, i)
		if err != nil {
			return fmt.Errorf("bigtxn %w", err)
		}
		rep.Runs = append(rep.Runs, r)
	}
	return nil
}

func renderBigTxn(b *strings.Builder, rep *bigTxnReport) {
	fmt.Fprintf(b, "# Ferry benchmark: one big transaction\n\n")
	fmt.Fprintf(b, "- Date: %s\n", rep.Date)
	b.WriteString(rep.Machine.line())
	fmt.Fprintf(b, "- One transaction of N = %d inserts into `bench_bigtxn` (one INSERT … SELECT generate_series), measured as the backlog is: source limit, Ferry (fresh processes: peak RSS is this transaction's) and the Kafka limit per format and codec, Debezium; %d run(s)\n", rep.Rows, len(rep.Runs))
	b.WriteString("- PostgreSQL's walsender decodes a transaction only at its commit (spilling it to disk past `logical_decoding_work_mem`), unless the client asks for streaming of in-progress transactions (pgoutput v2); every consumer here waits for that.\n")
	if rep.DebeziumVersion != "" {
		fmt.Fprintf(b, "- Debezium baseline: debezium-connector-postgres %s in Kafka Connect %s standalone, as in the backlog scenario\n", rep.DebeziumVersion, rep.ConnectVersion)
	} else {
		b.WriteString("- Debezium baseline: **skipped** (-debezium=false or -bigtxn-debezium=false)\n")
	}
	b.WriteString("- Figures are medians over runs with min – max; goals are checked on the median.\n\n")
	if rep.Error != "" {
		fmt.Fprintf(b, "**The bigtxn scenario failed:** %s\n\n", rep.Error)
	}
	renderFigures(b, figures(rep.Runs))
	renderCombos(b, rep.Runs)
	renderBacklogRuns(b, report{Rows: rep.Rows, Runs: rep.Runs})
}

// parseBigTxn checks the flags of the bigtxn and decode scenarios and the
// format/codec lists.
func (c *config) parseBigTxn(backlogCombos, bigCombos string) error {
	var err error
	if c.backlogCombos, err = parseCombos("-backlog-combos", backlogCombos); err != nil {
		return err
	}
	if c.bigCombos, err = parseCombos("-bigtxn-combos", bigCombos); err != nil {
		return err
	}
	if c.bigRows <= 0 || c.decodeRows <= 0 {
		return fmt.Errorf("-bigtxn-n and -decode-n must be positive")
	}
	return nil
}
