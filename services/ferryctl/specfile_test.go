package ferryctl

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"

	taskv1 "github.com/ferry-cdc/ferry/gen/ferry/task/v1"
)

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// wantSpec is what specYAML and specJSON both say.
func wantSpec() *taskv1.TaskSpec {
	return &taskv1.TaskSpec{
		Name: "orders to kafka",
		Source: &taskv1.SourceEndpoint{
			Host: "db.internal", Port: 5432, Database: "2024", User: "ferry",
			Password: &taskv1.SecretRef{Source: &taskv1.SecretRef_File{File: "/run/secrets/pg"}},
			SslMode:  taskv1.SslMode_SSL_MODE_REQUIRE,
		},
		Destination: &taskv1.KafkaEndpoint{BootstrapServers: "k1:9092,k2:9092", Topic: "orders"},
		Objects: &taskv1.ObjectSelection{
			Tables: []*taskv1.TableSelection{
				{Schema: "public", Table: "orders", Partitions: 16, Columns: []*taskv1.ColumnMapping{{Name: "ssn", Drop: true}},
					Operations: []taskv1.OperationSet{taskv1.OperationSet_OPERATION_SET_INSERT, taskv1.OperationSet_OPERATION_SET_UPDATE}},
				{Schema: "public", Table: "items", Partitions: 16},
			},
			NameCase: taskv1.NameCase_NAME_CASE_LOWER,
		},
		SyncTypes: &taskv1.SyncTypes{Schema: true, Full: true},
		Kafka: &taskv1.KafkaOptions{
			Compression: taskv1.Compression_COMPRESSION_ZSTD, ConflictMode: taskv1.ConflictMode_CONFLICT_MODE_IGNORE,
			ExactlyOnce: true,
		},
		Advanced:             &taskv1.AdvancedOptions{FullThrottle: &taskv1.FullSyncThrottle{RowsPerSecond: 10000}},
		AcknowledgedWarnings: []string{"primary_key"},
	}
}

// specYAML mixes proto and JSON field names, an anchor, a hex number and a
// bare number for a string field, as people write YAML.
const specYAML = `# a task
name: orders to kafka
source:
  host: db.internal
  port: 0x1538
  database: 2024
  user: ferry
  password: {file: /run/secrets/pg}
  sslMode: SSL_MODE_REQUIRE
destination:
  bootstrap_servers: "k1:9092,k2:9092"
  topic: orders
objects:
  tables:
    - schema: public
      table: orders
      partitions: &parts 16
      columns: [{name: ssn, drop: true}]
      operations: [OPERATION_SET_INSERT, OPERATION_SET_UPDATE]
    - {schema: public, table: items, partitions: *parts}
  name_case: NAME_CASE_LOWER
sync_types: {schema: true, full: true}
kafka:
  compression: COMPRESSION_ZSTD
  conflict_mode: CONFLICT_MODE_IGNORE
  exactlyOnce: true
advanced:
  full_throttle: {rows_per_second: 10_000}
acknowledged_warnings: [primary_key]
`

const specJSON = `{
  "name": "orders to kafka",
  "source": {"host": "db.internal", "port": 5432, "database": "2024", "user": "ferry",
             "password": {"file": "/run/secrets/pg"}, "ssl_mode": "SSL_MODE_REQUIRE"},
  "destination": {"bootstrapServers": "k1:9092,k2:9092", "topic": "orders"},
  "objects": {"tables": [
      {"schema": "public", "table": "orders", "partitions": 16, "columns": [{"name": "ssn", "drop": true}],
       "operations": ["OPERATION_SET_INSERT", "OPERATION_SET_UPDATE"]},
      {"schema": "public", "table": "items", "partitions": 16}],
    "name_case": "NAME_CASE_LOWER"},
  "sync_types": {"schema": true, "full": true},
  "kafka": {"compression": "COMPRESSION_ZSTD", "conflict_mode": "CONFLICT_MODE_IGNORE", "exactly_once": true},
  "advanced": {"full_throttle": {"rows_per_second": 10000}},
  "acknowledged_warnings": ["primary_key"]
}`

func TestLoadMessageYAMLAndJSONGiveTheSameSpec(t *testing.T) {
	for _, f := range []struct{ name, content string }{
		{"spec.yaml", specYAML}, {"spec.yml", specYAML}, {"spec.json", specJSON}, {"spec.JSON", specJSON},
	} {
		got := &taskv1.TaskSpec{}
		if err := LoadMessage(writeFile(t, f.name, f.content), got); err != nil {
			t.Fatalf("%s: %v", f.name, err)
		}
		if want := wantSpec(); !proto.Equal(want, got) {
			t.Errorf("%s: got\n%s\nwant\n%s", f.name, prototext.Format(got), prototext.Format(want))
		}
	}
}

func TestLoadMessageObjectSelection(t *testing.T) {
	p := writeFile(t, "objects.yaml", "schemas:\n  - schema: sales\n    operations: [OPERATION_SET_DELETE]\ntables:\n  - {schema: public, table: t, filter: \"id > 10\"}\n")
	got := &taskv1.ObjectSelection{}
	if err := LoadMessage(p, got); err != nil {
		t.Fatal(err)
	}
	want := &taskv1.ObjectSelection{
		Schemas: []*taskv1.SchemaSelection{{Schema: "sales", Operations: []taskv1.OperationSet{taskv1.OperationSet_OPERATION_SET_DELETE}}},
		Tables:  []*taskv1.TableSelection{{Schema: "public", Table: "t", Filter: "id > 10"}},
	}
	if !proto.Equal(want, got) {
		t.Fatalf("got %v, want %v", got, want)
	}
}

func TestLoadMessageErrorsNameFileLineAndField(t *testing.T) {
	for _, tc := range []struct {
		name, file, content string
		want                []string
	}{
		{"typo in YAML", "spec.yaml", "name: x\ndestination:\n  topic: t\n  bootstrap_server: k:9092\n",
			[]string{"spec.yaml: line 4: destination: unknown field \"bootstrap_server\" in ferry.task.v1.KafkaEndpoint", `did you mean "bootstrap_servers"?`}},
		{"unrelated unknown field lists the fields", "spec.yaml", "sync_types: {schema: true, everything: true}\n",
			[]string{"line 1: sync_types: unknown field \"everything\"", "its fields are schema, full"}},
		{"typo in JSON", "spec.json", "{\"name\": \"x\",\n \"kafka\": {\"compress\": \"COMPRESSION_LZ4\"}}",
			[]string{"spec.json: line 2:", `unknown field "compress"`}},
		{"bad enum", "spec.yaml", "kafka:\n  compression: LZ5\n",
			[]string{"line 2: kafka.compression: unknown value \"LZ5\"", "COMPRESSION_LZ4, COMPRESSION_GZIP, COMPRESSION_SNAPPY, COMPRESSION_ZSTD"}},
		{"list expected", "spec.yaml", "objects:\n  tables: {schema: public}\n", []string{"line 2: objects.tables: want a list, got a mapping"}},
		{"mapping expected", "spec.yaml", "source: db:5432\n", []string{"line 1: source: want a mapping of SourceEndpoint fields, got \"db:5432\""}},
		{"not a number", "spec.yaml", "source:\n  port: abc\n", []string{"line 2: source.port: want a uint32, got \"abc\""}},
		{"out of range", "spec.yaml", "source:\n  port: 4294967296\n", []string{"line 2: source.port: want a uint32, got \"4294967296\" (out of range)"}},
		{"negative unsigned", "spec.yaml", "source:\n  port: -1\n", []string{"source.port", "out of range"}},
		{"yes is not a bool", "spec.yaml", "sync_types:\n  full: yes\n", []string{"line 2: sync_types.full: want true or false, got \"yes\""}},
		{"field twice", "spec.yaml", "destination:\n  topic: a\n  topic: b\n", []string{"line 3: destination: field topic is given twice"}},
		{"proto and JSON name twice", "spec.yaml", "sync_types: {full: true}\nsyncTypes: {schema: true}\n", []string{"line 2: field sync_types is given twice"}},
		{"YAML syntax", "spec.yaml", "name: x\n  source: [\n", []string{"spec.yaml: line 2: mapping values are not allowed"}},
		{"two documents", "spec.yaml", "name: a\n---\nname: b\n", []string{"a second YAML document"}},
		{"empty", "spec.yaml", "# nothing yet\n", []string{"spec.yaml: the file is empty"}},
		{"unknown top-level field", "spec.yaml", "base: &b {topic: t}\n", []string{"line 1: unknown field \"base\" in ferry.task.v1.TaskSpec"}},
		{"JSON syntax", "spec.json", "{\"name\": }", []string{"spec.json: line 1:10: syntax error: unexpected token }"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := writeFile(t, tc.file, tc.content)
			err := LoadMessage(p, &taskv1.TaskSpec{})
			if err == nil {
				t.Fatalf("%q loaded, want an error", tc.content)
			}
			if !strings.HasPrefix(err.Error(), p+": ") {
				t.Errorf("error %q does not start with the file's name", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			if strings.Contains(err.Error(), "proto:") {
				t.Errorf("error %q keeps protobuf's prefix", err)
			}
		})
	}
}

func TestLoadMessageMissingFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "nope.yaml")
	err := LoadMessage(p, &taskv1.TaskSpec{})
	if err == nil || err.Error() != "reading "+p+": no such file or directory" {
		t.Fatalf("got %v, want the file named once with the reason", err)
	}
}

func TestLoadMessageRefusesMergeKeys(t *testing.T) {
	p := writeFile(t, "objects.yaml", "tables:\n  - &t {schema: public, table: a}\n  - <<: *t\n    table: b\n")
	err := LoadMessage(p, &taskv1.ObjectSelection{})
	if err == nil || !strings.Contains(err.Error(), "line 3: tables[1]: merge keys (<<) are not supported") {
		t.Fatalf("got %v, want merge keys refused with their line", err)
	}
}
