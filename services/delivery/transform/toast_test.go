package transform

import (
	"strings"
	"testing"

	cdcv1 "github.com/ferry-cdc/ferry/gen/ferry/cdc/v1"
	taskv1 "github.com/ferry-cdc/ferry/gen/ferry/task/v1"
	"github.com/ferry-cdc/ferry/services/tuple"
)

func op(r Result) cdcv1.Operation {
	if r.Event == nil {
		return cdcv1.Operation_OPERATION_UNSPECIFIED
	}
	return r.Event.GetOp()
}

// An UPDATE that left a TOASTed column alone does not send it: a filter on
// it cannot tell, so the change stays an UPDATE, never a DELETE.
func TestUnchangedToastNeverDecidesADelete(t *testing.T) {
	def := cdcv1.ReplicaIdentity_REPLICA_IDENTITY_DEFAULT
	p := mustCompile(t, ordersRel(def), []*taskv1.Transform{filter("row.email != null")})
	for _, old := range [][]any{nil, {"0", nil, nil, nil}} { // no before-image; the old key alone
		r, err := p.Apply(update(def, old, []any{"1", "5", tuple.UnchangedToast, nil}))
		if err != nil || op(r) != cdcv1.Operation_OPERATION_UPDATE {
			t.Fatalf("old %v: %v, %v; want the UPDATE kept", old, op(r), err)
		}
	}
	// A filter that does not need the value still decides.
	p = mustCompile(t, ordersRel(def), []*taskv1.Transform{filter(`row.id > 5 && row.email != ""`)})
	r, err := p.Apply(update(def, nil, []any{"1", "5", tuple.UnchangedToast, nil}))
	if err != nil || op(r) != cdcv1.Operation_OPERATION_DELETE {
		t.Fatalf("%v, %v; want a DELETE: id alone fails the filter", op(r), err)
	}
	// Known on the before-image: the before-image's verdict decides.
	full := cdcv1.ReplicaIdentity_REPLICA_IDENTITY_FULL
	p = mustCompile(t, ordersRel(full), []*taskv1.Transform{filter(`row.email.startsWith("a")`)})
	r, err = p.Apply(update(full, []any{"1", "5", "b@x", nil}, []any{"1", "6", tuple.UnchangedToast, nil}))
	if err != nil || op(r) != cdcv1.Operation_OPERATION_UNSPECIFIED {
		t.Fatalf("%v, %v; want the change left out as the old row was", op(r), err)
	}
}

// Columns computed from an unchanged TOAST value are unchanged too.
func TestUnchangedToastStaysUnchangedThroughColumns(t *testing.T) {
	def := cdcv1.ReplicaIdentity_REPLICA_IDENTITY_DEFAULT
	p := mustCompile(t, ordersRel(def), []*taskv1.Transform{
		compute("e2", `row.email + "!"`),
		compute("n", `size(row.email) > 0 || true`),
		maskHash("email"),
		{Kind: &taskv1.Transform_Cast{Cast: &taskv1.CastColumn{Column: "created", Type: taskv1.CastType_CAST_TYPE_TEXT}}},
	})
	r, err := p.Apply(update(def, nil, []any{"1", "5", tuple.UnchangedToast, tuple.UnchangedToast}))
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(texts(t, r.Event.GetNewTuple()), "|"); got != "1|5|<u>|<u>|<u>|t" {
		t.Fatalf("row %q, want the columns read from unchanged values unchanged", got)
	}
}

// Route and key run for the image a filter's verdict emits: the DELETE of
// a row leaving the filter goes where its INSERT went, with its key.
func TestRouteAndKeyAfterAFailingFilter(t *testing.T) {
	ts := []*taskv1.Transform{
		filter("row.amount > 100.0"),
		{Kind: &taskv1.Transform_Route{Route: `"big"`}},
		{Kind: &taskv1.Transform_Key{Key: `"k" + string(row.id)`}},
	}
	full := cdcv1.ReplicaIdentity_REPLICA_IDENTITY_FULL
	def := cdcv1.ReplicaIdentity_REPLICA_IDENTITY_DEFAULT
	for _, tc := range []struct {
		identity cdcv1.ReplicaIdentity
		old      []any
		key      string
	}{
		{full, []any{"1", "500", "a", nil}, "k1"},
		{def, nil, "k1"},
		{def, []any{"0", nil, nil, nil}, "k0"}, // the key changed: the old key is deleted
	} {
		p := mustCompile(t, ordersRel(tc.identity), ts)
		r, err := p.Apply(update(tc.identity, tc.old, []any{"1", "60", "a", nil}))
		if err != nil || op(r) != cdcv1.Operation_OPERATION_DELETE {
			t.Fatalf("old %v: %v, %v; want a DELETE", tc.old, op(r), err)
		}
		if r.Topic != "big" || !r.HasKey || string(r.Key) != tc.key {
			t.Errorf("old %v: DELETE to topic %q key %q (%v), want big and %s", tc.old, r.Topic, r.Key, r.HasKey, tc.key)
		}
		if got := texts(t, r.Event.GetOldTuple())[0]; got != tc.key[1:] {
			t.Errorf("old %v: DELETE of key %q, want %s", tc.old, got, tc.key[1:])
		}
	}
	// A DELETE whose image hides the filtered column is routed too.
	p := mustCompile(t, ordersRel(def), ts)
	r, err := p.Apply(&cdcv1.ChangeEvent{Op: cdcv1.Operation_OPERATION_DELETE, RelationOid: 42, OldTuple: tuple.Of("3", nil, nil, nil)})
	if err != nil || r.Topic != "big" || string(r.Key) != "k3" {
		t.Fatalf("DELETE: topic %q key %q, %v; want big and k3", r.Topic, r.Key, err)
	}
}
