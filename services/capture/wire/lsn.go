package wire

import (
	"sync"

	"github.com/jackc/pglogrepl"
)

// LSNTracker holds the two positions a stream reports to PostgreSQL. They are
// kept apart on purpose: received grows with everything the server sends,
// while flushed, the only one PostgreSQL uses to advance the slot's
// confirmed_flush_lsn, moves only when the client acknowledges that changes
// are durable downstream. Confusing the two would lose data on a crash.
//
// Acks arrive on the gRPC receiving goroutine while the replication loop
// reads, hence the mutex.
type LSNTracker struct {
	mu       sync.Mutex
	received pglogrepl.LSN
	flushed  pglogrepl.LSN
	// reported is the flushed position in the last status update sent.
	reported pglogrepl.LSN
	// reportedWrite is the received position in the last status update sent.
	reportedWrite pglogrepl.LSN
}

// NewLSNTracker starts flushed at the slot's confirmed_flush_lsn: the stream
// must never report zero, which pglogrepl would replace by the write
// position, nor anything the client has not acknowledged.
func NewLSNTracker(confirmed, start pglogrepl.LSN) *LSNTracker {
	return &LSNTracker{
		received:      max(confirmed, start),
		flushed:       confirmed,
		reported:      confirmed,
		reportedWrite: max(confirmed, start),
	}
}

// Receive records that the server sent WAL up to lsn. It never touches
// flushed.
func (t *LSNTracker) Receive(lsn pglogrepl.LSN) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.received = max(t.received, lsn)
}

// Ack records the client's acknowledgement and reports the flushed position
// after it. An ack beyond what was received is capped at received: the
// client cannot have made durable what it was never sent, so such an ack is
// a client bug and confirming it could skip WAL.
func (t *LSNTracker) Ack(lsn pglogrepl.LSN) (flushed pglogrepl.LSN, capped bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if lsn > t.received {
		lsn, capped = t.received, true
	}
	t.flushed = max(t.flushed, lsn)
	return t.flushed, capped
}

// Positions returns the positions to report now.
func (t *LSNTracker) Positions() (received, flushed pglogrepl.LSN) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.received, t.flushed
}

// Changed tells whether a status update would report anything new.
func (t *LSNTracker) Changed() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.flushed != t.reported || t.received != t.reportedWrite
}

// Reported records the positions of a status update that was sent.
func (t *LSNTracker) Reported(received, flushed pglogrepl.LSN) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.reportedWrite, t.reported = received, flushed
}
