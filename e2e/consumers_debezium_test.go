package e2e

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"

	taskv1 "github.com/ferry-cdc/ferry/gen/ferry/task/v1"
)

// dbzColumns are the types table's columns as a Flink table over
// Debezium JSON declares them: Debezium's io.debezium.time.Date is days
// (INT), MicroTimestamp microseconds (BIGINT) and Time milliseconds (INT),
// which Flink's DATE, TIMESTAMP and TIME do not read; bytea is base64,
// which BYTES decodes; an array is read as its JSON text.
var dbzColumns = []flinkColumn{
	{"id", "BIGINT"}, {"c_int", "INT"}, {"c_small", "SMALLINT"}, {"c_bool", "BOOLEAN"},
	{"c_num", "DECIMAL(12, 2)"}, {"c_float", "DOUBLE"}, {"c_real", "FLOAT"}, {"c_text", "STRING"},
	{"c_varchar", "VARCHAR(64)"}, {"c_date", "INT"}, {"c_ts", "BIGINT"}, {"c_tstz", "STRING"},
	{"c_time", "INT"}, {"c_bytea", "BYTES"}, {"c_jsonb", "STRING"}, {"c_uuid", "STRING"},
	{"c_arr", "STRING"}, {"c_enum", "STRING"}, {"c_range", "STRING"},
}

// dbzRow2 is the types table's row 2 (typesRow2) as Flink reads its
// Debezium JSON, the temporal values derived from the SQL literals.
func dbzRow2() []*string {
	date := time.Date(2024, 2, 29, 0, 0, 0, 0, time.UTC).Unix() / 86400
	ts := time.Date(2026, 1, 2, 3, 4, 5, 123456000, time.UTC).UnixMicro()
	clock := (12*3600 + 34*60 + 56) * 1000
	out := typesAfter(nil)
	for col, v := range map[string]string{
		"c_bool": "true", "c_date": fmt.Sprint(date), "c_ts": fmt.Sprint(ts), "c_tstz": "2026-12-06T19:23:42.879986Z",
		"c_time": fmt.Sprint(clock), "c_bytea": "00ff10", "c_arr": "[1,null,3]",
	} {
		out = withValue(out, col, v)
	}
	return out
}

// dbzInput is one message for DebeziumCheck.
type dbzInput struct {
	id, options string
	cols        []flinkColumn
	value       []byte // nil: a tombstone
}

// dbzRow is a row Flink produced, with the source metadata it read:
// database, schema, table and the source timestamp.
type dbzRow struct {
	Kind   string    `json:"kind"`
	Fields []*string `json:"fields"`
	Meta   []*string `json:"meta"`
}

type dbzVerdict struct {
	ID    string   `json:"id"`
	OK    bool     `json:"ok"`
	Error string   `json:"error"`
	Rows  []dbzRow `json:"rows"`
}

// dbzWant is what Flink must make of one message: rows, or an error
// containing errorPart.
type dbzWant struct {
	what      string
	table     string
	rows      []flinkRow
	errorPart string
}

// replicaIdentityError is the part of Flink's error for an UPDATE without
// a before-image, which Debezium (and so Ferry) writes as null unless the
// table has REPLICA IDENTITY FULL or the identity columns changed.
const replicaIdentityError = "please check the Postgres table has been set REPLICA IDENTITY to FULL level"

// TestFlinkReadsFerryDebeziumJSON runs two tasks over the consumer tables
// in Debezium JSON, one without and one with schemas, with full sync and
// the DDL topic apart as the README says, writes the changes of
// TestFlinkReadsFerryCanalJSON (snapshot rows, INSERTs, UPDATEs under
// DEFAULT, FULL and USING INDEX identity, an unchanged TOAST value over
// 2 kB, DELETEs, an ALTER and a TRUNCATE); then Flink's debezium-json
// format, at 1.20.x and 2.x, reads every message of the data topic,
// tombstones included, with schema-include as the task writes it.
func TestFlinkReadsFerryDebeziumJSON(t *testing.T) {
	f := startFerry(t)
	conn := pgConnect(t)
	for _, schemas := range []bool{false, true} {
		t.Run(fmt.Sprintf("schemas=%v", schemas), func(t *testing.T) {
			tabs := createConsumerTables(t, conn)
			exec1(t, conn, fmt.Sprintf(`INSERT INTO public.%s (id) VALUES (1)`, tabs.types))
			topic := tabs.types
			taskID := strings.ReplaceAll(tabs.types, "_", "-")
			f.createTaskFromSpec(conn, taskID, &taskv1.TaskSpec{
				Name:        "e2e " + tabs.types,
				Source:      sourceEndpoint(),
				Destination: &taskv1.KafkaEndpoint{BootstrapServers: kafkaBootstrap(), Topic: topic},
				Objects: &taskv1.ObjectSelection{Tables: []*taskv1.TableSelection{
					{Schema: "public", Table: tabs.types}, {Schema: "public", Table: tabs.full}, {Schema: "public", Table: tabs.hostile},
					{Schema: "public", Table: tabs.toast}, {Schema: "public", Table: tabs.toastFull}, {Schema: "public", Table: tabs.index},
					{Schema: "public", Table: tabs.all},
				}},
				Kafka: &taskv1.KafkaOptions{ConflictMode: taskv1.ConflictMode_CONFLICT_MODE_IGNORE, DdlTopic: topic + "_ddl",
					Format: taskv1.DataFormat_DATA_FORMAT_DEBEZIUM_JSON, DebeziumSchemas: schemas},
				SyncTypes: &taskv1.SyncTypes{Schema: true, Full: true},
				Advanced:  &taskv1.AdvancedOptions{ConnectionRetryMinutes: 10, OtherRetryMinutes: 2},
			})
			consumer := newConsumer(t, topic)
			writeConsumerChanges(t, conn, tabs)
			msgs := readDebeziumUntilSentinel(t, consumer, tabs.types, schemas)
			checkDebeziumDDLTopic(t, newConsumer(t, topic+"_ddl"), tabs, schemas)

			inputs, wants := debeziumExpectations(t, tabs, msgs, schemas)
			for version, verdicts := range runDebeziumCheck(t, inputs) {
				for _, in := range inputs {
					checkDebeziumVerdict(t, version, wants[in.id], verdicts[in.id])
				}
			}
			f.stopAndRelease(conn, taskID)
		})
	}
}

// dbzPayload is a Debezium JSON value as far as these tests read it.
type dbzPayload struct {
	Before map[string]json.RawMessage `json:"before"`
	After  map[string]json.RawMessage `json:"after"`
	Op     string                     `json:"op"`
	Source struct {
		Connector string `json:"connector"`
		Snapshot  string `json:"snapshot"`
		Schema    string `json:"schema"`
		Table     string `json:"table"`
		LSN       int64  `json:"lsn"`
	} `json:"source"`
}

// decodeDebezium reads a value, unwrapping the payload with schemas (and
// checking the schema is there).
func decodeDebezium(t *testing.T, b []byte, schemas bool) dbzPayload {
	t.Helper()
	if schemas {
		var w struct {
			Schema  map[string]any  `json:"schema"`
			Payload json.RawMessage `json:"payload"`
		}
		if err := json.Unmarshal(b, &w); err != nil || w.Schema["type"] != "struct" {
			t.Fatalf("Debezium JSON with schemas %s: %v", b, err)
		}
		b = w.Payload
	}
	var p dbzPayload
	if err := json.Unmarshal(b, &p); err != nil {
		t.Fatalf("Debezium JSON %s: %v", b, err)
	}
	if p.Source.Connector != "postgresql" || p.Source.Schema != "public" {
		t.Fatalf("Debezium JSON source %+v", p.Source)
	}
	return p
}

// readDebeziumUntilSentinel reads the topic (one partition) until the
// types table's row 99 arrived.
func readDebeziumUntilSentinel(t *testing.T, c *kafka.Consumer, table string, schemas bool) []*kafka.Message {
	t.Helper()
	var out []*kafka.Message
	eventually(t, 90*time.Second, "the sentinel row 99 of "+table, func() (bool, string) {
		msg, err := c.ReadMessage(200 * time.Millisecond)
		if err != nil {
			return false, fmt.Sprintf("%d messages so far (%v)", len(out), err)
		}
		out = append(out, msg)
		if msg.Value == nil {
			return false, fmt.Sprintf("%d messages so far", len(out))
		}
		p := decodeDebezium(t, msg.Value, schemas)
		done := p.Source.Table == table && p.Op == "c" && string(p.After["id"]) == "99"
		return done, fmt.Sprintf("%d messages so far", len(out))
	})
	return out
}

// checkDebeziumDDLTopic: the ALTER writes nothing (Debezium's PostgreSQL
// connector has no DDL events) and the TRUNCATE is a "t" event of the
// truncated table on the DDL topic, away from Flink, which rejects "t".
func checkDebeziumDDLTopic(t *testing.T, c *kafka.Consumer, tabs consumerTables, schemas bool) {
	t.Helper()
	var seen []string
	eventually(t, 60*time.Second, "the TRUNCATE on the DDL topic", func() (bool, string) {
		msg, err := c.ReadMessage(200 * time.Millisecond)
		if err != nil {
			return false, fmt.Sprintf("DDL topic so far %v (%v)", seen, err)
		}
		p := decodeDebezium(t, msg.Value, schemas)
		seen = append(seen, p.Op+" "+p.Source.Table)
		return p.Op == "t" && p.Source.Table == tabs.full, fmt.Sprintf("DDL topic so far %v", seen)
	})
	if len(seen) != 1 {
		t.Errorf("DDL topic holds %v, want only the TRUNCATE of %s", seen, tabs.full)
	}
}

// debeziumExpectations turns the topic's messages into the checker's
// inputs and what Flink must make of each.
func debeziumExpectations(t *testing.T, tabs consumerTables, msgs []*kafka.Message, schemas bool) ([]dbzInput, map[string]dbzWant) {
	t.Helper()
	allCols := allTextColumns()
	cols := map[string][]flinkColumn{tabs.types: dbzColumns, tabs.full: fullColumns, tabs.hostile: hostileColumns,
		tabs.toast: toastColumns, tabs.toastFull: toastColumns, tabs.index: indexColumns, tabs.all: allCols}
	opts := "plain,SQL"
	if schemas {
		opts = "schema-include,SQL"
	}
	var inputs []dbzInput
	wants := map[string]dbzWant{}
	var prevCols []flinkColumn
	prevDelete := false
	for i, msg := range msgs {
		id := fmt.Sprint(i)
		if msg.Value == nil {
			if !prevDelete || !bytes.Equal(msg.Key, msgs[i-1].Key) {
				t.Errorf("message %d: a tombstone not right after a DELETE with its key %s", i, msg.Key)
			}
			inputs = append(inputs, dbzInput{id: id, options: opts, cols: prevCols})
			wants[id] = dbzWant{what: fmt.Sprintf("message %d (tombstone)", i)}
			prevDelete = false
			continue
		}
		if prevDelete {
			t.Errorf("message %d: the DELETE before it has no tombstone", i)
		}
		p := decodeDebezium(t, msg.Value, schemas)
		checkDebeziumToast(t, tabs, p, header(msg, "ferry.unchanged-toast"))
		c, ok := cols[p.Source.Table]
		if !ok {
			t.Fatalf("message %d is for table %q, not one of the task's", i, p.Source.Table)
		}
		w := debeziumWant(t, tabs, p)
		w.what = fmt.Sprintf("message %d (%s on %s)", i, p.Op, p.Source.Table)
		w.table = p.Source.Table
		inputs = append(inputs, dbzInput{id: id, options: opts, cols: c, value: msg.Value})
		wants[id] = w
		prevCols, prevDelete = c, p.Op == "d"
		if p.Source.Table == tabs.types && p.Op == "c" && string(p.After["id"]) == "2" {
			ltz := strings.Replace(opts, "SQL", "ISO-8601", 1)
			inputs = append(inputs, dbzInput{id: id + ltzSuffix, options: ltz, cols: withDbzLTZ(dbzColumns), value: msg.Value})
			wants[id+ltzSuffix] = dbzWant{what: w.what + " with c_tstz TIMESTAMP_LTZ(6), ISO-8601", table: w.table, rows: w.rows}
		}
	}
	return inputs, wants
}

func withDbzLTZ(cols []flinkColumn) []flinkColumn {
	out := append([]flinkColumn(nil), cols...)
	for i := range out {
		if out[i].name == tstzLTZColumn {
			out[i].typ = "TIMESTAMP_LTZ(6)"
		}
	}
	return out
}

// debeziumWant is what the change implies for one message: as for Canal
// JSON, except that an UPDATE without a before-image is refused by Flink
// (Debezium writes before as null there too), and a DELETE's non-key
// columns are NULL.
func debeziumWant(t *testing.T, tabs consumerTables, p dbzPayload) dbzWant {
	t.Helper()
	key := string(p.After["id"])
	if p.Op == "d" {
		key = string(p.Before["id"])
	}
	if p.Source.Table == tabs.hostile {
		key = string(p.After["Id"])
	}
	if (p.Op == "r") != (p.Source.Snapshot == "true") {
		t.Errorf("%s on %s: source.snapshot %q", p.Op, p.Source.Table, p.Source.Snapshot)
	}
	switch tab := p.Source.Table; {
	case p.Op == "u" && p.Before == nil:
		return dbzWant{errorPart: replicaIdentityError}
	case tab == tabs.types && p.Op == "c" && key == "2":
		return dbzWant{rows: []flinkRow{row("INSERT", dbzRow2())}}
	case tab == tabs.types && (p.Op == "c" || p.Op == "r"):
		return dbzWant{rows: []flinkRow{row("INSERT", keyOnly(len(dbzColumns), key, ""))}}
	case tab == tabs.types && p.Op == "d":
		return dbzWant{rows: []flinkRow{row("DELETE", keyOnly(len(dbzColumns), key, ""))}}
	case tab == tabs.full:
		return dbzWant{rows: fullWant(canalType(p.Op)).rows}
	case tab == tabs.toast && p.Op == "c":
		return dbzWant{rows: toastWant("INSERT", false).rows}
	case tab == tabs.toastFull:
		return dbzWant{rows: toastWant(canalType(p.Op), true).rows}
	case tab == tabs.index:
		return dbzWant{rows: dbzIndexWant(p.Op)}
	case tab == tabs.all && (p.Op == "c" || p.Op == "r"):
		// Every column as STRING: Flink reads each value, whatever its
		// JSON type; the values themselves are the golden file's concern
		// (services/delivery TestAllTypesRoundTrip).
		return dbzWant{rows: []flinkRow{row("INSERT", keyOnly(len(allTextColumns()), key, anyValue))}}
	case tab == tabs.hostile && p.Op == "c":
		return dbzWant{rows: []flinkRow{row("INSERT", []*string{ptr("1"), ptr(`x "y"`), ptr("z"), ptr("-5")})}}
	}
	t.Fatalf("unexpected %s on %s", p.Op, p.Source.Table)
	return dbzWant{}
}

func canalType(op string) string {
	return map[string]string{"c": "INSERT", "r": "INSERT", "u": "UPDATE", "d": "DELETE"}[op]
}

// dbzIndexWant: under REPLICA IDENTITY USING INDEX the before-image holds
// the identity columns when they changed (the UPDATE of code), and the
// DELETE's before-image holds them.
func dbzIndexWant(op string) []flinkRow {
	switch op {
	case "c":
		return []flinkRow{row("INSERT", []*string{ptr("1"), ptr("a"), ptr("x")})}
	case "u":
		return []flinkRow{row("UPDATE_BEFORE", []*string{ptr("1"), ptr("a"), nil}), row("UPDATE_AFTER", []*string{ptr("1"), ptr("b"), ptr("y")})}
	}
	return []flinkRow{row("DELETE", []*string{ptr("1"), ptr("b"), nil})}
}

// checkDebeziumToast: only the DEFAULT-identity toast table's UPDATE has a
// value the source did not send; it is Debezium's placeholder, and the
// header names it.
func checkDebeziumToast(t *testing.T, tabs consumerTables, p dbzPayload, hdr string) {
	t.Helper()
	marked := p.Source.Table == tabs.toast && p.Op == "u"
	want := ""
	if marked {
		want = `["big"]`
		if got := string(p.After["big"]); got != `"__debezium_unavailable_value"` {
			t.Errorf("UPDATE on %s: after.big = %.40s, want Debezium's placeholder", tabs.toast, got)
		}
	}
	if hdr != want {
		t.Errorf("%s on %s: ferry.unchanged-toast header %q, want %q", p.Op, p.Source.Table, hdr, want)
	}
}

// checkDebeziumVerdict fails unless Flink produced the wanted rows with
// the message's table in their metadata, or the wanted error.
func checkDebeziumVerdict(t *testing.T, version string, w dbzWant, v dbzVerdict) {
	t.Helper()
	if w.errorPart != "" {
		if v.OK || !strings.Contains(v.Error, w.errorPart) {
			t.Errorf("Flink %s read %s: ok %v, error %q; want an error with %q", version, w.what, v.OK, v.Error, w.errorPart)
		}
		return
	}
	if !v.OK {
		t.Errorf("Flink %s rejected %s: %s", version, w.what, v.Error)
		return
	}
	got := make([]flinkRow, len(v.Rows))
	for i, r := range v.Rows {
		got[i] = flinkRow{Kind: r.Kind, Fields: r.Fields}
		if len(r.Meta) != 4 || r.Meta[0] == nil || r.Meta[1] == nil || *r.Meta[1] != "public" || r.Meta[2] == nil || *r.Meta[2] != w.table || r.Meta[3] == nil {
			t.Errorf("Flink %s read %s with source metadata %v, want the database, public, %s and a time", version, w.what, showRows([]flinkRow{{Fields: r.Meta}}), w.table)
		}
	}
	if !rowsMatch(w.rows, got) {
		t.Errorf("Flink %s read %s as %s, want %s", version, w.what, showRows(got), showRows(w.rows))
	}
}

// runDebeziumCheck runs DebeziumCheck once per Flink version over every
// input and returns each version's verdicts by input id.
func runDebeziumCheck(t *testing.T, inputs []dbzInput) map[string]map[string]dbzVerdict {
	t.Helper()
	java, err := exec.LookPath("java")
	if err != nil {
		t.Fatalf("the consumer harness needs a JVM (Java 17): %v", err)
	}
	in := filepath.Join(t.TempDir(), "debezium.tsv")
	var buf bytes.Buffer
	for _, m := range inputs {
		fmt.Fprintf(&buf, "%s\t%s\t%s\t%s\n", m.id, flinkRowType(m.cols), m.options, base64.StdEncoding.EncodeToString(m.value))
	}
	if err := os.WriteFile(in, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	src := filepath.Join(repoRoot(), "e2e/consumers/DebeziumCheck.java")
	all := map[string]map[string]dbzVerdict{}
	for version, libs := range flinkLibs(t) {
		start := time.Now()
		cmd := exec.Command(java, "-XX:TieredStopAtLevel=1", "-Xshare:auto", "-cp", libs+"/*", src, in)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("DebeziumCheck on Flink %s: %v\n%s", version, err, stderr.Bytes())
		}
		got := map[string]dbzVerdict{}
		sc := bufio.NewScanner(bytes.NewReader(out))
		sc.Buffer(make([]byte, 0, 1<<20), 64<<20)
		for sc.Scan() {
			var v dbzVerdict
			if err := json.Unmarshal(sc.Bytes(), &v); err != nil {
				t.Fatalf("Flink %s: verdict line %q: %v", version, sc.Bytes(), err)
			}
			got[v.ID] = v
		}
		if len(got) != len(inputs) {
			t.Fatalf("Flink %s: %d verdicts for %d messages", version, len(got), len(inputs))
		}
		all[version] = got
		t.Logf("Flink %s read %d Debezium JSON messages in one JVM run of %s", version, len(inputs), time.Since(start).Round(10*time.Millisecond))
	}
	return all
}
