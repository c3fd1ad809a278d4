package backfill

import "sync"

// chunkRegistry holds the chunks the readers have started and the loop has
// not sent yet. The loop needs a chunk's table at its LW, since a
// watermark names only the chunk, and every open chunk's snapshot to know
// how far the horizon may move (settle).
type chunkRegistry struct {
	mu   sync.Mutex
	last int64 // the last chunk number given out
	open map[int64]*openChunk
}

// openChunk is one chunk from its LW until the loop sent it.
type openChunk struct {
	table   int
	xmin    uint32 // its snapshot's, once snapped
	snapped bool
	c       *Chunk // nil until its reader hands it over
}

func newChunkRegistry() *chunkRegistry {
	return &chunkRegistry{open: map[int64]*openChunk{}}
}

// start numbers a new chunk of table; its reader calls it before writing
// the chunk's LW.
func (r *chunkRegistry) start(table int) int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.last++
	r.open[r.last] = &openChunk{table: table}
	return r.last
}

// snapped records chunk n's snapshot, taken after its LW.
func (r *chunkRegistry) snapped(n int64, xmin uint32) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if o := r.open[n]; o != nil {
		o.xmin, o.snapped = xmin, true
	}
}

// hand makes the chunk read available to the loop, before its HW.
func (r *chunkRegistry) hand(c *Chunk) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if o := r.open[c.n]; o != nil {
		o.c = c
	}
}

// table is chunk n's table; ok is false for a chunk not started.
func (r *chunkRegistry) table(n int64) (int, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	o := r.open[n]
	if o == nil {
		return 0, false
	}
	return o.table, true
}

// handed is chunk n if its reader handed it over, else nil.
func (r *chunkRegistry) handed(n int64) *Chunk {
	r.mu.Lock()
	defer r.mu.Unlock()
	if o := r.open[n]; o != nil {
		return o.c
	}
	return nil
}

// settle forgets the sent chunk c and returns the horizon it allows: the
// oldest xmin among c's snapshot and the open chunks'. A chunk started
// later takes its snapshot after c's, so it sees every transaction before
// c's xmin; one started earlier may have taken an older snapshot, in any
// order with c's. ok is false while an open chunk's snapshot is still
// unknown (taken, perhaps, but not yet recorded): the horizon then stays.
func (r *chunkRegistry) settle(c *Chunk) (horizon uint32, ok bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.open, c.n)
	horizon = c.snap.xmin
	for _, o := range r.open {
		if !o.snapped {
			return 0, false
		}
		if xidPrecedes(o.xmin, horizon) {
			horizon = o.xmin
		}
	}
	return horizon, true
}
