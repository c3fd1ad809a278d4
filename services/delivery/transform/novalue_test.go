package transform

import (
	"errors"
	"strings"
	"testing"

	cdcv1 "github.com/ferry-cdc/ferry/gen/ferry/cdc/v1"
	taskv1 "github.com/ferry-cdc/ferry/gen/ferry/task/v1"
)

// A failed conversion names neither the value in the expression's error
// nor in a cast's.
func TestRuntimeErrorsQuoteNoValue(t *testing.T) {
	rel := ordersRel(cdcv1.ReplicaIdentity_REPLICA_IDENTITY_DEFAULT)
	for _, ts := range [][]*taskv1.Transform{
		{compute("n", "int(row.email)")},
		{compute("n", "timestamp(row.email)")},
		{compute("n", "string(duration(row.email))")},
		{compute("n", `{"a": 1}[row.email]`)},
		{compute("n", `"x".matches(row.email)`)},
		{compute("n", `[1][int(row.id) + 5]`)},
		{{Kind: &taskv1.Transform_Cast{Cast: &taskv1.CastColumn{Column: "email", Type: taskv1.CastType_CAST_TYPE_BIGINT}}}},
	} {
		p := mustCompile(t, rel, ts)
		_, err := p.Apply(insert("1", "1", "topsecret(", nil))
		var re *RowError
		if !errors.As(err, &re) || strings.Contains(err.Error(), "topsecret") {
			t.Errorf("Apply: %v; want a RowError without the value", err)
		}
	}
}
