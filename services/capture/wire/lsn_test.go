package wire

import (
	"testing"

	"github.com/jackc/pglogrepl"
)

// The product's core promise: nothing is confirmed to PostgreSQL that the
// client did not acknowledge, however much WAL has been received.
func TestReceivingNeverMovesFlushed(t *testing.T) {
	tr := NewLSNTracker(100, 100)
	for _, lsn := range []pglogrepl.LSN{150, 200, 1 << 40} {
		tr.Receive(lsn)
		if received, flushed := tr.Positions(); flushed != 100 || received != lsn {
			t.Fatalf("after Receive(%d): received=%d flushed=%d; want flushed to stay 100", lsn, received, flushed)
		}
	}
}

func TestFlushedStartsAtConfirmedNotStart(t *testing.T) {
	tr := NewLSNTracker(100, 500)
	received, flushed := tr.Positions()
	if flushed != 100 || received != 500 {
		t.Fatalf("received=%d flushed=%d; want 500 and 100", received, flushed)
	}
}

func TestAckMovesFlushedMonotonically(t *testing.T) {
	tr := NewLSNTracker(100, 100)
	tr.Receive(1000)
	if f, capped := tr.Ack(300); f != 300 || capped {
		t.Fatalf("Ack(300) = %d, %v", f, capped)
	}
	if f, _ := tr.Ack(200); f != 300 {
		t.Fatalf("an older ack moved flushed back to %d", f)
	}
	if f, capped := tr.Ack(5000); f != 1000 || !capped {
		t.Fatalf("Ack beyond received = %d, capped=%v; want 1000, true", f, capped)
	}
	tr.Receive(6000)
	if _, f := tr.Positions(); f != 1000 {
		t.Fatalf("receiving after a capped ack moved flushed to %d", f)
	}
}

func TestChangedTracksReports(t *testing.T) {
	tr := NewLSNTracker(100, 100)
	if tr.Changed() {
		t.Fatal("a fresh tracker has nothing new to report")
	}
	tr.Receive(200)
	if !tr.Changed() {
		t.Fatal("received moved but Changed is false")
	}
	r, f := tr.Positions()
	tr.Reported(r, f)
	if tr.Changed() {
		t.Fatal("Changed after reporting everything")
	}
	tr.Ack(150)
	if !tr.Changed() {
		t.Fatal("an ack moved flushed but Changed is false")
	}
}
