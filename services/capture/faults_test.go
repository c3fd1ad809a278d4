package capture

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	capturev1 "github.com/ferry-cdc/ferry/gen/ferry/capture/v1"
	cdcv1 "github.com/ferry-cdc/ferry/gen/ferry/cdc/v1"
	taskv1 "github.com/ferry-cdc/ferry/gen/ferry/task/v1"
	"github.com/ferry-cdc/ferry/services/testenv"
)

// Source faults run against a private PostgreSQL, which they stop, restart,
// reconfigure and take privileges from; the shared server is never touched.
// Each fault must end in a status whose code puts the task in the right
// retry window (workflows/activities ClassifyRPC: Unavailable is the connection
// window, FailedPrecondition and PermissionDenied the other-issues window,
// DataLoss fails the task at once) and whose message names the object and
// the fix; and no fault may lose or skip a change.

// faultEnv is one private server, a capture server and one task's slot and
// publication over some tables (id int8 PRIMARY KEY, note text).
type faultEnv struct {
	pg        *testenv.Postgres
	client    capturev1.CaptureServiceClient
	slot, pub string
	tables    []*taskv1.TableRef
	// start is the slot's confirmed LSN when it was created.
	start uint64
}

func newFaultEnv(t *testing.T, tables ...string) *faultEnv {
	t.Helper()
	f := &faultEnv{pg: testenv.StartPostgres(t), client: startServer(t), slot: "ferry_fault_slot", pub: "ferry_fault_pub"}
	t.Logf("private PostgreSQL ready: initdb %s, start %s", f.pg.InitTime, f.pg.StartTime)
	for _, name := range tables {
		f.exec(t, fmt.Sprintf("CREATE TABLE %s (id int8 PRIMARY KEY, note text)", quoteIdent("public", name)))
		f.tables = append(f.tables, table("public", name))
	}
	resp, err := f.client.EnsureReplication(context.Background(), &capturev1.EnsureReplicationRequest{
		Source: f.pg.Source(), SlotName: f.slot, PublicationName: f.pub, Tables: f.tables,
	})
	if err != nil {
		t.Fatalf("EnsureReplication: %v", err)
	}
	f.start = resp.GetConfirmedLsn()
	return f
}

// exec runs statements as ferry on a fresh session, which survives restarts.
func (f *faultEnv) exec(t *testing.T, stmts ...string) {
	t.Helper()
	testenv.Exec(t, f.pg.Conn(t), stmts...)
}

// super runs statements as the superuser.
func (f *faultEnv) super(t *testing.T, stmts ...string) {
	t.Helper()
	testenv.Exec(t, f.pg.SuperConn(t), stmts...)
}

func (f *faultEnv) startStream(lsn uint64) *capturev1.StartStream {
	return &capturev1.StartStream{Source: f.pg.Source(), SlotName: f.slot, PublicationName: f.pub, StartLsn: lsn}
}

func (f *faultEnv) open(t *testing.T, lsn uint64) *testStream {
	t.Helper()
	return openStream(t, f.client, f.startStream(lsn))
}

func (f *faultEnv) insert(t *testing.T, tbl string, ids ...int) {
	t.Helper()
	for _, id := range ids {
		f.exec(t, fmt.Sprintf("INSERT INTO %s VALUES (%d, 'row %d')", quoteIdent("public", tbl), id, id))
	}
}

// confirmed is the slot's confirmed_flush_lsn, as the superuser reads it.
func (f *faultEnv) confirmed(t *testing.T) pglogrepl.LSN {
	t.Helper()
	return readSlot(t, f.pg.SuperConn(t), f.slot).confirmed
}

// terminateWalsender ends the session streaming from the slot, as an
// administrator (or a crashed network path) would.
func (f *faultEnv) terminateWalsender(t *testing.T) {
	t.Helper()
	super := f.pg.SuperConn(t)
	pollSlot(t, super, f.slot, "the stream to be active", func(st slotState) bool { return st.active })
	testenv.Exec(t, super, fmt.Sprintf("SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE slot_name = '%s'", f.slot))
}

// ids lists the first column of the inserted rows, in stream order.
func ids(batches []*cdcv1.ChangeBatch) []int64 {
	var out []int64
	for _, ev := range events(batches) {
		out = append(out, colInt(ev.GetNewTuple(), 0))
	}
	return out
}

// untilIDs waits until the stream carries want, closed by a watermark.
func (s *testStream) untilIDs(t *testing.T, want ...int64) []*cdcv1.ChangeBatch {
	t.Helper()
	batches := s.untilEvents(t, len(want))
	if got := ids(batches); !slices.Equal(got, want) {
		t.Fatalf("stream carried rows %v, want exactly %v", got, want)
	}
	return batches
}

// ackAll acknowledges everything received and waits until PostgreSQL has
// confirmed exactly that.
func (f *faultEnv) ackAll(t *testing.T, s *testStream, batches []*cdcv1.ChangeBatch) pglogrepl.LSN {
	t.Helper()
	w := pglogrepl.LSN(lastWatermark(batches))
	s.ack(t, uint64(w))
	pollSlot(t, f.pg.SuperConn(t), f.slot, "the ack to be confirmed", func(st slotState) bool {
		if st.confirmed > w {
			t.Fatalf("slot confirmed %s beyond the acked %s", st.confirmed, w)
		}
		return st.confirmed == w
	})
	return w
}

// streamFailure waits for the stream to end and returns its status.
func streamFailure(t *testing.T, s *testStream) *status.Status {
	t.Helper()
	select {
	case <-s.done:
	case <-time.After(waitLimit):
		t.Fatalf("the stream did not fail within %s", waitLimit)
	}
	err := s.failure()
	if err == nil || errors.Is(err, io.EOF) {
		t.Fatalf("the stream ended with %v, want an error", err)
	}
	return status.Convert(err)
}

// checkStatus asserts the code and that the message names every part.
func checkStatus(t *testing.T, what string, st *status.Status, code codes.Code, parts ...string) {
	t.Helper()
	if st.Code() != code || !contains(st.Message(), parts...) {
		t.Fatalf("%s: %v %q; want %v naming %q", what, st.Code(), st.Message(), code, parts)
	}
	t.Logf("%s: %v: %s", what, st.Code(), st.Message())
}

// openError starts a stream that must fail before sending anything.
func (f *faultEnv) openError(t *testing.T, lsn uint64) *status.Status {
	t.Helper()
	code, msg := streamError(t, f.client, &capturev1.StreamChangesRequest{Kind: &capturev1.StreamChangesRequest_Start{Start: f.startStream(lsn)}})
	return status.New(code, msg)
}

// PostgreSQL's clean shutdown waits until every walsender's client has
// confirmed all WAL sent. Capture confirms only what was acknowledged, so
// an unacknowledged change holds the shutdown up (new streams meanwhile get
// Unavailable) until delivery's acks arrive; then the stream ends with
// Unavailable (the connection window: the server comes back by itself),
// and a new stream from the task's checkpoint resumes right after it.
func TestFaultServerRestartWaitsForAcks(t *testing.T) {
	f := newFaultEnv(t, "restart_items")
	s := f.open(t, f.start)
	f.insert(t, "restart_items", 1)
	acked := f.ackAll(t, s, s.untilIDs(t, 1))
	f.insert(t, "restart_items", 2)
	s.untilIDs(t, 1, 2) // received, not yet acknowledged

	if err := f.pg.TryStop(2 * time.Second); err == nil {
		t.Fatal("PostgreSQL shut down while row 2 was unacknowledged: capture confirmed it without an ack")
	}
	checkStatus(t, "server shutting down", f.openError(t, uint64(acked)), codes.Unavailable, "shutting down", "retries")
	stopAcking := s.ackEveryWatermark()
	f.pg.Stop()
	acked = stopAcking()
	checkStatus(t, "server restart", streamFailure(t, s), codes.Unavailable, f.slot, "retries")
	checkStatus(t, "server down", f.openError(t, uint64(acked)), codes.Unavailable,
		f.pg.Source().GetHost(), "connection refused", "check that it is running")
	f.pg.Start()
	if c := f.confirmed(t); c > acked {
		t.Fatalf("after the restart the slot confirms %s, beyond the acknowledged %s", c, acked)
	}
	again := f.open(t, uint64(acked)) // the workflow passes its checkpoint
	f.insert(t, "restart_items", 3)
	f.ackAll(t, again, again.untilIDs(t, 3))
}

// A crash (no shutdown checkpoint, crash recovery on start) loses nothing
// either: the slot never confirms more than was acknowledged, and a new
// stream from the task's checkpoint sends the unacknowledged change again.
func TestFaultServerCrashResumesAfterTheAck(t *testing.T) {
	f := newFaultEnv(t, "crash_items")
	s := f.open(t, f.start)
	f.insert(t, "crash_items", 1)
	acked := f.ackAll(t, s, s.untilIDs(t, 1))
	f.insert(t, "crash_items", 2)
	s.untilIDs(t, 1, 2) // received, never acknowledged

	f.pg.Crash()
	checkStatus(t, "server crash", streamFailure(t, s), codes.Unavailable, f.slot, "retries")
	f.pg.Start()
	if c := f.confirmed(t); c > acked {
		t.Fatalf("after the crash the slot confirms %s, beyond the acknowledged %s", c, acked)
	}
	again := f.open(t, uint64(acked))
	f.insert(t, "crash_items", 3)
	f.ackAll(t, again, again.untilIDs(t, 2, 3))
}

// ackEveryWatermark acknowledges every watermark the stream receives, as delivery
// does once Kafka has the changes, until the returned function is called;
// that returns the last LSN acknowledged.
func (s *testStream) ackEveryWatermark() func() pglogrepl.LSN {
	stop, done := make(chan struct{}), make(chan pglogrepl.LSN)
	go func() {
		var acked uint64
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			s.mu.Lock()
			w := lastWatermark(s.batches)
			s.mu.Unlock()
			if w > acked && s.stream.Send(&capturev1.StreamChangesRequest{Kind: &capturev1.StreamChangesRequest_Ack{Ack: &capturev1.Ack{FlushedLsn: w}}}) == nil {
				acked = w
			}
			select {
			case <-stop:
				done <- pglogrepl.LSN(acked)
				return
			case <-tick.C:
			}
		}
	}()
	return func() pglogrepl.LSN { close(stop); return <-done }
}

// A lost connection (the network path cut, the server still up) is
// Unavailable like a restart, and a new stream resumes the same way.
func TestFaultLostConnectionResumes(t *testing.T) {
	f := newFaultEnv(t, "lost_items")
	proxy := startProxy(t, fmt.Sprintf("127.0.0.1:%d", f.pg.Port()))
	viaProxy := func(lsn uint64) *capturev1.StartStream {
		st := f.startStream(lsn)
		st.Source.Port = uint32(proxy.port())
		return st
	}
	s := openStream(t, f.client, viaProxy(f.start))
	f.insert(t, "lost_items", 1)
	acked := f.ackAll(t, s, s.untilIDs(t, 1))
	f.insert(t, "lost_items", 2)
	s.untilIDs(t, 1, 2)

	proxy.cut()
	checkStatus(t, "lost connection", streamFailure(t, s), codes.Unavailable, f.slot)
	again := openStream(t, f.client, viaProxy(uint64(acked)))
	f.insert(t, "lost_items", 3)
	f.ackAll(t, again, again.untilIDs(t, 2, 3))
}

// tcpProxy forwards connections to PostgreSQL until cut, which drops every
// open connection the way a broken network path does, or freeze, which
// keeps them open but passes nothing on, the way a silent partition (a
// firewall dropping packets, a dead route) does.
type tcpProxy struct {
	lis    net.Listener
	mu     sync.Mutex
	conns  []net.Conn
	frozen atomic.Bool
}

func startProxy(t *testing.T, target string) *tcpProxy {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &tcpProxy{lis: lis}
	t.Cleanup(func() { _ = lis.Close(); p.cut() })
	go p.serve(target)
	return p
}

func (p *tcpProxy) port() int { return p.lis.Addr().(*net.TCPAddr).Port }

func (p *tcpProxy) serve(target string) {
	for {
		in, err := p.lis.Accept()
		if err != nil {
			return
		}
		out, err := net.Dial("tcp", target)
		if err != nil {
			_ = in.Close()
			continue
		}
		p.mu.Lock()
		p.conns = append(p.conns, in, out)
		p.mu.Unlock()
		go func() { p.pipe(out, in); _ = out.Close() }()
		go func() { p.pipe(in, out); _ = in.Close() }()
	}
}

// pipe copies src to dst, dropping what it reads while frozen.
func (p *tcpProxy) pipe(dst io.Writer, src io.Reader) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 && !p.frozen.Load() {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func (p *tcpProxy) freeze() { p.frozen.Store(true) }

func (p *tcpProxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		_ = c.Close()
	}
	p.conns = nil
}

// A silent partition sends no error and closes nothing: the replication
// connection just stops delivering. The heartbeat, written every second
// here over the same network path, times out, which ends the stream as
// Unavailable within the heartbeat interval plus its 5 s timeout instead
// of waiting on TCP for many minutes.
func TestFaultSilentPartitionIsDetected(t *testing.T) {
	f := newFaultEnv(t, "silent_items")
	proxy := startProxy(t, fmt.Sprintf("127.0.0.1:%d", f.pg.Port()))
	st := f.startStream(f.start)
	st.Source.Port, st.HeartbeatSeconds = uint32(proxy.port()), 1
	s := openStream(t, f.client, st)
	f.insert(t, "silent_items", 1)
	f.ackAll(t, s, s.untilIDs(t, 1))

	proxy.freeze()
	frozeAt := time.Now()
	checkStatus(t, "silent partition", streamFailure(t, s), codes.Unavailable, f.slot)
	if took := time.Since(frozeAt); took > 15*time.Second {
		t.Fatalf("the partition was noticed after %s, want within the heartbeat interval plus its timeout", took)
	} else {
		t.Logf("silent partition noticed after %s", took.Round(10*time.Millisecond))
	}
}

// A dropped slot cannot be replaced: the WAL since its confirmed position
// is no longer retained, and a new slot would start at the current
// position and silently skip it. So StreamChanges never recreates it and
// answers DataLoss, which fails the task at once with what to do: re-read
// the tables with a full sync.
func TestFaultDroppedSlot(t *testing.T) {
	f := newFaultEnv(t, "slot_items")
	s := f.open(t, f.start)
	f.insert(t, "slot_items", 1)
	acked := f.ackAll(t, s, s.untilIDs(t, 1))
	// An active slot cannot be dropped: the administrator ends its session
	// first, which the stream sees as a retryable disconnection.
	f.terminateWalsender(t)
	checkStatus(t, "walsender terminated", streamFailure(t, s), codes.Unavailable, f.slot, "administrator")
	pollSlot(t, f.pg.SuperConn(t), f.slot, "the walsender to exit", func(st slotState) bool { return !st.active })
	f.super(t, fmt.Sprintf("SELECT pg_drop_replication_slot('%s')", f.slot))

	checkStatus(t, "dropped slot", f.openError(t, uint64(acked)), codes.DataLoss, f.slot, acked.String(), "full sync")
	var n int
	if err := f.pg.SuperConn(t).QueryRow(context.Background(), "SELECT count(*) FROM pg_replication_slots").Scan(&n); err != nil || n != 0 {
		t.Fatalf("StreamChanges left %d slots (%v); it must never recreate a dropped slot", n, err)
	}
}

// A publication dropped while its slot streams breaks the slot for good:
// pgoutput reads the publication as of each change's position, so a change
// written while it was missing never decodes, even after it is recreated.
// The stream fails with DataLoss naming the publication; the proof that
// recreating does not help is that a new stream fails the same way. Before
// any change is decoded, a missing publication is only FailedPrecondition:
// recreated in time, with no change written meanwhile, it would serve.
func TestFaultDroppedPublication(t *testing.T) {
	f := newFaultEnv(t, "pub_items")
	s := f.open(t, f.start)
	f.insert(t, "pub_items", 1)
	acked := f.ackAll(t, s, s.untilIDs(t, 1))
	f.exec(t, "DROP PUBLICATION "+f.pub)
	f.insert(t, "pub_items", 2)
	checkStatus(t, "publication dropped while streaming", streamFailure(t, s), codes.DataLoss, f.pub, f.slot, "recreat", "full sync")

	f.exec(t, fmt.Sprintf("CREATE PUBLICATION %s FOR TABLE pub_items", f.pub))
	again := f.open(t, uint64(acked))
	checkStatus(t, "publication recreated", streamFailure(t, again), codes.DataLoss, f.pub, "full sync")
	if c := f.confirmed(t); c != acked {
		t.Fatalf("the slot confirms %s, want the acknowledged %s", c, acked)
	}

	f.exec(t, "DROP PUBLICATION "+f.pub)
	checkStatus(t, "publication missing at start", f.openError(t, uint64(acked)), codes.FailedPrecondition, f.pub, f.slot, "full sync")
}

// A table dropped while streaming leaves the publication (PostgreSQL
// removes it), and the stream goes on for the other tables without an
// error: the drop is the source owner's decision, and stopping every other
// table for it would help no one. Its changes written before the drop are
// still decoded (logical decoding reads the catalog as of each change), by
// the running stream and by a new one, so none is lost.
func TestFaultTableDroppedWhileStreaming(t *testing.T) {
	f := newFaultEnv(t, "drop_gone", "drop_kept")
	s := f.open(t, f.start)
	f.insert(t, "drop_gone", 1)
	f.insert(t, "drop_kept", 2)
	s.untilIDs(t, 1, 2)
	f.insert(t, "drop_gone", 3)
	f.exec(t, "DROP TABLE drop_gone")
	f.insert(t, "drop_kept", 4)
	s.untilIDs(t, 1, 2, 3, 4)
	if err := s.failure(); err != nil {
		t.Fatalf("the stream failed after the drop: %v", err)
	}
	var left []string
	rows, err := f.pg.Conn(t).Query(context.Background(), "SELECT tablename FROM pg_publication_tables WHERE pubname = $1", f.pub)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var name string
		_ = rows.Scan(&name)
		left = append(left, name)
	}
	if rows.Err() != nil || !slices.Equal(left, []string{"drop_kept"}) {
		t.Fatalf("publication tables after the drop: %v (%v), want [drop_kept]", left, rows.Err())
	}
	s.close()

	// A new stream from before the drop decodes the dropped table's rows too.
	again := f.open(t, f.start)
	replay := again.untilIDs(t, 1, 2, 3, 4)
	if rel := relationNames(replay); !slices.Contains(rel, "drop_gone") {
		t.Fatalf("replay after the drop lacks the dropped table's relation: %v", rel)
	}
	f.ackAll(t, again, replay)
}

func relationNames(batches []*cdcv1.ChangeBatch) []string {
	var out []string
	for _, b := range batches {
		for _, r := range b.GetRelations() {
			out = append(out, r.GetTable())
		}
	}
	return out
}

// A role that loses REPLICATION keeps its running stream (PostgreSQL checks
// at connection), but the next one is refused: PermissionDenied naming the
// role and the statement that gives it back. That is the other-issues
// window: once an administrator grants it again, the task resumes.
func TestFaultReplicationRevoked(t *testing.T) {
	f := newFaultEnv(t, "perm_items")
	s := f.open(t, f.start)
	f.insert(t, "perm_items", 1)
	acked := f.ackAll(t, s, s.untilIDs(t, 1))
	f.super(t, "ALTER ROLE ferry NOREPLICATION")
	f.insert(t, "perm_items", 2)
	s.untilIDs(t, 1, 2)
	f.terminateWalsender(t)
	streamFailure(t, s)

	checkStatus(t, "REPLICATION revoked", f.openError(t, uint64(acked)), codes.PermissionDenied,
		`role "ferry"`, `ALTER ROLE "ferry" WITH REPLICATION`)
	_, err := f.client.EnsureReplication(context.Background(), &capturev1.EnsureReplicationRequest{
		Source: f.pg.Source(), SlotName: "ferry_other_slot", PublicationName: f.pub, Tables: f.tables,
	})
	checkStatus(t, "REPLICATION revoked, setup", status.Convert(err), codes.PermissionDenied, `ALTER ROLE "ferry" WITH REPLICATION`)

	f.super(t, "ALTER ROLE ferry REPLICATION")
	again := f.open(t, uint64(acked))
	f.ackAll(t, again, again.untilIDs(t, 2))
}

// Full sync reads each table with SELECT; a revoked grant fails the
// snapshot with PermissionDenied naming the role, the table and the GRANT.
func TestFaultSnapshotSelectRevoked(t *testing.T) {
	pg := testenv.StartPostgres(t)
	client := startServer(t)
	super := pg.SuperConn(t)
	// The table and publication belong to the superuser, so that taking
	// SELECT away from ferry is possible (an owner keeps its rights).
	testenv.Exec(t, super,
		"CREATE TABLE snap_items (id int8 PRIMARY KEY, note text)",
		"INSERT INTO snap_items VALUES (1, 'one')",
		"CREATE PUBLICATION ferry_snap_pub FOR TABLE snap_items",
		"GRANT SELECT ON snap_items TO ferry",
		"REVOKE SELECT ON snap_items FROM ferry")
	snap, err := client.ReadSnapshot(context.Background(), &capturev1.ReadSnapshotRequest{
		Source: pg.Source(), SlotName: "ferry_snap_slot", PublicationName: "ferry_snap_pub",
		Tables: []*taskv1.TableRef{table("public", "snap_items")},
	})
	for err == nil {
		_, err = snap.Recv()
	}
	checkStatus(t, "SELECT revoked, snapshot", status.Convert(err), codes.PermissionDenied,
		`role "ferry"`, `"public"."snap_items"`, `GRANT SELECT ON "public"."snap_items" TO "ferry"`)
}

// wal_level taken down to replica: while the task's logical slot exists,
// PostgreSQL itself refuses to start (its log names the slot and the
// setting), so capture sees a server that is down, Unavailable, and the
// task resumes with nothing lost once wal_level is logical again. Without
// a slot (the slot was dropped too, or full sync has not created it yet),
// every call that needs logical decoding answers FailedPrecondition naming
// wal_level and the fix.
func TestFaultWALLevelChanged(t *testing.T) {
	f := newFaultEnv(t, "wal_items")
	s := f.open(t, f.start)
	f.insert(t, "wal_items", 1)
	acked := f.ackAll(t, s, s.untilIDs(t, 1))
	f.insert(t, "wal_items", 2)
	s.untilIDs(t, 1, 2)

	f.pg.Crash()
	streamFailure(t, s)
	f.pg.Configure("wal_level=replica")
	if err := f.pg.TryStart(); err == nil || !strings.Contains(f.pg.Log(), `logical replication slot "`+f.slot+`" exists, but wal_level < logical`) {
		t.Fatalf("PostgreSQL started with wal_level=replica and a logical slot (%v); log:\n%s", err, f.pg.Log())
	}
	checkStatus(t, "wal_level=replica with a slot", f.openError(t, uint64(acked)), codes.Unavailable, "connection refused")
	f.pg.Configure("wal_level=logical")
	f.pg.Start()
	again := f.open(t, uint64(acked))
	f.ackAll(t, again, again.untilIDs(t, 2))
	again.close()

	f.super(t, fmt.Sprintf("SELECT pg_drop_replication_slot('%s')", f.slot))
	f.pg.Restart("wal_level=replica")
	const fix = "set wal_level = logical"
	checkStatus(t, "wal_level=replica, stream", f.openError(t, uint64(acked)), codes.FailedPrecondition, "wal_level = replica", fix)
	_, err := f.client.EnsureReplication(context.Background(), &capturev1.EnsureReplicationRequest{
		Source: f.pg.Source(), SlotName: f.slot, PublicationName: f.pub, Tables: f.tables,
	})
	checkStatus(t, "wal_level=replica, setup", status.Convert(err), codes.FailedPrecondition, "wal_level = replica", fix)
	snap, err := f.client.ReadSnapshot(context.Background(), &capturev1.ReadSnapshotRequest{
		Source: f.pg.Source(), SlotName: f.slot, PublicationName: f.pub, Tables: f.tables,
	})
	for err == nil {
		_, err = snap.Recv()
	}
	checkStatus(t, "wal_level=replica, snapshot", status.Convert(err), codes.FailedPrecondition, "wal_level", fix)
}
