package transform

import (
	"math"
	"testing"
	"time"

	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/common/types/ref"

	cdcv1 "github.com/ferry-cdc/ferry/gen/ferry/cdc/v1"
	taskv1 "github.com/ferry-cdc/ferry/gen/ferry/task/v1"
	"github.com/ferry-cdc/ferry/services/tuple"
)

func TestParseColumnText(t *testing.T) {
	for _, tc := range []struct {
		oid  uint32
		text string
		want ref.Val
	}{
		{oidBool, "t", types.True},
		{oidInt4, "-42", types.Int(-42)},
		{oidNumeric, "12345678.90", types.Double(12345678.90)},
		{oidBytea, `\x00ff`, types.Bytes{0, 0xff}},
		{oidDate, "2024-02-29", types.Timestamp{Time: time.Date(2024, 2, 29, 0, 0, 0, 0, time.UTC)}},
		{oidTimestamptz, "2024-01-02 03:04:05.5+05:30", types.Timestamp{Time: time.Date(2024, 1, 1, 21, 34, 5, 5e8, time.UTC)}},
		{oidTimestamp, "2024-01-02 03:04:05", types.Timestamp{Time: time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)}},
		{oidText, "héllo", types.String("héllo")},
		{2950, "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", types.String("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11")}, // uuid
	} {
		col := &cdcv1.Column{TypeOid: tc.oid}
		got, err := parse(tc.oid, celType(col), []byte(tc.text))
		if err != nil || got.Equal(tc.want) != types.True {
			t.Errorf("parse(%d, %q) = %v, %v; want %v", tc.oid, tc.text, got, err, tc.want)
		}
	}
	for _, text := range []string{"infinity", "-infinity"} {
		v, err := parse(oidDate, types.TimestampType, []byte(text))
		if b, _ := appendText(nil, v); err != nil || string(b) != text {
			t.Errorf("%s read as %v, %v and printed as %q", text, v, err, b)
		}
	}
}

func TestAppendTextAsPostgresPrints(t *testing.T) {
	for _, tc := range []struct {
		v    ref.Val
		want string
	}{
		{types.True, "t"}, {types.Int(-7), "-7"}, {types.Double(0.1), "0.1"}, {types.Double(1e20), "1e+20"},
		{types.Double(123456789012), "123456789012"}, {types.Double(math.Inf(-1)), "-Infinity"},
		{types.Bytes{0xde, 0xad}, `\xdead`},
		{types.Timestamp{Time: time.Date(2024, 1, 2, 3, 4, 5, 120000000, time.FixedZone("x", 3600))}, "2024-01-02 02:04:05.12+00"},
	} {
		got, err := appendText(nil, tc.v)
		if err != nil || string(got) != tc.want {
			t.Errorf("appendText(%v) = %q, %v; want %q", tc.v, got, err, tc.want)
		}
	}
}

func TestMasks(t *testing.T) {
	if got := truncateText("ünïcode", 3); got != "ünï" {
		t.Errorf("truncate = %q", got)
	}
	if got := redactText("4111111111111111", 4); got != "****1111" {
		t.Errorf("redact = %q", got)
	}
	if got := redactText("ab", 4); got != "****ab" {
		t.Errorf("redact of a short value = %q", got)
	}
}

// old is the before-image in expressions; a computed column over it sees
// what the row was.
func TestOldInExpressions(t *testing.T) {
	full := cdcv1.ReplicaIdentity_REPLICA_IDENTITY_FULL
	p := mustCompile(t, ordersRel(full), []*taskv1.Transform{
		compute("delta", "old.amount == null ? 0.0 : row.amount - old.amount"),
		filter(`op != "UPDATE" || row.amount != old.amount`),
	})
	r, err := p.Apply(update(full, []any{"1", "10", "a", nil}, []any{"1", "12.5", "a", nil}))
	if err != nil || r.Event == nil {
		t.Fatalf("Apply: %v, %v", r.Event, err)
	}
	if got := texts(t, r.Event.GetNewTuple())[4]; got != "2.5" {
		t.Errorf("delta = %q, want 2.5", got)
	}
	if r, err := p.Apply(update(full, []any{"1", "10", "a", nil}, []any{"1", "10", "b", nil})); err != nil || r.Event != nil {
		t.Errorf("an update leaving amount alone passed: %v, %v", r.Event, err)
	}
	r, err = p.Apply(insert("2", "3", "c", nil))
	if err != nil || texts(t, r.Event.GetNewTuple())[4] != "0" {
		t.Errorf("insert: %v, %v; want delta 0", r.Event, err)
	}
}

func TestSourceKeyIsTheSourceText(t *testing.T) {
	p := mustCompile(t, ordersRel(cdcv1.ReplicaIdentity_REPLICA_IDENTITY_DEFAULT), []*taskv1.Transform{maskHash("id")})
	ev := &cdcv1.ChangeEvent{Op: cdcv1.Operation_OPERATION_DELETE, OldTuple: tuple.Of("77", nil, nil, nil)}
	if got := string(p.SourceKey(nil, ev)); got != "77" {
		t.Errorf("SourceKey = %q, want 77", got)
	}
}
