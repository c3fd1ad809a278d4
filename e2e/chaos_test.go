package e2e

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ferry-cdc/ferry/services/testenv"
)

// TestChaos runs seeded, bounded rounds of the fault matrix (issue 15).
// Each round starts a private PostgreSQL behind a proxy and Ferry, creates
// a table of 4,000 rows and a task with full sync, and runs a writer of
// small INSERT, UPDATE and DELETE transactions while three faults drawn
// from chaosFaults strike at random moments, in full sync and incremental
// sync; a quarter of the rounds end with a network cut past the
// connection window. Then:
//   - the table rebuilt from Kafka (last message per key, DELETE removes)
//     equals the source, and no key's changes arrive out of order (see
//     chaosLog);
//   - with exactly-once, the read_committed consumer saw no change twice;
//   - a round that ends past the window fails with an error naming the
//     window and the cause, and every change at or below the slot's
//     confirmed_flush_lsn is in Kafka.
//
// FERRY_CHAOS_ROUNDS (default 1) and FERRY_CHAOS_SEED (default
// ciChaosSeed) set the run; round i's seed is the seed plus i, and
// FERRY_CHAOS_SEED=<a round's seed> FERRY_CHAOS_ROUNDS=1 replays that
// round's plan (the faults' moments are timers, so not to the millisecond).
// `make chaos` runs 20 rounds from the clock. The default is .ci/run's short
// version: one round with a fixed plan, so that a red run replays, budgeted
// at 2 minutes on 2 cores (it took 1m14s in a 20-round run; rounds took 21 s
// to 1m44s there, a cut past the window costing its 30 s and more), since
// the whole suite must stay under 30 minutes.
func TestChaos(t *testing.T) {
	testenv.Integration(t)
	rounds, seed := chaosSettings(t)
	t.Logf("chaos: %d rounds from seed %d", rounds, seed)
	env := newChaosEnv(t)
	var results []chaosResult
	for i := range rounds {
		plan := newChaosPlan(seed + uint64(i))
		res := chaosResult{round: i + 1, seed: plan.seed, mode: plan.mode(), faults: plan.String()}
		began := time.Now()
		ok := t.Run(fmt.Sprintf("round%02d_seed%d", i+1, plan.seed), func(t *testing.T) {
			r := startChaosRound(t, env, plan)
			res = r.run()
			res.round = i + 1
		})
		res.result = fmt.Sprintf("ok %s", time.Since(began).Round(time.Second))
		if !ok {
			res.result = "FAIL"
		}
		results = append(results, res)
	}
	table := chaosTable(results)
	t.Log("chaos results (rerun a round with FERRY_CHAOS_SEED=<seed> FERRY_CHAOS_ROUNDS=1):\n" + table)
	// make chaos prints the table apart from the test's log.
	if path := os.Getenv("FERRY_CHAOS_TABLE"); path != "" {
		if err := os.WriteFile(path, []byte(table), 0o644); err != nil {
			t.Errorf("writing the chaos table: %v", err)
		}
	}
}

// ciChaosSeed's plan: exactly-once, and PostgreSQL crashed, a short Kafka
// cut and the spool filled in incremental sync, then a Kafka cut past the
// connection window.
const ciChaosSeed = 1796621655850658885

func chaosSettings(t *testing.T) (int, uint64) {
	t.Helper()
	rounds, seed := 1, uint64(ciChaosSeed)
	if v := os.Getenv("FERRY_CHAOS_ROUNDS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			t.Fatalf("FERRY_CHAOS_ROUNDS=%q: want a positive number", v)
		}
		rounds = n
	}
	if v := os.Getenv("FERRY_CHAOS_SEED"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			t.Fatalf("FERRY_CHAOS_SEED=%q: want an unsigned number", v)
		}
		seed = n
	}
	return rounds, seed
}

// chaosTable prints the results; rows are the changes written (the
// initial rows and the writer's), or for a round ending past the window the
// confirmed changes checked; lost are keys that differ from the source, or
// confirmed changes missing.
func chaosTable(results []chaosResult) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%-5s %-20s %-13s %-84s %7s %5s %6s %5s %6s %s\n",
		"round", "seed", "mode", "faults", "rows", "lost", "order", "dups", "snaprp", "result")
	for _, r := range results {
		fmt.Fprintf(&b, "%-5d %-20d %-13s %-84s %7d %5d %6d %5d %6d %s\n",
			r.round, r.seed, r.mode, r.faults, r.rows, r.lost, r.outOfOrder, r.dups, r.snapRpt, r.result)
	}
	return b.String()
}
