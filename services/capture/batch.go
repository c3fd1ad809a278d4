package capture

import (
	"time"

	cdcv1 "github.com/ferry-cdc/ferry/gen/ferry/cdc/v1"
)

const (
	defaultMaxBatchEvents = 1000
	defaultMaxBatchDelay  = 20 * time.Millisecond
)

// batcher accumulates events into the next ChangeBatch. It holds the
// watermark rule delivery relies on: watermark_lsn is set only while the
// batch ends exactly at a commit, and any later event clears it, so a batch
// that ends inside a transaction carries zero.
type batcher struct {
	maxEvents int
	delay     time.Duration

	cur     *cdcv1.ChangeBatch
	firstAt time.Time
	// oids are the relations the current batch's events refer to.
	oids map[uint32]bool
}

func newBatcher(maxEvents uint32, delayMS uint32) *batcher {
	b := &batcher{maxEvents: int(maxEvents), delay: time.Duration(delayMS) * time.Millisecond}
	if b.maxEvents == 0 {
		b.maxEvents = defaultMaxBatchEvents
	}
	if b.delay == 0 {
		b.delay = defaultMaxBatchDelay
	}
	return b
}

func (b *batcher) start(now time.Time) {
	if b.cur == nil {
		b.cur = &cdcv1.ChangeBatch{}
		b.oids = map[uint32]bool{}
		b.firstAt = now
	}
}

// add appends an event, preceded by its relation's definition when rel is
// not nil.
func (b *batcher) add(now time.Time, rel *cdcv1.Relation, ev *cdcv1.ChangeEvent) {
	b.start(now)
	if rel != nil {
		b.cur.Relations = append(b.cur.Relations, rel)
	}
	b.cur.Events = append(b.cur.Events, ev)
	b.oids[ev.GetRelationOid()] = true
	b.cur.WatermarkLsn = 0
}

// addMany appends an event that refers to several relations (a TRUNCATE),
// preceded by the definitions in rels.
func (b *batcher) addMany(now time.Time, rels []*cdcv1.Relation, ev *cdcv1.ChangeEvent, oids []uint32) {
	b.start(now)
	b.cur.Relations = append(b.cur.Relations, rels...)
	b.cur.Events = append(b.cur.Events, ev)
	for _, oid := range oids {
		b.oids[oid] = true
	}
	b.cur.WatermarkLsn = 0
}

// commit marks that the batch now ends at a transaction's end (or at a
// logical message outside any transaction). A commit with no events pending
// still makes a (possibly empty) batch, so that a transaction whose events
// went out in earlier batches gets its watermark. The watermark never moves
// back.
func (b *batcher) commit(now time.Time, endLSN uint64) {
	b.start(now)
	b.cur.WatermarkLsn = max(b.cur.WatermarkLsn, endLSN)
}

func (b *batcher) empty() bool { return b.cur == nil }

// refers tells whether the pending batch has events of relation oid.
func (b *batcher) refers(oid uint32) bool { return b.cur != nil && b.oids[oid] }

// deadline is when the pending batch must be sent at the latest.
func (b *batcher) deadline() (time.Time, bool) {
	if b.cur == nil {
		return time.Time{}, false
	}
	return b.firstAt.Add(b.delay), true
}

// due tells whether the pending batch is full or has waited long enough.
func (b *batcher) due(now time.Time) bool {
	if b.cur == nil {
		return false
	}
	return len(b.cur.Events) >= b.maxEvents || !now.Before(b.firstAt.Add(b.delay))
}

// take returns the pending batch and starts a new one.
func (b *batcher) take() *cdcv1.ChangeBatch {
	out := b.cur
	b.cur, b.oids = nil, nil
	return out
}
