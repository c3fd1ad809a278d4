package pgsql

import "testing"

// The inputs where the two grammars part: a backslash, alone, before a
// quote, or ending the string, where a plain SQL constant under
// standard_conforming_strings = off would escape the closing quote.
var cases = []struct{ in, literal, replication string }{
	{"", "''", "''"},
	{"plain", "'plain'", "'plain'"},
	{"it's", "'it''s'", "'it''s'"},
	{`a\`, `E'a\\'`, `'a\'`},
	{`a\'b`, `E'a\\''b'`, `'a\''b'`},
	{`"pub\x"`, `E'"pub\\x"'`, `'"pub\x"'`},
	{"日本語", "'日本語'", "'日本語'"},
}

func TestLiteral(t *testing.T) {
	for _, c := range cases {
		if got := Literal(c.in); got != c.literal {
			t.Errorf("Literal(%q) = %s, want %s", c.in, got, c.literal)
		}
	}
}

func TestReplicationLiteral(t *testing.T) {
	for _, c := range cases {
		if got := ReplicationLiteral(c.in); got != c.replication {
			t.Errorf("ReplicationLiteral(%q) = %s, want %s", c.in, got, c.replication)
		}
	}
}
