package capture

import (
	"encoding/binary"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"

	cdcv1 "github.com/ferry-cdc/ferry/gen/ferry/cdc/v1"
)

// logicalMessage is an 'M' message as pgoutput writes it outside streaming.
func logicalMessage(transactional bool, lsn uint64, prefix, content string) []byte {
	out := []byte{'M', 0}
	if transactional {
		out[1] = 1
	}
	out = binary.BigEndian.AppendUint64(out, lsn)
	out = append(append(out, prefix...), 0)
	out = binary.BigEndian.AppendUint32(out, uint32(len(content)))
	return append(out, content...)
}

func TestParseMessageRefusesMalformedInput(t *testing.T) {
	for name, data := range map[string]string{
		"empty":                     "",
		"short begin":               "B\x00\x00",
		"long commit":               "C" + strings.Repeat("\x00", 26),
		"tuple column past the end": "I\x00\x00\x40\x00N\x00\x01t\xff\xff\xff\xff",
		"unknown column kind":       "I\x00\x00\x40\x00N\x00\x01x",
		"insert without N":          "I\x00\x00\x40\x00K\x00\x00",
		"update old without new":    "U\x00\x00\x40\x00K\x00\x00",
		"truncate of 4G relations":  "T\xff\xff\xff\xff\x00\x00\x00\x00\x01",
		"relation name without NUL": "R\x00\x00\x40\x00public",
		"message content too long":  "M\x00" + strings.Repeat("\x00", 8) + "p\x00\x00\x00\x00\x09abc",
		"unsupported type":          "S\x00\x00\x00\x01\x01",
	} {
		msg, err := parseMessage([]byte(data))
		if err == nil || msg != nil || errors.Is(err, errDecoderPanic) {
			t.Errorf("%s: got %v, %v; want a framing error", name, msg, err)
		}
	}
	msg, err := parseMessage(logicalMessage(false, 0x5000, heartbeatPrefix, "slot"))
	if m, ok := msg.(*pglogrepl.LogicalDecodingMessage); err != nil || !ok || m.LSN != 0x5000 || m.Prefix != heartbeatPrefix || string(m.Content) != "slot" {
		t.Fatalf("a valid heartbeat parses as %+v, %v", msg, err)
	}
}

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
		logicalMessage(true, 0x2000_0800, "app", "inside"),
		commit,
		logicalMessage(false, 0x3000_0000, heartbeatPrefix, "slot"),
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
