package transform

import (
	"errors"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	cdcv1 "github.com/ferry-cdc/ferry/gen/ferry/cdc/v1"
	taskv1 "github.com/ferry-cdc/ferry/gen/ferry/task/v1"
	"github.com/ferry-cdc/ferry/services/tuple"
)

func ordersRel(identity cdcv1.ReplicaIdentity) *cdcv1.Relation {
	return &cdcv1.Relation{
		Oid: 42, Schema: "public", Table: "orders", ReplicaIdentity: identity, KeyColumns: []string{"id"},
		Columns: []*cdcv1.Column{
			{Name: "id", TypeOid: oidInt8, TypeName: "bigint", Key: true},
			{Name: "amount", TypeOid: oidNumeric, TypeName: "numeric(10,2)"},
			{Name: "email", TypeOid: oidText, TypeName: "text"},
			{Name: "created", TypeOid: oidTimestamptz, TypeName: "timestamp with time zone"},
		},
	}
}

func filter(e string) *taskv1.Transform {
	return &taskv1.Transform{Kind: &taskv1.Transform_Filter{Filter: e}}
}

func compute(name, e string) *taskv1.Transform {
	return &taskv1.Transform{Kind: &taskv1.Transform_Compute{Compute: &taskv1.ComputedColumn{Name: name, Expression: e}}}
}

func maskHash(col string) *taskv1.Transform {
	return &taskv1.Transform{Kind: &taskv1.Transform_Mask{Mask: &taskv1.MaskColumn{Column: col, Mask: &taskv1.MaskColumn_Hash{Hash: &taskv1.MaskHash{}}}}}
}

// typical is the benchmark's transform: a predicate, one computed column
// and one masked column.
func typical() []*taskv1.Transform {
	return []*taskv1.Transform{
		filter("row.amount > 100.0"),
		compute("amount_cents", "int(row.amount * 100.0)"),
		maskHash("email"),
	}
}

func insert(vals ...any) *cdcv1.ChangeEvent {
	return &cdcv1.ChangeEvent{Op: cdcv1.Operation_OPERATION_INSERT, RelationOid: 42, Lsn: 7,
		CommitTime: timestamppb.New(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)), NewTuple: tuple.Of(vals...)}
}

func texts(t *testing.T, tu *cdcv1.Tuple) []string {
	t.Helper()
	var out []string
	for i := range tuple.Len(tu) {
		text, k := tuple.Field(tu, i)
		if k != tuple.Text {
			out = append(out, "<"+string(k)+">")
			continue
		}
		out = append(out, string(text))
	}
	return out
}

func mustCompile(t *testing.T, rel *cdcv1.Relation, ts []*taskv1.Transform) *Pipeline {
	t.Helper()
	p, err := Compile(rel, ts)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestTypicalTransform(t *testing.T) {
	p := mustCompile(t, ordersRel(cdcv1.ReplicaIdentity_REPLICA_IDENTITY_DEFAULT), typical())
	var names []string
	for _, c := range p.Relation().GetColumns() {
		names = append(names, c.GetName()+":"+c.GetTypeName())
	}
	want := "id:bigint amount:numeric(10,2) email:text created:timestamp with time zone amount_cents:bigint"
	if got := strings.Join(names, " "); got != want {
		t.Fatalf("columns %q, want %q", got, want)
	}
	r, err := p.Apply(insert("1", "250.50", "a@example.com", "2026-01-02 03:04:05+00"))
	if err != nil || r.Event == nil {
		t.Fatalf("Apply: %v, %v", r.Event, err)
	}
	got := texts(t, r.Event.GetNewTuple())
	wantVals := []string{"1", "250.50", hashText([]byte("a@example.com")), "2026-01-02 03:04:05+00", "25050"}
	if strings.Join(got, "|") != strings.Join(wantVals, "|") {
		t.Fatalf("row %q, want %q", got, wantVals)
	}
	if r, err := p.Apply(insert("2", "99.99", "b@example.com", "2026-01-02 03:04:05+00")); err != nil || r.Event != nil {
		t.Fatalf("a row outside the filter: %v, %v", r.Event, err)
	}
}

func TestNullColumnIsNotTrue(t *testing.T) {
	p := mustCompile(t, ordersRel(cdcv1.ReplicaIdentity_REPLICA_IDENTITY_DEFAULT), typical())
	r, err := p.Apply(insert("1", nil, nil, nil))
	if err != nil || r.Event != nil {
		t.Fatalf("a NULL amount passed the filter: %v, %v", r.Event, err)
	}
	p = mustCompile(t, ordersRel(cdcv1.ReplicaIdentity_REPLICA_IDENTITY_DEFAULT), []*taskv1.Transform{compute("c", "row.amount * 2.0"), maskHash("email")})
	r, err = p.Apply(insert("1", nil, nil, nil))
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(texts(t, r.Event.GetNewTuple()), "|"); got != "1|<n>|<n>|<n>|<n>" {
		t.Fatalf("row %q: nulls should stay null", got)
	}
}

func TestCompileErrorsNamePosition(t *testing.T) {
	rel := ordersRel(cdcv1.ReplicaIdentity_REPLICA_IDENTITY_DEFAULT)
	for _, tc := range []struct {
		ts   []*taskv1.Transform
		pos  int
		want string
	}{
		{[]*taskv1.Transform{filter("row.nope > 1")}, 0, "undefined field 'nope'"},
		{[]*taskv1.Transform{filter("true"), filter("row.email + 1 == 2")}, 1, "no matching overload"},
		{[]*taskv1.Transform{filter("row.amount")}, 0, "not bool"},
		{[]*taskv1.Transform{{Kind: &taskv1.Transform_Drop{Drop: "email"}}, maskHash("email")}, 1, `no column "email"`},
		{[]*taskv1.Transform{compute("x", "[1, 2]")}, 0, "no column type"},
		{[]*taskv1.Transform{filter("row.id >")}, 0, "Syntax error"},
	} {
		_, err := Compile(rel, tc.ts)
		var te *Error
		if !errors.As(err, &te) || te.Position != tc.pos || !strings.Contains(te.Error(), tc.want) || te.Table != "orders" {
			t.Errorf("Compile(%v): %v, want position %d and %q", tc.ts, err, tc.pos, tc.want)
		}
	}
}

func TestRuntimeErrorNamesTransformNotValues(t *testing.T) {
	p := mustCompile(t, ordersRel(cdcv1.ReplicaIdentity_REPLICA_IDENTITY_DEFAULT), []*taskv1.Transform{compute("ratio", "100 / (row.id - 1)")})
	_, err := p.Apply(insert("1", "5", "secret@example.com", nil))
	var re *RowError
	if !errors.As(err, &re) || re.Position != 0 || !strings.Contains(err.Error(), "division by zero") {
		t.Fatalf("Apply: %v, want a division by zero at transform 0", err)
	}
	if strings.Contains(err.Error(), "secret") {
		t.Fatalf("the error quotes a value: %v", err)
	}
}

func update(identity cdcv1.ReplicaIdentity, old, new []any) *cdcv1.ChangeEvent {
	ev := insert(new...)
	ev.Op = cdcv1.Operation_OPERATION_UPDATE
	if old != nil {
		ev.OldTuple = tuple.Of(old...)
	}
	return ev
}

func TestUpdateMovingAcrossTheFilter(t *testing.T) {
	full := cdcv1.ReplicaIdentity_REPLICA_IDENTITY_FULL
	p := mustCompile(t, ordersRel(full), typical())
	row := func(amount string) []any { return []any{"1", amount, "a@example.com", nil} }
	for _, tc := range []struct {
		old, new string
		op       cdcv1.Operation // unspecified: left out
	}{
		{"500", "600", cdcv1.Operation_OPERATION_UPDATE},
		{"50", "600", cdcv1.Operation_OPERATION_INSERT},
		{"500", "60", cdcv1.Operation_OPERATION_DELETE},
		{"50", "60", cdcv1.Operation_OPERATION_UNSPECIFIED},
	} {
		r, err := p.Apply(update(full, row(tc.old), row(tc.new)))
		if err != nil {
			t.Fatal(err)
		}
		got := cdcv1.Operation_OPERATION_UNSPECIFIED
		if r.Event != nil {
			got = r.Event.GetOp()
		}
		if got != tc.op {
			t.Errorf("%s -> %s: %v, want %v", tc.old, tc.new, got, tc.op)
		}
		if got == cdcv1.Operation_OPERATION_DELETE {
			if v := texts(t, r.Event.GetOldTuple()); v[1] != tc.old || v[4] != tc.old+"00" {
				t.Errorf("the DELETE's image %q is not the old row's", v)
			}
		}
	}
}

func TestUpdateWithoutBeforeImage(t *testing.T) {
	def := cdcv1.ReplicaIdentity_REPLICA_IDENTITY_DEFAULT
	p := mustCompile(t, ordersRel(def), typical())
	r, err := p.Apply(update(def, nil, []any{"1", "600", "a@example.com", nil}))
	if err != nil || r.Event.GetOp() != cdcv1.Operation_OPERATION_UPDATE {
		t.Fatalf("passing update: %v, %v", r.Event, err)
	}
	r, err = p.Apply(update(def, nil, []any{"1", "60", "a@example.com", nil}))
	if err != nil || r.Event.GetOp() != cdcv1.Operation_OPERATION_DELETE {
		t.Fatalf("failing update without a before-image: %v, %v; want a DELETE of its key", r.Event, err)
	}
	if got := strings.Join(texts(t, r.Event.GetOldTuple()), "|"); got != "1|<n>|<n>|<n>|<n>" {
		t.Fatalf("DELETE image %q, want the key alone", got)
	}
}

func TestDeleteHidingFilteredColumnIsKept(t *testing.T) {
	p := mustCompile(t, ordersRel(cdcv1.ReplicaIdentity_REPLICA_IDENTITY_DEFAULT), typical())
	ev := &cdcv1.ChangeEvent{Op: cdcv1.Operation_OPERATION_DELETE, RelationOid: 42, OldTuple: tuple.Of("1", nil, nil, nil)}
	r, err := p.Apply(ev)
	if err != nil || r.Event.GetOp() != cdcv1.Operation_OPERATION_DELETE {
		t.Fatalf("a DELETE whose image hides amount: %v, %v; want it kept", r.Event, err)
	}
}

func TestRenameDropCastRouteKey(t *testing.T) {
	p := mustCompile(t, ordersRel(cdcv1.ReplicaIdentity_REPLICA_IDENTITY_DEFAULT), []*taskv1.Transform{
		{Kind: &taskv1.Transform_Rename{Rename: &taskv1.RenameColumn{From: "id", To: "order_id"}}},
		{Kind: &taskv1.Transform_Drop{Drop: "created"}},
		{Kind: &taskv1.Transform_Cast{Cast: &taskv1.CastColumn{Column: "amount", Type: taskv1.CastType_CAST_TYPE_BIGINT}}},
		{Kind: &taskv1.Transform_Mask{Mask: &taskv1.MaskColumn{Column: "email", Mask: &taskv1.MaskColumn_Redact{Redact: &taskv1.MaskRedact{KeepLast: 3}}}}},
		{Kind: &taskv1.Transform_Route{Route: `row.amount > 100 ? "big" : ""`}},
		{Kind: &taskv1.Transform_Key{Key: `schema + "/" + string(row.order_id)`}},
	})
	if got := p.Relation().GetKeyColumns(); len(got) != 1 || got[0] != "order_id" {
		t.Fatalf("key columns %v", got)
	}
	r, err := p.Apply(insert("7", "250", "a@example.com", "2026-01-02 03:04:05+00"))
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(texts(t, r.Event.GetNewTuple()), "|"); got != "7|250|****com" {
		t.Fatalf("row %q", got)
	}
	if r.Topic != "big" || !r.HasKey || string(r.Key) != "public/7" {
		t.Fatalf("topic %q key %q (%v)", r.Topic, r.Key, r.HasKey)
	}
}

func TestVariables(t *testing.T) {
	p := mustCompile(t, ordersRel(cdcv1.ReplicaIdentity_REPLICA_IDENTITY_DEFAULT), []*taskv1.Transform{
		compute("v", `op + " " + schema + "." + table + " " + string(commit_time) + " " + string(row.created < timestamp("2027-01-01T00:00:00Z")) + " " + truncate(row.email, 3)`),
	})
	r, err := p.Apply(insert("1", "1", "abcdef", "2026-01-02 03:04:05.5+01"))
	if err != nil {
		t.Fatal(err)
	}
	want := "INSERT public.orders 2026-01-02T03:04:05Z true abc"
	if got := texts(t, r.Event.GetNewTuple())[4]; got != want {
		t.Fatalf("v = %q, want %q", got, want)
	}
}

func BenchmarkTypicalTransform(b *testing.B) {
	p, err := Compile(ordersRel(cdcv1.ReplicaIdentity_REPLICA_IDENTITY_DEFAULT), typical())
	if err != nil {
		b.Fatal(err)
	}
	ev := insert("1", "250.50", "a@example.com", "2026-01-02 03:04:05+00")
	b.ReportAllocs()
	for b.Loop() {
		if r, err := p.Apply(ev); err != nil || r.Event == nil {
			b.Fatal(r, err)
		}
	}
}
