package activities

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
	"google.golang.org/protobuf/types/known/timestamppb"

	deliveryv1 "github.com/ferry-cdc/ferry/gen/ferry/delivery/v1"
	taskv1 "github.com/ferry-cdc/ferry/gen/ferry/task/v1"
	"github.com/ferry-cdc/ferry/platform/taskapi"
)

func TestLatencyEvaluatorFiresAfterHoldAndResolvesOnce(t *testing.T) {
	t0 := time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC)
	e := latencyEvaluator{threshold: 10 * time.Second, hold: 30 * time.Second}
	steps := []struct {
		at      time.Duration // after t0
		latency time.Duration
		want    string // "" when the sample changes nothing
	}{
		{0, 5 * time.Second, ""},
		{1 * time.Second, 12 * time.Second, ""}, // above since t0+1s
		{20 * time.Second, 15 * time.Second, ""},
		{25 * time.Second, 8 * time.Second, ""},  // dips below: the run starts over
		{26 * time.Second, 11 * time.Second, ""}, // above since t0+26s
		{55 * time.Second, 11 * time.Second, ""}, // 29 s above
		{56 * time.Second, 20 * time.Second, taskapi.AlertFiring},
		{57 * time.Second, 30 * time.Second, ""}, // fires once
		{90 * time.Second, 40 * time.Second, ""},
		{91 * time.Second, 10 * time.Second, taskapi.AlertResolved}, // at the threshold is not above
		{92 * time.Second, 0, ""},                                   // resolves once
		{93 * time.Second, 11 * time.Second, ""},                    // a new run must last the hold again
		{122 * time.Second, 11 * time.Second, ""},
		{123 * time.Second, 11 * time.Second, taskapi.AlertFiring},
	}
	for _, s := range steps {
		state, changed := e.Observe(s.latency, t0.Add(s.at))
		if changed != (s.want != "") || state != s.want {
			t.Fatalf("at +%s latency %s: got (%q, %v), want %q", s.at, s.latency, state, changed, s.want)
		}
	}
}

func TestLatencyEvaluatorWithoutHoldFiresOnFirstSampleAbove(t *testing.T) {
	t0 := time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC)
	e := latencyEvaluator{threshold: time.Second}
	if _, changed := e.Observe(time.Second, t0); changed {
		t.Fatal("a sample at the threshold fired")
	}
	if state, _ := e.Observe(1001*time.Millisecond, t0.Add(time.Second)); state != taskapi.AlertFiring {
		t.Fatalf("got %q, want firing", state)
	}
}

func TestAckLatency(t *testing.T) {
	base := time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC).UnixMicro()
	for _, c := range []struct {
		commit, acked int64
		want          time.Duration
	}{
		{base, base + 1_500_000, 1500 * time.Millisecond},
		{0, 0, 0},              // moved on a watermark alone: idle
		{base, base - 2000, 0}, // the source's clock is ahead
	} {
		if got := ackLatency(&deliveryv1.DeliverResponse{SafeLsn: 1, SafeCommitTimeMicros: c.commit, SafeAckedTimeMicros: c.acked}); got != c.want {
			t.Fatalf("commit %d acked %d: latency %s, want %s", c.commit, c.acked, got, c.want)
		}
	}
	cp := &checkpointTracker{}
	cp.advance(&deliveryv1.DeliverResponse{SafeLsn: 7})
	cp.setLatency(1500 * time.Millisecond)
	if got := cp.snapshot(); got.GetLatencyMs() != 1500 || got.GetConfirmedLsn() != 7 {
		t.Fatalf("checkpoint %v, want latency_ms 1500 at 7", got)
	}
}

// hook is an httptest webhook that records every request body and answers
// with the statuses it is given, then 204.
type hook struct {
	srv      *httptest.Server
	mu       sync.Mutex
	bodies   [][]byte
	statuses []int
	got      chan map[string]any // every decoded body
}

func newHook(t *testing.T, statuses ...int) *hook {
	t.Helper()
	h := &hook{statuses: statuses, got: make(chan map[string]any, 16)}
	h.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/json" {
			http.Error(w, fmt.Sprintf("want a JSON POST, got %s %q", r.Method, r.Header.Get("Content-Type")), http.StatusMethodNotAllowed)
			return
		}
		h.mu.Lock()
		h.bodies = append(h.bodies, body)
		status := http.StatusNoContent
		if len(h.statuses) > 0 {
			status, h.statuses = h.statuses[0], h.statuses[1:]
		}
		h.mu.Unlock()
		if status >= 300 {
			http.Error(w, "try later", status)
			return
		}
		var m map[string]any
		if err := json.Unmarshal(body, &m); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		h.got <- m
		w.WriteHeader(status)
	}))
	t.Cleanup(h.srv.Close)
	return h
}

func (h *hook) requests() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.bodies)
}

// next waits for the next body the webhook accepted.
func (h *hook) next(t *testing.T) map[string]any {
	t.Helper()
	select {
	case m := <-h.got:
		return m
	case <-time.After(10 * time.Second):
		t.Fatalf("the webhook received nothing in 10s (%d requests)", h.requests())
		return nil
	}
}

func TestPostAlertSendsTheDocumentedBodyAndRetries503(t *testing.T) {
	h := newHook(t, http.StatusServiceUnavailable, http.StatusServiceUnavailable)
	alert := WebhookAlert{TaskID: "t1", TaskName: "Orders", Kind: taskapi.AlertKindLatency, State: taskapi.AlertFiring,
		Message: "slow", At: "2025-03-04T05:06:07.000000123Z", LatencyMs: 42500, ThresholdSeconds: 30}
	if err := PostAlert(context.Background(), http.DefaultClient, h.srv.URL+"/hook", alert); err != nil {
		t.Fatal(err)
	}
	if n := h.requests(); n != 3 {
		t.Fatalf("%d requests, want 3 (two 503s, then success)", n)
	}
	got := h.next(t)
	want := map[string]any{"task_id": "t1", "task_name": "Orders", "kind": "latency", "state": "firing",
		"message": "slow", "at": "2025-03-04T05:06:07.000000123Z", "latency_ms": 42500.0, "threshold_seconds": 30.0}
	if len(got) != len(want) {
		t.Fatalf("body %v, want exactly the keys of %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Fatalf("body %v: %s = %v, want %v", got, k, got[k], v)
		}
	}
}

func TestPostAlertGivesUpAfterRepeated5xx(t *testing.T) {
	h := newHook(t, 502, 503, 503, 503)
	err := PostAlert(context.Background(), http.DefaultClient, h.srv.URL, WebhookAlert{Kind: taskapi.AlertKindTaskFailed})
	if err == nil || !strings.Contains(err.Error(), h.srv.URL) || !strings.Contains(err.Error(), "503") {
		t.Fatalf("got %v, want an error naming %s and the status", err, h.srv.URL)
	}
	if n := h.requests(); n != webhookAttempts {
		t.Fatalf("%d requests, want %d", n, webhookAttempts)
	}
}

func TestPostAlertDoesNotRetry4xx(t *testing.T) {
	h := newHook(t, http.StatusNotFound)
	err := PostAlert(context.Background(), http.DefaultClient, h.srv.URL+"/gone", WebhookAlert{Kind: taskapi.AlertKindTaskFailed})
	var perm permanentError
	if !errors.As(err, &perm) || !strings.Contains(err.Error(), h.srv.URL+"/gone") || !strings.Contains(err.Error(), "404") {
		t.Fatalf("got %v, want a permanent error naming the URL and 404", err)
	}
	if n := h.requests(); n != 1 {
		t.Fatalf("%d requests, want 1", n)
	}
}

// A connection dropped without an answer is retried.
func TestPostAlertRetriesDroppedConnections(t *testing.T) {
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) == 1 {
			conn, _, err := w.(http.Hijacker).Hijack()
			if err == nil {
				_ = conn.Close()
			}
			return
		}
		w.WriteHeader(http.StatusOK)
	}))
	defer srv.Close()
	if err := PostAlert(context.Background(), srv.Client(), srv.URL, WebhookAlert{Kind: taskapi.AlertKindTaskFailed}); err != nil {
		t.Fatal(err)
	}
	if n := calls.Load(); n != 2 {
		t.Fatalf("%d requests, want 2", n)
	}
}

func TestPostAlertRefusesNonHTTPURLs(t *testing.T) {
	for _, u := range []string{"ftp://hooks.example.com/x", "hooks.example.com/x", "https://user:secret@/x", "http://[::1"} {
		err := PostAlert(context.Background(), http.DefaultClient, u, WebhookAlert{})
		var perm permanentError
		if !errors.As(err, &perm) || strings.Contains(err.Error(), "secret") {
			t.Fatalf("%s: got %v, want a permanent error without the password", u, err)
		}
	}
}

// recLogger records Warn messages.
type recLogger struct {
	mu    sync.Mutex
	warns []string
}

func (l *recLogger) Debug(string, ...any) {}
func (l *recLogger) Info(string, ...any)  {}
func (l *recLogger) Error(string, ...any) {}
func (l *recLogger) Warn(msg string, kv ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.warns = append(l.warns, fmt.Sprint(append([]any{msg}, kv...)...))
}

func (l *recLogger) warned(substr string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, w := range l.warns {
		if strings.Contains(w, substr) {
			return true
		}
	}
	return false
}

func TestAlertActivityLogsAndPosts(t *testing.T) {
	h := newHook(t, http.StatusServiceUnavailable)
	logger := &recLogger{}
	var suite testsuite.WorkflowTestSuite
	suite.SetLogger(logger)
	env := suite.NewTestActivityEnvironment()
	a := &Activities{} // nil HTTP: the default client
	env.RegisterActivity(a)
	at := time.Date(2025, 3, 4, 5, 6, 7, 890, time.UTC)
	in := &taskv1.AlertActivityInput{TaskId: "orders-sync", TaskName: "Orders", Kind: taskapi.AlertKindTaskFailed,
		Message: "capture stream: slot is gone", At: timestamppb.New(at),
		Rules: &taskv1.AlertRules{OnFailure: true, LatencyThresholdSeconds: 30, WebhookUrl: h.srv.URL}}
	if _, err := env.ExecuteActivity(a.Alert, in); err != nil {
		t.Fatal(err)
	}
	got := h.next(t)
	if got["task_id"] != "orders-sync" || got["task_name"] != "Orders" || got["kind"] != "task_failed" || got["state"] != "firing" ||
		got["message"] != "capture stream: slot is gone" || got["at"] != at.Format(time.RFC3339Nano) ||
		got["latency_ms"] != 0.0 || got["threshold_seconds"] != 0.0 {
		t.Fatalf("body %v", got)
	}
	if n := h.requests(); n != 2 {
		t.Fatalf("%d requests, want 2 (a 503, then success)", n)
	}
	if !logger.warned("slot is gone") {
		t.Fatalf("no Warn log of the alert: %v", logger.warns)
	}

	// Without a webhook the alert is only logged.
	in.Rules.WebhookUrl, in.Message = "", "only logged"
	if _, err := env.ExecuteActivity(a.Alert, in); err != nil {
		t.Fatal(err)
	}
	if !logger.warned("only logged") || h.requests() != 2 {
		t.Fatalf("warns %v, %d requests", logger.warns, h.requests())
	}
}

func TestAlertActivityRejectedWebhookIsNotRetried(t *testing.T) {
	h := newHook(t, http.StatusForbidden)
	env := (&testsuite.WorkflowTestSuite{}).NewTestActivityEnvironment()
	a := &Activities{HTTP: h.srv.Client()}
	env.RegisterActivity(a)
	_, err := env.ExecuteActivity(a.Alert, &taskv1.AlertActivityInput{TaskId: "t1", Kind: taskapi.AlertKindTaskFailed,
		Rules: &taskv1.AlertRules{WebhookUrl: h.srv.URL}})
	var appErr *temporal.ApplicationError
	if !errors.As(err, &appErr) || !appErr.NonRetryable() || !strings.Contains(err.Error(), "403") || !strings.Contains(err.Error(), h.srv.URL) {
		t.Fatalf("got %v, want a non-retryable error naming the URL and 403", err)
	}
}

// The watch posts both transitions with the latency, and observe never waits
// for the webhook: while one post hangs, later alerts wait in one slot and
// the latest of them is sent.
func TestLatencyWatchPostsTransitionsWithoutBlocking(t *testing.T) {
	release := make(chan struct{})
	var calls atomic.Int32
	got := make(chan map[string]any, 8)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var m map[string]any
		if err := json.NewDecoder(r.Body).Decode(&m); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if calls.Add(1) == 1 {
			<-release
		}
		got <- m
	}))
	defer srv.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	logger := &recLogger{}
	spec := &taskv1.TaskSpec{Name: "Orders", Alerts: &taskv1.AlertRules{LatencyThresholdSeconds: 2, LatencyForSeconds: 5, WebhookUrl: srv.URL}}
	w := newLatencyWatch(ctx, logger, srv.Client(), "orders-sync", spec)
	t0 := time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC)

	start := time.Now()
	w.observe(3*time.Second, t0)
	w.observe(4*time.Second, t0.Add(5*time.Second)) // fires; its post hangs
	w.observe(time.Second, t0.Add(6*time.Second))   // resolves: waits
	w.observe(0, t0.Add(7*time.Second))
	if d := time.Since(start); d > time.Second {
		t.Fatalf("observe blocked for %s while the webhook hung", d)
	}
	close(release)
	want := []struct {
		state string
		ms    float64
		at    time.Time
	}{{taskapi.AlertFiring, 4000, t0.Add(5 * time.Second)}, {taskapi.AlertResolved, 1000, t0.Add(6 * time.Second)}}
	for _, wnt := range want {
		select {
		case m := <-got:
			if m["state"] != wnt.state || m["latency_ms"] != wnt.ms || m["at"] != wnt.at.Format(time.RFC3339Nano) ||
				m["kind"] != "latency" || m["threshold_seconds"] != 2.0 || m["task_name"] != "Orders" {
				t.Fatalf("body %v, want %s at %s with %v ms", m, wnt.state, wnt.at, wnt.ms)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("no %s alert within 10s", wnt.state)
		}
	}
	if !logger.warned(taskapi.AlertFiring) || !logger.warned(taskapi.AlertResolved) {
		t.Fatalf("transitions not logged: %v", logger.warns)
	}
	if newLatencyWatch(ctx, logger, nil, "t", &taskv1.TaskSpec{Alerts: &taskv1.AlertRules{WebhookUrl: srv.URL}}) != nil {
		t.Fatal("a watch without a threshold")
	}
}

func TestAlertNotifierKeepsOnlyTheLatestWaitingAlert(t *testing.T) {
	release := make(chan struct{})
	var calls atomic.Int32
	got := make(chan string, 8)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var m WebhookAlert
		if err := json.NewDecoder(r.Body).Decode(&m); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if calls.Add(1) == 1 {
			<-release
		}
		got <- m.Message
	}))
	defer srv.Close()
	logger := &recLogger{}
	n := &alertNotifier{ctx: context.Background(), client: srv.Client(), url: srv.URL, logger: logger}
	for _, msg := range []string{"a", "b", "c", "d"} {
		n.send(WebhookAlert{Kind: taskapi.AlertKindLatency, Message: msg})
	}
	close(release)
	for _, want := range []string{"a", "d"} {
		select {
		case msg := <-got:
			if msg != want {
				t.Fatalf("webhook got %q, want %q", msg, want)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("no alert %q within 10s", want)
		}
	}
	if !logger.warned("superseded") {
		t.Fatalf("dropped alerts not logged: %v", logger.warns)
	}
	// The notifier is idle again: a new alert goes out at once.
	n.send(WebhookAlert{Kind: taskapi.AlertKindLatency, Message: "e"})
	select {
	case msg := <-got:
		if msg != "e" {
			t.Fatalf("webhook got %q, want e", msg)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no alert e within 10s")
	}
}
