// Package checkpoint turns Kafka's out-of-order delivery acknowledgements into
// one LSN that is safe to confirm to PostgreSQL.
//
// # Model
//
// Every message handed to the producer gets a sequence number from Enqueue:
// 1, 2, 3, ... in production order. When a batch whose watermark_lsn is not
// zero has been fully enqueued, Watermark(lsn) records the pair
// (position, lsn), where position is the sequence number of the last message
// enqueued so far (0 when none has been). The watermark means: once every
// message with a sequence number <= position is acknowledged, every change at
// or below lsn is durable in Kafka.
//
// Acknowledgements arrive in any order (partitions are independent). The
// checkpointer keeps the contiguous acknowledged prefix: the largest P such
// that every message 1..P is acknowledged. The safe LSN is the lsn of the
// latest watermark whose position is <= P. Consequences:
//
//   - A watermark recorded on an empty batch (an idle keepalive) becomes safe
//     as soon as everything enqueued before it is acknowledged, or at once
//     when nothing is outstanding.
//   - Batches that end inside a transaction carry no watermark, so the safe
//     LSN never lands inside a partially delivered transaction.
//   - A message whose delivery failed is never acknowledged, so the prefix,
//     and with it the safe LSN, can never pass it. Fail records the first
//     failure so that the owner can end the stream.
//   - The safe LSN never moves backwards.
//
// # Latency
//
// WatermarkAt also records the source commit time of the newest change the
// watermark covers. When the safe LSN advances past such a watermark, the
// checkpointer reads the clock once (per advance, never per message) and
// keeps the pair (commit time, acknowledgement time): the end-to-end latency
// of the newest safe change. An advance over watermarks that cover no change
// (idle keepalives) leaves the pair as it was, so the owner can tell the two
// apart by whether the pair changed.
//
// # Memory
//
// Out-of-order acknowledgements are kept in a ring of flags that covers only
// the window between the acknowledged prefix and the last enqueued message,
// and pending watermarks are kept in a queue that holds at most one entry per
// distinct position (consecutive watermarks at the same position collapse).
// Both are therefore bounded by the in-flight span (from the oldest
// unacknowledged message to the newest enqueued one, which librdkafka's
// message timeout bounds in turn), never by the total number of messages
// delivered.
//
// A Checkpointer is safe for concurrent use: typically one goroutine enqueues
// and records watermarks while another feeds delivery reports.
package checkpoint

import (
	"fmt"
	"sync"
	"time"
)

type watermark struct {
	pos uint64
	lsn uint64
	// commit is the source commit time, in Unix microseconds, of the newest
	// change the watermark covers; 0 when it covers none (or none known).
	commit int64
}

// Checkpointer tracks in-flight messages and watermarks. The zero value is not
// usable; call New.
type Checkpointer struct {
	mu sync.Mutex

	enqueued uint64 // last sequence number handed out
	prefix   uint64 // every seq in 1..prefix is acknowledged
	acked    uint64 // number of acknowledged messages

	// ring[(seq) & mask] tells whether seq, in prefix+1..enqueued, is acked.
	ring []bool
	mask uint64

	marks     []watermark // FIFO of pending watermarks, positions ascending
	markHead  int
	safe      uint64
	failedSeq uint64 // first failed seq, 0 when none
	failErr   error

	// The newest change made safe: its source commit time and when the
	// advance that made it safe happened, both Unix microseconds.
	safeCommit int64
	safeAcked  int64
	now        func() time.Time

	notify chan struct{}
}

// New returns an empty checkpointer whose safe LSN starts at 0.
func New() *Checkpointer {
	return &Checkpointer{
		ring:   make([]bool, 1024),
		mask:   1023,
		now:    time.Now,
		notify: make(chan struct{}, 1),
	}
}

// Enqueue hands out the next sequence number. Call it once per message, in
// production order, before the message can possibly be acknowledged.
func (c *Checkpointer) Enqueue() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.enqueued++
	if c.enqueued-c.prefix > uint64(len(c.ring)) {
		c.grow()
	}
	c.ring[c.enqueued&c.mask] = false
	return c.enqueued
}

// grow doubles the ring, keeping the window prefix+1..enqueued-1 in place
// under the new mask.
func (c *Checkpointer) grow() {
	n := len(c.ring) * 2
	ring := make([]bool, n)
	mask := uint64(n - 1)
	for s := c.prefix + 1; s < c.enqueued; s++ {
		ring[s&mask] = c.ring[s&c.mask]
	}
	c.ring, c.mask = ring, mask
}

// Watermark records that once every message enqueued so far is acknowledged,
// every change at or below lsn is durable. A zero lsn is ignored (a batch
// that ends inside a transaction).
func (c *Checkpointer) Watermark(lsn uint64) { c.WatermarkAt(lsn, 0) }

// WatermarkAt is Watermark for a watermark that covers changes: commitMicros
// is the source commit time, in Unix microseconds, of the newest change
// since the previous watermark (0 when there was none).
func (c *Checkpointer) WatermarkAt(lsn uint64, commitMicros int64) {
	if lsn == 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	pos := c.enqueued
	if n := len(c.marks); n > c.markHead && c.marks[n-1].pos == pos {
		last := &c.marks[n-1]
		last.lsn = max(last.lsn, lsn)
		last.commit = max(last.commit, commitMicros)
	} else {
		c.marks = append(c.marks, watermark{pos: pos, lsn: lsn, commit: commitMicros})
	}
	c.advanceLocked()
}

// Ack records that message seq is durable in Kafka. It reports whether the
// safe LSN advanced.
func (c *Checkpointer) Ack(seq uint64) (bool, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	grew, err := c.ackLocked(seq)
	if err != nil || !grew {
		return false, err
	}
	return c.advanceLocked(), nil
}

// ackLocked marks seq acknowledged and reports whether the acknowledged
// prefix grew.
func (c *Checkpointer) ackLocked(seq uint64) (bool, error) {
	if seq == 0 || seq > c.enqueued {
		return false, fmt.Errorf("checkpoint: acknowledgement for sequence %d, which was never enqueued (last %d)", seq, c.enqueued)
	}
	if seq <= c.prefix || c.ring[seq&c.mask] {
		return false, fmt.Errorf("checkpoint: sequence %d acknowledged twice", seq)
	}
	c.acked++
	c.ring[seq&c.mask] = true
	if seq != c.prefix+1 {
		return false, nil
	}
	for c.prefix < c.enqueued && c.ring[(c.prefix+1)&c.mask] {
		c.prefix++
	}
	return true, nil
}

// AckAll is Ack for many messages under one lock: delivery reports arrive a
// produce request at a time, and taking the lock per message showed in
// delivery's profile. It acknowledges every valid seq, reports whether the
// safe LSN advanced, and returns the first invalid seq with its error.
func (c *Checkpointer) AckAll(seqs []uint64) (moved bool, badSeq uint64, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	advanced := false
	for _, seq := range seqs {
		ok, e := c.ackLocked(seq)
		if e != nil && err == nil {
			badSeq, err = seq, e
		}
		advanced = advanced || ok
	}
	if advanced {
		moved = c.advanceLocked()
	}
	return moved, badSeq, err
}

// Fail records that message seq will never be acknowledged. The safe LSN
// stays below it for good; the first failure is kept for Err.
func (c *Checkpointer) Fail(seq uint64, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.failErr == nil {
		c.failedSeq, c.failErr = seq, err
	}
	c.signal()
}

// Err returns the first recorded delivery failure, or nil.
func (c *Checkpointer) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.failErr
}

// advanceLocked pops every watermark covered by the prefix and reports
// whether the safe LSN moved.
func (c *Checkpointer) advanceLocked() bool {
	moved := false
	var commit int64
	for c.markHead < len(c.marks) && c.marks[c.markHead].pos <= c.prefix {
		if m := c.marks[c.markHead]; m.lsn > c.safe {
			c.safe = m.lsn
			moved = true
			commit = max(commit, m.commit)
		}
		c.markHead++
	}
	if commit > 0 {
		// Strictly increasing, so that every advance over changes is told
		// apart from the previous one even within one microsecond.
		c.safeCommit = commit
		c.safeAcked = max(c.now().UnixMicro(), c.safeAcked+1)
	}
	// Compact the queue once its consumed head dominates it.
	if c.markHead > 0 && c.markHead*2 >= len(c.marks) {
		n := copy(c.marks, c.marks[c.markHead:])
		c.marks = c.marks[:n]
		c.markHead = 0
	}
	if moved {
		c.signal()
	}
	return moved
}

func (c *Checkpointer) signal() {
	select {
	case c.notify <- struct{}{}:
	default:
	}
}

// Changed receives a value (coalesced) whenever the safe LSN advances or a
// failure is recorded.
func (c *Checkpointer) Changed() <-chan struct{} { return c.notify }

// State is a consistent snapshot of the checkpointer.
type State struct {
	// SafeLSN: every change at or below it is acknowledged by Kafka.
	SafeLSN uint64
	// Acked counts acknowledged messages.
	Acked uint64
	// Enqueued counts messages handed out.
	Enqueued uint64
	// InFlight counts enqueued messages not yet acknowledged.
	InFlight uint64
	// PendingWatermarks counts watermarks not yet safe.
	PendingWatermarks int
	// SafeCommitMicros is the source commit time of the newest change made
	// safe so far and SafeAckedMicros when that happened (Unix
	// microseconds); both zero until a watermark covering changes is safe.
	// They stay put while the safe LSN moves over idle watermarks alone.
	SafeCommitMicros int64
	SafeAckedMicros  int64
}

// State returns a snapshot.
func (c *Checkpointer) State() State {
	c.mu.Lock()
	defer c.mu.Unlock()
	return State{
		SafeLSN:           c.safe,
		Acked:             c.acked,
		Enqueued:          c.enqueued,
		InFlight:          c.enqueued - c.acked,
		PendingWatermarks: len(c.marks) - c.markHead,
		SafeCommitMicros:  c.safeCommit,
		SafeAckedMicros:   c.safeAcked,
	}
}

// SafeLSN returns the current safe LSN.
func (c *Checkpointer) SafeLSN() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.safe
}

// sizes is for tests of the memory bound.
func (c *Checkpointer) sizes() (ring, marks int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.ring), cap(c.marks)
}
