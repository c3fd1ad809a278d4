package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	taskv1 "github.com/ferry-cdc/ferry/gen/ferry/task/v1"
)

// webhook receives Ferry's alerts the way an alert manager would.
type webhook struct {
	mu     sync.Mutex
	alerts []map[string]any
	url    string
}

func startWebhook(t *testing.T) *webhook {
	w := &webhook{}
	srv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		var a map[string]any
		if err != nil || json.Unmarshal(body, &a) != nil {
			http.Error(rw, "not JSON", http.StatusBadRequest)
			return
		}
		w.mu.Lock()
		w.alerts = append(w.alerts, a)
		w.mu.Unlock()
	}))
	t.Cleanup(srv.Close)
	w.url = srv.URL + "/alerts"
	return w
}

func (w *webhook) count() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.alerts)
}

// find returns the first alert of a kind and state, or nil.
func (w *webhook) find(kind, state string) map[string]any {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, a := range w.alerts {
		if a["kind"] == kind && a["state"] == state {
			return a
		}
	}
	return nil
}

func lifecycleSpecYAML(name, topic, hook string, acknowledged []string, tables ...string) string {
	src := sourceEndpoint()
	var sel strings.Builder
	for _, t := range tables {
		fmt.Fprintf(&sel, "    - {schema: public, table: %q}\n", t)
	}
	return fmt.Sprintf(`name: %s
source: {host: %q, port: %d, database: %q, user: %q, password: {file: %q}}
destination: {bootstrap_servers: %q, topic: %q}
objects:
  tables:
%ssync_types: {schema: true, full: true}
kafka: {conflict_mode: CONFLICT_MODE_IGNORE, ddl_topic: %q}
advanced: {connection_retry_minutes: 10, other_retry_minutes: 2, heartbeat_seconds: 1}
alerts: {latency_threshold_seconds: 1, latency_for_seconds: 2, webhook_url: %q}
acknowledged_warnings: [%s]
`, name, src.GetHost(), src.GetPort(), src.GetDatabase(), src.GetUser(), src.GetPassword().GetFile(),
		kafkaBootstrap(), topic, sel.String(), topic+"_ddl", hook, strings.Join(acknowledged, ", "))
}

// TestLifecycleThroughCLIAndGrpcurl drives one task through its whole life
// on the real services with the tools users have: ferryctl, grpcurl and the
// temporal CLI. Precheck with a warning acknowledged, schema and full sync
// of two tables under concurrent writes, incremental sync, a third table
// added by a Temporal signal and snapshotted beside the stream while it is
// written to, a throttle change that raises latency until the webhook gets a
// latency alert, pause and resume, a forced restart that runs no snapshot
// again, a table removed with ferryctl modify, and stop with release. Kafka,
// rebuilt, must equal every table, and the slot and publication must be
// gone.
func TestLifecycleThroughCLIAndGrpcurl(t *testing.T) {
	const aRows, bRows, cRows = 20_000, 2_000, 5_000
	grpcurl, temporal := toolPath(t, "grpcurl"), toolPath(t, "temporal")
	conn := pgConnect(t)
	a, b, c := uniqueName("e2e_lc_a"), uniqueName("e2e_lc_b"), uniqueName("e2e_lc_c")
	createVersionedTables(t, conn, map[string]int{a: aRows, b: bRows, c: cRows})
	topic := a
	createTopic(t, topic, nil) // one partition: Kafka's order is Ferry's
	col := collectChanges(t, topic)
	// Every table has a key, so full sync reads them in chunks beside the
	// stream, like the table added later.
	for _, tab := range []string{a, b, c} {
		col.expectBackfill(tab)
	}
	hook := startWebhook(t)
	f := startFerry(t)
	cli := ctl{t: t, server: f.addrs["control"]}
	taskID := strings.ReplaceAll(a, "_", "-")
	dir := t.TempDir()
	marks := newStopwatch(t)

	// Precheck: the text columns are TOAST-able without REPLICA IDENTITY
	// FULL, a warning; the task is created with it acknowledged.
	specFile := filepath.Join(dir, "spec.yaml")
	writeFile(t, specFile, lifecycleSpecYAML("lifecycle", topic, hook.url, nil, a, b))
	if out := cli.ok("precheck", "-f", specFile); !strings.Contains(out, "WARN") || !strings.Contains(out, "toast") {
		t.Fatalf("precheck shows no toast warning:\n%s", out)
	}
	writeFile(t, specFile, lifecycleSpecYAML("lifecycle", topic, hook.url, []string{"toast"}, a, b))
	w := startWriterSized(t, a, aRows, b, bRows)
	// Created paused, the task runs nothing (no precheck, no slot) until
	// started.
	cli.ok("create", "-f", specFile, "--id", taskID, "--paused")
	f.cleanupTask(conn, taskID)
	if out := cli.ok("status", taskID); field(out, "Status") != "STATUS_PAUSED" || field(out, "Phase") != "PHASE_PRECHECK" ||
		slotExists(t, conn, slotName(taskID)) {
		t.Fatalf("a task created paused is not waiting:\n%s", out)
	}
	cli.ok("start", taskID)
	marks.mark("created and started")

	// Schema sync, then full sync under the writer, then incremental.
	sawFullSync := f.waitFullSyncDone(conn, taskID, w)
	marks.mark("full sync done")
	st := f.state(taskID)
	if ack := ackedItem(st.GetPrechecks(), "toast"); ack == nil {
		t.Fatalf("prechecks %v: the toast warning is not kept as acknowledged", st.GetPrechecks())
	}
	for _, rc := range st.GetFullSyncRows() {
		if rc.GetEstimatedRows() == 0 || !rc.GetDone() {
			t.Errorf("full sync rows %v: want an estimate and done", rc)
		}
	}

	// Add table c by a Temporal signal, exactly as the README shows, while a
	// second writer changes it: its snapshot runs beside the stream.
	wc := startWriterSized(t, c, cRows, c, cRows)
	objects := fmt.Sprintf(`{"objects": {"tables": [{"schema": "public", "table": %q}, {"schema": "public", "table": %q}, {"schema": "public", "table": %q}]}}`, a, b, c)
	run(t, temporal, "workflow", "signal", "--address", temporalAddress(), "--workflow-id", taskID,
		"--name", "ferry.modify-objects", "--input", objects)
	eventually(t, 180*time.Second, "table "+c+" to be backfilled", func() (bool, string) {
		st := f.state(taskID)
		if e := st.GetLastSignalError(); e != "" {
			t.Fatalf("the modification was refused: %s", e)
		}
		for _, bf := range f.task(taskID).GetHeartbeat().GetBackfills() {
			if bf.GetTable() == c {
				return bf.GetDone(), fmt.Sprintf("%d of about %d rows", bf.GetRows(), bf.GetEstimatedRows())
			}
		}
		return false, "no backfill yet; tables " + fmt.Sprint(st.GetTables())
	})
	marks.mark("table added and backfilled")
	w.finish(t)
	wc.finish(t)
	t.Logf("writers: %d transactions on %s/%s (%d during full sync), %d on %s", w.ops.Load(), a, b, sawFullSync.during, wc.ops.Load(), c)

	// Throttle incremental sync to 50 rows/s and write a burst: changes wait
	// in the source, latency climbs over the 1 s threshold, and the webhook
	// gets the latency alert. Lifting the throttle resolves it.
	cli.ok("throttle", taskID, "--incr-rows", "50")
	// One transaction each, so that acks keep coming, each later than the
	// last: latency stays over the threshold, as the rule needs.
	for id := 900001; id <= 900600; id++ {
		exec1(t, conn, fmt.Sprintf(`INSERT INTO public.%s VALUES (%d, 0, 'burst', 1, now())`, a, id))
	}
	eventually(t, 60*time.Second, "the latency alert to fire", func() (bool, string) {
		return hook.find("latency", "firing") != nil, fmt.Sprintf("%d alerts", hook.count())
	})
	marks.mark("latency alert received")
	cli.ok("throttle", taskID, "--incr-rows", "0")
	eventually(t, 60*time.Second, "the burst to arrive and the alert to resolve", func() (bool, string) {
		return col.has(a, "900600") && hook.find("latency", "resolved") != nil, "waiting"
	})
	if n := f.activityCount(taskID, "Incremental"); n < 2 {
		t.Logf("incremental attempts so far: %d", n)
	}

	// Pause: the slot is let go; a row written meanwhile arrives on resume.
	cli.ok("pause", taskID)
	eventually(t, 30*time.Second, "the task to pause", func() (bool, string) {
		s := field(cli.ok("status", taskID), "Status")
		return s == "STATUS_PAUSED" && !slotActive(t, conn, slotName(taskID)), s
	})
	exec1(t, conn, fmt.Sprintf(`INSERT INTO public.%s VALUES (900700, 0, 'while paused', 1, now())`, b))
	cli.ok("resume", taskID)
	eventually(t, 60*time.Second, "the row written while paused", func() (bool, string) {
		return col.has(b, "900700"), "not yet"
	})
	marks.mark("paused and resumed")

	// A forced restart over grpcurl resumes from the checkpoint; neither
	// full sync nor the backfill runs again.
	snapshots := col.snapshotTotal()
	auth := controlGrpcurl(t)
	grpc := func(method, body string) string {
		return run(t, grpcurl, append(auth, "-d", body, f.addrs["control"], "ferry.task.v1.TaskService/"+method)...)
	}
	grpc("RestartTask", fmt.Sprintf(`{"task_id": %q}`, taskID))
	exec1(t, conn, fmt.Sprintf(`INSERT INTO public.%s VALUES (900800, 0, 'after restart', 1, now())`, c))
	eventually(t, 60*time.Second, "the task to restart and stream again", func() (bool, string) {
		st := f.state(taskID)
		return st.GetRestarts() == 1 && col.has(c, "900800"), fmt.Sprintf("restarts %d", st.GetRestarts())
	})
	marks.mark("restarted")
	if got := col.snapshotTotal(); got != snapshots {
		t.Errorf("snapshot messages went from %d to %d across the restart", snapshots, got)
	}
	if n := f.activityCount(taskID, "FullSync"); n != 0 {
		t.Errorf("the exported-snapshot FullSync ran %d times; keyed tables are read in chunks", n)
	}

	// Remove table b with ferryctl: it leaves the publication, and a row
	// written to it afterwards never reaches Kafka, while a later row of a
	// (same topic, one partition, so in order) does.
	objFile := filepath.Join(dir, "objects.yaml")
	writeFile(t, objFile, fmt.Sprintf("tables:\n  - {schema: public, table: %q}\n  - {schema: public, table: %q}\n", a, c))
	cli.ok("modify", taskID, "-f", objFile)
	eventually(t, 60*time.Second, b+" to leave the publication", func() (bool, string) {
		var n int
		_ = conn.QueryRow(context.Background(), `SELECT count(*) FROM pg_publication_tables WHERE pubname = $1 AND tablename = $2`,
			slotName(taskID), b).Scan(&n)
		return n == 0 && len(f.state(taskID).GetTables()) == 2, fmt.Sprintf("%d entries", n)
	})
	bFinal := tableRows(t, b)
	exec1(t, conn, fmt.Sprintf(`INSERT INTO public.%s VALUES (900900, 0, 'after removal', 1, now())`, b))
	exec1(t, conn, fmt.Sprintf(`INSERT INTO public.%s VALUES (900901, 0, 'after removal', 1, now())`, a))
	eventually(t, 60*time.Second, "the row of "+a+" written after the removal", func() (bool, string) {
		return col.has(a, "900901"), "not yet"
	})
	if col.has(b, "900900") {
		t.Errorf("a row written to %s after its removal reached Kafka", b)
	}
	marks.mark("table removed")

	// Kafka, rebuilt, equals every table (b as it was when removed).
	want := map[string]map[string]string{a: tableRows(t, a), b: bFinal, c: tableRows(t, c)}
	eventually(t, 120*time.Second, "Kafka to hold every table's final contents", func() (bool, string) {
		return col.matches(want)
	})
	col.checkNoViolations(t)
	for _, tab := range []string{a, b, c} {
		if n := col.snapshotRows(tab); n == 0 {
			t.Errorf("no snapshot row of %s reached Kafka", tab)
		}
	}
	marks.mark("Kafka verified")

	// Stop with release over grpcurl: Ferry's slot and publication go.
	grpc("StopTask", fmt.Sprintf(`{"task_id": %q, "release": true}`, taskID))
	eventually(t, 60*time.Second, "the slot and publication to be dropped", func() (bool, string) {
		var slots, pubs int
		_ = conn.QueryRow(context.Background(), `SELECT (SELECT count(*) FROM pg_replication_slots WHERE slot_name = $1),
			(SELECT count(*) FROM pg_publication WHERE pubname = $1)`, slotName(taskID)).Scan(&slots, &pubs)
		return slots == 0 && pubs == 0, fmt.Sprintf("%d slots, %d publications", slots, pubs)
	})
	if s := f.state(taskID); s.GetPhase() != taskv1.Phase_PHASE_STOPPED || !s.GetReleased() {
		t.Errorf("final state: phase %v, released %v", s.GetPhase(), s.GetReleased())
	}
	marks.mark("stopped and released")
	marks.log()
}

func slotExists(t *testing.T, conn *pgx.Conn, slot string) bool {
	t.Helper()
	var n int
	if err := conn.QueryRow(context.Background(), `SELECT count(*) FROM pg_replication_slots WHERE slot_name = $1`, slot).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n > 0
}

func ackedItem(items []*taskv1.PrecheckItem, id string) *taskv1.PrecheckItem {
	for _, it := range items {
		if it.GetId() == id && it.GetAcknowledged() {
			return it
		}
	}
	return nil
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// stopwatch records how long each step of a scenario took.
type stopwatch struct {
	t     *testing.T
	start time.Time
	last  time.Time
	lines []string
}

func newStopwatch(t *testing.T) *stopwatch {
	now := time.Now()
	return &stopwatch{t: t, start: now, last: now}
}

func (s *stopwatch) mark(step string) {
	now := time.Now()
	s.lines = append(s.lines, fmt.Sprintf("%-28s %7.1fs (at %6.1fs)", step, now.Sub(s.last).Seconds(), now.Sub(s.start).Seconds()))
	s.last = now
}

func (s *stopwatch) log() {
	s.t.Logf("timings:\n%s", strings.Join(s.lines, "\n"))
}
