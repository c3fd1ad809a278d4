package transform

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"

	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/common/types/ref"

	cdcv1 "github.com/ferry-cdc/ferry/gen/ferry/cdc/v1"
	"github.com/ferry-cdc/ferry/services/tuple"
)

// verdict is what the filters say of one image of a row.
type verdict int

const (
	pass    verdict = iota
	fail            // some filter is false or null
	unknown         // no filter failed, one read an unchanged TOAST value
)

// mode chooses the steps a run executes.
type mode int

const (
	// decide runs filters and columns, stopping at the first failing
	// filter: the verdict on an image that may not be emitted.
	decide mode = iota
	// final is decide plus route and key: the image is emitted if it passes.
	final
	// emit runs columns, route and key with the filters aside: the image
	// is emitted whatever they say (a DELETE for a row leaving them).
	emit
	// columns runs the column steps alone: a before-image shipped beside
	// the image that was decided on.
	columns
)

// run executes the steps with row and old bound. A filter stops the run
// where it fails, since later steps may rely on it (a division guarded by
// it, say); one that cannot tell for an unchanged TOAST value does not.
func (p *Pipeline) run(row, old *rowView, m mode) (verdict, error) {
	s := &p.st
	s.vars.row, s.vars.old = row, old
	if m == final || m == emit {
		s.key, s.keySet, s.topic = s.key[:0], false, ""
	}
	out := pass
	for i := range p.steps {
		st := &p.steps[i]
		switch st.kind {
		case stepFilter:
			if m == emit || m == columns {
				continue
			}
			v, err := p.eval(st)
			switch {
			case err != nil:
				return fail, err
			case isUnknown(v):
				out = unknown
			case v != types.True:
				return fail, nil
			}
		case stepRoute, stepKey:
			if m == final || m == emit {
				if err := p.target(st); err != nil {
					return fail, err
				}
			}
		default:
			if err := p.column(st, row); err != nil {
				return fail, err
			}
		}
	}
	return out, nil
}

// eval runs a step's expression. A null operand makes CEL report "no such
// overload", since the checker has already matched every non-null type; it
// yields null, as SQL's NULL does (so a filter over a NULL is not true).
func (p *Pipeline) eval(st *step) (ref.Val, error) {
	v, _, err := st.prg.Eval(&p.st.vars)
	if err != nil {
		if strings.Contains(err.Error(), "no such overload") {
			return types.NullValue, nil
		}
		return nil, &RowError{Position: st.pos, Msg: category(err.Error())}
	}
	return v, nil
}

// category names a runtime error by a fixed kind: CEL's messages quote the
// text it failed to convert or the map key it missed, which are row values,
// and no scrubbing of them can be complete.
func category(msg string) string {
	for _, c := range []struct{ has, is string }{
		{"division by zero", "division by zero"},
		{"modulus by zero", "division by zero"},
		{"overflow", "overflow"},
		{"no such key", "no such key"},
		{"index out of bounds", "index out of bounds"},
		{"invalid", "conversion"},
		{"conver", "conversion"},
		{"parse", "conversion"},
		{"not a valid", "conversion"},
		{"range", "overflow"},
	} {
		if strings.Contains(msg, c.has) {
			return c.is
		}
	}
	return "other"
}

func (p *Pipeline) column(st *step, row *rowView) error {
	var v ref.Val
	switch st.kind {
	case stepCompute:
		var err error
		if v, err = p.eval(st); err != nil {
			return err
		}
	case stepMask:
		v = p.mask(st, row.text(st.from))
	case stepCast:
		if st.cast == types.StringType {
			v = row.text(st.from)
		} else {
			v = p.cast(st, row.get(st.from))
		}
	}
	if e, ok := v.(*types.Err); ok {
		return &RowError{Position: st.pos, Msg: category(e.Error())}
	}
	row.vals[st.slot] = v
	return nil
}

func (p *Pipeline) target(st *step) error {
	v, err := p.eval(st)
	if err != nil {
		return err
	}
	s := &p.st
	switch v := v.(type) { // null or unknown: the table's topic, the source key
	case types.String:
		if st.kind == stepRoute {
			s.topic = string(v)
			return nil
		}
		s.key, s.keySet = append(s.key[:0], v...), true
	case types.Bytes:
		s.key, s.keySet = append(s.key[:0], v...), true
	}
	return nil
}

// text is v as the text of its column type.
func (p *Pipeline) text(v ref.Val) string {
	if s, ok := v.(types.String); ok {
		return string(s)
	}
	p.st.scratch, _ = appendText(p.st.scratch[:0], v)
	return string(p.st.scratch)
}

func (p *Pipeline) mask(st *step, v ref.Val) ref.Val {
	if v == types.NullValue || types.IsUnknownOrError(v) {
		return v
	}
	if st.mask.GetHash() != nil {
		// Straight from the value's text into the hex, one allocation.
		if sv, ok := v.(types.String); ok {
			p.st.scratch = append(p.st.scratch[:0], sv...)
		} else {
			p.st.scratch, _ = appendText(p.st.scratch[:0], v)
		}
		sum := sha256.Sum256(p.st.scratch)
		var h [2 * sha256.Size]byte
		hex.Encode(h[:], sum[:])
		return types.String(h[:])
	}
	text := p.text(v)
	switch {
	case st.mask.GetTruncate() != nil:
		return types.String(truncateText(text, int(st.mask.GetTruncate().GetLength())))
	}
	return types.String(redactText(text, int(st.mask.GetRedact().GetKeepLast())))
}

func (p *Pipeline) cast(st *step, v ref.Val) ref.Val {
	if v == types.NullValue || types.IsUnknownOrError(v) {
		return v
	}
	return v.ConvertToType(st.cast)
}

// image writes row's output columns into dst, or returns src itself when
// the transforms keep the source's columns as they are.
func (p *Pipeline) image(dst *cdcv1.Tuple, row *rowView, src *cdcv1.Tuple) *cdcv1.Tuple {
	return p.build(dst, row, src, false)
}

// keyImage is image with every column but the key's null: the
// before-image of a DELETE made from an UPDATE.
func (p *Pipeline) keyImage(dst *cdcv1.Tuple, row *rowView, src *cdcv1.Tuple) *cdcv1.Tuple {
	return p.build(dst, row, src, true)
}

func (p *Pipeline) build(dst *cdcv1.Tuple, row *rowView, src *cdcv1.Tuple, keyOnly bool) *cdcv1.Tuple {
	if tuple.Len(src) == 0 || p.identity && !keyOnly {
		return src
	}
	dst.Text, dst.Ends, dst.Kinds = dst.Text[:0], dst.Ends[:0], dst.Kinds[:0]
	for i, slot := range p.outSlots {
		switch {
		case keyOnly && !p.out.GetColumns()[i].GetKey():
			tuple.Append(dst, tuple.Null, nil)
		case slot < len(p.srcTypes):
			text, k := tuple.Field(src, slot)
			tuple.Append(dst, k, text)
		default:
			p.appendValue(dst, row.vals[slot])
		}
	}
	return dst
}

func (p *Pipeline) appendValue(dst *cdcv1.Tuple, v ref.Val) {
	if v == nil || v == types.NullValue {
		tuple.Append(dst, tuple.Null, nil)
		return
	}
	if isUnknown(v) { // read from an unchanged TOAST value: unchanged too
		tuple.Append(dst, tuple.UnchangedToast, nil)
		return
	}
	text, err := appendText(dst.Text, v)
	if err != nil { // the checker admits only types with a text
		tuple.Append(dst, tuple.Null, nil)
		return
	}
	dst.Text = text
	dst.Ends = append(dst.Ends, uint32(len(dst.Text)))
	dst.Kinds = append(dst.Kinds, byte(tuple.Text))
}
