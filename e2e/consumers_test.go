package e2e

import (
	"context"
	"crypto/md5"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"github.com/jackc/pgx/v5"

	taskv1 "github.com/ferry-cdc/ferry/gen/ferry/task/v1"
)

// anyValue in a wanted row leaves that field unchecked: the value the
// change does not determine (an old value under REPLICA IDENTITY DEFAULT).
const anyValue = "\x00any"

// canalWant is what Flink must make of one message.
type canalWant struct {
	what string
	rows []flinkRow
}

// consumerTables are the tables of TestFlinkReadsFerryCanalJSON: one with
// a column of each common type, one with REPLICA IDENTITY FULL and one
// whose names need quoting everywhere.
type consumerTables struct {
	types, full, hostile, enum, toast, toastFull, index, all string
	// allText is the all-types table's rows as PostgreSQL prints them.
	allText map[string][]*string
}

// typesColumns are the types table's columns as Flink reads them: typed
// where Flink has the type, STRING where it has none (PostgreSQL's text
// form is then the value).
var typesColumns = []flinkColumn{
	{"id", "BIGINT"}, {"c_int", "INT"}, {"c_small", "SMALLINT"}, {"c_bool", "BOOLEAN"},
	{"c_num", "DECIMAL(12, 2)"}, {"c_float", "DOUBLE"}, {"c_real", "FLOAT"}, {"c_text", "STRING"},
	{"c_varchar", "VARCHAR(64)"}, {"c_date", "DATE"}, {"c_ts", "TIMESTAMP(6)"}, {"c_tstz", "STRING"},
	{"c_time", "TIME(0)"}, {"c_bytea", "STRING"}, {"c_jsonb", "STRING"}, {"c_uuid", "STRING"},
	{"c_arr", "STRING"}, {"c_enum", "STRING"}, {"c_range", "STRING"},
}

// typesRow2 is row 2 as SQL literals and as Flink must render it.
var typesRow2 = []struct{ sql, flink string }{
	{"2", "2"}, {"2147483647", "2147483647"}, {"-32768", "-32768"}, {"true", "true"},
	{"12345678.90", "12345678.90"}, {"0.1", "0.1"}, {"'1.5'", "1.5"}, {`E'line1\nline2 ☃ "q" \\ end'`, "line1\nline2 ☃ \"q\" \\ end"},
	{"'héllo wörld'", "héllo wörld"}, {"'2024-02-29'", "2024-02-29"}, {"'2026-01-02 03:04:05.123456'", "2026-01-02T03:04:05.123456"},
	{"'2026-12-06 19:23:42.879986+00'", "2026-12-06 19:23:42.879986Z"}, // canal_value_style FLINK: UTC, Z
	{"'12:34:56'", "12:34:56"}, {`'\x00ff10'`, `\x00ff10`}, {`'{"b": 1, "a": [1, 2.5, "ü"]}'`, `{"a": [1, 2.5, "ü"], "b": 1}`},
	{"'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'", "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"},
	{"'{1,NULL,3}'", "{1,NULL,3}"}, {"'happy ☺'", "happy ☺"}, {"'[1,10)'", "[1,10)"},
}

// hostileColumns: quotes, a backtick, a comma, a dot, case and non-ASCII
// in column names; the table's own name has them too.
var hostileColumns = []flinkColumn{{"Id", "BIGINT"}, {`we"ird`, "STRING"}, {"a`b,c.d", "STRING"}, {"ünï cødé", "INT"}}

var fullColumns = []flinkColumn{{"id", "BIGINT"}, {"amount", "DECIMAL(10, 2)"}, {"note", "STRING"}}

// toastColumns: big holds a value stored out of line (TOASTed), which an
// UPDATE of n leaves unchanged; the toast table has REPLICA IDENTITY
// DEFAULT, toastFull the same columns with FULL.
var toastColumns = []flinkColumn{{"id", "BIGINT"}, {"big", "STRING"}, {"n", "INT"}}

// indexColumns: the table's replica identity is a unique index on code
// and the key (full sync needs the key in every delete).
var indexColumns = []flinkColumn{{"id", "BIGINT"}, {"code", "STRING"}, {"note", "STRING"}}

// toastValue is 6,400 characters of hex, the same as toastSQL computes:
// over 2 kB, and stored uncompressed out of line (STORAGE EXTERNAL).
func toastValue() string {
	var b strings.Builder
	for g := 1; g <= 200; g++ {
		sum := md5.Sum([]byte(fmt.Sprint(g)))
		b.WriteString(hex.EncodeToString(sum[:]))
	}
	return b.String()
}

const toastSQL = `(SELECT string_agg(md5(g::text), '' ORDER BY g) FROM generate_series(1, 200) g)`

func createConsumerTables(t *testing.T, conn *pgx.Conn) consumerTables {
	t.Helper()
	base := uniqueName("e2e_cons")
	tabs := consumerTables{types: base, full: base + "_full", hostile: `Hostile "T" ü.` + base, enum: base + "_mood",
		toast: base + "_toast", toastFull: base + "_toastf", index: base + "_idx", all: base + "_all"}
	createAllTextTable(t, conn, tabs.all)
	exec1(t, conn, fmt.Sprintf(`CREATE TYPE public.%s AS ENUM ('sad', 'happy ☺')`, tabs.enum))
	exec1(t, conn, fmt.Sprintf(`CREATE TABLE public.%s (id bigint PRIMARY KEY, c_int int4, c_small int2, c_bool bool,
		c_num numeric(12,2), c_float float8, c_real float4, c_text text, c_varchar varchar(64), c_date date,
		c_ts timestamp(6), c_tstz timestamptz, c_time time(0), c_bytea bytea, c_jsonb jsonb, c_uuid uuid,
		c_arr int4[], c_enum public.%s, c_range int4range)`, tabs.types, tabs.enum))
	exec1(t, conn, fmt.Sprintf(`CREATE TABLE public.%s (id bigint PRIMARY KEY, amount numeric(10,2), note text)`, tabs.full))
	exec1(t, conn, fmt.Sprintf(`ALTER TABLE public.%s REPLICA IDENTITY FULL`, tabs.full))
	exec1(t, conn, fmt.Sprintf(`CREATE TABLE public.%s ("Id" bigint PRIMARY KEY, "we""ird" text, "a`+"`"+`b,c.d" text, "ünï cødé" int)`,
		pgx.Identifier{tabs.hostile}.Sanitize()))
	for _, tab := range []string{tabs.toast, tabs.toastFull} {
		exec1(t, conn, fmt.Sprintf(`CREATE TABLE public.%s (id bigint PRIMARY KEY, big text, n int)`, tab))
		exec1(t, conn, fmt.Sprintf(`ALTER TABLE public.%s ALTER COLUMN big SET STORAGE EXTERNAL`, tab))
	}
	exec1(t, conn, fmt.Sprintf(`ALTER TABLE public.%s REPLICA IDENTITY FULL`, tabs.toastFull))
	exec1(t, conn, fmt.Sprintf(`CREATE TABLE public.%[1]s (id bigint PRIMARY KEY, code text NOT NULL, note text,
		CONSTRAINT %[1]s_code UNIQUE (code, id))`, tabs.index))
	exec1(t, conn, fmt.Sprintf(`ALTER TABLE public.%[1]s REPLICA IDENTITY USING INDEX %[1]s_code`, tabs.index))
	t.Cleanup(func() {
		for _, tab := range []string{tabs.types, tabs.full, tabs.hostile, tabs.toast, tabs.toastFull, tabs.index} {
			_, _ = conn.Exec(context.Background(), "DROP TABLE IF EXISTS public."+pgx.Identifier{tab}.Sanitize())
		}
		_, _ = conn.Exec(context.Background(), "DROP TYPE IF EXISTS public."+tabs.enum)
	})
	return tabs
}

// TestFlinkReadsFerryCanalJSON runs a task with full sync over the
// tables, set up as the README says for Flink (DDL records on their own
// topic, canal_value_style FLINK), and writes a snapshot row, INSERTs,
// UPDATEs under DEFAULT, FULL and USING INDEX identity, an unchanged TOAST
// value, a DELETE, an ALTER and a TRUNCATE; then Flink's canal-json format,
// at 1.20.x and 2.x, reads every message of the data topic from its own
// jars, and each verdict is checked against what the change implies. The
// ALTER and TRUNCATE must be on the DDL topic, not on Flink's.
func TestFlinkReadsFerryCanalJSON(t *testing.T) {
	conn := pgConnect(t)
	tabs := createConsumerTables(t, conn)
	exec1(t, conn, fmt.Sprintf(`INSERT INTO public.%s (id) VALUES (1)`, tabs.types))

	f := startFerry(t)
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
			CanalValueStyle: taskv1.CanalValueStyle_CANAL_VALUE_STYLE_FLINK},
		SyncTypes: &taskv1.SyncTypes{Schema: true, Full: true},
		Advanced:  &taskv1.AdvancedOptions{ConnectionRetryMinutes: 10, OtherRetryMinutes: 2},
	})
	consumer := newConsumer(t, topic)
	writeConsumerChanges(t, conn, tabs)
	msgs := readUntilSentinel(t, consumer, tabs.types)
	checkDDLTopic(t, newConsumer(t, topic+"_ddl"), tabs)
	tabs.allText = flinkTexts(pgTexts(t, tabs.all))

	inputs, wants := consumerExpectations(t, tabs, msgs)
	for version, verdicts := range runCanalCheck(t, inputs) {
		for _, in := range inputs {
			checkFlinkVerdict(t, version, wants[in.id], verdicts[in.id])
		}
	}
	f.stopAndRelease(conn, taskID)
}

// writeConsumerChanges writes the changes the test reads back, ending
// with the sentinel row id 99 in the types table.
func writeConsumerChanges(t *testing.T, conn *pgx.Conn, tabs consumerTables) {
	t.Helper()
	vals := make([]string, len(typesRow2))
	for i, v := range typesRow2 {
		vals[i] = v.sql
	}
	exec1(t, conn, fmt.Sprintf(`INSERT INTO public.%s VALUES (%s)`, tabs.types, strings.Join(vals, ", ")))
	exec1(t, conn, fmt.Sprintf(`UPDATE public.%s SET c_int = 7, c_text = 'changed' WHERE id = 2`, tabs.types))
	exec1(t, conn, fmt.Sprintf(`DELETE FROM public.%s WHERE id = 1`, tabs.types))
	exec1(t, conn, fmt.Sprintf(`INSERT INTO public.%s VALUES (1, 99.99, 'first')`, tabs.full))
	exec1(t, conn, fmt.Sprintf(`UPDATE public.%s SET amount = 12.50 WHERE id = 1`, tabs.full))
	exec1(t, conn, fmt.Sprintf(`DELETE FROM public.%s WHERE id = 1`, tabs.full))
	exec1(t, conn, fmt.Sprintf(`INSERT INTO public.%s VALUES (1, 'x "y"', 'z', -5)`, pgx.Identifier{tabs.hostile}.Sanitize()))
	insertAllText(t, conn, tabs.all, 2)
	for _, tab := range []string{tabs.toast, tabs.toastFull} {
		exec1(t, conn, fmt.Sprintf(`INSERT INTO public.%s VALUES (1, %s, 1)`, tab, toastSQL))
		exec1(t, conn, fmt.Sprintf(`UPDATE public.%s SET n = 2 WHERE id = 1`, tab))
	}
	exec1(t, conn, fmt.Sprintf(`INSERT INTO public.%s VALUES (1, 'a', 'x')`, tabs.index))
	exec1(t, conn, fmt.Sprintf(`UPDATE public.%s SET note = 'y' WHERE id = 1`, tabs.index))
	exec1(t, conn, fmt.Sprintf(`UPDATE public.%s SET code = 'b' WHERE id = 1`, tabs.index))
	exec1(t, conn, fmt.Sprintf(`DELETE FROM public.%s WHERE id = 1`, tabs.index))
	exec1(t, conn, fmt.Sprintf(`ALTER TABLE public.%s ADD COLUMN extra int`, tabs.types))
	exec1(t, conn, fmt.Sprintf(`INSERT INTO public.%s (id, extra) VALUES (3, 1)`, tabs.types))
	exec1(t, conn, fmt.Sprintf(`TRUNCATE public.%s`, tabs.full))
	exec1(t, conn, fmt.Sprintf(`INSERT INTO public.%s (id) VALUES (99)`, tabs.types))
}

// readUntilSentinel reads the topic (one partition, so in Ferry's order)
// until the types table's row 99 arrived.
func readUntilSentinel(t *testing.T, c *kafka.Consumer, table string) []*kafka.Message {
	t.Helper()
	var out []*kafka.Message
	eventually(t, 90*time.Second, "the sentinel row 99 of "+table, func() (bool, string) {
		msg, err := c.ReadMessage(200 * time.Millisecond)
		if err != nil {
			return false, fmt.Sprintf("%d messages so far (%v)", len(out), err)
		}
		out = append(out, msg)
		m := decodeCanal(t, msg.Value)
		done := m.Table == table && m.Type == "INSERT" && len(m.Data) == 1 && m.Data[0]["id"] != nil && *m.Data[0]["id"] == "99"
		return done, fmt.Sprintf("%d messages so far", len(out))
	})
	return out
}

// checkDDLTopic reads the DDL topic until the TRUNCATE, the last DDL the
// test makes, and checks the ALTER came before it: with kafka.ddl_topic
// set, these are where Flink's canal-json, which rejects them, never reads.
func checkDDLTopic(t *testing.T, c *kafka.Consumer, tabs consumerTables) {
	t.Helper()
	var kinds []string
	eventually(t, 60*time.Second, "the TRUNCATE on the DDL topic", func() (bool, string) {
		msg, err := c.ReadMessage(200 * time.Millisecond)
		if err != nil {
			return false, fmt.Sprintf("DDL records so far %v (%v)", kinds, err)
		}
		m := decodeCanal(t, msg.Value)
		if !m.IsDdl {
			t.Fatalf("a %s row on the DDL topic", m.Type)
		}
		kinds = append(kinds, m.Type+" "+m.Table)
		return m.Type == "TRUNCATE" && m.Table == tabs.full, fmt.Sprintf("DDL records so far %v", kinds)
	})
	if !slices.Contains(kinds, "ALTER "+tabs.types) {
		t.Errorf("DDL topic holds %v, want the ALTER of %s", kinds, tabs.types)
	}
}

// flinkTexts is the all-types table's PostgreSQL text (in UTC) as
// canal_value_style FLINK writes it: a timestamptz at +00 ends in Z
// instead. Infinity and BC stay, as Flink has no form for them.
func flinkTexts(rows map[string][]*string) map[string][]*string {
	for _, vals := range rows {
		for i, c := range textCases {
			if v := vals[i+1]; v != nil && (c.typ == "timestamptz" || strings.HasSuffix(c.typ, "with time zone")) {
				if s, ok := strings.CutSuffix(*v, "+00"); ok {
					vals[i+1] = ptr(s + "Z")
				}
			}
		}
	}
	return rows
}

const (
	ltzSuffix     = "/tstz-as-TIMESTAMP_LTZ"
	tstzLTZColumn = "c_tstz"
)

// consumerExpectations turns the topic's messages into the checker's
// inputs and what Flink must make of each; the types table's row 2 is also
// read with its timestamptz column as TIMESTAMP_LTZ(6).
func consumerExpectations(t *testing.T, tabs consumerTables, msgs []*kafka.Message) ([]canalInput, map[string]canalWant) {
	t.Helper()
	cols := map[string][]flinkColumn{tabs.types: typesColumns, tabs.full: fullColumns, tabs.hostile: hostileColumns,
		tabs.toast: toastColumns, tabs.toastFull: toastColumns, tabs.index: indexColumns, tabs.all: allTextColumns()}
	var inputs []canalInput
	wants := map[string]canalWant{}
	for i, msg := range msgs {
		m := decodeCanal(t, msg.Value)
		if m.IsDdl {
			t.Errorf("message %d: a %s DDL record on the data topic, which kafka.ddl_topic keeps it off", i, m.Type)
			continue
		}
		checkToastMarker(t, tabs, m, header(msg, "ferry.unchanged-toast"))
		c, ok := cols[m.Table]
		if !ok {
			t.Fatalf("message %d is for table %q, not one of the task's", i, m.Table)
		}
		id := fmt.Sprintf("%d", i)
		w := wantFor(t, tabs, m, header(msg, "ferry.snapshot") == "true")
		w.what = fmt.Sprintf("message %d (%s %s on %s)", i, m.Type, idOf(m), m.Table)
		inputs = append(inputs, canalInput{id: id, cols: c, value: msg.Value})
		wants[id] = w
		if m.Table == tabs.types && m.Type == "INSERT" && idOf(m) == "2" {
			inputs = append(inputs, canalInput{id: id + ltzSuffix, cols: withLTZ(typesColumns), value: msg.Value})
			wants[id+ltzSuffix] = canalWant{what: w.what + " with c_tstz TIMESTAMP_LTZ(6)",
				rows: []flinkRow{row("INSERT", withValue(typesAfter(nil), tstzLTZColumn, "2026-12-06T19:23:42.879986Z"))}}
		}
	}
	return inputs, wants
}

// wantFor is what the change implies for one message.
func wantFor(t *testing.T, tabs consumerTables, m canalMessage, snapshot bool) canalWant {
	t.Helper()
	key := idOf(m)
	switch {
	case m.Table == tabs.types && m.Type == "INSERT" && key == "2":
		// canal_value_style FLINK writes the boolean as "true", which
		// Flink's BOOLEAN reads (it reads PostgreSQL's "t" as false).
		return canalWant{rows: []flinkRow{row("INSERT", typesAfter(nil))}}
	case m.Table == tabs.types && m.Type == "INSERT":
		if snapshot != (key == "1") {
			t.Errorf("row %s of %s: ferry.snapshot header %v, want it on row 1 only", key, m.Table, snapshot)
		}
		return canalWant{rows: []flinkRow{row("INSERT", keyOnly(len(typesColumns), key, ""))}}
	case m.Table == tabs.types && m.Type == "UPDATE":
		after := typesAfter(map[string]string{"c_int": "7", "c_text": "changed"})
		// DEFAULT identity: the old values are unknown, the key is not.
		return canalWant{rows: []flinkRow{
			row("UPDATE_BEFORE", keyOnly(len(typesColumns), key, anyValue)), row("UPDATE_AFTER", after)}}
	case m.Table == tabs.types && m.Type == "DELETE":
		return canalWant{rows: []flinkRow{row("DELETE", keyOnly(len(typesColumns), key, anyValue))}}
	case m.Table == tabs.full:
		return fullWant(m.Type)
	case m.Table == tabs.toast:
		return toastWant(m.Type, false)
	case m.Table == tabs.toastFull:
		return toastWant(m.Type, true)
	case m.Table == tabs.index:
		return indexWant(m)
	case m.Table == tabs.all && m.Type == "INSERT" && tabs.allText[key] != nil:
		if snapshot != (key == "1") {
			t.Errorf("row %s of %s: ferry.snapshot header %v, want it on row 1 only", key, m.Table, snapshot)
		}
		return canalWant{rows: []flinkRow{row("INSERT", tabs.allText[key])}}
	case m.Table == tabs.hostile && m.Type == "INSERT":
		return canalWant{rows: []flinkRow{row("INSERT", []*string{ptr("1"), ptr(`x "y"`), ptr("z"), ptr("-5")})}}
	}
	t.Fatalf("unexpected %s on %s", m.Type, m.Table)
	return canalWant{}
}

// fullWant: under REPLICA IDENTITY FULL every image is known.
func fullWant(typ string) canalWant {
	first := []*string{ptr("1"), ptr("99.99"), ptr("first")}
	second := []*string{ptr("1"), ptr("12.50"), ptr("first")}
	switch typ {
	case "INSERT":
		return canalWant{rows: []flinkRow{row("INSERT", first)}}
	case "UPDATE":
		return canalWant{rows: []flinkRow{row("UPDATE_BEFORE", first), row("UPDATE_AFTER", second)}}
	default:
		return canalWant{rows: []flinkRow{row("DELETE", second)}}
	}
}

// toastWant: the UPDATE leaves big unchanged. Under FULL identity Flink
// sees its exact value from the old tuple. Under DEFAULT the source never
// sends it: Ferry leaves big out of data (checkToastMarker checks the
// header that says so), and Flink's canal-json, which cannot read headers,
// reads the missing field as NULL in both images, as the README says.
func toastWant(typ string, full bool) canalWant {
	big := toastValue()
	if typ == "INSERT" {
		return canalWant{rows: []flinkRow{row("INSERT", []*string{ptr("1"), ptr(big), ptr("1")})}}
	}
	if full {
		return canalWant{rows: []flinkRow{
			row("UPDATE_BEFORE", []*string{ptr("1"), ptr(big), ptr("1")}),
			row("UPDATE_AFTER", []*string{ptr("1"), ptr(big), ptr("2")})}}
	}
	return canalWant{rows: []flinkRow{
		row("UPDATE_BEFORE", []*string{ptr("1"), nil, ptr(anyValue)}),
		row("UPDATE_AFTER", []*string{ptr("1"), nil, ptr("2")})}}
}

// checkToastMarker: only the DEFAULT-identity toast table's UPDATE has a
// value the source did not send, and it is absent from data, never null,
// and named in the ferry.unchanged-toast header.
func checkToastMarker(t *testing.T, tabs consumerTables, m canalMessage, hdr string) {
	t.Helper()
	marked := m.Table == tabs.toast && m.Type == "UPDATE"
	want := ""
	if marked {
		want = `["big"]`
	}
	if hdr != want {
		t.Errorf("%s on %s: ferry.unchanged-toast header %q, want %q", m.Type, m.Table, hdr, want)
	}
	if len(m.Data) != 1 {
		return
	}
	if _, has := m.Data[0]["big"]; marked && has {
		t.Errorf("UPDATE on %s: big is in data (%v), want it left out as an unchanged TOAST value", m.Table, m.Data[0]["big"] != nil)
	}
}

// indexWant: under REPLICA IDENTITY USING INDEX the old code is known when
// it changed, and a DELETE carries the identity columns.
func indexWant(m canalMessage) canalWant {
	any := ptr(anyValue)
	switch {
	case m.Type == "INSERT":
		return canalWant{rows: []flinkRow{row("INSERT", []*string{ptr("1"), ptr("a"), ptr("x")})}}
	case m.Type == "UPDATE" && *m.Data[0]["code"] == "a":
		return canalWant{rows: []flinkRow{
			row("UPDATE_BEFORE", []*string{ptr("1"), ptr("a"), any}), row("UPDATE_AFTER", []*string{ptr("1"), ptr("a"), ptr("y")})}}
	case m.Type == "UPDATE":
		return canalWant{rows: []flinkRow{
			row("UPDATE_BEFORE", []*string{ptr("1"), ptr("a"), any}), row("UPDATE_AFTER", []*string{ptr("1"), ptr("b"), ptr("y")})}}
	default:
		return canalWant{rows: []flinkRow{row("DELETE", []*string{ptr("1"), ptr("b"), any})}}
	}
}

func row(kind string, fields []*string) flinkRow { return flinkRow{Kind: kind, Fields: fields} }

// typesAfter is row 2 as Flink must render it, with some columns changed.
func typesAfter(changed map[string]string) []*string {
	out := make([]*string, len(typesRow2))
	for i, v := range typesRow2 {
		out[i] = ptr(v.flink)
		if c, ok := changed[typesColumns[i].name]; ok {
			out[i] = ptr(c)
		}
	}
	return out
}

// keyOnly is a row with its key and every other field NULL, or rest when
// rest is anyValue.
func keyOnly(n int, key, rest string) []*string {
	out := make([]*string, n)
	out[0] = ptr(key)
	for i := 1; i < n && rest != ""; i++ {
		out[i] = ptr(rest)
	}
	return out
}

func withValue(fields []*string, col, v string) []*string {
	i := slices.IndexFunc(typesColumns, func(c flinkColumn) bool { return c.name == col })
	fields[i] = ptr(v)
	return fields
}

func withLTZ(cols []flinkColumn) []flinkColumn {
	out := slices.Clone(cols)
	for i := range out {
		if out[i].name == tstzLTZColumn {
			out[i].typ = "TIMESTAMP_LTZ(6)"
		}
	}
	return out
}

// idOf is the key of the message's only row, or "" for none.
func idOf(m canalMessage) string {
	if len(m.Data) != 1 {
		return ""
	}
	for _, k := range []string{"id", "Id"} {
		if v := m.Data[0][k]; v != nil {
			return *v
		}
	}
	return ""
}

// checkFlinkVerdict fails unless Flink produced the wanted rows.
func checkFlinkVerdict(t *testing.T, version string, w canalWant, v flinkVerdict) {
	t.Helper()
	if !v.OK {
		t.Errorf("Flink %s rejected %s: %s", version, w.what, v.Error)
		return
	}
	if !rowsMatch(w.rows, v.Rows) {
		t.Errorf("Flink %s read %s as %s, want %s", version, w.what, showRows(v.Rows), showRows(w.rows))
	}
}

func rowsMatch(want, got []flinkRow) bool {
	if len(want) != len(got) {
		return false
	}
	for i := range want {
		if want[i].Kind != got[i].Kind || len(want[i].Fields) != len(got[i].Fields) {
			return false
		}
		for j, wf := range want[i].Fields {
			gf := got[i].Fields[j]
			if wf != nil && *wf == anyValue {
				continue
			}
			if (wf == nil) != (gf == nil) || (wf != nil && *wf != *gf) {
				return false
			}
		}
	}
	return true
}

func showRows(rows []flinkRow) string {
	var b strings.Builder
	for _, r := range rows {
		b.WriteString(r.Kind + "(")
		for j, f := range r.Fields {
			if j > 0 {
				b.WriteString(", ")
			}
			switch {
			case f == nil:
				b.WriteString("NULL")
			case *f == anyValue:
				b.WriteString("*")
			default:
				fmt.Fprintf(&b, "%q", *f)
			}
		}
		b.WriteString(") ")
	}
	return strings.TrimSpace(b.String())
}
