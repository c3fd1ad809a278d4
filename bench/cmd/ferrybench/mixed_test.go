package main

import (
	"testing"
	"time"
)

// TestMixWorkload checks that the workload is reproducible, close to the
// 70/20/10 mix, and that every UPDATE and DELETE changes a row alive at
// that point, so that each statement changes exactly one row.
func TestMixWorkload(t *testing.T) {
	const n, prefill = 100_000, 1_000
	w := newMixWorkload(n, prefill, 10)
	again := newMixWorkload(n, prefill, 10)
	for i := range w.ops {
		if w.ops[i] != again.ops[i] {
			t.Fatalf("change %d differs between two generations: %+v and %+v", i, w.ops[i], again.ops[i])
		}
	}
	want := map[string]float64{opInsert: 0.7, opUpdate: 0.2, opDelete: 0.1}
	for kind, share := range want {
		if got := float64(w.counts[kind]) / n; got < share-0.01 || got > share+0.01 {
			t.Errorf("%s share %.3f, want %.2f ± 0.01", kind, got, share)
		}
	}
	live := map[int64]bool{}
	for id := int64(1); id <= prefill; id++ {
		live[id] = true
	}
	counts := map[string]int{}
	for i, op := range w.ops {
		counts[op.kind]++
		switch op.kind {
		case opInsert:
			if live[op.id] {
				t.Fatalf("change %d inserts id %d, which exists", i, op.id)
			}
			live[op.id] = true
		case opUpdate:
			if !live[op.id] {
				t.Fatalf("change %d updates id %d, which does not exist", i, op.id)
			}
		case opDelete:
			if !live[op.id] {
				t.Fatalf("change %d deletes id %d, which does not exist", i, op.id)
			}
			delete(live, op.id)
		}
		if op.seq != int64(i+1) {
			t.Fatalf("change %d has sequence number %d", i, op.seq)
		}
	}
	for kind, c := range counts {
		if w.counts[kind] != c {
			t.Errorf("counts[%s] = %d, the ops hold %d", kind, w.counts[kind], c)
		}
	}
}

// TestSteadyRate checks the middle-of-the-catch-up rate: a slow start and
// tail are left out, and the crossings are interpolated between samples.
func TestSteadyRate(t *testing.T) {
	const n = 1000
	ms := func(v int) time.Duration { return time.Duration(v) * time.Millisecond }
	// Nothing for 2 s (the start), then 1,000 messages/s, then a slow tail.
	samples := []drainSample{{ms(0), 0}, {ms(2000), 0}, {ms(2050), 50}, {ms(2500), 500}, {ms(2950), 950}, {ms(5000), 1000}}
	if got := steadyRate(samples, n); got < 999 || got > 1001 {
		t.Errorf("steadyRate = %.1f, want 1000", got)
	}
	if got := steadyRate(samples[:3], n); got != 0 {
		t.Errorf("steadyRate before 90%% arrived = %.1f, want 0", got)
	}
}
