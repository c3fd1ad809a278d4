package snapshot

import "testing"

func TestUnescapeCopyText(t *testing.T) {
	for in, want := range map[string]string{
		`plain`:               "plain",
		`a\tb\nc\\d\re\bf\fg`: "a\tb\nc\\d\re\bf\fg",
		`\v\101\x41\x`:        "\vAAx",
		`\N`:                  "N", // NULL is recognised before unescaping
		`é\\`:                 `é\`,
	} {
		got, err := unescapeCopyText(nil, []byte(in))
		if err != nil || string(got) != want {
			t.Errorf("unescapeCopyText(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	if _, err := unescapeCopyText(nil, []byte(`bad\`)); err == nil {
		t.Error("a trailing lone backslash must be an error")
	}
}
