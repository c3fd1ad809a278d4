// Package throttle holds the token buckets that hold a capture call to
// its limits (advanced.full_throttle, advanced.incremental_throttle), and
// the registry UpdateThrottle changes the running calls' limits through.
package throttle

import (
	"context"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	cdcv1 "github.com/ferry-cdc/ferry/gen/ferry/cdc/v1"
	taskv1 "github.com/ferry-cdc/ferry/gen/ferry/task/v1"
)

// Throttling is a set of token buckets per call: rows and bytes of what the
// call sends to its client and, for full sync, the queries it runs to read
// the source. Every bucket refills at its limit per second and holds one
// second's worth, so a call that was idle may send a second's worth at once
// and is held to the limit after that. UpdateThrottle changes the limits of
// running calls; a call waiting for tokens sees the change at once.

const (
	// Slice bounds one wait of a throttled stream. The stream does
	// not read the replication connection while it waits, so between slices
	// it sends a standby status update: the walsender hears from it at least
	// this often, far inside wal_sender_timeout (60 s by default), and a
	// keepalive that asked for a reply is answered within a slice.
	Slice = 500 * time.Millisecond
	// bytesPerMegabyte: the contract's megabytes are decimal, as the
	// benchmarks report them.
	bytesPerMegabyte = 1_000_000
)

// bucket is one token bucket; a nil limiter is unlimited. Unlimited is not
// rate.Inf: an Inf limiter keeps no tokens, and advancing one by zero time
// yields NaN tokens (0 s × Inf), which would poison a later finite limit.
type bucket struct {
	lim atomic.Pointer[rate.Limiter]
}

// set changes the limit; zero is unlimited. A bucket that was unlimited
// starts full; a limited one keeps its tokens, capped at the new burst.
func (b *bucket) set(now time.Time, perSecond float64) {
	if perSecond <= 0 {
		b.lim.Store(nil)
		return
	}
	burst := int(min(math.Ceil(perSecond), math.MaxInt32))
	lim := b.lim.Load()
	if lim == nil {
		b.lim.Store(rate.NewLimiter(rate.Limit(perSecond), burst))
		return
	}
	lim.SetLimitAt(now, rate.Limit(perSecond))
	lim.SetBurstAt(now, burst)
}

func (b *bucket) limited() bool { return b.lim.Load() != nil }

// take takes up to n tokens at now, at most a burst at a time, so that a
// request larger than the burst is paid in parts instead of never. When it
// takes none, wait is how long until the next part should be there.
func (b *bucket) take(now time.Time, n int64) (took int64, wait time.Duration) {
	lim := b.lim.Load()
	if lim == nil || n <= 0 {
		return n, 0
	}
	part := max(min(n, int64(lim.Burst())), 1)
	if lim.AllowN(now, int(part)) {
		return part, 0
	}
	// The limit or burst may change under us: the caller retries, and a
	// wait of at least a millisecond keeps that from spinning.
	missing := float64(part) - lim.TokensAt(now)
	wait = time.Duration(missing / float64(lim.Limit()) * float64(time.Second))
	return 0, max(wait, time.Millisecond)
}

// Cost is what a unit of work still owes a throttle; pay counts it down.
type Cost struct {
	Queries, Rows, Bytes int64
}

// Throttle is the token buckets of one StreamChanges (incremental) or
// ReadSnapshot (full) call. Its methods are safe for concurrent use: the
// snapshot's readers share it, and UpdateThrottle changes it.
type Throttle struct {
	full                 bool
	queries, rows, bytes bucket

	mu      sync.Mutex
	changed chan struct{} // closed and replaced at every change of limits
}

// ForStream is the throttle of a StreamChanges call, from its request.
func ForStream(cfg *taskv1.IncrementalThrottle) *Throttle {
	t := &Throttle{changed: make(chan struct{})}
	t.setIncremental(cfg)
	return t
}

// ForSnapshot is the throttle of a ReadSnapshot call, from its request.
func ForSnapshot(cfg *taskv1.FullSyncThrottle) *Throttle {
	t := &Throttle{full: true, changed: make(chan struct{})}
	t.setFull(cfg)
	return t
}

// setIncremental applies cfg; nil or zero fields are unlimited.
func (t *Throttle) setIncremental(cfg *taskv1.IncrementalThrottle) {
	t.set(0, cfg.GetRowsPerSecond(), cfg.GetMegabytesPerSecond())
}

// setFull applies cfg; nil or zero fields are unlimited.
func (t *Throttle) setFull(cfg *taskv1.FullSyncThrottle) {
	t.set(cfg.GetQueriesPerSecond(), cfg.GetRowsPerSecond(), cfg.GetMegabytesPerSecond())
}

func (t *Throttle) set(queries, rows, megabytes uint32) {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := time.Now()
	t.queries.set(now, float64(queries))
	t.rows.set(now, float64(rows))
	t.bytes.set(now, float64(megabytes)*bytesPerMegabyte)
	close(t.changed)
	t.changed = make(chan struct{})
}

// Limited reports whether rows or bytes are limited now.
func (t *Throttle) Limited() bool { return t.rows.limited() || t.bytes.limited() }

// PartEvents is the largest part a throttled stream sends at once.
// A throttled batch is sent as it is paid for, not whole at the end, so
// Kafka's acks, the checkpoint and the measured latency move steadily
// instead of in one jump per batch.
const PartEvents = 25

// SplitBatch cuts b into parts of at most n events, in order. The first
// part carries the relations and the last b's watermark. A part that ends
// where a transaction ends gets a watermark just past that transaction's
// commit LSN (commit_lsn + 1), so that Kafka's acks confirm progress part by
// part; one that ends inside a transaction gets none.
//
// Not the commit LSN itself: that is where the commit record starts, and
// both PostgreSQL (where a slot resumes) and exactly-once delivery (which
// events a resumed stream drops) take a position to cover exactly the
// transactions whose commit record starts before it. A watermark at the
// commit LSN left the part's last transaction uncovered though it was in
// Kafka, so an exactly-once stream resumed there wrote it again, a
// duplicate a read_committed consumer saw (the chaos test found it). One
// byte past it covers that transaction and no later one: the next commit
// record starts after this one's end.
func SplitBatch(b *cdcv1.ChangeBatch, n int) []*cdcv1.ChangeBatch {
	ev := b.GetEvents()
	if len(ev) <= n {
		return []*cdcv1.ChangeBatch{b}
	}
	parts := make([]*cdcv1.ChangeBatch, 0, (len(ev)+n-1)/n)
	for i := 0; i < len(ev); i += n {
		end := min(i+n, len(ev))
		p := &cdcv1.ChangeBatch{Events: ev[i:end]}
		if last := ev[end-1].GetCommitLsn(); end < len(ev) && last != 0 && ev[end].GetCommitLsn() != last {
			p.WatermarkLsn = last + 1
		}
		parts = append(parts, p)
	}
	parts[0].Relations = b.GetRelations()
	parts[len(parts)-1].WatermarkLsn = b.GetWatermarkLsn()
	return parts
}

func (t *Throttle) changes() <-chan struct{} {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.changed
}

// BatchCost is what sending b costs: its rows, and its size as the proto
// message the client receives (the decoded change data, not the WAL it came
// from). The size is computed only when bytes are limited, since it walks
// the whole batch.
func (t *Throttle) BatchCost(b *cdcv1.ChangeBatch) Cost {
	c := Cost{Rows: int64(len(b.GetEvents()))}
	if t != nil && t.bytes.limited() {
		c.Bytes = int64(b.SizeVT())
	}
	return c
}

// takeAll takes what it can of c at now, and says how long to wait when
// something is still owed.
func (t *Throttle) takeAll(now time.Time, c *Cost) time.Duration {
	for _, p := range []struct {
		b    *bucket
		owed *int64
	}{{&t.queries, &c.Queries}, {&t.rows, &c.Rows}, {&t.bytes, &c.Bytes}} {
		for *p.owed > 0 {
			took, wait := p.b.take(now, *p.owed)
			if wait > 0 {
				return wait
			}
			*p.owed -= took
		}
	}
	return 0
}

// Pay takes c's tokens, waiting until deadline at the latest. It reports
// whether c is paid; what is paid is taken off c, so a later call goes on
// where this one stopped. A change of limits is applied at once, and ctx
// ends the wait at once. A nil throttle is unlimited.
func (t *Throttle) Pay(ctx context.Context, c *Cost, deadline time.Time) (bool, error) {
	if t == nil {
		return true, nil
	}
	for {
		// Before taking: a change after this point still wakes the wait.
		changed := t.changes()
		now := time.Now()
		wait := t.takeAll(now, c)
		if wait == 0 {
			return true, nil
		}
		left := deadline.Sub(now)
		if left <= 0 {
			return false, nil
		}
		timer := time.NewTimer(min(wait, left))
		select {
		case <-ctx.Done():
			timer.Stop()
			return false, ctx.Err()
		case <-changed:
		case <-timer.C:
		}
		timer.Stop()
	}
}

// Wait pays c in full, for callers that hold no connection that needs
// answering meanwhile.
func (t *Throttle) Wait(ctx context.Context, c Cost) error {
	_, err := t.Pay(ctx, &c, time.Now().Add(math.MaxInt64))
	return err
}

// Registry holds the throttles of the running calls by slot, for
// UpdateThrottle. The zero value is ready to use.
type Registry struct {
	mu     sync.Mutex
	bySlot map[string]map[*Throttle]struct{}
}

// Add registers t under slot and returns the function that removes it,
// which the call defers.
func (r *Registry) Add(slot string, t *Throttle) (remove func()) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.bySlot == nil {
		r.bySlot = map[string]map[*Throttle]struct{}{}
	}
	if r.bySlot[slot] == nil {
		r.bySlot[slot] = map[*Throttle]struct{}{}
	}
	r.bySlot[slot][t] = struct{}{}
	return func() {
		r.mu.Lock()
		defer r.mu.Unlock()
		delete(r.bySlot[slot], t)
		if len(r.bySlot[slot]) == 0 {
			delete(r.bySlot, slot)
		}
	}
}

// Update applies inc to the slot's streams and full to its snapshots (nil:
// leave them) and returns how many calls took a new throttle.
func (r *Registry) Update(slot string, inc *taskv1.IncrementalThrottle, full *taskv1.FullSyncThrottle) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for t := range r.bySlot[slot] {
		switch {
		case t.full && full != nil:
			t.setFull(full)
		case !t.full && inc != nil:
			t.setIncremental(inc)
		default:
			continue
		}
		n++
	}
	return n
}
