package wire

import (
	"errors"
	"testing"

	"github.com/ferry-cdc/ferry/services/capture/internal/pgoutputtest"
)

// The seed corpora under testdata/fuzz are real pgoutput messages,
// written by capture's TestFuzzSeedsFromPostgres (see there); plain go
// test runs them, go test -fuzz explores from them.

// FuzzParseMessage: no input makes the decoder panic, and what it accepts is
// exactly one well-framed message.
func FuzzParseMessage(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte("I\x00\x00\x40\x00N\x00\x01t\xff\xff\xff\xff"))
	f.Fuzz(func(t *testing.T, data []byte) {
		msg, err := ParseMessage(data)
		if errors.Is(err, ErrDecoderPanic) {
			t.Fatalf("framing check let through a message pglogrepl cannot decode: %v", err)
		}
		if err == nil && msg == nil {
			t.Fatal("no message and no error")
		}
		if err != nil && msg != nil {
			t.Fatalf("both a message %T and an error %v", msg, err)
		}
	})
}

// FuzzParseStreamMessage is FuzzParseMessage for protocols 2 and 4 (which
// differ in StreamAbort), inside and outside a stream block.
func FuzzParseStreamMessage(f *testing.F) {
	f.Add([]byte("S\x00\x00\x00\x07\x01"), false)
	f.Add([]byte("I\x00\x00\x00\x07\x00\x00\x40\x00N\x00\x01t\xff\xff\xff\xff"), true)
	f.Add(pgoutputtest.StreamAbortV4(7, 8, 0x1234, 1), false)
	f.Fuzz(func(t *testing.T, data []byte, inStream bool) {
		for _, parallel := range []bool{false, true} {
			msg, err := ParseStreamMessage(data, inStream, parallel)
			if errors.Is(err, ErrDecoderPanic) {
				t.Fatalf("framing check let through a message pglogrepl cannot decode: %v", err)
			}
			if (err == nil) == (msg == nil) {
				t.Fatalf("message %T and error %v", msg, err)
			}
		}
		// What is spooled is replayed as protocol 1: the same framing.
		if err := CheckStreamFraming(data, true, false); err == nil && inStream && HasStreamXid(data[0]) {
			if _, err := ParseMessage(append([]byte{data[0]}, data[5:]...)); err != nil {
				t.Fatalf("a framed stream message does not replay: %v", err)
			}
		}
	})
}
