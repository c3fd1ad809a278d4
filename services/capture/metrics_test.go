package capture

import (
	"context"
	"io"
	"log/slog"
	"net"
	"os"
	"strconv"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	capturev1 "github.com/ferry-cdc/ferry/gen/ferry/capture/v1"
	cdcv1 "github.com/ferry-cdc/ferry/gen/ferry/cdc/v1"
	taskv1 "github.com/ferry-cdc/ferry/gen/ferry/task/v1"
	"github.com/ferry-cdc/ferry/platform/grpccodec"
	"github.com/ferry-cdc/ferry/services/testenv"
	"github.com/ferry-cdc/ferry/services/tuple"
)

// startMeteredServer is startServer with Metrics recorded into a reader.
// Slot readings are refreshed on every collection, so polls see changes
// at once.
func startMeteredServer(t *testing.T) (capturev1.CaptureServiceClient, *sdkmetric.ManualReader) {
	t.Helper()
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	reader := sdkmetric.NewManualReader()
	m, err := NewMetrics(sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader)), logger)
	if err != nil {
		t.Fatal(err)
	}
	m.lagEvery = 0
	impl := NewServer(logger)
	impl.Metrics = m
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(grpccodec.ServerOption())
	capturev1.RegisterCaptureServiceServer(srv, impl)
	go func() { _ = srv.Serve(lis) }()
	cc, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()), grpccodec.DialOption())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cc.Close()
		srv.Stop()
	})
	return capturev1.NewCaptureServiceClient(cc), reader
}

// slotPoints collects once and returns the int64 points of every metric
// for slot, by metric name.
func slotPoints(t *testing.T, reader *sdkmetric.ManualReader, slot string) map[string]int64 {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	want := attribute.NewSet(attribute.String("slot", slot))
	out := map[string]int64{}
	for _, sm := range rm.ScopeMetrics {
		for _, md := range sm.Metrics {
			var dps []metricdata.DataPoint[int64]
			switch data := md.Data.(type) {
			case metricdata.Sum[int64]:
				dps = data.DataPoints
			case metricdata.Gauge[int64]:
				dps = data.DataPoints
			}
			for _, dp := range dps {
				if dp.Attributes.Equals(&want) {
					out[md.Name] = dp.Value
				}
			}
		}
	}
	return out
}

// pollPoints collects until cond holds, failing after waitLimit.
func pollPoints(t *testing.T, reader *sdkmetric.ManualReader, slot, what string, cond func(map[string]int64) bool) map[string]int64 {
	t.Helper()
	return pollUntil(t, "slot "+slot+": "+what, func() map[string]int64 { return slotPoints(t, reader, slot) }, cond)
}

// A live stream whose changes nobody acknowledged reports a positive lag
// (the WAL since confirmed_flush_lsn) and at least as much retained WAL,
// agreeing with PostgreSQL; the rows it sent are counted; and the slot's
// gauges go away with the stream.
func TestSlotLagGaugeReportsUnconfirmedWAL(t *testing.T) {
	client, reader := startMeteredServer(t)
	conn := testenv.PG(t)
	name := testenv.UniqueName("lag")
	createItems(t, name)
	q := quoteIdent("public", name)
	r := newReplication(t, testenv.UniqueName("ferry_pub"), table("public", name))
	r.ensure(t, client)

	s := openStream(t, client, r.start())
	testenv.Exec(t, conn, `INSERT INTO `+q+` (id, amount, note) SELECT g, g, repeat('x', 200) FROM generate_series(1, 50) g`)
	s.untilEvents(t, 50)

	pts := pollPoints(t, reader, r.slot, "a positive lag and 50 rows", func(p map[string]int64) bool {
		return p["ferry_capture_slot_lag_bytes"] > 0 && p["ferry_capture_rows"] == 50
	})
	lag, retained := pts["ferry_capture_slot_lag_bytes"], pts["ferry_capture_slot_retained_wal_bytes"]
	t.Logf("slot %s: lag %d bytes, retained %d bytes, sent %d bytes", r.slot, lag, retained, pts["ferry_capture_bytes"])
	if retained < lag {
		t.Errorf("retained WAL %d < lag %d: restart_lsn cannot be ahead of confirmed_flush_lsn", retained, lag)
	}
	// Without an ack nothing was confirmed, so the lag covers at least the
	// 50 rows of ~200 bytes just written.
	if lag < 50*200 {
		t.Errorf("lag %d bytes is less than the ~10 kB of unconfirmed rows", lag)
	}
	var pgLag int64
	if err := conn.QueryRow(context.Background(),
		`SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)::bigint FROM pg_replication_slots WHERE slot_name = $1`,
		r.slot).Scan(&pgLag); err != nil {
		t.Fatal(err)
	}
	if lag > pgLag {
		t.Errorf("gauge lag %d is more than PostgreSQL's lag %d read afterwards", lag, pgLag)
	}
	if pts["ferry_capture_bytes"] < 50*200 {
		t.Errorf("ferry_capture_bytes = %d for 50 rows of over 200 bytes", pts["ferry_capture_bytes"])
	}

	s.close()
	pollPoints(t, reader, r.slot, "the lag gauge to go with the stream", func(p map[string]int64) bool {
		_, ok := p["ferry_capture_slot_lag_bytes"]
		return !ok
	})
}

// A snapshot counts the rows it read and reports its tables done.
func TestSnapshotMetricsCountRowsAndTables(t *testing.T) {
	client, reader := startMeteredServer(t)
	conn := testenv.PG(t)
	name := testenv.UniqueName("snapm")
	createItems(t, name)
	q := quoteIdent("public", name)
	testenv.Exec(t, conn, `INSERT INTO `+q+` (id, amount) SELECT g, g FROM generate_series(1, 1234) g`)
	r := newReplication(t, testenv.UniqueName("ferry_pub"), table("public", name))
	if _, err := client.EnsureReplication(context.Background(), &capturev1.EnsureReplicationRequest{
		Source: testenv.Source(t), SlotName: r.slot, PublicationName: r.pub, Tables: r.tables, PublicationOnly: true,
	}); err != nil {
		t.Fatalf("EnsureReplication(publication_only): %v", err)
	}

	snap := readSnapshot(t, client, &capturev1.ReadSnapshotRequest{Source: testenv.Source(t), SlotName: r.slot,
		PublicationName: r.pub, Tables: r.tables, MaxBatchEvents: 500})
	if n := len(snap.progress); n == 0 || !snap.progress[n-1].GetDone() {
		t.Fatalf("snapshot did not finish: %v", snap.progress)
	}
	pts := slotPoints(t, reader, r.slot)
	if pts["ferry_capture_snapshot_rows"] != 1234 {
		t.Errorf("ferry_capture_snapshot_rows = %d, want 1234 (all: %v)", pts["ferry_capture_snapshot_rows"], pts)
	}
	if _, ok := pts["ferry_capture_snapshot_tables"]; ok {
		t.Errorf("snapshot progress still reported after the snapshot ended: %v", pts)
	}
}

// snapshotSink is the server side of a ReadSnapshot call that accepts
// every message.
type snapshotSink struct {
	capturev1.CaptureService_ReadSnapshotServer
}

func (snapshotSink) Send(*capturev1.ReadSnapshotResponse) error { return nil }
func (snapshotSink) Context() context.Context                   { return context.Background() }

// While a snapshot runs, its progress messages set the tables-done gauge.
func TestSnapshotProgressWhileRunning(t *testing.T) {
	reader := sdkmetric.NewManualReader()
	m, err := NewMetrics(sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader)), slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	req := &capturev1.ReadSnapshotRequest{SlotName: "ferry_progress", Tables: []*taskv1.TableRef{table("public", "a"), table("public", "b"), table("public", "c")}}
	gs, unwatch := m.watchSnapshot(req, snapshotSink{})
	progress := func(done ...bool) {
		var counts []*taskv1.TableRowCount
		for i, d := range done {
			counts = append(counts, &taskv1.TableRowCount{Table: req.GetTables()[i], Rows: 7, Done: d})
		}
		if err := gs.Send(&capturev1.ReadSnapshotResponse{Progress: &capturev1.SnapshotProgress{Tables: counts}}); err != nil {
			t.Fatal(err)
		}
	}
	progress(false, false, false)
	if err := gs.Send(&capturev1.ReadSnapshotResponse{Batch: &cdcv1.ChangeBatch{Events: make([]*cdcv1.ChangeEvent, 7)}}); err != nil {
		t.Fatal(err)
	}
	progress(true, false, false)
	progress(true, false, true)
	pts := slotPoints(t, reader, "ferry_progress")
	if pts["ferry_capture_snapshot_tables"] != 3 || pts["ferry_capture_snapshot_tables_done"] != 2 || pts["ferry_capture_snapshot_rows"] != 7 {
		t.Fatalf("progress after 2 of 3 tables and 7 rows: %v", pts)
	}
	unwatch()
	pts = slotPoints(t, reader, "ferry_progress")
	if _, ok := pts["ferry_capture_snapshot_tables"]; ok {
		t.Fatalf("progress still reported after the snapshot ended: %v", pts)
	}
}

// streamSink is the server side of a StreamChanges call that accepts every
// message.
type streamSink struct {
	capturev1.CaptureService_StreamChangesServer
}

func (streamSink) Send(*capturev1.StreamChangesResponse) error { return nil }

// BenchmarkMetricsPerBatch is what counting costs per batch of 1,000 rows
// of seven columns.
func BenchmarkMetricsPerBatch(b *testing.B) {
	m, err := NewMetrics(sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader())), slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		b.Fatal(err)
	}
	gs, unwatch := m.watchStream(&capturev1.StartStream{SlotName: "ferry_bench"}, streamSink{})
	defer unwatch()
	batch := &cdcv1.ChangeBatch{WatermarkLsn: 1}
	for i := range 1000 {
		batch.Events = append(batch.Events, &cdcv1.ChangeEvent{Op: cdcv1.Operation_OPERATION_INSERT, RelationOid: 16384, Lsn: uint64(i), NewTuple: tuple.Of(
			strconv.Itoa(i), "12.345", "a note of some length", `\x000102`, nil, "7", "9",
		)})
	}
	resp := &capturev1.StreamChangesResponse{Batch: batch}
	b.ReportAllocs()
	for b.Loop() {
		if err := gs.Send(resp); err != nil {
			b.Fatal(err)
		}
	}
}

// An open transaction that wrote holds back every slot's restart point;
// its age is exposed beside the slot's lag.
func TestOldestTransactionGauge(t *testing.T) {
	client, reader := startMeteredServer(t)
	name := testenv.UniqueName("oldest")
	createItems(t, name)
	r := newReplication(t, testenv.UniqueName("ferry_pub"), table("public", name))
	r.ensure(t, client)
	s := openStream(t, client, r.start())
	defer s.close()

	open := testenv.PG(t)
	ctx := context.Background()
	tx, err := open.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, `SELECT txid_current()`); err != nil { // assigns an xid
		t.Fatal(err)
	}
	began := time.Now()
	// Another test's transaction may be older, never younger: the gauge
	// is at least this one's age.
	pollPoints(t, reader, r.slot, "the open transaction to be 2 s old", func(p map[string]int64) bool {
		age := time.Since(began)
		return age >= 2*time.Second && p["ferry_capture_oldest_transaction_seconds"] >= int64(age.Seconds())-1
	})
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	pollPoints(t, reader, r.slot, "the age to drop once it commits", func(p map[string]int64) bool {
		v, ok := p["ferry_capture_oldest_transaction_seconds"]
		return ok && v < 2
	})
}
