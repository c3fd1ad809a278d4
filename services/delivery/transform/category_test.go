package transform

import (
	"errors"
	"testing"

	cdcv1 "github.com/ferry-cdc/ferry/gen/ferry/cdc/v1"
	taskv1 "github.com/ferry-cdc/ferry/gen/ferry/task/v1"
)

// A runtime error's message is a fixed category, so no row value, however
// short, can be in it.
func TestRuntimeErrorsAreCategories(t *testing.T) {
	rel := ordersRel(cdcv1.ReplicaIdentity_REPLICA_IDENTITY_DEFAULT)
	for _, c := range []struct {
		ts   []*taskv1.Transform
		want string
	}{
		{[]*taskv1.Transform{compute("n", "100 / (row.id - 1)")}, "division by zero"},
		{[]*taskv1.Transform{compute("n", "row.id % (row.id - 1)")}, "division by zero"},
		{[]*taskv1.Transform{compute("n", "row.id + 9223372036854775807")}, "overflow"},
		{[]*taskv1.Transform{compute("n", "int(row.email)")}, "conversion"},
		{[]*taskv1.Transform{compute("n", "timestamp(row.email)")}, "conversion"},
		{[]*taskv1.Transform{compute("n", `{"a": 1}[row.email]`)}, "no such key"},
		{[]*taskv1.Transform{compute("n", `[1][int(row.id) + 5]`)}, "index out of bounds"},
		{[]*taskv1.Transform{{Kind: &taskv1.Transform_Cast{Cast: &taskv1.CastColumn{Column: "email", Type: taskv1.CastType_CAST_TYPE_BIGINT}}}}, "conversion"},
	} {
		p := mustCompile(t, rel, c.ts)
		_, err := p.Apply(insert("1", "1", "x", nil))
		var re *RowError
		if !errors.As(err, &re) || re.Msg != c.want {
			t.Errorf("%v: Apply: %v; want the category %q", c.ts[0], err, c.want)
		}
	}
}
