package capture

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"

	capturev1 "github.com/ferry-cdc/ferry/gen/ferry/capture/v1"
	cdcv1 "github.com/ferry-cdc/ferry/gen/ferry/cdc/v1"
	taskv1 "github.com/ferry-cdc/ferry/gen/ferry/task/v1"
	"github.com/ferry-cdc/ferry/platform/grpccodec"
	"github.com/ferry-cdc/ferry/services/internal/pgsource"
	"github.com/ferry-cdc/ferry/services/testenv"
	"github.com/ferry-cdc/ferry/services/tuple"
)

const waitLimit = 30 * time.Second

// startServer serves a capture Server on a free local port and returns a
// client connected to it over real gRPC.
func startServer(t *testing.T) capturev1.CaptureServiceClient {
	t.Helper()
	return startServerWith(t, nil)
}

// startServerWith is startServer with the Server set up by configure (nil:
// as NewServer makes it).
func startServerWith(t *testing.T, configure func(*Server)) capturev1.CaptureServiceClient {
	t.Helper()
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	impl := NewServer(logger)
	if configure != nil {
		configure(impl)
	}
	return serve(t, impl)
}

// serve serves s like startServer, for a test that sets s up first.
func serve(t *testing.T, s *Server) capturev1.CaptureServiceClient {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(grpccodec.ServerOption())
	capturev1.RegisterCaptureServiceServer(srv, s)
	go func() { _ = srv.Serve(lis) }()
	cc, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()), grpccodec.DialOption())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cc.Close()
		srv.Stop()
	})
	return capturev1.NewCaptureServiceClient(cc)
}

// replication names one test's slot and publication and drops both when
// the test ends, so no slot pins WAL.
type replication struct {
	slot, pub string
	tables    []*taskv1.TableRef
	// src is the local PostgreSQL, read once where a t is at hand.
	src *taskv1.SourceEndpoint
}

func newReplication(t *testing.T, pub string, tables ...*taskv1.TableRef) replication {
	t.Helper()
	r := replication{slot: testenv.UniqueName("ferry_slot"), pub: pub, tables: tables, src: testenv.Source(t)}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
		defer cancel()
		conn := testenv.PG(t)
		if _, err := dropSlot(ctx, conn, r.slot); err != nil {
			t.Errorf("cleanup: %v", err)
		}
		if _, err := dropPublication(ctx, conn, r.pub); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	return r
}

func (r replication) ensure(t *testing.T, c capturev1.CaptureServiceClient) *capturev1.EnsureReplicationResponse {
	t.Helper()
	resp, err := c.EnsureReplication(context.Background(), &capturev1.EnsureReplicationRequest{
		Source: testenv.Source(t), SlotName: r.slot, PublicationName: r.pub, Tables: r.tables,
	})
	if err != nil {
		t.Fatalf("EnsureReplication: %v", err)
	}
	return resp
}

func (r replication) start() *capturev1.StartStream {
	// A copy: a test may change the request it gets, never another's.
	return &capturev1.StartStream{Source: proto.Clone(r.src).(*taskv1.SourceEndpoint), SlotName: r.slot, PublicationName: r.pub}
}

// testStream is a client of StreamChanges that collects every batch.
type testStream struct {
	cancel context.CancelFunc
	stream grpc.BidiStreamingClient[capturev1.StreamChangesRequest, capturev1.StreamChangesResponse]
	done   chan struct{}

	mu      sync.Mutex
	batches []*cdcv1.ChangeBatch
	err     error
}

func openStream(t *testing.T, c capturev1.CaptureServiceClient, start *capturev1.StartStream) *testStream {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	stream, err := c.StreamChanges(ctx)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	if err := stream.Send(&capturev1.StreamChangesRequest{Kind: &capturev1.StreamChangesRequest_Start{Start: start}}); err != nil {
		cancel()
		t.Fatal(err)
	}
	s := &testStream{cancel: cancel, stream: stream, done: make(chan struct{})}
	go s.collect()
	t.Cleanup(s.close)
	return s
}

func (s *testStream) collect() {
	defer close(s.done)
	for {
		resp, err := s.stream.Recv()
		s.mu.Lock()
		if err != nil {
			s.err = err
			s.mu.Unlock()
			return
		}
		s.batches = append(s.batches, resp.GetBatch())
		s.mu.Unlock()
	}
}

// close cancels the call and waits until the client side has stopped.
func (s *testStream) close() {
	s.cancel()
	<-s.done
}

func (s *testStream) failure() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

func (s *testStream) ack(t *testing.T, lsn uint64) {
	t.Helper()
	err := s.stream.Send(&capturev1.StreamChangesRequest{Kind: &capturev1.StreamChangesRequest_Ack{Ack: &capturev1.Ack{FlushedLsn: lsn}}})
	if err != nil {
		t.Fatalf("sending ack: %v", err)
	}
}

// until polls the collected batches until cond holds, failing after
// waitLimit or when the stream ends.
func (s *testStream) until(t *testing.T, what string, cond func([]*cdcv1.ChangeBatch) bool) []*cdcv1.ChangeBatch {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		s.mu.Lock()
		batches, err := append([]*cdcv1.ChangeBatch(nil), s.batches...), s.err
		s.mu.Unlock()
		if cond(batches) {
			return batches
		}
		if err != nil && !errors.Is(err, io.EOF) {
			t.Fatalf("waiting for %s: stream failed: %v", what, err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("waiting for %s: gave up after %s with %d batches: %v", what, waitLimit, len(batches), batches)
		}
		<-tick.C
	}
}

func events(batches []*cdcv1.ChangeBatch) []*cdcv1.ChangeEvent {
	var out []*cdcv1.ChangeEvent
	for _, b := range batches {
		out = append(out, b.GetEvents()...)
	}
	return out
}

// untilEvents waits for n events and for the watermark that ends the
// transaction of the last one.
func (s *testStream) untilEvents(t *testing.T, n int) []*cdcv1.ChangeBatch {
	t.Helper()
	return s.until(t, "events and their watermark", func(bs []*cdcv1.ChangeBatch) bool {
		evs := events(bs)
		return len(evs) >= n && lastWatermark(bs) > evs[len(evs)-1].GetCommitLsn()
	})
}

func lastWatermark(batches []*cdcv1.ChangeBatch) uint64 {
	var w uint64
	for _, b := range batches {
		w = max(w, b.GetWatermarkLsn())
	}
	return w
}

// checkWatermarks asserts the contract of ChangeBatch.watermark_lsn: a
// watermark lies beyond every change sent so far, and a batch without one
// ends inside a transaction, which the next batch continues or closes.
func checkWatermarks(t *testing.T, batches []*cdcv1.ChangeBatch) {
	t.Helper()
	var maxCommit uint64
	for i, b := range batches {
		evs := b.GetEvents()
		for _, ev := range evs {
			maxCommit = max(maxCommit, ev.GetCommitLsn())
		}
		if w := b.GetWatermarkLsn(); w != 0 {
			if w <= maxCommit {
				t.Fatalf("batch %d: watermark %s is not beyond commit %s", i, pglogrepl.LSN(w), pglogrepl.LSN(maxCommit))
			}
			continue
		}
		if len(evs) == 0 || i+1 == len(batches) {
			continue
		}
		last, next := evs[len(evs)-1], batches[i+1]
		switch {
		case len(next.GetEvents()) > 0 && next.GetEvents()[0].GetCommitLsn() != last.GetCommitLsn():
			t.Fatalf("batch %d has no watermark but its transaction %d ended with it", i, last.GetXid())
		case len(next.GetEvents()) == 0 && next.GetWatermarkLsn() <= last.GetCommitLsn():
			t.Fatalf("batch %d: the empty batch after it does not close transaction %d", i, last.GetXid())
		}
	}
}

// slotState reads what PostgreSQL holds for the slot: the confirmed LSN
// and, from the walsender streaming it, the positions last reported.
type slotState struct {
	confirmed, write, flush pglogrepl.LSN
	active                  bool
}

// superPG connects as the local stack's superuser: only it (or
// pg_read_all_stats) may read the positions in pg_stat_replication.
func superPG(t *testing.T) *pgx.Conn {
	t.Helper()
	src := superSource(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgsource.Connect(ctx, src)
	if err != nil {
		t.Fatalf("connecting as the PostgreSQL superuser: %v", err)
	}
	t.Cleanup(func() { _ = conn.Close(context.Background()) })
	return conn
}

func readSlot(t *testing.T, conn *pgx.Conn, slot string) slotState {
	t.Helper()
	var confirmed string
	var write, flush *string
	var st slotState
	err := conn.QueryRow(context.Background(), `
		SELECT s.confirmed_flush_lsn::text, s.active, r.write_lsn::text, r.flush_lsn::text
		FROM pg_replication_slots s
		LEFT JOIN pg_stat_replication r ON r.pid = s.active_pid
		WHERE s.slot_name = $1`, slot).Scan(&confirmed, &st.active, &write, &flush)
	if err != nil {
		t.Fatalf("reading slot %s: %v", slot, err)
	}
	st.confirmed = mustLSN(t, &confirmed)
	st.write, st.flush = mustLSN(t, write), mustLSN(t, flush)
	return st
}

func mustLSN(t *testing.T, s *string) pglogrepl.LSN {
	t.Helper()
	if s == nil {
		return 0
	}
	lsn, err := pglogrepl.ParseLSN(*s)
	if err != nil {
		t.Fatal(err)
	}
	return lsn
}

// pollSlot polls the slot until cond holds.
func pollSlot(t *testing.T, conn *pgx.Conn, slot, what string, cond func(slotState) bool) slotState {
	t.Helper()
	return pollUntil(t, "slot "+slot+": "+what, func() slotState { return readSlot(t, conn, slot) }, cond)
}

// pollUntil reads until cond holds, failing after waitLimit with the last
// reading.
func pollUntil[T any](t *testing.T, what string, read func() T, cond func(T) bool) T {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		v := read()
		if cond(v) {
			return v
		}
		if time.Now().After(deadline) {
			t.Fatalf("waiting for %s: gave up after %s with %+v", what, waitLimit, v)
		}
		<-tick.C
	}
}

func table(schema, name string) *taskv1.TableRef {
	return &taskv1.TableRef{Schema: schema, Table: name}
}

func quoteIdent(parts ...string) string { return pgx.Identifier(parts).Sanitize() }

// colText is column i's text in tu ("" for NULL or unchanged TOAST).
func colText(tu *cdcv1.Tuple, i int) string {
	text, _ := tuple.Field(tu, i)
	return string(text)
}

// colInt is column i of tu read as an integer; a column that is not one
// panics, failing the test that asked.
func colInt(tu *cdcv1.Tuple, i int) int64 {
	n, err := strconv.ParseInt(colText(tu, i), 10, 64)
	if err != nil {
		panic(fmt.Sprintf("column %d is not an integer: %v", i, err))
	}
	return n
}
