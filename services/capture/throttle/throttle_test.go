package throttle

import (
	"context"
	"errors"
	"testing"
	"time"

	cdcv1 "github.com/ferry-cdc/ferry/gen/ferry/cdc/v1"
	taskv1 "github.com/ferry-cdc/ferry/gen/ferry/task/v1"
	"github.com/ferry-cdc/ferry/services/tuple"
)

// waitLimit bounds what a test waits for; nothing here should come near it.
const waitLimit = 30 * time.Second

var t0 = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)

// drain takes n tokens from b on a fake clock that jumps by each wait, and
// returns the time it took.
func drain(t *testing.T, b *bucket, now time.Time, n int64) time.Duration {
	t.Helper()
	start := now
	for steps := 0; n > 0; steps++ {
		if steps > 10_000 {
			t.Fatalf("still %d tokens owed after %d steps: the bucket never pays", n, steps)
		}
		took, wait := b.take(now, n)
		n -= took
		now = now.Add(wait)
	}
	return now.Sub(start)
}

func near(got, want time.Duration) bool {
	return got >= want-time.Millisecond && got <= want+20*time.Millisecond
}

func TestBucketPaysABatchLargerThanItsBurstInParts(t *testing.T) {
	var b bucket
	b.set(t0, 100) // burst 100
	// A full bucket pays 100 at once; the other 900 take 9 s at 100 a second.
	if got := drain(t, &b, t0, 1000); !near(got, 9*time.Second) {
		t.Fatalf("1000 tokens at 100/s from a full bucket took %s, want 9s", got)
	}
}

func TestBucketZeroIsUnlimited(t *testing.T) {
	var b bucket
	b.set(t0, 0)
	if took, wait := b.take(t0, 1<<40); took != 1<<40 || wait != 0 {
		t.Fatalf("unlimited take = %d, %s; want everything at once", took, wait)
	}
	b.set(t0, 10)
	// Coming from unlimited, the bucket starts full: 10 at once, then 10/s.
	if got := drain(t, &b, t0, 15); !near(got, 500*time.Millisecond) {
		t.Fatalf("15 tokens at 10/s took %s, want 500ms", got)
	}
	b.set(t0, 0)
	if took, wait := b.take(t0, 1000); took != 1000 || wait != 0 {
		t.Fatalf("take after going back to unlimited = %d, %s; want everything at once", took, wait)
	}
}

func TestBucketLimitChangesTakeEffect(t *testing.T) {
	var b bucket
	b.set(t0, 10)
	drain(t, &b, t0, 10) // empty now
	if _, wait := b.take(t0, 1); !near(wait, 100*time.Millisecond) {
		t.Fatalf("next token at 10/s in %s, want 100ms", wait)
	}
	b.set(t0, 1000)
	if got := drain(t, &b, t0, 500); !near(got, 500*time.Millisecond) {
		t.Fatalf("500 tokens after raising to 1000/s took %s, want 500ms", got)
	}
	now := t0.Add(time.Second)
	b.set(now, 2) // lowering caps the tokens at the new burst
	if got := drain(t, &b, now, 6); !near(got, 2*time.Second) {
		t.Fatalf("6 tokens after lowering to 2/s took %s, want 2s", got)
	}
}

func TestThrottleWaitIsBoundedByTheRate(t *testing.T) {
	thr := ForSnapshot(&taskv1.FullSyncThrottle{RowsPerSecond: 100, MegabytesPerSecond: 1})
	begun := time.Now()
	// 100 rows and 1 MB at once, then 50 rows (0.5 s) and 0.25 MB (0.25 s).
	if err := thr.Wait(context.Background(), Cost{Rows: 150, Bytes: 1_250_000}); err != nil {
		t.Fatal(err)
	}
	if got := time.Since(begun); got < 700*time.Millisecond {
		t.Fatalf("150 rows at 100/s and 1.25 MB at 1 MB/s took %s; want at least 750ms", got)
	}
}

func TestThrottlePayStopsAtItsDeadlineAndResumes(t *testing.T) {
	thr := ForStream(&taskv1.IncrementalThrottle{RowsPerSecond: 1})
	c := Cost{Rows: 3}
	paid, err := thr.Pay(context.Background(), &c, time.Now().Add(50*time.Millisecond))
	if paid || err != nil || c.Rows != 2 {
		t.Fatalf("pay with a 50ms deadline = %v, %v, %d owed; want not paid, one row taken", paid, err, c.Rows)
	}
	thr.setIncremental(&taskv1.IncrementalThrottle{})
	paid, err = thr.Pay(context.Background(), &c, time.Now())
	if !paid || err != nil || c.Rows != 0 {
		t.Fatalf("pay once unlimited = %v, %v, %d owed; want paid at once", paid, err, c.Rows)
	}
}

// waitingPay starts paying 3 rows at 1 row/s and returns once the first row
// is taken, so the pay is in (or about to enter) its wait for the second.
func waitingPay(t *testing.T, ctx context.Context, thr *Throttle) <-chan error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- thr.Wait(ctx, Cost{Rows: 3}) }()
	deadline := time.Now().Add(waitLimit)
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for thr.rows.lim.Load().TokensAt(time.Now()) > 0.5 {
		if time.Now().After(deadline) {
			t.Fatal("the pay never took its first row")
		}
		<-tick.C
	}
	return done
}

func TestThrottleChangeWakesAWaitingPay(t *testing.T) {
	thr := ForStream(&taskv1.IncrementalThrottle{RowsPerSecond: 1})
	done := waitingPay(t, context.Background(), thr)
	changed := time.Now()
	thr.setIncremental(&taskv1.IncrementalThrottle{})
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(waitLimit):
		t.Fatal("the pay did not end after the throttle was lifted")
	}
	// Without the wake-up it would sleep out the second row's wait (~1 s).
	if got := time.Since(changed); got > 700*time.Millisecond {
		t.Fatalf("the pay ended %s after the throttle was lifted; want at once", got)
	}
}

func TestThrottleWaitEndsOnCancel(t *testing.T) {
	thr := ForStream(&taskv1.IncrementalThrottle{RowsPerSecond: 1})
	ctx, cancel := context.WithCancel(context.Background())
	done := waitingPay(t, ctx, thr)
	cancelled := time.Now()
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("cancelled wait returned %v, want context.Canceled", err)
		}
	case <-time.After(waitLimit):
		t.Fatal("the wait did not end on cancel")
	}
	if got := time.Since(cancelled); got > 700*time.Millisecond {
		t.Fatalf("the wait ended %s after the cancel; want at once", got)
	}
}

func TestThrottleBatchCost(t *testing.T) {
	b := &cdcv1.ChangeBatch{Events: []*cdcv1.ChangeEvent{
		{NewTuple: tuple.Of("a value")}, {NewTuple: tuple.Of("7")}, {},
	}}
	if c := ForStream(nil).BatchCost(b); c != (Cost{Rows: 3}) {
		t.Fatalf("cost with bytes unlimited = %+v; want 3 rows and no size computed", c)
	}
	limited := ForStream(&taskv1.IncrementalThrottle{MegabytesPerSecond: 1})
	if c := limited.BatchCost(b); c.Rows != 3 || c.Bytes != int64(b.SizeVT()) || c.Bytes == 0 {
		t.Fatalf("cost with bytes limited = %+v; want 3 rows and %d bytes", c, b.SizeVT())
	}
	var none *Throttle
	if c := none.BatchCost(b); c.Rows != 3 || none.Wait(context.Background(), c) != nil {
		t.Fatal("a nil throttle must cost rows and never wait")
	}
}

func TestThrottleRegistryUpdatesTheSlotsRunningCalls(t *testing.T) {
	var r Registry
	stream := ForStream(nil)
	snap := ForSnapshot(&taskv1.FullSyncThrottle{QueriesPerSecond: 3})
	removeStream := r.Add("slot_a", stream)
	removeSnap := r.Add("slot_a", snap)
	other := ForStream(nil)
	defer r.Add("slot_b", other)()

	if n := r.Update("slot_a", &taskv1.IncrementalThrottle{RowsPerSecond: 50}, nil); n != 1 {
		t.Fatalf("incremental update changed %d calls, want 1 (the stream)", n)
	}
	if lim := stream.rows.lim.Load(); lim == nil || lim.Limit() != 50 || other.rows.limited() {
		t.Fatal("the update must limit slot_a's stream to 50 rows/s and leave slot_b's alone")
	}
	if lim := snap.queries.lim.Load(); lim == nil || lim.Limit() != 3 || snap.rows.limited() {
		t.Fatal("an update without full must leave the snapshot's throttle as it was")
	}
	if n := r.Update("slot_a", &taskv1.IncrementalThrottle{}, &taskv1.FullSyncThrottle{RowsPerSecond: 9}); n != 2 {
		t.Fatalf("update of both changed %d calls, want 2", n)
	}
	if stream.rows.limited() || snap.queries.limited() || snap.rows.lim.Load().Limit() != 9 {
		t.Fatal("zero fields must lift their limits and set ones apply")
	}
	removeStream()
	removeSnap()
	if n := r.Update("slot_a", &taskv1.IncrementalThrottle{}, &taskv1.FullSyncThrottle{}); n != 0 {
		t.Fatalf("update after the calls ended changed %d, want 0", n)
	}
	if _, ok := r.bySlot["slot_a"]; ok {
		t.Fatal("an empty slot must leave the registry")
	}
}

func TestSplitBatchKeepsRelationsFirstAndWatermarkLast(t *testing.T) {
	b := &cdcv1.ChangeBatch{Relations: []*cdcv1.Relation{{Oid: 7}}, WatermarkLsn: 900}
	for i := range 60 {
		b.Events = append(b.Events, &cdcv1.ChangeEvent{Lsn: uint64(100 + i)})
	}
	parts := SplitBatch(b, 25)
	if len(parts) != 3 || len(parts[0].GetEvents()) != 25 || len(parts[2].GetEvents()) != 10 {
		t.Fatalf("parts of %d, want 25+25+10", len(parts))
	}
	if len(parts[0].GetRelations()) != 1 || len(parts[1].GetRelations())+len(parts[2].GetRelations()) != 0 {
		t.Error("the relations must ride in the first part only")
	}
	if parts[0].GetWatermarkLsn() != 0 || parts[1].GetWatermarkLsn() != 0 || parts[2].GetWatermarkLsn() != 900 {
		t.Error("parts ending inside a transaction must not carry a watermark; the last carries the batch's")
	}
	// One transaction per five events: each part ends where one ends.
	for i, e := range b.Events {
		e.CommitLsn = uint64(1000 + i/5*10)
	}
	parts = SplitBatch(b, 25)
	if parts[0].GetWatermarkLsn() != 1041 || parts[1].GetWatermarkLsn() != 1091 || parts[2].GetWatermarkLsn() != 900 {
		t.Errorf("watermarks %d %d %d, want just past the commit LSNs 1040 and 1090 (covering those transactions), then the batch's 900",
			parts[0].GetWatermarkLsn(), parts[1].GetWatermarkLsn(), parts[2].GetWatermarkLsn())
	}
	next := uint64(100)
	for _, p := range parts {
		for _, e := range p.GetEvents() {
			if e.GetLsn() != next {
				t.Fatalf("event %d out of order", e.GetLsn())
			}
			next++
		}
	}
	if one := SplitBatch(&cdcv1.ChangeBatch{Events: b.Events[:3], WatermarkLsn: 5}, 25); len(one) != 1 || one[0].GetWatermarkLsn() != 5 {
		t.Error("a small batch must go whole")
	}
}

// TestSplitBatchWatermarksCoverExactlyTheirTransactions checks the contract
// PostgreSQL and exactly-once delivery both read a watermark by: it covers
// the transactions whose commit record starts before it. Every event up to
// a part's end must have a commit LSN below the part's watermark (else an
// exactly-once stream resumed there writes it again), every later one at
// or above it (else it is lost).
func TestSplitBatchWatermarksCoverExactlyTheirTransactions(t *testing.T) {
	b := &cdcv1.ChangeBatch{WatermarkLsn: 5000}
	for i := range 100 {
		// Transactions of 5 events whose commit records are 48 bytes apart,
		// as small ones are in the WAL: every part ends at a commit.
		b.Events = append(b.Events, &cdcv1.ChangeEvent{Lsn: uint64(i), CommitLsn: 1000 + uint64(i/5)*48})
	}
	seen, marks := 0, 0
	for _, p := range SplitBatch(b, 25) {
		seen += len(p.GetEvents())
		w := p.GetWatermarkLsn()
		if w == 0 || w == b.GetWatermarkLsn() {
			continue
		}
		marks++
		for i, e := range b.Events {
			if covered := e.GetCommitLsn() < w; covered != (i < seen) {
				t.Fatalf("watermark %d after %d events: event %d (commit LSN %d) covered %t", w, seen, i, e.GetCommitLsn(), covered)
			}
		}
	}
	if marks != 3 {
		t.Fatalf("%d parts with a watermark of their own, want 3", marks)
	}
}
