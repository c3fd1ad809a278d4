package capture

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	capturev1 "github.com/ferry-cdc/ferry/gen/ferry/capture/v1"
	"github.com/ferry-cdc/ferry/services/testenv"
)

// memRowsEnv scales TestStreamMemoryIsBounded (default 100000 rows); the
// lead's bench measures the real binary's RSS at larger sizes.
const memRowsEnv = "FERRY_STREAM_MEM_ROWS"

// memBound is what a transaction may add to the heap of this process
// (client and capture server) while it streams through: far less than the
// rows themselves at the default size (each decoded row is a few hundred
// bytes), so holding the transaction would fail.
const memBound = 64 << 20

// The heap does not grow with a streamed transaction: one transaction of
// FERRY_STREAM_MEM_ROWS rows goes through a counting client with protocol
// 2 (spooled) and with protocol 1, while the heap in use is sampled.
func TestStreamMemoryIsBounded(t *testing.T) {
	rows := 100_000
	if v := os.Getenv(memRowsEnv); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			t.Fatalf("%s=%q is not a row count", memRowsEnv, v)
		}
		rows = n
	}
	e := newStreamPG(t, nil)
	v1 := startServerWith(t, func(s *Server) { s.StreamInProgress = false })
	for _, c := range []struct {
		name   string
		client capturev1.CaptureServiceClient
	}{{"streamed", e.client}, {"protocol1", v1}} {
		q, start := e.task(t, "mem_"+c.name)
		peak, took := countThrough(t, c.client, start, rows, func() {
			testenv.Exec(t, e.pg.Conn(t), insertRange(q, 1, rows))
		})
		t.Logf("%s: %d rows in one transaction: heap in use grew by at most %.1f MiB (%s)",
			c.name, rows, float64(peak)/(1<<20), took.Round(time.Millisecond))
		if peak > memBound {
			t.Errorf("%s: heap in use grew by %d MiB through %d rows, more than %d MiB", c.name, peak>>20, rows, memBound>>20)
		}
	}
	e.checkNoSpools(t)
}

// countThrough opens a stream, runs write, and counts rows (which must be
// 1..rows in order) until the watermark after the last, acking as it goes.
// It returns the largest growth of HeapInuse over the start, sampled every
// 5 ms, and how long the rows took.
func countThrough(t *testing.T, client capturev1.CaptureServiceClient, start *capturev1.StartStream, rows int, write func()) (uint64, time.Duration) {
	t.Helper()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	base := ms.HeapInuse
	var peak atomic.Uint64
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go sampleHeap(base, &peak, stop, sampled)
	defer func() { close(stop); <-sampled }()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	stream, err := client.StreamChanges(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&capturev1.StreamChangesRequest{Kind: &capturev1.StreamChangesRequest_Start{Start: start}}); err != nil {
		t.Fatal(err)
	}
	began := time.Now()
	write()
	if err := countRows(stream, rows); err != nil {
		t.Fatal(err)
	}
	return peak.Load(), time.Since(began)
}

func sampleHeap(base uint64, peak *atomic.Uint64, stop <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	var ms runtime.MemStats
	for {
		select {
		case <-stop:
			return
		case <-tick.C:
		}
		runtime.ReadMemStats(&ms)
		if ms.HeapInuse > base && ms.HeapInuse-base > peak.Load() {
			peak.Store(ms.HeapInuse - base)
		}
	}
}

// countRows receives until rows rows (ids 1..rows, in order) and a
// watermark after them have arrived, keeping none.
func countRows(stream capturev1.CaptureService_StreamChangesClient, rows int) error {
	next := int64(1)
	for {
		resp, err := stream.Recv()
		if err != nil {
			return fmt.Errorf("after %d rows: %w", next-1, err)
		}
		b := resp.GetBatch()
		for _, ev := range b.GetEvents() {
			if id := colInt(ev.GetNewTuple(), 0); id != next {
				return fmt.Errorf("row %d came where %d was due", id, next)
			}
			next++
		}
		if w := b.GetWatermarkLsn(); w != 0 {
			if err := stream.Send(&capturev1.StreamChangesRequest{Kind: &capturev1.StreamChangesRequest_Ack{Ack: &capturev1.Ack{FlushedLsn: w}}}); err != nil {
				return err
			}
			if next > int64(rows) {
				return nil
			}
		}
	}
}
