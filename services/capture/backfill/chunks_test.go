package backfill

import "testing"

// Readers take their snapshots in any order: the horizon may pass a sent
// chunk's xmin only as far as every open chunk's snapshot sees, and not at
// all while an open chunk's snapshot is unknown.
func TestChunkRegistryHorizonStaysBehindOpenChunks(t *testing.T) {
	r := newChunkRegistry()
	a, b := r.start(0), r.start(1)
	if a == b || b != a+1 {
		t.Fatalf("chunk numbers %d and %d; want consecutive", a, b)
	}
	if tab, ok := r.table(b); !ok || tab != 1 {
		t.Fatalf("chunk %d's table: %d, %v; want 1", b, tab, ok)
	}
	ca := &Chunk{n: a, table: 0, snap: xidSnapshot{xmin: 100, xmax: 105}}
	cb := &Chunk{n: b, table: 1, snap: xidSnapshot{xmin: 120, xmax: 125}}
	r.snapped(b, 120)
	r.hand(cb)
	if r.handed(a) != nil || r.handed(b) != cb {
		t.Fatal("handed: want only chunk b")
	}
	// a's snapshot is taken, perhaps, but not recorded: no horizon.
	if h, ok := r.settle(cb); ok {
		t.Fatalf("settle(b) with a's snapshot unknown: horizon %d", h)
	}
	c := r.start(0)
	r.snapped(a, 100)
	r.snapped(c, 130)
	r.hand(ca)
	cc := &Chunk{n: c, table: 0, snap: xidSnapshot{xmin: 130, xmax: 131}}
	r.hand(cc)
	// c, sent before a, may not move the horizon past a's older snapshot.
	if h, ok := r.settle(cc); !ok || h != 100 {
		t.Fatalf("settle(c) with a open at xmin 100: horizon %d, %v; want 100", h, ok)
	}
	if h, ok := r.settle(ca); !ok || h != 100 {
		t.Fatalf("settle(a), the last open chunk: horizon %d, %v; want its xmin 100", h, ok)
	}
	if _, ok := r.table(a); ok {
		t.Fatal("a sent chunk is still open")
	}
}
