package transform

import (
	"github.com/google/cel-go/cel"

	taskv1 "github.com/ferry-cdc/ferry/gen/ferry/task/v1"
)

// CheckSyntax reports what is wrong with t that needs no table to see: a
// missing kind, column or name, or an expression that does not parse. It
// returns "" when nothing is; Compile then checks names and types against
// the table.
func CheckSyntax(t *taskv1.Transform) string {
	var expr string
	switch k := t.GetKind().(type) {
	case *taskv1.Transform_Filter:
		expr = k.Filter
	case *taskv1.Transform_Route:
		expr = k.Route
	case *taskv1.Transform_Key:
		expr = k.Key
	case *taskv1.Transform_Compute:
		if k.Compute.GetName() == "" {
			return "compute: the column name is empty"
		}
		expr = k.Compute.GetExpression()
	case *taskv1.Transform_Drop:
		return required(k.Drop, "drop: name the column")
	case *taskv1.Transform_Rename:
		return required(k.Rename.GetFrom()+"\x00"+k.Rename.GetTo(), "rename: set from and to")
	case *taskv1.Transform_Cast:
		if k.Cast.GetType() == taskv1.CastType_CAST_TYPE_UNSPECIFIED {
			return "cast: choose a type"
		}
		return required(k.Cast.GetColumn(), "cast: name the column")
	case *taskv1.Transform_Mask:
		if k.Mask.GetMask() == nil {
			return "mask: choose hash, truncate or redact"
		}
		return required(k.Mask.GetColumn(), "mask: name the column")
	default:
		return "an empty transform: set one of its kinds"
	}
	if expr == "" {
		return "the expression is empty"
	}
	env, err := cel.NewEnv()
	if err != nil {
		return err.Error()
	}
	if _, iss := env.Parse(expr); iss.Err() != nil {
		return iss.Err().Error()
	}
	return ""
}

func required(v, msg string) string {
	if v == "" || v[0] == 0 || v[len(v)-1] == 0 {
		return msg
	}
	return ""
}

// PrecheckID is the precheck item that compiles every table's transforms
// against its real columns; CreateTask and ModifyObjects consult it too.
const PrecheckID = "transforms"

// Any reports whether sel has any transform.
func Any(sel *taskv1.ObjectSelection) bool {
	if len(sel.GetTransforms()) > 0 {
		return true
	}
	for _, s := range sel.GetSchemas() {
		if len(s.GetTransforms()) > 0 {
			return true
		}
	}
	for _, t := range sel.GetTables() {
		if len(t.GetTransforms()) > 0 {
			return true
		}
	}
	return false
}
