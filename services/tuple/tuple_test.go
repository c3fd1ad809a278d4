package tuple

import (
	"strings"
	"testing"

	cdcv1 "github.com/ferry-cdc/ferry/gen/ferry/cdc/v1"
)

func TestAppendAndField(t *testing.T) {
	tu := Of("12", nil, UnchangedToast, "", "héllo")
	if err := Check(tu, 5); err != nil {
		t.Fatal(err)
	}
	want := []struct {
		text string
		kind Kind
	}{{"12", Text}, {"", Null}, {"", UnchangedToast}, {"", Text}, {"héllo", Text}}
	for i, w := range want {
		if text, k := Field(tu, i); string(text) != w.text || k != w.kind {
			t.Errorf("column %d = %q %c, want %q %c", i, text, k, w.text, w.kind)
		}
	}
	if _, k := Field(tu, 5); k != Null {
		t.Errorf("a column past the end is %c, want NULL", k)
	}
	if _, k := Field(nil, 0); k != Null || Len(nil) != 0 {
		t.Errorf("a nil tuple reads %c with %d columns", k, Len(nil))
	}
}

func TestCheckRejectsMalformedTuples(t *testing.T) {
	for name, tu := range map[string]*cdcv1.Tuple{
		"too few columns":  Of("1"),
		"ends backwards":   {Text: []byte("ab"), Ends: []uint32{2, 1}, Kinds: []byte("tt")},
		"end past text":    {Text: []byte("ab"), Ends: []uint32{1, 3}, Kinds: []byte("tt")},
		"text on a null":   {Text: []byte("ab"), Ends: []uint32{1, 2}, Kinds: []byte("tn")},
		"unknown kind":     {Text: []byte("ab"), Ends: []uint32{1, 1}, Kinds: []byte("tx")},
		"kinds, no ends":   {Text: []byte("ab"), Ends: []uint32{2}, Kinds: []byte("tn")},
		"secret not shown": {Text: []byte("s3cret"), Ends: []uint32{6, 7}, Kinds: []byte("tt")},
	} {
		err := Check(tu, 2)
		if err == nil {
			t.Errorf("%s: passed", name)
		} else if strings.Contains(err.Error(), "s3cret") {
			t.Errorf("%s: error %q quotes the text", name, err)
		}
	}
	if err := Check(nil, 3); err != nil {
		t.Errorf("no image: %v", err)
	}
	// A malformed tuple reads as NULL rather than out of bounds.
	if _, k := Field(&cdcv1.Tuple{Text: []byte("ab"), Ends: []uint32{5}, Kinds: []byte("t")}, 0); k != Null {
		t.Errorf("an end past the text reads %c", k)
	}
}
