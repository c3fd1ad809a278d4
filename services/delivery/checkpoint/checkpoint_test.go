package checkpoint

import (
	"errors"
	"math/rand/v2"
	"testing"
)

func mustAck(t *testing.T, c *Checkpointer, seq uint64) {
	t.Helper()
	if _, err := c.Ack(seq); err != nil {
		t.Fatal(err)
	}
}

func TestInOrder(t *testing.T) {
	c := New()
	a, b := c.Enqueue(), c.Enqueue()
	c.Watermark(100)
	x := c.Enqueue()
	c.Watermark(200)
	mustAck(t, c, a)
	if got := c.SafeLSN(); got != 0 {
		t.Fatalf("safe after first ack = %d, want 0", got)
	}
	moved, err := c.Ack(b)
	if err != nil || !moved {
		t.Fatalf("ack b: moved=%v err=%v", moved, err)
	}
	if got := c.SafeLSN(); got != 100 {
		t.Fatalf("safe = %d, want 100", got)
	}
	mustAck(t, c, x)
	if got := c.State(); got.SafeLSN != 200 || got.Acked != 3 || got.InFlight != 0 || got.PendingWatermarks != 0 {
		t.Fatalf("state = %+v", got)
	}
}

func TestReverseOrder(t *testing.T) {
	c := New()
	var seqs []uint64
	for b := 1; b <= 5; b++ {
		for i := 0; i < 3; i++ {
			seqs = append(seqs, c.Enqueue())
		}
		c.Watermark(uint64(b * 10))
	}
	for i := len(seqs) - 1; i > 0; i-- {
		mustAck(t, c, seqs[i])
		if got := c.SafeLSN(); got != 0 {
			t.Fatalf("safe = %d before the first message is acked", got)
		}
	}
	mustAck(t, c, seqs[0])
	if got := c.SafeLSN(); got != 50 {
		t.Fatalf("safe = %d, want 50", got)
	}
}

func TestEmptyBatchWatermark(t *testing.T) {
	c := New()
	// Nothing outstanding: an idle keepalive is safe at once.
	c.Watermark(10)
	if got := c.SafeLSN(); got != 10 {
		t.Fatalf("safe = %d, want 10", got)
	}
	s := c.Enqueue()
	c.Watermark(20)
	c.Watermark(30) // keepalive while s is in flight
	c.Watermark(40) // collapses with the previous one
	if got := c.State(); got.SafeLSN != 10 || got.PendingWatermarks != 1 {
		t.Fatalf("state = %+v", got)
	}
	mustAck(t, c, s)
	if got := c.SafeLSN(); got != 40 {
		t.Fatalf("safe = %d, want 40", got)
	}
}

func TestMidTransactionNeverSafe(t *testing.T) {
	c := New()
	c.Watermark(5)
	// A transaction split over three batches: only the last carries a
	// watermark.
	var seqs []uint64
	for b := 0; b < 3; b++ {
		for i := 0; i < 4; i++ {
			seqs = append(seqs, c.Enqueue())
		}
		wm := uint64(0)
		if b == 2 {
			wm = 900
		}
		c.Watermark(wm)
	}
	for _, s := range seqs[:len(seqs)-1] {
		mustAck(t, c, s)
		if got := c.SafeLSN(); got != 5 {
			t.Fatalf("safe = %d inside a partial transaction", got)
		}
	}
	mustAck(t, c, seqs[len(seqs)-1])
	if got := c.SafeLSN(); got != 900 {
		t.Fatalf("safe = %d, want 900", got)
	}
}

func TestFailureBlocks(t *testing.T) {
	c := New()
	a := c.Enqueue()
	c.Watermark(10)
	b := c.Enqueue()
	c.Watermark(20)
	d := c.Enqueue()
	c.Watermark(30)
	mustAck(t, c, a)
	boom := errors.New("boom")
	c.Fail(b, boom)
	mustAck(t, c, d)
	if got := c.SafeLSN(); got != 10 {
		t.Fatalf("safe = %d, want 10 (must not pass the failed message)", got)
	}
	if !errors.Is(c.Err(), boom) {
		t.Fatalf("err = %v", c.Err())
	}
	select {
	case <-c.Changed():
	default:
		t.Fatal("failure did not signal")
	}
}

func TestBadAcks(t *testing.T) {
	c := New()
	if _, err := c.Ack(1); err == nil {
		t.Fatal("ack of a sequence never enqueued accepted")
	}
	s := c.Enqueue()
	mustAck(t, c, s)
	if _, err := c.Ack(s); err == nil {
		t.Fatal("double ack accepted")
	}
}

// TestMemoryBounded delivers many messages with a bounded window and checks
// that the structures grow with the in-flight span (oldest unacknowledged to
// newest enqueued), never with the total.
func TestMemoryBounded(t *testing.T) {
	c := New()
	rng := rand.New(rand.NewPCG(1, 2))
	var window []uint64
	maxSpan := uint64(0)
	for i := 0; i < 200_000; i++ {
		window = append(window, c.Enqueue())
		if i%7 == 0 {
			c.Watermark(uint64(i + 1))
		}
		if len(window) >= 500 {
			rng.Shuffle(len(window), func(a, b int) { window[a], window[b] = window[b], window[a] })
			oldest := window[0]
			for _, s := range window {
				oldest = min(oldest, s)
			}
			maxSpan = max(maxSpan, uint64(i+1)-oldest+1)
			for _, s := range window[:250] {
				mustAck(t, c, s)
			}
			window = append(window[:0], window[250:]...)
		}
	}
	ring, marks := c.sizes()
	if uint64(ring) > 2*maxSpan+1024 || uint64(marks) > 2*maxSpan+16 {
		t.Fatalf("ring %d, watermark queue %d after 200k messages; max in-flight span %d", ring, marks, maxSpan)
	}
	t.Logf("ring %d, watermark queue %d, max in-flight span %d", ring, marks, maxSpan)
}

// model is the brute-force reference: the safe LSN is the largest lsn of any
// watermark all of whose preceding messages are acknowledged.
type model struct {
	acked map[uint64]bool
	marks []watermark
	n     uint64
}

func (m *model) safe() uint64 {
	var best uint64
	for _, w := range m.marks {
		ok := true
		for s := uint64(1); s <= w.pos; s++ {
			if !m.acked[s] {
				ok = false
				break
			}
		}
		if ok && w.lsn > best {
			best = w.lsn
		}
	}
	return best
}

func TestPropertyRandomPermutations(t *testing.T) {
	for trial := 0; trial < 300; trial++ {
		rng := rand.New(rand.NewPCG(uint64(trial), 99))
		c := New()
		m := &model{acked: map[uint64]bool{}}
		var lsn uint64
		var pending []uint64
		failed := uint64(0)
		batches := 1 + rng.IntN(30)
		for b := 0; b < batches; b++ {
			n := rng.IntN(6) // 0: empty batch (keepalive)
			for i := 0; i < n; i++ {
				s := c.Enqueue()
				m.n++
				if s != m.n {
					t.Fatalf("seq %d, want %d", s, m.n)
				}
				pending = append(pending, s)
			}
			lsn += uint64(1 + rng.IntN(100))
			wm := lsn
			if rng.IntN(3) == 0 {
				wm = 0 // batch ends inside a transaction
			}
			c.Watermark(wm)
			if wm != 0 {
				m.marks = append(m.marks, watermark{pos: m.n, lsn: wm})
			}
			// Interleave some acks with production.
			rng.Shuffle(len(pending), func(a, b int) { pending[a], pending[b] = pending[b], pending[a] })
			k := rng.IntN(len(pending) + 1)
			for _, s := range pending[:k] {
				if failed == 0 && rng.IntN(50) == 0 {
					failed = s
					c.Fail(s, errors.New("x"))
					continue
				}
				mustAck(t, c, s)
				m.acked[s] = true
				if got, want := c.SafeLSN(), m.safe(); got != want {
					t.Fatalf("trial %d: safe = %d, model %d", trial, got, want)
				}
			}
			pending = append(pending[:0], pending[k:]...)
		}
		rng.Shuffle(len(pending), func(a, b int) { pending[a], pending[b] = pending[b], pending[a] })
		for _, s := range pending {
			mustAck(t, c, s)
			m.acked[s] = true
			if got, want := c.SafeLSN(), m.safe(); got != want {
				t.Fatalf("trial %d: safe = %d, model %d", trial, got, want)
			}
		}
		st := c.State()
		if failed == 0 {
			if st.InFlight != 0 {
				t.Fatalf("trial %d: in flight %d after all acks", trial, st.InFlight)
			}
			// Everything acked: the last watermark is safe.
			if len(m.marks) > 0 && st.SafeLSN != m.marks[len(m.marks)-1].lsn {
				t.Fatalf("trial %d: safe %d, want last watermark %d", trial, st.SafeLSN, m.marks[len(m.marks)-1].lsn)
			}
		} else {
			for _, w := range m.marks {
				if w.pos >= failed && st.SafeLSN >= w.lsn && w.lsn > 0 {
					// Only allowed if an earlier watermark had the same or
					// larger lsn, which cannot happen with increasing lsns.
					t.Fatalf("trial %d: safe %d passed failed seq %d", trial, st.SafeLSN, failed)
				}
			}
		}
	}
}

// AckAll acknowledges a burst, out of order, under one lock: the safe LSN is
// what acknowledging each in turn gives, and invalid sequence numbers are
// reported without stopping the valid ones.
func TestAckAll(t *testing.T) {
	for trial := 0; trial < 200; trial++ {
		rng := rand.New(rand.NewPCG(uint64(trial), 7))
		one, bulk := New(), New()
		var seqs []uint64
		for b := 0; b < 1+rng.IntN(20); b++ {
			for i := 0; i < rng.IntN(8); i++ {
				seqs = append(seqs, one.Enqueue())
				bulk.Enqueue()
			}
			lsn := uint64(10 * (b + 1))
			one.Watermark(lsn)
			bulk.Watermark(lsn)
		}
		rng.Shuffle(len(seqs), func(a, b int) { seqs[a], seqs[b] = seqs[b], seqs[a] })
		for len(seqs) > 0 {
			k := 1 + rng.IntN(len(seqs))
			before := bulk.SafeLSN()
			for _, s := range seqs[:k] {
				mustAck(t, one, s)
			}
			moved, bad, err := bulk.AckAll(seqs[:k])
			if err != nil {
				t.Fatalf("trial %d: AckAll: seq %d: %v", trial, bad, err)
			}
			if got, want := bulk.State(), one.State(); got != want {
				t.Fatalf("trial %d: bulk state %+v, one by one %+v", trial, got, want)
			}
			if moved != (bulk.SafeLSN() > before) {
				t.Fatalf("trial %d: moved %v, safe %d -> %d", trial, moved, before, bulk.SafeLSN())
			}
			seqs = seqs[k:]
		}
	}
}

func TestAckAllBadSequences(t *testing.T) {
	c := New()
	a, b := c.Enqueue(), c.Enqueue()
	c.Watermark(100)
	mustAck(t, c, a)
	moved, bad, err := c.AckAll([]uint64{a, 9, b})
	if err == nil || bad != a {
		t.Fatalf("AckAll with a double ack and an unknown seq: bad %d, err %v; want the double ack %d reported", bad, err, a)
	}
	if !moved || c.SafeLSN() != 100 {
		t.Fatalf("the valid seq %d was not acknowledged: moved %v, safe %d", b, moved, c.SafeLSN())
	}
}
