package capture

import (
	"strings"
	"testing"
	"time"

	cdcv1 "github.com/ferry-cdc/ferry/gen/ferry/cdc/v1"
	"github.com/ferry-cdc/ferry/services/capture/internal/pgoutputtest"
	"github.com/jackc/pglogrepl"
)

// A logical message outside a transaction is a watermark at its LSN; one
// inside a transaction, or behind what was already confirmed, is not; and
// none is ever a row.
func TestLogicalMessagesOnlyMarkPositions(t *testing.T) {
	out := &recorder{}
	st := fuzzStream(out)
	begin := []byte("B\x00\x00\x00\x00\x02\x00\x00\x00" + strings.Repeat("\x00", 8) + "\x00\x00\x00\x07")
	commit := []byte("C\x00\x00\x00\x00\x00\x02\x00\x00\x00\x00\x00\x00\x00\x02\x00\x00\x10" + strings.Repeat("\x00", 8))
	err := feed(st, [][]byte{
		begin,
		pgoutputtest.LogicalMessage(true, 0x2000_0800, "app", "inside"),
		commit,
		pgoutputtest.LogicalMessage(false, 0x3000_0000, heartbeatPrefix, "slot"),
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(out.batches) != 0 {
		t.Fatalf("sent %v before the batch delay", out.batches)
	}
	if b := st.batch.take(); len(b.GetEvents()) != 0 || b.GetWatermarkLsn() != 0x3000_0000 {
		t.Fatalf("pending batch = %v, want no rows and watermark 0/30000000", b)
	}
	if received, _ := st.lsn.Positions(); received < 0x3000_0000 {
		t.Fatalf("received position %s is behind the message, so its ack would be capped", received)
	}
	// Once sent, an older position is no watermark.
	if err := st.send(&cdcv1.ChangeBatch{WatermarkLsn: 0x3000_0000}); err != nil {
		t.Fatal(err)
	}
	if err := st.message(time.Now(), &pglogrepl.LogicalDecodingMessage{LSN: 0x2000_0000}, 0x2000_0000); err != nil {
		t.Fatal(err)
	}
	if !st.batch.empty() {
		t.Fatalf("a position behind the last watermark made a batch: %v", st.batch.cur)
	}
}
