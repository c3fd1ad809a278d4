package control

import (
	"strings"
	"testing"

	taskv1 "github.com/ferry-cdc/ferry/gen/ferry/task/v1"
)

func TestFilterIsTrimmedAndAccepted(t *testing.T) {
	in := validSpec()
	in.Objects.Tables[0].Filter = "  id > 10 AND region = 'eu'\n"
	s, err := Normalize(in)
	if err != nil {
		t.Fatal(err)
	}
	if got := s.GetObjects().GetTables()[0].GetFilter(); got != "id > 10 AND region = 'eu'" {
		t.Errorf("filter = %q, want it trimmed", got)
	}
	if in.Objects.Tables[0].Filter != "  id > 10 AND region = 'eu'\n" {
		t.Error("Normalize must not modify its input")
	}
}

func TestFilterRefusals(t *testing.T) {
	for _, c := range []struct {
		name   string
		edit   func(*taskv1.TaskSpec)
		filter string
		want   []string
	}{
		{"blank", nil, " \t\n", []string{"objects.tables[0].filter", "blank"}},
		{"too long", nil, "id > " + strings.Repeat("1", 4096), []string{"objects.tables[0].filter", "4101 bytes", "4096"}},
		{"semicolon", nil, "id > 1; DROP TABLE orders", []string{"objects.tables[0].filter", "';'", "chr(59)"}},
		{"semicolon in a literal", nil, "note = 'a;b'", []string{"';'"}},
		{"whole database", func(s *taskv1.TaskSpec) { s.Objects.WholeDatabase = true }, "id > 1",
			[]string{"objects.tables[0].filter", "FOR ALL TABLES", "unfiltered"}},
		{"schema selected whole", func(s *taskv1.TaskSpec) {
			s.Objects.Schemas = []*taskv1.SchemaSelection{{Schema: "public"}}
		}, "id > 1", []string{"objects.tables[0].filter", `schema "public"`, "objects.schemas"}},
	} {
		s := validSpec()
		if c.edit != nil {
			c.edit(s)
		}
		s.Objects.Tables[0].Filter = c.filter
		_, err := Normalize(s)
		if err == nil {
			t.Errorf("%s: accepted", c.name)
			continue
		}
		for _, w := range c.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: error %q does not name %q", c.name, err, w)
			}
		}
	}
	// The limit itself is allowed; a schema selected whole that is not the
	// filtered table's is no obstacle.
	s := validSpec()
	s.Objects.Tables[0].Filter = "id > " + strings.Repeat("1", 4096-5)
	s.Objects.Schemas = []*taskv1.SchemaSelection{{Schema: "sales"}}
	if _, err := Normalize(s); err != nil {
		t.Errorf("a 4096-byte filter beside another schema: %v", err)
	}
}
