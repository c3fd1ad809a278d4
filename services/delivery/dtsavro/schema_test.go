package dtsavro_test

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/ferry-cdc/ferry/services/delivery/dtsavro"
)

// The expectations below are formats.md's DTS Avro section, transcribed. The
// test reads record.avsc as plain JSON (not through an Avro library, which
// might normalize what it reads), so that any drift from the spec fails.

const ns = "com.alibaba.dts.formats.avro"

const imageUnion = "[null,Integer,Character,Decimal,Float,Timestamp,DateTime,TimestampWithTimeZone,BinaryGeometry,TextGeometry,BinaryObject,TextObject,EmptyObject]"

// specRecordFields are Record's fields: name, type, default ("-" for none).
var specRecordFields = [][3]string{
	{"version", "int", "-"},
	{"id", "long", "-"},
	{"sourceTimestamp", "long", "-"},
	{"sourcePosition", "string", "-"},
	{"safeSourcePosition", "string", `""`},
	{"sourceTxid", "string", `""`},
	{"source", "Source", "-"},
	{"operation", "Operation", "-"},
	{"objectName", "[null,string]", "null"},
	{"processTimestamps", "[null,array<long>]", "null"},
	{"tags", "map<string>", "{}"},
	{"fields", "[null,string,array<Field>]", "null"},
	{"beforeImages", "[null,string,array<" + imageUnion + ">]", "null"},
	{"afterImages", "[null,string,array<" + imageUnion + ">]", "null"},
	{"bornTimestamp", "long", "0"},
}

// specRecords are the named record types and their fields (name: type).
var specRecords = map[string][]string{
	"Source":                {"sourceType: SourceType", "version: string"},
	"Field":                 {"name: string", "dataTypeNumber: int"},
	"Integer":               {"precision: int", "value: string"},
	"Character":             {"charset: string", "value: bytes"},
	"Float":                 {"value: double", "precision: int", "scale: int"},
	"Decimal":               {"value: string", "precision: int", "scale: int"},
	"Timestamp":             {"timestamp: long", "millis: int"},
	"DateTime":              {"year: [null,int]=null", "month: [null,int]=null", "day: [null,int]=null", "hour: [null,int]=null", "minute: [null,int]=null", "second: [null,int]=null", "millis: [null,int]=null"},
	"TimestampWithTimeZone": {"value: DateTime", "timezone: string"},
	"BinaryGeometry":        {"type: string", "value: bytes"},
	"TextGeometry":          {"type: string", "value: string"},
	"BinaryObject":          {"type: string", "value: bytes"},
	"TextObject":            {"type: string", "value: string"},
}

var specEnums = map[string][]string{
	"SourceType":  {"MySQL", "Oracle", "SQLServer", "PostgreSQL", "MongoDB", "Redis", "DB2", "PPAS", "DRDS", "HBASE", "HDFS", "FILE", "OTHER"},
	"Operation":   {"INSERT", "UPDATE", "DELETE", "DDL", "BEGIN", "COMMIT", "ROLLBACK", "ABORT", "HEARTBEAT", "CHECKPOINT", "COMMAND", "FILL", "FINISH", "CONTROL", "RDB", "NOOP", "INIT"},
	"EmptyObject": {"NULL", "NONE"},
}

// specDefinitionOrder is the order in which named types are defined when
// each is defined inline at its first use. formats.md lists the helper types
// with Float before Decimal, but the image union (whose order is binding)
// uses Decimal before Float, so inline definition cannot follow the list
// there; definition order does not affect the binary encoding.
var specDefinitionOrder = []string{"Record", "Source", "SourceType", "Operation", "Field", "Integer", "Character", "Decimal", "Float",
	"Timestamp", "DateTime", "TimestampWithTimeZone", "BinaryGeometry", "TextGeometry", "BinaryObject", "TextObject", "EmptyObject"}

// walker renders schema types compactly and records named definitions.
type walker struct {
	t       *testing.T
	order   []string
	records map[string][]string
	enums   map[string][]string
}

func (w *walker) typ(v any, enclosingNS string) string {
	switch s := v.(type) {
	case string:
		return w.ref(s)
	case []any:
		parts := make([]string, len(s))
		for i, m := range s {
			parts[i] = w.typ(m, enclosingNS)
		}
		return "[" + strings.Join(parts, ",") + "]"
	case map[string]any:
		return w.complex(s, enclosingNS)
	}
	w.t.Fatalf("unexpected schema node %T %v", v, v)
	return ""
}

// ref renders a primitive or a reference to a named type by short name; a
// reference must use the full name in the DTS namespace.
func (w *walker) ref(s string) string {
	switch s {
	case "null", "boolean", "int", "long", "float", "double", "bytes", "string":
		return s
	}
	short, ok := strings.CutPrefix(s, ns+".")
	if !ok {
		w.t.Errorf("reference %q is not a full name in %s", s, ns)
	}
	return short
}

func (w *walker) complex(s map[string]any, enclosingNS string) string {
	switch s["type"] {
	case "array":
		return "array<" + w.typ(s["items"], enclosingNS) + ">"
	case "map":
		return "map<" + w.typ(s["values"], enclosingNS) + ">"
	case "record", "enum":
		name, _ := s["name"].(string)
		space, _ := s["namespace"].(string)
		if space == "" {
			space = enclosingNS
		}
		if space != ns || strings.Contains(name, ".") {
			w.t.Errorf("type %q is in namespace %q, want %s", name, space, ns)
		}
		w.order = append(w.order, name)
		if s["type"] == "enum" {
			for _, sym := range s["symbols"].([]any) {
				w.enums[name] = append(w.enums[name], sym.(string))
			}
			return name
		}
		var fields []string
		for _, f := range s["fields"].([]any) {
			fm := f.(map[string]any)
			d := fm["name"].(string) + ": " + w.typ(fm["type"], space)
			if def, ok := fm["default"]; ok {
				b, _ := json.Marshal(def)
				d += "=" + string(b)
			}
			fields = append(fields, d)
		}
		w.records[name] = fields
		return name
	}
	w.t.Fatalf("unexpected complex type %v", s)
	return ""
}

func TestSchemaMatchesSpec(t *testing.T) {
	var root map[string]any
	if err := json.Unmarshal([]byte(dtsavro.SchemaJSON), &root); err != nil {
		t.Fatal(err)
	}
	if root["name"] != "Record" || root["namespace"] != ns || dtsavro.FullName != ns+".Record" {
		t.Fatalf("schema is %v.%v, want %s", root["namespace"], root["name"], dtsavro.FullName)
	}
	w := &walker{t: t, records: map[string][]string{}, enums: map[string][]string{}}
	w.typ(root, "")

	var want []string
	for _, f := range specRecordFields {
		d := f[0] + ": " + f[1]
		if f[2] != "-" {
			d += "=" + f[2]
		}
		want = append(want, d)
	}
	if got := w.records["Record"]; !reflect.DeepEqual(got, want) {
		t.Errorf("Record fields:\n got %q\nwant %q", got, want)
	}
	for name, fields := range specRecords {
		if got := w.records[name]; !reflect.DeepEqual(got, fields) {
			t.Errorf("%s fields: got %q, want %q", name, got, fields)
		}
	}
	if len(w.records) != len(specRecords)+1 {
		t.Errorf("schema defines records %v, want exactly Record and %d helpers", w.order, len(specRecords))
	}
	if !reflect.DeepEqual(w.enums, specEnums) {
		t.Errorf("enums: got %q, want %q", w.enums, specEnums)
	}
	if !reflect.DeepEqual(w.order, specDefinitionOrder) {
		t.Errorf("definition order: got %v, want %v", w.order, specDefinitionOrder)
	}
	if dtsavro.Schema().(interface{ FullName() string }).FullName() != dtsavro.FullName {
		t.Errorf("parsed schema's full name is not %s", dtsavro.FullName)
	}
}
