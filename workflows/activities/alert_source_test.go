package activities

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	capturev1 "github.com/ferry-cdc/ferry/gen/ferry/capture/v1"
	taskv1 "github.com/ferry-cdc/ferry/gen/ferry/task/v1"
	"github.com/ferry-cdc/ferry/platform/taskapi"
)

// Each source figure fires after its hold and resolves on its own webhook
// notifier; a failed reading changes no state.
func TestSourceWatchJudgesEachFigureOnItsOwn(t *testing.T) {
	h := newHook(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	spec := &taskv1.TaskSpec{Name: "Orders", Alerts: &taskv1.AlertRules{WebhookUrl: h.srv.URL,
		RetainedWalThresholdMegabytes: 64, SlotLagThresholdMegabytes: 16, TransactionThresholdSeconds: 300, SourceForSeconds: 60}}
	w := newSourceWatch(ctx, &recLogger{}, h.srv.Client(), "orders-sync", spec, nil)
	if len(w.rules) != 3 || w.every != taskapi.DefaultSourceCheckSeconds*time.Second {
		t.Fatalf("%d rules every %s, want 3 every the default", len(w.rules), w.every)
	}
	t0 := time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC)
	reading := func(wal, lag, txn int64) *capturev1.GetSlotHealthResponse {
		return &capturev1.GetSlotHealthResponse{RetainedWalBytes: wal << 20, LagBytes: lag << 20, OldestTransactionSeconds: txn}
	}
	w.observe(reading(100, 1, 400), t0)                     // WAL and transaction above; lag below
	w.observe(reading(100, 1, 400), t0.Add(59*time.Second)) // not yet held for 60 s
	w.observe(reading(100, 1, 10), t0.Add(60*time.Second))  // WAL fires; the transaction ended
	m := h.next(t)
	if m["kind"] != taskapi.AlertKindRetainedWAL || m["state"] != taskapi.AlertFiring || m["value"] != float64(100<<20) ||
		m["threshold"] != float64(64<<20) || m["unit"] != "bytes" || m["task_name"] != "Orders" {
		t.Fatalf("first alert %v, want retained_wal firing at 100 MB over 64 MB", m)
	}
	w.observe(reading(10, 1, 10), t0.Add(61*time.Second))
	if m := h.next(t); m["kind"] != taskapi.AlertKindRetainedWAL || m["state"] != taskapi.AlertResolved {
		t.Fatalf("second alert %v, want retained_wal resolved", m)
	}
	if n := h.requests(); n != 2 {
		t.Fatalf("%d webhook requests, want 2: the lag never crossed and the transaction never held", n)
	}
}

// run keeps reading after a failure, and stops with its context.
func TestSourceWatchRunSurvivesFailedReadings(t *testing.T) {
	h := newHook(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	spec := &taskv1.TaskSpec{Alerts: &taskv1.AlertRules{WebhookUrl: h.srv.URL, SlotLagThresholdMegabytes: 1}}
	var n atomic.Int32
	read := func(context.Context) (*capturev1.GetSlotHealthResponse, error) {
		if n.Add(1) == 1 {
			return nil, errors.New("source restarting")
		}
		return &capturev1.GetSlotHealthResponse{LagBytes: 2 << 20}, nil
	}
	logger := &recLogger{}
	w := newSourceWatch(ctx, logger, h.srv.Client(), "t", spec, read)
	w.every = 10 * time.Millisecond
	done := make(chan struct{})
	go func() { w.run(ctx); close(done) }()
	if m := h.next(t); m["kind"] != taskapi.AlertKindSlotLag || m["state"] != taskapi.AlertFiring {
		t.Fatalf("alert %v, want slot_lag firing after a failed reading", m)
	}
	if !logger.warned("cannot read the slot") {
		t.Fatalf("the failed reading was not logged: %v", logger.warns)
	}
	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("run did not stop with its context")
	}
	if newSourceWatch(ctx, logger, nil, "t", &taskv1.TaskSpec{Alerts: &taskv1.AlertRules{LatencyThresholdSeconds: 1}}, read) != nil {
		t.Fatal("a source watch without a source threshold")
	}
}
