package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"github.com/jackc/pgx/v5"
	enumspb "go.temporal.io/api/enums/v1"

	taskv1 "github.com/ferry-cdc/ferry/gen/ferry/task/v1"
)

// The columns every full sync test table has, in order; the writer bumps
// ver by one on every update, so a doubled or missing update shows.
var fsColumns = []string{"id", "ver", "val", "amount", "at"}

const fsNull = "\x01NULL"

// TestFullSyncMeetsIncrementalWithNoGapAndNoDouble snapshots three tables
// (one of 200,000 rows) while a writer inserts, updates and deletes, then
// streams. Rebuilt from Kafka, each table must equal its final contents,
// every snapshot row must be tagged, and no change may be lost or applied
// twice at the seam. Restarting the worker afterwards must not snapshot
// again.
func TestFullSyncMeetsIncrementalWithNoGapAndNoDouble(t *testing.T) {
	const bigRows, smallRows = 200_000, 1_000
	conn := pgConnect(t)
	big, small, odd := uniqueName("e2e_fs_big"), uniqueName("e2e_fs_small"), uniqueName("e2e_fs_odd")
	for _, tab := range []string{big, small, odd} {
		exec1(t, conn, fmt.Sprintf(`CREATE TABLE public.%s (id bigint PRIMARY KEY, ver int NOT NULL DEFAULT 0,
			val text, amount numeric(12,2), at timestamptz)`, tab))
		t.Cleanup(func() { _, _ = conn.Exec(context.Background(), "DROP TABLE IF EXISTS public."+tab) })
	}
	for tab, n := range map[string]int{big: bigRows, small: smallRows} {
		exec1(t, conn, fmt.Sprintf(`INSERT INTO public.%s SELECT g, 0, 'v' || g, g / 100.0,
			'2026-01-01 00:00:00+00'::timestamptz + g * interval '1.5 second' FROM generate_series(1, %d) g`, tab, n))
	}
	// A table without a primary key cannot be read in key order, so this
	// task takes the exported-snapshot path (one consistent snapshot of
	// every table); TestChunkedFullSyncResumesAfterCaptureKill covers the
	// chunked one.
	exec1(t, conn, fmt.Sprintf(`ALTER TABLE public.%[1]s DROP CONSTRAINT %[1]s_pkey`, odd))
	// Every escape of COPY's text format, and NULL against the text "\N".
	exec1(t, conn, fmt.Sprintf(`INSERT INTO public.%s VALUES (1, 0, E'tab\there\nnew\\line\r end', -1.25, 'infinity'),
		(2, 0, '\N', NULL, NULL), (3, 0, '', 0, '1999-12-31 23:59:59.999999+00'), (4, 0, 'ünïcødé ✓', 1e9, '2000-02-29 12:00:00+05:30')`, odd))

	// One partition: the topic's order is the order Ferry produced in.
	createTopic(t, big, nil)
	f := startFerry(t)
	taskID := strings.ReplaceAll(big, "_", "-")
	col := collectChanges(t, big)
	w := startWriter(t, big, small)
	f.createFullSyncTask(conn, taskID, big, big, small, odd)

	sawFullSync := f.waitFullSyncDone(conn, taskID, w)
	// The writer keeps going into incremental sync.
	eventually(t, 30*time.Second, "writes after full sync", func() (bool, string) {
		return w.ops.Load() >= sawFullSync.after+100, fmt.Sprintf("%d writes", w.ops.Load())
	})
	w.finish(t)
	t.Logf("writer: %d transactions, %d of them while full sync ran", w.ops.Load(), sawFullSync.during)
	if sawFullSync.during == 0 {
		t.Fatal("no write landed while full sync ran; the seam was not exercised")
	}

	want := map[string]map[string]string{big: tableRows(t, big), small: tableRows(t, small), odd: tableRows(t, odd)}
	eventually(t, 180*time.Second, "Kafka to hold every table's final contents", func() (bool, string) {
		return col.matches(want)
	})
	col.checkSeam(t, map[string]int{big: bigRows, small: smallRows, odd: 4}, map[string]bool{big: true, small: true})
	st := f.state(taskID)
	for _, c := range st.GetFullSyncRows() {
		if got := col.snapshotRows(c.GetTable().GetTable()); uint64(got) != c.GetRows() {
			t.Errorf("table %s: state says %d snapshot rows, Kafka has %d", c.GetTable().GetTable(), c.GetRows(), got)
		}
	}
	if !st.GetFullSyncDone() || st.GetPhase() != taskv1.Phase_PHASE_INCREMENTAL || len(st.GetFullSyncRows()) != 3 {
		t.Fatalf("state = %v; want incremental with full sync done for 3 tables", st)
	}
	f.logSnapshotRate(col)

	// A restarted worker replays the history: full sync must not run again.
	before := col.snapshotTotal()
	f.kill("worker")
	f.start("worker")
	exec1(t, conn, fmt.Sprintf(`INSERT INTO public.%s VALUES (900001, 0, 'after restart', 1, now())`, big))
	eventually(t, 120*time.Second, "the row written after the restart", func() (bool, string) {
		return col.has(big, "900001"), "not yet in Kafka"
	})
	if after := col.snapshotTotal(); after != before {
		t.Fatalf("snapshot messages went from %d to %d after the worker restart: full sync ran again", before, after)
	}
	if n := f.activityCount(taskID, "FullSync"); n != 1 {
		t.Fatalf("FullSync was scheduled %d times, want once", n)
	}
	if st := f.state(taskID); !st.GetFullSyncDone() || st.GetPhase() != taskv1.Phase_PHASE_INCREMENTAL {
		t.Fatalf("state after restart = %v", st)
	}
	f.stopAndRelease(conn, taskID)
}

// createVersionedTables creates tables of the shape the writer and the
// changeLog use (id, ver, val, amount, at), each filled with rows from id 1
// and analyzed so that their row estimates are exact.
func createVersionedTables(t *testing.T, conn *pgx.Conn, rows map[string]int) {
	t.Helper()
	createVersionedTablesPadded(t, conn, rows, 0)
}

// createVersionedTablesPadded is createVersionedTables with pad bytes more
// in every val, for rows that take longer to read.
func createVersionedTablesPadded(t *testing.T, conn *pgx.Conn, rows map[string]int, pad int) {
	t.Helper()
	for tab, n := range rows {
		exec1(t, conn, fmt.Sprintf(`CREATE TABLE public.%s (id bigint PRIMARY KEY, ver int NOT NULL DEFAULT 0,
			val text, amount numeric(12,2), at timestamptz)`, tab))
		t.Cleanup(func() { _, _ = conn.Exec(context.Background(), "DROP TABLE IF EXISTS public."+tab) })
		exec1(t, conn, fmt.Sprintf(`INSERT INTO public.%s SELECT g, 0, repeat('p', %d) || 'v' || g, g / 100.0,
			'2026-01-01 00:00:00+00'::timestamptz + g * interval '1 second' FROM generate_series(1, %d) g`, tab, pad, n))
		exec1(t, conn, "ANALYZE public."+tab)
	}
}

func (f *ferry) createFullSyncTask(conn *pgx.Conn, taskID, topic string, tables ...string) {
	f.t.Helper()
	var sel []*taskv1.TableSelection
	for _, tab := range tables {
		sel = append(sel, &taskv1.TableSelection{Schema: "public", Table: tab})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := f.control.CreateTask(ctx, &taskv1.CreateTaskRequest{TaskId: taskID, Spec: &taskv1.TaskSpec{
		Name:        "e2e full sync " + topic,
		Source:      sourceEndpoint(),
		Destination: &taskv1.KafkaEndpoint{BootstrapServers: kafkaBootstrap(), Topic: topic},
		Objects:     &taskv1.ObjectSelection{Tables: sel},
		SyncTypes:   &taskv1.SyncTypes{Full: true},
		Advanced:    &taskv1.AdvancedOptions{ConnectionRetryMinutes: 10, OtherRetryMinutes: 2},
	}})
	if err != nil {
		f.t.Fatalf("CreateTask %s: %v", taskID, err)
	}
	f.cleanupTask(conn, taskID)
}

type fullSyncWindow struct{ during, after int64 }

// waitFullSyncDone polls the task until incremental sync streams with full
// sync done, counting the writer's transactions seen during full sync.
func (f *ferry) waitFullSyncDone(conn *pgx.Conn, taskID string, w *writer) fullSyncWindow {
	f.t.Helper()
	var start int64 = -1
	var out fullSyncWindow
	eventually(f.t, 240*time.Second, "full sync to complete and incremental to stream", func() (bool, string) {
		st := f.state(taskID)
		if st.GetStatus() == taskv1.Status_STATUS_FAILED {
			f.t.Fatalf("task failed: %s", st.GetLastError())
		}
		if st.GetPhase() == taskv1.Phase_PHASE_FULL_SYNC && start < 0 {
			start = w.ops.Load()
		}
		var active bool
		err := conn.QueryRow(context.Background(), `SELECT active FROM pg_replication_slots WHERE slot_name = $1`, slotName(taskID)).Scan(&active)
		done := err == nil && active && st.GetFullSyncDone() && st.GetPhase() == taskv1.Phase_PHASE_INCREMENTAL
		if done {
			out.after = w.ops.Load()
			if start >= 0 {
				out.during = out.after - start
			}
		}
		return done, "phase " + st.GetPhase().String() + " status " + st.GetStatus().String() + " error " + st.GetLastError()
	})
	return out
}

// writer changes the big and small tables until finished: each transaction
// updates a random row (ver+1), inserts a new one and deletes one whose id
// is a multiple of 5, so rows whose id is not stay for the whole test.
type writer struct {
	ops  atomic.Int64
	stop chan struct{}
	done chan error
}

func startWriter(t *testing.T, big, small string) *writer {
	return startWriterSized(t, big, 200_000, small, 1_000)
}

// startWriterSized is startWriter for tables of other sizes; bigRows and
// smallRows bound the ids it updates and deletes.
func startWriterSized(t *testing.T, big string, bigRows int, small string, smallRows int) *writer {
	conn := pgConnect(t)
	w := &writer{stop: make(chan struct{}), done: make(chan error, 1)}
	step := func(i int, tab string, rows int) error {
		_, err := conn.Exec(context.Background(), fmt.Sprintf(`
			UPDATE public.%[1]s SET ver = ver + 1, val = 'u' || (ver + 1), at = now() WHERE id = %[2]d;
			INSERT INTO public.%[1]s VALUES (%[3]d, 0, 'new', 1.5, now());
			DELETE FROM public.%[1]s WHERE id = %[4]d`, tab, 1+rand.IntN(rows), 500_000+i, 5*(i%(rows/5)+1)))
		return err
	}
	go func() {
		pace := time.NewTicker(4 * time.Millisecond)
		defer pace.Stop()
		for i := 0; ; i++ {
			select {
			case <-w.stop:
				w.done <- nil
				return
			case <-pace.C:
			}
			tab, rows := big, bigRows
			if i%10 == 9 {
				tab, rows = small, smallRows
			}
			if err := step(i, tab, rows); err != nil {
				w.done <- fmt.Errorf("writer transaction %d: %w", i, err)
				return
			}
			w.ops.Add(1)
		}
	}()
	t.Cleanup(func() {
		select {
		case <-w.stop:
		default:
			close(w.stop)
			if err := <-w.done; err != nil {
				t.Logf("writer: %v", err)
			}
		}
	})
	return w
}

func (w *writer) finish(t *testing.T) {
	t.Helper()
	close(w.stop)
	if err := <-w.done; err != nil {
		t.Fatal(err)
	}
}

// tableRows reads a table as Canal JSON carries it: PostgreSQL's text
// output under Ferry's session settings, one string per row by id.
func tableRows(t *testing.T, table string) map[string]string {
	t.Helper()
	conn := pgConnect(t)
	exec1(t, conn, "SET TimeZone = 'UTC'")
	exec1(t, conn, "SET DateStyle = 'ISO'")
	exec1(t, conn, "SET extra_float_digits = 3")
	rows, err := conn.Query(context.Background(), fmt.Sprintf(
		`SELECT id::text, ver::text, val, amount::text, at::text FROM public.%s`, table), pgx.QueryExecModeSimpleProtocol)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for rows.Next() {
		vals := make([]*string, len(fsColumns))
		ptrs := make([]any, len(vals))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			t.Fatal(err)
		}
		out[*vals[0]] = rowString(vals)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func rowString(vals []*string) string {
	parts := make([]string, len(vals))
	for i, v := range vals {
		parts[i] = fsNull
		if v != nil {
			parts[i] = *v
		}
	}
	return strings.Join(parts, "\x00")
}

// changeLog consumes the topic, applies every message to per-table state in
// order and records each violation of the seam rules as it goes.
type changeLog struct {
	mu         sync.Mutex
	state      map[string]map[string]string // table -> id -> row
	vers       map[string]map[string]string // table -> id -> ver
	snapshot   map[string]map[string]int    // table -> id -> snapshot INSERTs
	snapTotal  int
	streamed   int
	firstSnap  time.Time
	lastSnap   time.Time
	violations []string
	// Tables added to a running task: their snapshot rows arrive between
	// stream changes (DBLog), so see applyBackfilled.
	backfilled map[string]bool
	// Changes of backfilled tables sent again after a stream restart.
	redelivered int
}

// checkNoViolations fails on any recorded violation; for backfilled tables
// these are a version applied backwards or a change lost.
func (l *changeLog) checkNoViolations(t *testing.T) {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, v := range l.violations {
		t.Error(v)
	}
	if t.Failed() {
		t.FailNow()
	}
	t.Logf("Kafka: %d snapshot rows and %d stream changes (%d sent again after a stream restart); no violation",
		l.snapTotal, l.streamed, l.redelivered)
}

// expectBackfill marks a table whose snapshot comes beside the stream.
func (l *changeLog) expectBackfill(table string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.backfilled == nil {
		l.backfilled = map[string]bool{}
	}
	l.backfilled[table] = true
}

// applyBackfilled applies a message of a backfilled table. A change may
// come before the chunk that reads its row, so a change to a row not yet
// seen is taken as it is; a snapshot row is an upsert, but never of an
// older version than one the stream already delivered (its chunk was read
// between watermarks, and keys that changed there are left out of it).
func (l *changeLog) applyBackfilled(msg *kafka.Message, m *canalMessage, id, row, ver string) {
	state, vers := l.state[m.Table], l.vers[m.Table]
	if isSnapshot(msg) {
		l.snapshot[m.Table][id]++
		l.snapTotal++
		if prev, ok := vers[id]; ok && atoi(ver) < atoi(prev) {
			l.violate("%s id %s: backfill row ver %s after the stream's ver %s", m.Table, id, ver, prev)
		}
		state[id], vers[id] = row, ver
		return
	}
	l.streamed++
	if m.Type == "DELETE" {
		delete(state, id)
		delete(vers, id)
		return
	}
	// A change at or below the version already applied is one sent again
	// after a stream restart (at-least-once), never applied backwards; a
	// version skipped is a change lost.
	if prev, ok := vers[id]; ok && m.Type == "UPDATE" {
		switch {
		case atoi(ver) > atoi(prev)+1:
			l.violate("%s id %s updated to ver %s after ver %s: a change lost", m.Table, id, ver, prev)
		case atoi(ver) <= atoi(prev):
			l.redelivered++
			return
		}
	}
	state[id], vers[id] = row, ver
}

func collectChanges(t *testing.T, topic string) *changeLog {
	c := newConsumer(t, topic)
	l := &changeLog{state: map[string]map[string]string{}, vers: map[string]map[string]string{}, snapshot: map[string]map[string]int{}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			msg, err := c.ReadMessage(200 * time.Millisecond)
			if err == nil {
				l.apply(msg)
			}
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
	return l
}

func isSnapshot(msg *kafka.Message) bool {
	for _, h := range msg.Headers {
		if h.Key == "ferry.snapshot" && string(h.Value) == "true" {
			return true
		}
	}
	return false
}

func (l *changeLog) violate(format string, args ...any) {
	if len(l.violations) < 20 {
		l.violations = append(l.violations, fmt.Sprintf(format, args...))
	}
}

func (l *changeLog) apply(msg *kafka.Message) {
	var m canalMessage
	dec := json.NewDecoder(bytes.NewReader(msg.Value))
	dec.DisallowUnknownFields()
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := dec.Decode(&m); err != nil || len(m.Data) != 1 {
		l.violate("not a one-row strict Canal JSON message: %v: %s", err, msg.Value)
		return
	}
	row := m.Data[0]
	vals := make([]*string, len(fsColumns))
	for i, c := range fsColumns {
		vals[i] = row[c]
	}
	id := *row["id"]
	if l.state[m.Table] == nil {
		l.state[m.Table], l.vers[m.Table], l.snapshot[m.Table] = map[string]string{}, map[string]string{}, map[string]int{}
	}
	if l.backfilled[m.Table] {
		ver := "" // a DELETE carries only the key
		if v := row["ver"]; v != nil {
			ver = *v
		}
		l.applyBackfilled(msg, &m, id, rowString(vals), ver)
		return
	}
	state, vers := l.state[m.Table], l.vers[m.Table]
	if isSnapshot(msg) {
		l.noteSnapshot(msg, &m, id)
	} else {
		l.streamed++
	}
	prev, present := vers[id]
	switch m.Type {
	case "INSERT":
		if present {
			l.violate("%s id %s inserted twice (snapshot: %v)", m.Table, id, isSnapshot(msg))
		}
		state[id], vers[id] = rowString(vals), *row["ver"]
	case "UPDATE":
		if !present || fmt.Sprint(atoi(prev)+1) != *row["ver"] {
			l.violate("%s id %s updated to ver %s after ver %q (present %v): a change lost or applied twice", m.Table, id, *row["ver"], prev, present)
		}
		state[id], vers[id] = rowString(vals), *row["ver"]
	case "DELETE":
		if !present {
			l.violate("%s id %s deleted but absent: the delete was applied twice", m.Table, id)
		}
		delete(state, id)
		delete(vers, id)
	}
}

// noteSnapshot checks a snapshot message: an INSERT, never after a change
// from the stream (the whole snapshot is in Kafka before incremental sync
// starts), and each row at most once.
func (l *changeLog) noteSnapshot(msg *kafka.Message, m *canalMessage, id string) {
	if m.Type != "INSERT" || l.streamed > 0 {
		l.violate("snapshot message %s on %s id %s after %d stream messages", m.Type, m.Table, id, l.streamed)
	}
	l.snapshot[m.Table][id]++
	if l.snapshot[m.Table][id] > 1 {
		l.violate("%s id %s read twice by the snapshot", m.Table, id)
	}
	l.snapTotal++
	if l.firstSnap.IsZero() {
		l.firstSnap = msg.Timestamp
	}
	l.lastSnap = msg.Timestamp
}

func atoi(s string) int {
	var n int
	_, _ = fmt.Sscan(s, &n)
	return n
}

func (l *changeLog) matches(want map[string]map[string]string) (bool, string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for table, rows := range want {
		got := l.state[table]
		if len(got) != len(rows) {
			return false, fmt.Sprintf("%s: %d rows rebuilt from Kafka, %d in the table; %s", table, len(got), len(rows), diffIDs(got, rows))
		}
		for id, r := range rows {
			if got[id] != r {
				return false, fmt.Sprintf("%s id %s: Kafka %q, table %q", table, id, got[id], r)
			}
		}
	}
	return true, ""
}

// diffIDs names a few of the ids only one side has, to tell a lost range
// of keys from lost changes.
func diffIDs(got, want map[string]string) string {
	var missing, extra []int
	for id := range want {
		if _, ok := got[id]; !ok {
			missing = append(missing, atoi(id))
		}
	}
	for id := range got {
		if _, ok := want[id]; !ok {
			extra = append(extra, atoi(id))
		}
	}
	slices.Sort(missing)
	slices.Sort(extra)
	return fmt.Sprintf("%d missing from Kafka (first %v), %d only in Kafka (first %v)",
		len(missing), missing[:min(len(missing), 12)], len(extra), extra[:min(len(extra), 12)])
}

// checkSeam fails on any recorded violation, and checks that every row the
// writer never deletes (id not a multiple of 5, up to the initial count)
// came exactly once from the snapshot.
func (l *changeLog) checkSeam(t *testing.T, initial map[string]int, written map[string]bool) {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, v := range l.violations {
		t.Error(v)
	}
	for table, n := range initial {
		for id := 1; id <= n; id++ {
			if id%5 == 0 && written[table] {
				continue
			}
			if c := l.snapshot[table][fmt.Sprint(id)]; c != 1 {
				t.Errorf("%s id %d came %d times from the snapshot, want once", table, id, c)
			}
		}
	}
	if t.Failed() {
		t.FailNow()
	}
	t.Logf("Kafka: %d snapshot rows, then %d stream changes; no violation", l.snapTotal, l.streamed)
}

func (l *changeLog) snapshotRows(table string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.snapshot[table])
}

// snapshotCount is how many snapshot messages a table got, repeats included.
func (l *changeLog) snapshotCount(table string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, c := range l.snapshot[table] {
		n += c
	}
	return n
}

func (l *changeLog) snapshotTotal() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.snapTotal
}

func (l *changeLog) has(table, id string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	_, ok := l.state[table][id]
	return ok
}

// logSnapshotRate reports the snapshot's rate as Kafka saw it, and as
// capture measured reading it.
func (f *ferry) logSnapshotRate(l *changeLog) {
	l.mu.Lock()
	span := l.lastSnap.Sub(l.firstSnap)
	n := l.snapTotal
	l.mu.Unlock()
	f.t.Logf("snapshot: %d rows in Kafka over %s: %.0f rows/s end to end", n, span.Round(time.Millisecond), float64(n)/span.Seconds())
	b, _ := os.ReadFile(filepath.Join(f.logDir, "capture.log"))
	for line := range strings.SplitSeq(string(b), "\n") {
		if strings.Contains(line, "snapshot read") {
			f.t.Logf("capture: %s", line)
		}
	}
}

// activityCount counts how often the task's history scheduled an activity.
func (f *ferry) activityCount(taskID, activity string) int {
	f.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	it := f.temporal.GetWorkflowHistory(ctx, taskID, "", false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	n := 0
	for it.HasNext() {
		ev, err := it.Next()
		if err != nil {
			f.t.Fatalf("reading history of %s: %v", taskID, err)
		}
		if a := ev.GetActivityTaskScheduledEventAttributes(); a != nil && a.GetActivityType().GetName() == activity {
			n++
		}
	}
	return n
}
