// Package tuple builds and reads cdcv1.Tuple, a row image as the source's
// text: one buffer of values back to back, their end offsets, and a kind
// byte per column.
package tuple

import (
	"fmt"

	cdcv1 "github.com/ferry-cdc/ferry/gen/ferry/cdc/v1"
)

// Kind is what a column of a tuple holds; the bytes are pgoutput's.
type Kind byte

const (
	// Text: the value's text.
	Text Kind = 't'
	// Null: SQL NULL.
	Null Kind = 'n'
	// UnchangedToast: an unchanged TOASTed value the source did not send.
	UnchangedToast Kind = 'u'
)

// New is an empty tuple with room for n columns and size bytes of text.
func New(n, size int) *cdcv1.Tuple {
	return &cdcv1.Tuple{Text: make([]byte, 0, size), Ends: make([]uint32, 0, n), Kinds: make([]byte, 0, n)}
}

// Append adds the next column: text for Text, nothing for the other kinds.
func Append(t *cdcv1.Tuple, k Kind, text []byte) {
	if k == Text {
		t.Text = append(t.Text, text...)
	}
	t.Ends = append(t.Ends, uint32(len(t.Text)))
	t.Kinds = append(t.Kinds, byte(k))
}

// Of builds a tuple for tests and tools: a string is a value's text, nil
// is NULL and a Kind is a column of that kind without text.
func Of(values ...any) *cdcv1.Tuple {
	t := New(len(values), 0)
	for _, v := range values {
		switch v := v.(type) {
		case string:
			Append(t, Text, []byte(v))
		case Kind:
			Append(t, v, nil)
		case nil:
			Append(t, Null, nil)
		default:
			panic(fmt.Sprintf("tuple.Of: %T is neither a string, nil nor a Kind", v))
		}
	}
	return t
}

// Check reports a tuple that is not well formed for a relation of columns
// columns. It names offsets, never values.
func Check(t *cdcv1.Tuple, columns int) error {
	if t == nil {
		return nil
	}
	if len(t.Kinds) != columns || len(t.Ends) != columns {
		return fmt.Errorf("tuple has %d kinds and %d ends for %d columns", len(t.Kinds), len(t.Ends), columns)
	}
	prev := uint32(0)
	for i, end := range t.Ends {
		if end < prev || int(end) > len(t.Text) {
			return fmt.Errorf("tuple column %d ends at %d, outside %d..%d", i, end, prev, len(t.Text))
		}
		switch k := Kind(t.Kinds[i]); {
		case k != Text && end != prev:
			return fmt.Errorf("tuple column %d has kind %q and text", i, k)
		case k != Text && k != Null && k != UnchangedToast:
			return fmt.Errorf("tuple column %d has unknown kind %d", i, k)
		}
		prev = end
	}
	return nil
}

// Len is the tuple's column count; 0 for a nil tuple.
func Len(t *cdcv1.Tuple) int { return len(t.GetKinds()) }

// Field is column i's kind and, for Text, its text, which aliases the
// tuple's buffer. A column past the tuple's end is Null, as a column the
// replica identity does not reveal.
func Field(t *cdcv1.Tuple, i int) ([]byte, Kind) {
	kinds := t.GetKinds()
	if i >= len(kinds) || i >= len(t.GetEnds()) {
		return nil, Null
	}
	k := Kind(kinds[i])
	if k != Text {
		return nil, k
	}
	start := uint32(0)
	if i > 0 {
		start = t.Ends[i-1]
	}
	end := t.Ends[i]
	if start > end || int(end) > len(t.Text) {
		// A malformed tuple reads as NULL rather than panicking; the
		// receiver validates tuples with Check before encoding.
		return nil, Null
	}
	return t.Text[start:end], Text
}
