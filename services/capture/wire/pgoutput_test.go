package wire

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/ferry-cdc/ferry/services/capture/internal/pgoutputtest"
	"github.com/jackc/pglogrepl"
)

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
		msg, err := ParseMessage([]byte(data))
		if err == nil || msg != nil || errors.Is(err, ErrDecoderPanic) {
			t.Errorf("%s: got %v, %v; want a framing error", name, msg, err)
		}
	}
	msg, err := ParseMessage(pgoutputtest.LogicalMessage(false, 0x5000, "ferry_heartbeat", "slot"))
	if m, ok := msg.(*pglogrepl.LogicalDecodingMessage); err != nil || !ok || m.LSN != 0x5000 || m.Prefix != "ferry_heartbeat" || string(m.Content) != "slot" {
		t.Fatalf("a valid heartbeat parses as %+v, %v", msg, err)
	}
}

func TestParseStreamMessage(t *testing.T) {
	for name, c := range map[string]struct {
		data     []byte
		inStream bool
		ok       bool
	}{
		"start":                {pgoutputtest.StreamStart(5, true), false, true},
		"start in a block":     {pgoutputtest.StreamStart(5, true), true, false},
		"stop":                 {pgoutputtest.StreamStop(), true, true},
		"stop with a tail":     {append(pgoutputtest.StreamStop(), 0), true, false},
		"commit":               {pgoutputtest.StreamCommit(5, 1, 2), false, true},
		"short commit":         {pgoutputtest.StreamCommit(5, 1, 2)[:20], false, false},
		"abort":                {pgoutputtest.StreamAbort(5, 6), false, true},
		"abort with a v4 tail": {pgoutputtest.StreamAbortV4(5, 6, 7, 8), false, false},
		"insert with xid":      {pgoutputtest.Insert(5, 1, 1), true, true},
		"insert without xid":   {pgoutputtest.Insert(0, 1, 1), true, false},
		"relation with xid":    {pgoutputtest.Relation(5, 1), true, true},
		"insert outside":       {pgoutputtest.Insert(0, 1, 1), false, true},
		"begin in a block":     {pgoutputtest.Begin(5, 1), true, false},
		"xid cut short":        {[]byte("I\x00\x00"), true, false},
		"origin in a block":    {append([]byte("O"+string(make([]byte, 8))+"origin"), 0), true, true},
		"commit in a block":    {pgoutputtest.Commit(1, 2), true, false},
		"unknown type outside": {[]byte("Z"), false, false},
	} {
		msg, err := ParseStreamMessage(c.data, c.inStream, false)
		if (err == nil) != c.ok || (msg == nil) == c.ok {
			t.Errorf("%s: got %T, %v; want ok=%v", name, msg, err, c.ok)
		}
	}
	m, err := ParseStreamMessage(pgoutputtest.Insert(77, 16400, 3), true, false)
	if im, ok := m.(*pglogrepl.InsertMessageV2); err != nil || !ok || im.Xid != 77 || im.RelationID != 16400 {
		t.Fatalf("insert with xid parses as %+v, %v", m, err)
	}
}

// With streaming 'parallel' (protocol 4) StreamAbort carries the abort's
// LSN and time after the two xids, which pglogrepl does not read; Ferry
// does, and refuses protocol 2's shorter form, as it refuses the longer one
// on protocol 2. The other messages are protocol 2's.
func TestParseStreamMessageProtocol4(t *testing.T) {
	at := time.Date(2025, time.March, 4, 5, 6, 7, 891_000, time.UTC)
	micros := at.Sub(time.Date(2000, time.January, 1, 0, 0, 0, 0, time.UTC)).Microseconds()
	m, err := ParseStreamMessage(pgoutputtest.StreamAbortV4(5, 6, 0x16_0000_2A28, micros), false, true)
	if err != nil {
		t.Fatal(err)
	}
	abort, ok := m.(*StreamAbortMessage)
	if !ok || abort.Xid != 5 || abort.SubXid != 6 || abort.AbortLSN != 0x16_0000_2A28 || !abort.AbortTime.Equal(at) {
		t.Fatalf("protocol 4 abort parses as %T %+v", m, m)
	}
	if m, err := ParseStreamMessage(pgoutputtest.StreamAbort(5, 6), false, false); err != nil || m.(*StreamAbortMessage).AbortLSN != 0 {
		t.Fatalf("protocol 2 abort parses as %+v, %v", m, err)
	}
	for name, data := range map[string][]byte{
		"protocol 2's abort":  pgoutputtest.StreamAbort(5, 6),
		"abort without time":  pgoutputtest.StreamAbortV4(5, 6, 7, 8)[:17],
		"abort with one more": append(pgoutputtest.StreamAbortV4(5, 6, 7, 8), 0),
	} {
		if _, err := ParseStreamMessage(data, false, true); err == nil {
			t.Errorf("%s: accepted on protocol 4", name)
		}
	}
	for _, c := range []struct {
		data     []byte
		inStream bool
	}{{pgoutputtest.StreamStart(5, true), false}, {pgoutputtest.Insert(5, 1, 1), true}, {pgoutputtest.StreamStop(), true}, {pgoutputtest.StreamCommit(5, 1, 2), false}} {
		if _, err := ParseStreamMessage(c.data, c.inStream, true); err != nil {
			t.Errorf("message %q refused on protocol 4: %v", c.data[0], err)
		}
	}
}
