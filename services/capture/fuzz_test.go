package capture

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgtype"
	"google.golang.org/protobuf/proto"

	capturev1 "github.com/ferry-cdc/ferry/gen/ferry/capture/v1"
	cdcv1 "github.com/ferry-cdc/ferry/gen/ferry/cdc/v1"
)

// The seed corpora under testdata/fuzz are real pgoutput messages and
// values, written by TestFuzzSeedsFromPostgres (see there); plain go test
// runs them, go test -fuzz explores from them.

// FuzzParseMessage: no input makes the decoder panic, and what it accepts is
// exactly one well-framed message.
func FuzzParseMessage(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte("I\x00\x00\x40\x00N\x00\x01t\xff\xff\xff\xff"))
	f.Fuzz(func(t *testing.T, data []byte) {
		msg, err := parseMessage(data)
		if errors.Is(err, errDecoderPanic) {
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

// FuzzStreamMessages feeds a sequence of messages (each preceded by its
// length as a big-endian uint16) through the stream's handler, as if the
// walsender had sent them: no panic, malformed input is an error, logical
// messages never become rows, and every row has its relation's width.
func FuzzStreamMessages(f *testing.F) {
	f.Add(joinSequence([]byte("B" + string(make([]byte, 20)))))
	f.Fuzz(func(t *testing.T, seq []byte) {
		msgs := splitSequence(seq)
		out := &recorder{}
		st := fuzzStream(out)
		err := feed(st, msgs)
		if errors.Is(err, errDecoderPanic) {
			t.Fatalf("decoder panicked: %v", err)
		}
		if err == nil {
			// Whatever is pending goes out, as at the batch deadline.
			if !st.batch.empty() {
				out.batches = append(out.batches, st.batch.take())
			}
		}
		checkFedBatches(t, msgs, out.batches, st.rels)
	})
}

// FuzzDecodeText: no text makes decodeText panic, and a value it decodes
// prints back (as PostgreSQL would) to text that decodes to the same value.
func FuzzDecodeText(f *testing.F) {
	f.Add(uint32(pgtype.TimestamptzOID), "2024-02-29 23:59:59.999999+05:30")
	f.Fuzz(func(t *testing.T, oid uint32, s string) {
		v, err := decodeText(oid, s)
		if err != nil {
			return
		}
		again, err := decodeText(oid, s)
		if err != nil || !proto.Equal(v, again) {
			t.Fatalf("decoding %q (oid %d) is not deterministic: %v then %v, %v", s, oid, v, again, err)
		}
		text, ok := printValue(oid, v)
		if !ok {
			return
		}
		back, err := decodeText(oid, text)
		if err != nil {
			t.Fatalf("%q (oid %d) decoded to %v, printed as %q, which does not decode: %v", s, oid, v, text, err)
		}
		if !sameValue(v, back) {
			t.Fatalf("%q (oid %d) decoded to %v, printed as %q, decoded to %v", s, oid, v, text, back)
		}
	})
}

// recorder is the gRPC stream's sending half, keeping what was sent.
type recorder struct{ batches []*cdcv1.ChangeBatch }

func (r *recorder) Send(resp *capturev1.StreamChangesResponse) error {
	r.batches = append(r.batches, resp.GetBatch())
	return nil
}

// fuzzStream is a stream with no connections: feed defines relations
// itself, so nothing asks the catalog.
func fuzzStream(out sender) *stream {
	logger := slog.New(slog.DiscardHandler)
	return newStream(logger, out, nil, nil, 0x1000000, 0x1000000, newBatcher(4, 1000))
}

func joinSequence(msgs ...[]byte) []byte {
	var out []byte
	for _, m := range msgs {
		out = binary.BigEndian.AppendUint16(out, uint16(len(m)))
		out = append(out, m...)
	}
	return out
}

// splitSequence undoes joinSequence; a short last length takes what is left.
func splitSequence(seq []byte) [][]byte {
	var out [][]byte
	for len(seq) >= 2 {
		n := int(binary.BigEndian.Uint16(seq))
		seq = seq[2:]
		n = min(n, len(seq))
		out = append(out, seq[:n])
		seq = seq[n:]
	}
	return out
}

// feed hands each message to the stream at increasing LSNs. A Relation
// message is recorded with its columns' own types as their base types,
// instead of asking the catalog.
func feed(st *stream, msgs [][]byte) error {
	lsn := pglogrepl.LSN(0x1000000)
	for i, m := range msgs {
		lsn += pglogrepl.LSN(len(m) + 1)
		if len(m) > 0 && m[0] == 'R' {
			msg, err := parseMessage(m)
			if err != nil {
				return fmt.Errorf("message %d: %w", i, err)
			}
			rm := msg.(*pglogrepl.RelationMessage)
			types := make([]columnType, len(rm.Columns))
			for j, c := range rm.Columns {
				types[j] = columnType{name: strconv.Itoa(int(c.DataType)), baseOID: c.DataType}
			}
			st.rels.put(rm, types, nil)
			continue
		}
		if err := st.data(context.Background(), pglogrepl.XLogData{WALStart: lsn, ServerWALEnd: lsn, WALData: m}); err != nil {
			return fmt.Errorf("message %d: %w", i, err)
		}
	}
	return nil
}

// checkFedBatches: rows come only from Insert, Update and Delete messages,
// and each has as many values as its relation has columns.
func checkFedBatches(t *testing.T, msgs [][]byte, batches []*cdcv1.ChangeBatch, rels *relationCache) {
	t.Helper()
	changes := 0
	for _, m := range msgs {
		if len(m) > 0 && bytes.IndexByte([]byte("IUD"), m[0]) >= 0 {
			changes++
		}
	}
	got := events(batches)
	if len(got) > changes {
		t.Fatalf("%d rows from %d change messages: something else was shipped as a row", len(got), changes)
	}
	for _, ev := range got {
		rel, err := rels.get(ev.GetRelationOid())
		if err != nil {
			t.Fatalf("a row of an undefined relation was shipped: %v", err)
		}
		for _, vals := range [][]*cdcv1.Value{ev.GetNewValues(), ev.GetOldValues()} {
			if len(vals) != 0 && len(vals) != len(rel.msg.Columns) {
				t.Fatalf("row has %d values, relation %d has %d columns", len(vals), ev.GetRelationOid(), len(rel.msg.Columns))
			}
		}
	}
}

// printValue prints v as PostgreSQL's output function would for type oid
// (with pgsource's session settings), for the kinds decodeText parses.
func printValue(oid uint32, v *cdcv1.Value) (string, bool) {
	switch k := v.GetKind().(type) {
	case *cdcv1.Value_Bool:
		return map[bool]string{true: "t", false: "f"}[k.Bool], true
	case *cdcv1.Value_Int:
		return strconv.FormatInt(k.Int, 10), true
	case *cdcv1.Value_Float:
		return printFloat(k.Float, oid == pgtype.Float4OID), true
	case *cdcv1.Value_Bytes:
		return `\x` + hex.EncodeToString(k.Bytes), true
	case *cdcv1.Value_Date:
		if s := printInfinity(k.Date.GetInfinity()); s != "" {
			return s, true
		}
		return printYMD(time.Unix(int64(k.Date.GetDays())*86400, 0).UTC(), ""), true
	case *cdcv1.Value_Timestamp:
		return printTimestamp(k.Timestamp, ""), true
	case *cdcv1.Value_Timestamptz:
		return printTimestamp(k.Timestamptz, "+00"), true
	case *cdcv1.Value_Text:
		return k.Text, true
	case *cdcv1.Value_Numeric:
		return k.Numeric, true
	}
	return "", false
}

func printFloat(f float64, float4 bool) string {
	switch {
	case math.IsNaN(f):
		return "NaN"
	case math.IsInf(f, 1):
		return "Infinity"
	case math.IsInf(f, -1):
		return "-Infinity"
	}
	if float4 {
		return strconv.FormatFloat(f, 'g', -1, 32)
	}
	return strconv.FormatFloat(f, 'g', -1, 64)
}

func printInfinity(inf cdcv1.Infinity) string {
	switch inf {
	case cdcv1.Infinity_INFINITY_POSITIVE:
		return "infinity"
	case cdcv1.Infinity_INFINITY_NEGATIVE:
		return "-infinity"
	}
	return ""
}

// printYMD prints "YYYY-MM-DD", then clock, then " BC" for years before 1.
func printYMD(t time.Time, clock string) string {
	y, bc := t.Year(), ""
	if y <= 0 {
		y, bc = 1-y, " BC"
	}
	return fmt.Sprintf("%04d-%02d-%02d%s%s", y, int(t.Month()), t.Day(), clock, bc)
}

func printTimestamp(ts *cdcv1.Timestamp, zone string) string {
	if s := printInfinity(ts.GetInfinity()); s != "" {
		return s
	}
	secs, micros := ts.GetMicros()/1_000_000, ts.GetMicros()%1_000_000
	if micros < 0 {
		secs, micros = secs-1, micros+1_000_000
	}
	t := time.Unix(secs, 0).UTC()
	clock := fmt.Sprintf(" %02d:%02d:%02d", t.Hour(), t.Minute(), t.Second())
	if micros != 0 {
		clock += fmt.Sprintf(".%06d", micros)
	}
	return printYMD(t, clock+zone)
}

// sameValue is proto.Equal, except that NaN equals NaN.
func sameValue(a, b *cdcv1.Value) bool {
	fa, aok := a.GetKind().(*cdcv1.Value_Float)
	fb, bok := b.GetKind().(*cdcv1.Value_Float)
	if aok && bok && math.IsNaN(fa.Float) && math.IsNaN(fb.Float) {
		return true
	}
	return proto.Equal(a, b)
}
