package checkpoint

import (
	"testing"
	"time"
)

// fakeClock returns the times it is given, one per reading, and fails the
// test when read more often than expected.
type fakeClock struct {
	t     *testing.T
	times []time.Time
}

func (f *fakeClock) now() time.Time {
	f.t.Helper()
	if len(f.times) == 0 {
		f.t.Fatal("the clock was read more often than the safe LSN advanced over changes")
	}
	n := f.times[0]
	f.times = f.times[1:]
	return n
}

func TestLatencyPairFollowsAdvancesOverChanges(t *testing.T) {
	base := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	clk := &fakeClock{t: t, times: []time.Time{base.Add(time.Second), base.Add(3 * time.Second)}}
	c := New()
	c.now = clk.now

	a := c.Enqueue()
	c.WatermarkAt(100, base.UnixMicro())
	b := c.Enqueue()
	c.WatermarkAt(200, base.Add(time.Second).UnixMicro())
	c.Watermark(250) // idle keepalive at the same position: collapses into 200's
	if st := c.State(); st.SafeCommitMicros != 0 || st.SafeAckedMicros != 0 {
		t.Fatalf("times %+v before anything is safe", st)
	}
	// b first: out of order, nothing becomes safe and the clock is not read.
	mustAck(t, c, b)
	mustAck(t, c, a)
	st := c.State()
	if st.SafeLSN != 250 {
		t.Fatalf("safe %d, want 250", st.SafeLSN)
	}
	// Both watermarks became safe in one advance: the newest change is
	// 200's, acknowledged at the first clock reading.
	if st.SafeCommitMicros != base.Add(time.Second).UnixMicro() || st.SafeAckedMicros != base.Add(time.Second).UnixMicro() {
		t.Fatalf("times %+v, want commit and ack at base+1s", st)
	}

	// An idle keepalive moves the safe LSN but leaves the pair alone.
	c.Watermark(300)
	if st := c.State(); st.SafeLSN != 300 || st.SafeAckedMicros != base.Add(time.Second).UnixMicro() {
		t.Fatalf("after a keepalive: %+v", st)
	}

	// A batch whose changes were all filtered out (nothing enqueued) is safe
	// at once and still counts as covering changes.
	c.WatermarkAt(400, base.Add(2*time.Second).UnixMicro())
	st = c.State()
	if st.SafeLSN != 400 || st.SafeCommitMicros != base.Add(2*time.Second).UnixMicro() || st.SafeAckedMicros != base.Add(3*time.Second).UnixMicro() {
		t.Fatalf("after a watermark with no messages: %+v", st)
	}
}

// Two advances read the same microsecond: the second still gets a new
// acknowledgement time, so the owner reports it.
func TestLatencyAckTimeStrictlyIncreases(t *testing.T) {
	at := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	clk := &fakeClock{t: t, times: []time.Time{at, at}}
	c := New()
	c.now = clk.now
	c.WatermarkAt(10, at.Add(-time.Second).UnixMicro())
	first := c.State().SafeAckedMicros
	c.WatermarkAt(20, at.Add(-time.Second).UnixMicro())
	if second := c.State().SafeAckedMicros; second != first+1 {
		t.Fatalf("second ack time %d, want %d", second, first+1)
	}
}
