package transform

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"testing"

	cdcv1 "github.com/ferry-cdc/ferry/gen/ferry/cdc/v1"
	taskv1 "github.com/ferry-cdc/ferry/gen/ferry/task/v1"
)

func typesRel() *cdcv1.Relation {
	return &cdcv1.Relation{
		Oid: 43, Schema: "public", Table: "t", KeyColumns: []string{"id"},
		ReplicaIdentity: cdcv1.ReplicaIdentity_REPLICA_IDENTITY_DEFAULT,
		Columns: []*cdcv1.Column{
			{Name: "id", TypeOid: oidInt8, TypeName: "bigint", Key: true},
			{Name: "n", TypeOid: oidNumeric, TypeName: "numeric"},
			{Name: "n2", TypeOid: oidNumeric, TypeName: "numeric"},
			{Name: "d", TypeOid: oidDate, TypeName: "date"},
			{Name: "ts", TypeOid: oidTimestamptz, TypeName: "timestamp with time zone"},
		},
	}
}

func castText(col string) *taskv1.Transform {
	return &taskv1.Transform{Kind: &taskv1.Transform_Cast{Cast: &taskv1.CastColumn{Column: col, Type: taskv1.CastType_CAST_TYPE_TEXT}}}
}

func sha(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

// Cast to text and masks read the source's text: numeric keeps its digits
// and its scale, a date stays a date, and infinities are values.
func TestCastAndMaskReadTheSourceText(t *testing.T) {
	p := mustCompile(t, typesRel(), []*taskv1.Transform{
		filter(`row.ts > timestamp("2000-01-01T00:00:00Z") && row.d > timestamp("2000-01-01T00:00:00Z")`),
		castText("n"), maskHash("n2"), castText("d"), castText("ts"),
	})
	r, err := p.Apply(insert("1", "12345678901234567890.123456789", "1.10", "2024-02-29", "infinity"))
	if err != nil || r.Event == nil {
		t.Fatalf("Apply: %v, %v", r.Event, err)
	}
	want := strings.Join([]string{"1", "12345678901234567890.123456789", sha("1.10"), "2024-02-29", "infinity"}, "|")
	if got := strings.Join(texts(t, r.Event.GetNewTuple()), "|"); got != want {
		t.Fatalf("row %q, want %q", got, want)
	}
	r, err = p.Apply(insert("1", "1", "1.1", "infinity", "-infinity"))
	if err != nil || r.Event != nil {
		t.Fatalf("-infinity: %v, %v; want the row left out, no error", r.Event, err)
	}
}

// A computed column that copies an infinity writes it back as infinity.
func TestInfinityRoundTrips(t *testing.T) {
	p := mustCompile(t, typesRel(), []*taskv1.Transform{compute("a", "row.ts"), compute("b", "row.d")})
	r, err := p.Apply(insert("1", "1", "1", "-infinity", "infinity"))
	if err != nil {
		t.Fatal(err)
	}
	if got := texts(t, r.Event.GetNewTuple())[5:]; got[0] != "infinity" || got[1] != "-infinity" {
		t.Fatalf("computed %q, want infinity and -infinity", got)
	}
}
