package capture

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	capturev1 "github.com/ferry-cdc/ferry/gen/ferry/capture/v1"
	taskv1 "github.com/ferry-cdc/ferry/gen/ferry/task/v1"
	"github.com/ferry-cdc/ferry/services/internal/pgsource"
)

// Metrics are capture's per-slot metrics (the slot is the task's: capture's
// requests carry no task ID). They are recorded by wrapping the gRPC
// stream a call sends on, so the replication and snapshot loops carry no
// hooks. A nil *Metrics records nothing.
//
// Slot lag and retained WAL are read from PostgreSQL, for each slot with a
// live stream, when metrics are collected: at most once per lagEvery per
// slot, on a short-lived connection of its own (the stream's sessions
// belong to its loop), and a collection waits at most lagWait for the
// answer before reporting the last one.
type Metrics struct {
	logger *slog.Logger

	rows, bytes  metric.Int64Counter
	snapshotRows metric.Int64Counter
	lag          metric.Int64ObservableGauge
	retained     metric.Int64ObservableGauge
	oldestTxn    metric.Int64ObservableGauge
	snapTables   metric.Int64ObservableGauge
	snapDone     metric.Int64ObservableGauge

	lagEvery, lagWait, lagTimeout time.Duration

	mu        sync.Mutex
	slots     map[*slotWatch]struct{}
	snapshots map[*snapshotWatch]struct{}
}

// slotWatch is one live stream's slot. The fields after attrs are guarded
// by Metrics.mu.
type slotWatch struct {
	slot   string
	source *taskv1.SourceEndpoint
	attrs  metric.MeasurementOption

	known         bool // lag, retained and oldestTxn hold the last successful reading
	lag, retained int64
	oldestTxn     int64 // seconds
	checked       time.Time
	querying      chan struct{} // closed when the reading in flight ends; nil: none
	failing       bool
}

// snapshotWatch is one running ReadSnapshot.
type snapshotWatch struct {
	attrs  metric.MeasurementOption
	tables int64
	done   atomic.Int64
}

// Defaults of the slot readings.
const (
	slotLagEvery   = 10 * time.Second
	slotLagWait    = 2 * time.Second
	slotLagTimeout = 5 * time.Second
)

// NewMetrics creates capture's instruments on mp.
func NewMetrics(mp metric.MeterProvider, logger *slog.Logger) (*Metrics, error) {
	meter := mp.Meter("github.com/ferry-cdc/ferry/services/capture")
	m := &Metrics{
		logger: logger, lagEvery: slotLagEvery, lagWait: slotLagWait, lagTimeout: slotLagTimeout,
		slots: map[*slotWatch]struct{}{}, snapshots: map[*snapshotWatch]struct{}{},
	}
	var errs []error
	counter := func(name, unit, desc string) metric.Int64Counter {
		c, err := meter.Int64Counter(name, metric.WithUnit(unit), metric.WithDescription(desc))
		errs = append(errs, err)
		return c
	}
	gauge := func(name, unit, desc string) metric.Int64ObservableGauge {
		g, err := meter.Int64ObservableGauge(name, metric.WithUnit(unit), metric.WithDescription(desc))
		errs = append(errs, err)
		return g
	}
	m.rows = counter("ferry_capture_rows", "{row}", "Change events sent to the client, by slot.")
	m.bytes = counter("ferry_capture_bytes", "By", "Encoded size of the change batches sent to the client, by slot.")
	m.snapshotRows = counter("ferry_capture_snapshot_rows", "{row}", "Rows full sync read and sent, by slot.")
	m.lag = gauge("ferry_capture_slot_lag_bytes", "By", "WAL written since the slot's confirmed_flush_lsn: what Kafka has not acknowledged yet, for slots with a live stream.")
	m.retained = gauge("ferry_capture_slot_retained_wal_bytes", "By", "WAL the slot keeps on the source (since its restart_lsn), for slots with a live stream.")
	m.oldestTxn = gauge("ferry_capture_oldest_transaction_seconds", "s",
		"Age of the source's oldest open transaction that wrote (has an xid), as the task's role sees pg_stat_activity (pg_read_all_stats sees every session): logical decoding cannot move a slot's restart point past it.")
	m.snapTables = gauge("ferry_capture_snapshot_tables", "{table}", "Tables a running full sync reads, by slot.")
	m.snapDone = gauge("ferry_capture_snapshot_tables_done", "{table}", "Tables a running full sync has finished, by slot.")
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("creating capture's instruments: %w", err)
	}
	_, err := meter.RegisterCallback(m.observe, m.lag, m.retained, m.oldestTxn, m.snapTables, m.snapDone)
	if err != nil {
		return nil, fmt.Errorf("registering capture's gauges: %w", err)
	}
	return m, nil
}

func slotAttrs(slot string) metric.MeasurementOption {
	return metric.WithAttributeSet(attribute.NewSet(attribute.String("slot", slot)))
}

// watchStream counts what StreamChanges sends on gs and follows the slot's
// lag until the returned func is called.
func (m *Metrics) watchStream(start *capturev1.StartStream, gs capturev1.CaptureService_StreamChangesServer) (capturev1.CaptureService_StreamChangesServer, func()) {
	if m == nil {
		return gs, func() {}
	}
	w := &slotWatch{slot: start.GetSlotName(), source: start.GetSource(), attrs: slotAttrs(start.GetSlotName())}
	m.mu.Lock()
	m.slots[w] = struct{}{}
	m.mu.Unlock()
	return &countingStream{CaptureService_StreamChangesServer: gs, m: m, add: []metric.AddOption{w.attrs}}, func() {
		m.mu.Lock()
		delete(m.slots, w)
		m.mu.Unlock()
	}
}

type countingStream struct {
	capturev1.CaptureService_StreamChangesServer
	m   *Metrics
	add []metric.AddOption // made once: a variadic argument allocates per call
}

func (c *countingStream) Send(r *capturev1.StreamChangesResponse) error {
	if err := c.CaptureService_StreamChangesServer.Send(r); err != nil {
		return err
	}
	if b := r.GetBatch(); len(b.GetEvents()) > 0 {
		// No call context: its span would make every Add offer an exemplar.
		c.m.rows.Add(context.Background(), int64(len(b.GetEvents())), c.add...)
		c.m.bytes.Add(context.Background(), int64(b.SizeVT()), c.add...)
	}
	return nil
}

// watchSnapshot counts the rows ReadSnapshot sends on gs and follows its
// progress until the returned func is called.
func (m *Metrics) watchSnapshot(req *capturev1.ReadSnapshotRequest, gs capturev1.CaptureService_ReadSnapshotServer) (capturev1.CaptureService_ReadSnapshotServer, func()) {
	if m == nil {
		return gs, func() {}
	}
	w := &snapshotWatch{attrs: slotAttrs(req.GetSlotName()), tables: int64(len(req.GetTables()))}
	m.mu.Lock()
	m.snapshots[w] = struct{}{}
	m.mu.Unlock()
	return &countingSnapshot{CaptureService_ReadSnapshotServer: gs, m: m, w: w}, func() {
		m.mu.Lock()
		delete(m.snapshots, w)
		m.mu.Unlock()
	}
}

type countingSnapshot struct {
	capturev1.CaptureService_ReadSnapshotServer
	m *Metrics
	w *snapshotWatch
}

func (c *countingSnapshot) Send(r *capturev1.ReadSnapshotResponse) error {
	if err := c.CaptureService_ReadSnapshotServer.Send(r); err != nil {
		return err
	}
	if n := len(r.GetBatch().GetEvents()); n > 0 {
		c.m.snapshotRows.Add(context.Background(), int64(n), c.w.attrs)
	}
	if p := r.GetProgress(); p != nil {
		var done int64
		for _, t := range p.GetTables() {
			if t.GetDone() {
				done++
			}
		}
		c.w.done.Store(done)
	}
	return nil
}

// observe reports the gauges, first refreshing stale slot readings.
func (m *Metrics) observe(ctx context.Context, o metric.Observer) error {
	m.awaitReadings(ctx, m.refreshStale(time.Now()))
	m.mu.Lock()
	defer m.mu.Unlock()
	for w := range m.slots {
		if w.known {
			o.ObserveInt64(m.lag, w.lag, w.attrs)
			o.ObserveInt64(m.retained, w.retained, w.attrs)
			o.ObserveInt64(m.oldestTxn, w.oldestTxn, w.attrs)
		}
	}
	for w := range m.snapshots {
		o.ObserveInt64(m.snapTables, w.tables, w.attrs)
		o.ObserveInt64(m.snapDone, w.done.Load(), w.attrs)
	}
	return nil
}

// refreshStale starts a reading for every slot whose last one is older
// than lagEvery, and returns what to wait for (including readings already
// in flight).
func (m *Metrics) refreshStale(now time.Time) []chan struct{} {
	m.mu.Lock()
	defer m.mu.Unlock()
	var pending []chan struct{}
	for w := range m.slots {
		if w.querying == nil && now.Sub(w.checked) >= m.lagEvery {
			w.checked, w.querying = now, make(chan struct{})
			go m.read(w, w.querying)
		}
		if w.querying != nil {
			pending = append(pending, w.querying)
		}
	}
	return pending
}

// awaitReadings waits, at most lagWait in all, for the readings in flight.
func (m *Metrics) awaitReadings(ctx context.Context, pending []chan struct{}) {
	if len(pending) == 0 {
		return
	}
	timer := time.NewTimer(m.lagWait)
	defer timer.Stop()
	for _, done := range pending {
		select {
		case <-done:
		case <-timer.C:
			return
		case <-ctx.Done():
			return
		}
	}
}

// read takes one reading of w's slot and stores it.
func (m *Metrics) read(w *slotWatch, done chan struct{}) {
	defer close(done)
	ctx, cancel := context.WithTimeout(context.Background(), m.lagTimeout)
	defer cancel()
	r, err := readSlotLag(ctx, w.source, w.slot)
	m.mu.Lock()
	defer m.mu.Unlock()
	w.querying = nil
	if err != nil {
		if !w.failing {
			m.logger.Warn("cannot read the slot's lag for metrics; its lag gauges are left out until it works", "slot", w.slot, "error", err)
		}
		w.known, w.failing = false, true
		return
	}
	if w.failing {
		m.logger.Info("reading the slot's lag works again", "slot", w.slot)
	}
	w.known, w.failing, w.lag, w.retained, w.oldestTxn = true, false, r.lag, r.retained, r.oldestTxn
}

// slotReading is one reading of a slot and of the source around it.
type slotReading struct{ lag, retained, oldestTxn int64 }

// readSlotLag measures the slot against the server's current WAL position
// (the replayed one on a standby, where logical slots exist from
// PostgreSQL 16).
func readSlotLag(ctx context.Context, src *taskv1.SourceEndpoint, slot string) (slotReading, error) {
	conn, err := pgsource.Connect(ctx, src)
	if err != nil {
		return slotReading{}, err
	}
	defer func() { _ = conn.Close(context.WithoutCancel(ctx)) }()
	var lagp, retainedp *int64
	var r slotReading
	err = conn.QueryRow(ctx, `
		WITH cur AS (SELECT CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() ELSE pg_current_wal_lsn() END AS lsn)
		SELECT pg_wal_lsn_diff(cur.lsn, s.confirmed_flush_lsn)::bigint, pg_wal_lsn_diff(cur.lsn, s.restart_lsn)::bigint,
		  (SELECT coalesce(extract(epoch FROM now() - min(a.xact_start)), 0)::bigint
		     FROM pg_stat_activity a WHERE a.backend_xid IS NOT NULL AND a.pid <> pg_backend_pid())
		FROM pg_replication_slots s, cur WHERE s.slot_name = $1`, slot).Scan(&lagp, &retainedp, &r.oldestTxn)
	if errors.Is(err, pgx.ErrNoRows) {
		return r, fmt.Errorf("replication slot %s: %w", slot, errSlotMissing)
	}
	if err != nil {
		return r, fmt.Errorf("reading the lag of replication slot %s: %w", slot, err)
	}
	if lagp == nil || retainedp == nil {
		return r, fmt.Errorf("replication slot %s has no confirmed_flush_lsn or restart_lsn (invalidated?)", slot)
	}
	r.lag, r.retained = *lagp, *retainedp
	return r, nil
}
