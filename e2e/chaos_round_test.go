package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	taskv1 "github.com/ferry-cdc/ferry/gen/ferry/task/v1"
	"github.com/ferry-cdc/ferry/services/testenv"
)

// chaosEnv is what the rounds share: a private broker that clients reach
// only through a proxy (it advertises the proxy's port), and capture's
// spool folder.
type chaosEnv struct {
	broker     *testenv.Broker
	kafkaProxy *tcpProxy
	spoolDir   string
	spoolSkip  string // why the spool-full fault cannot be set up; "": it can
}

func newChaosEnv(t *testing.T) *chaosEnv {
	t.Helper()
	env := &chaosEnv{kafkaProxy: startProxy(t, "")}
	env.spoolDir, env.spoolSkip = mountSpool(t)
	env.broker = testenv.StartKafkaAdvertising(t, env.kafkaProxy.port())
	env.kafkaProxy.setDest(env.broker.Bootstrap())
	return env
}

// chaosRound is one round: a private PostgreSQL behind a proxy, Ferry, one
// task with full sync, a writer and the topic rebuilt.
type chaosRound struct {
	t       *testing.T
	env     *chaosEnv
	plan    *chaosPlan
	e       *retryEnv
	f       *ferry
	pgProxy *tcpProxy
	w       *chaosWriter
	log     *chaosLog
	skipped []string
	struck  []string // the faults as they struck: name@full or name@inc
	// streamedFrom is how many writer transactions had committed when the
	// task was seen streaming with full sync done: later ones are streamed
	// changes, which the confirmed-LSN check can name one by one.
	streamedFrom int
}

// chaosResult is a round's line of the table.
type chaosResult struct {
	round                                 int
	seed                                  uint64
	mode, faults                          string
	rows, lost, outOfOrder, dups, snapRpt int
	result                                string
}

const chaosInitialRows = 4_000

func startChaosRound(t *testing.T, env *chaosEnv, plan *chaosPlan) *chaosRound {
	t.Helper()
	r := &chaosRound{t: t, env: env, plan: plan}
	pg := testenv.StartPostgres(t)
	// Transactions over 64 kB of decoded changes are streamed (and
	// spooled by capture), so the bulk update reaches the spool.
	pg.Restart("logical_decoding_work_mem=64kB")
	r.pgProxy = startProxy(t, fmt.Sprintf("127.0.0.1:%d", pg.Port()))
	table := uniqueName("e2e_chaos")
	r.e = &retryEnv{t: t, pg: pg, broker: env.broker, bootstrap: env.kafkaProxy.addr(), table: table,
		taskID: strings.ReplaceAll(table, "_", "-")}
	exec1(t, r.e.db(), fmt.Sprintf(`CREATE TABLE public.%s (id bigint PRIMARY KEY, ver bigint NOT NULL, pad text)`, table))
	exec1(t, r.e.db(), fmt.Sprintf(`ALTER TABLE public.%s REPLICA IDENTITY FULL`, table))
	exec1(t, r.e.db(), fmt.Sprintf(`INSERT INTO public.%s SELECT g, 0, 'r' FROM generate_series(1, %d) g`, table, chaosInitialRows))
	createTopicAt(t, r.e.bootstrap, table, nil)
	r.log = collectChaosLog(t, r.e.bootstrap, table)
	r.f = startFerryWithEnv(t, "FERRY_CAPTURE_SPOOL_DIR="+env.spoolDir)
	r.e.f = r.f
	t.Cleanup(r.keepLogs)
	r.w = startChaosWriter(t, r.writerDSN(), table, chaosInitialRows, plan.seed)
	r.e.startSpec(r.spec())
	return r
}

func (r *chaosRound) writerDSN() string {
	pw, err := os.ReadFile(r.e.pg.Source().GetPassword().GetFile())
	if err != nil {
		r.t.Fatal(err)
	}
	return fmt.Sprintf("postgres://ferry:%s@127.0.0.1:%d/ferry?sslmode=disable", trimNL(pw), r.e.pg.Port())
}

// spec is the round's task: full sync (throttled, so that faults land in
// it) then incremental sync, from PostgreSQL and to Kafka through the
// proxies, exactly-once or not as the plan says.
func (r *chaosRound) spec() *taskv1.TaskSpec {
	src := r.e.pg.Source()
	src.Port = uint32(r.pgProxy.port())
	return &taskv1.TaskSpec{
		Name:        "chaos " + r.e.table,
		Source:      src,
		Destination: &taskv1.KafkaEndpoint{BootstrapServers: r.e.bootstrap, Topic: r.e.table},
		Objects:     &taskv1.ObjectSelection{Tables: []*taskv1.TableSelection{{Schema: "public", Table: r.e.table}}},
		SyncTypes:   &taskv1.SyncTypes{Full: true},
		Kafka:       &taskv1.KafkaOptions{ExactlyOnce: r.plan.exactlyOnce, ConflictMode: taskv1.ConflictMode_CONFLICT_MODE_IGNORE},
		Advanced: &taskv1.AdvancedOptions{ConnectionRetryMinutes: chaosWindow, OtherRetryMinutes: chaosOtherWindow,
			FullThrottle: &taskv1.FullSyncThrottle{RowsPerSecond: 1_000}},
	}
}

// run strikes the plan's faults at random moments and checks the outcome.
func (r *chaosRound) run() chaosResult {
	r.t.Helper()
	for i, fault := range r.plan.faults {
		if r.plan.incremental[i] {
			r.waitFullSyncDone()
		}
		<-time.After(r.plan.moment(500*time.Millisecond, 3*time.Second)) // the random moment
		phase := "full"
		if st := r.f.state(r.e.taskID); st.GetFullSyncDone() {
			phase = "inc"
		}
		r.t.Logf("fault %d: %s in %s sync", i+1, fault, phase)
		r.struck = append(r.struck, fault+"@"+phase)
		r.strike(fault)
		r.waitRunning(fault)
	}
	r.waitFullSyncDone()
	if r.plan.longCut != "" {
		return r.runLongCut()
	}
	r.w.finish()
	return r.checkRebuilt()
}

// waitRunning waits until the task runs again and its slot is read.
func (r *chaosRound) waitRunning(after string) {
	r.t.Helper()
	eventually(r.t, 120*time.Second, "the task to run again after "+after, func() (bool, string) {
		st := r.f.state(r.e.taskID)
		return st.GetStatus() == taskv1.Status_STATUS_RUNNING && r.e.slotActive(),
			fmt.Sprintf("phase %s status %s error %s", st.GetPhase(), st.GetStatus(), st.GetLastError())
	})
}

func (r *chaosRound) waitFullSyncDone() {
	r.t.Helper()
	eventually(r.t, 180*time.Second, "full sync done and incremental sync streaming", func() (bool, string) {
		st := r.f.state(r.e.taskID)
		return st.GetFullSyncDone() && st.GetPhase() == taskv1.Phase_PHASE_INCREMENTAL && r.e.slotActive(),
			fmt.Sprintf("phase %s status %s error %s", st.GetPhase(), st.GetStatus(), st.GetLastError())
	})
	if r.streamedFrom > 0 {
		return
	}
	txns, _ := r.w.committed()
	r.streamedFrom = len(txns)
	r.t.Logf("full sync done (chunked %t) after %d writer transactions", r.f.state(r.e.taskID).GetFullSyncChunked(), len(txns))
}

// checkRebuilt waits until the table rebuilt from Kafka equals the source.
func (r *chaosRound) checkRebuilt() chaosResult {
	r.t.Helper()
	want := r.sourceVersions()
	lost, ex := 0, ""
	deadline := time.Now().Add(120 * time.Second)
	for {
		if lost, ex = r.log.diff(want); lost == 0 || time.Now().After(deadline) {
			break
		}
		<-time.After(200 * time.Millisecond)
	}
	res := r.result(0, lost)
	if lost > 0 {
		r.t.Errorf("the table rebuilt from Kafka differs from the source in %d keys:%s", lost, ex)
	}
	return res
}

// sourceVersions reads the source table: id -> version.
func (r *chaosRound) sourceVersions() map[int64]int64 {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rows, err := r.e.db().Query(ctx, fmt.Sprintf(`SELECT id, ver FROM public.%s`, r.e.table))
	if err != nil {
		r.t.Fatalf("reading the source table: %v", err)
	}
	out := map[int64]int64{}
	var id, ver int64
	if _, err := pgx.ForEachRow(rows, []any{&id, &ver}, func() error { out[id] = ver; return nil }); err != nil {
		r.t.Fatalf("reading the source table: %v", err)
	}
	return out
}

// runLongCut cuts the network past the connection window: the task must
// fail naming the window and the cause, and every change at or below the
// slot's confirmed_flush_lsn must be in Kafka.
func (r *chaosRound) runLongCut() chaosResult {
	r.t.Helper()
	<-time.After(r.plan.moment(500*time.Millisecond, 3*time.Second)) // the random moment
	p, causes := r.pgProxy, []string{r.pgProxy.addr()}
	if r.plan.longCut == "cut-kafka-long" {
		p, causes = r.env.kafkaProxy, []string{"Kafka", r.env.kafkaProxy.addr()}
	}
	r.t.Logf("fault: %s in incremental sync", r.plan.longCut)
	r.struck = append(r.struck, r.plan.longCut+"@inc")
	p.cut()
	st, err := r.e.waitFailed((chaosWindow + 90) * time.Second)
	p.restore()
	r.w.finish()
	r.t.Logf("the task failed: %v", err)
	r.e.checkFailedPastWindowOf(chaosWindow, err, st, causes...)
	confirmed := r.e.confirmed()
	txns, _ := r.w.committed()
	var due []chaosTxn
	for _, tx := range txns[r.streamedFrom:] {
		if tx.lsn <= confirmed {
			due = append(due, tx)
		}
	}
	// The consumer may still be catching up on what Kafka holds.
	var lost, checked int
	var ex string
	eventually(r.t, 60*time.Second, "every confirmed change in Kafka", func() (bool, string) {
		lost, checked, ex = r.log.missing(due)
		return lost == 0, fmt.Sprintf("%d of %d confirmed changes missing:%s", lost, checked, ex)
	})
	if checked == 0 {
		r.t.Errorf("no streamed change was confirmed before the cut (confirmed_flush_lsn %d): the check proved nothing", confirmed)
	}
	r.t.Logf("%d streamed changes at or below confirmed_flush_lsn %d are all in Kafka", checked, confirmed)
	return r.result(checked, lost)
}

func (r *chaosRound) result(rows, lost int) chaosResult {
	messages, ooo, dups, snap, examples, bad := r.log.counts()
	for _, b := range bad {
		r.t.Errorf("undecodable message: %s", b)
	}
	for _, ex := range examples {
		r.t.Logf("example: %s", ex)
	}
	r.explainDuplicates()
	mode := r.plan.mode()
	if r.plan.exactlyOnce {
		if dups > 0 {
			r.t.Errorf("exactly-once: a read_committed consumer saw %d changes more than once", dups)
		}
	}
	if ooo > 0 {
		r.t.Errorf("%d changes arrived out of order", ooo)
	}
	txns, failed := r.w.committed()
	if rows == 0 {
		rows = chaosInitialRows
		for _, tx := range txns {
			rows += len(tx.changes)
		}
	}
	r.log.mu.Lock()
	rereads := r.log.rereads
	r.log.mu.Unlock()
	r.t.Logf("%d messages (and %d the consumer read again after losing its assignment), %d writer transactions committed, %d with an unknown outcome, %d snapshot repeats; skipped: %v",
		messages, rereads, len(txns), failed, snap, r.skipped)
	return chaosResult{seed: r.plan.seed, mode: mode, faults: strings.Join(r.struck, ","), rows: rows,
		lost: lost, outOfOrder: ooo, dups: dups, snapRpt: snap}
}

// explainDuplicates names the writer's transactions that hold the first
// duplicated changes, to tell a transaction delivered twice from a part.
func (r *chaosRound) explainDuplicates() {
	r.log.mu.Lock()
	dups := append([]chaosChange(nil), r.log.dupChanges...)
	r.log.mu.Unlock()
	txns, _ := r.w.committed()
	for _, d := range dups {
		for i, tx := range txns {
			if slices.Contains(tx.changes, d) {
				r.t.Logf("duplicated change %v is in writer transaction %d of %d (upper LSN %X): %v", d, i, len(txns), tx.lsn, tx.changes)
			}
		}
	}
}

// keepLogs copies a failed round's Ferry logs out of its temporary
// directory, which the test removes, and names where.
func (r *chaosRound) keepLogs() {
	if !r.t.Failed() {
		return
	}
	dir := filepath.Join(os.TempDir(), fmt.Sprintf("ferry-chaos-%d", r.plan.seed))
	if out, err := exec.Command("cp", "-r", r.f.logDir, dir).CombinedOutput(); err != nil {
		r.t.Logf("keeping the round's logs: %v: %s", err, out)
		return
	}
	r.t.Logf("the round's Ferry logs are in %s", dir)
}
