package debezium

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	cdcv1 "github.com/ferry-cdc/ferry/gen/ferry/cdc/v1"
	taskv1 "github.com/ferry-cdc/ferry/gen/ferry/task/v1"
	"github.com/ferry-cdc/ferry/services/tuple"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata")

func testRelation(ident cdcv1.ReplicaIdentity) *cdcv1.Relation {
	return &cdcv1.Relation{
		Oid: 16384, Schema: "Sales", Table: "Orders", ReplicaIdentity: ident,
		KeyColumns: []string{"id", "region"},
		Columns: []*cdcv1.Column{
			{Name: "id", TypeOid: 20, TypeName: "bigint", Key: true},
			{Name: "region", TypeOid: 1043, TypeName: "character varying(8)", Key: true},
			{Name: "amount", TypeOid: 1700, TypeName: "numeric(5,2)"},
			{Name: "note", TypeOid: 25, TypeName: "text"},
			{Name: "at", TypeOid: 1184, TypeName: "timestamp with time zone"},
			{Name: "secret", TypeOid: 25, TypeName: "text"},
			{Name: "raw", TypeOid: 17, TypeName: "bytea"},
			{Name: "n", TypeOid: 23, TypeName: "integer"},
		},
	}
}

func objects() *taskv1.ObjectSelection {
	return &taskv1.ObjectSelection{
		NameCase: taskv1.NameCase_NAME_CASE_LOWER,
		Tables: []*taskv1.TableSelection{{
			Schema: "Sales", Table: "Orders",
			Columns: []*taskv1.ColumnMapping{{Name: "secret", Drop: true}, {Name: "note", Rename: "Remark"}},
		}},
	}
}

func row(id, amount string, note any) *cdcv1.Tuple {
	return tuple.Of(id, "eu", amount, note, "2023-11-14 22:13:20.123+00", "hidden", `\xdead01`, "7")
}

func encoder(schemas bool) (*Encoder, *Table) {
	e := New(Options{SourceDatabase: "Shop", ServerName: "srv", Objects: objects(), Schemas: schemas, Tombstones: true,
		Now: func() time.Time { return time.UnixMilli(1700000001000) }})
	return e, e.SetRelation(testRelation(cdcv1.ReplicaIdentity_REPLICA_IDENTITY_DEFAULT))
}

func event(op cdcv1.Operation, after, before *cdcv1.Tuple) *cdcv1.ChangeEvent {
	return &cdcv1.ChangeEvent{Op: op, RelationOid: 16384, Lsn: 0x16B3748, CommitLsn: 0x16B3800, Xid: 771,
		CommitTime: timestamppb.New(time.UnixMilli(1700000000500)), NewTuple: after, OldTuple: before}
}

const source = `"source":{"version":"ferry","connector":"postgresql","name":"srv","ts_ms":1700000000500,"snapshot":"false","db":"shop",` +
	`"sequence":"[null,\"23803720\"]","ts_us":1700000000500000,"ts_ns":1700000000500000000,"schema":"sales","table":"orders","txId":771,"lsn":23803720,"xmin":null}`

const tail = `"transaction":null,"op":"c","ts_ms":1700000001000,"ts_us":1700000001000000,"ts_ns":1700000001000000000}`

func TestInsertIsDebeziumsEnvelope(t *testing.T) {
	e, tab := encoder(false)
	ev := event(cdcv1.Operation_OPERATION_INSERT, row("1", "10.50", "a \"b\""), nil)
	got, err := e.Encode(nil, tab, ev)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"before":null,"after":{"id":1,"region":"eu","amount":"10.50","Remark":"a \"b\"","at":"2023-11-14T22:13:20.123Z","raw":"3q0B","n":7},` +
		source + `,` + tail
	if string(got) != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
	key, ok, err := e.EncodeKey(nil, tab, ev)
	if err != nil || !ok || string(key) != `{"id":1,"region":"eu"}` {
		t.Errorf("key = %s, %v, %v", key, ok, err)
	}
	if e.UnchangedToast() != nil || !e.Tombstones() {
		t.Errorf("unchanged = %s, tombstones %v", e.UnchangedToast(), e.Tombstones())
	}
}

// decoded is a value message as a consumer sees it.
type decoded struct {
	Before map[string]any `json:"before"`
	After  map[string]any `json:"after"`
	Source map[string]any `json:"source"`
	Op     string         `json:"op"`
}

func decode(t *testing.T, b []byte) decoded {
	t.Helper()
	var d decoded
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	if err := dec.Decode(&d); err != nil {
		t.Fatalf("%s: %v", b, err)
	}
	return d
}

func TestImagesFollowTheReplicaIdentity(t *testing.T) {
	e, tab := encoder(false)
	toast := tuple.Of("1", "eu", "11.00", tuple.UnchangedToast, "2023-11-14 22:13:20.123+00", "hidden", tuple.UnchangedToast, nil)
	for _, c := range []struct {
		name          string
		ev            *cdcv1.ChangeEvent
		op            string
		before, after bool
		remark, raw   any
		header        string
	}{
		{"update without before-image: before null, as Debezium", event(cdcv1.Operation_OPERATION_UPDATE, row("1", "11.00", "x"), nil), "u", false, true, "x", "3q0B", ""},
		{"update with unchanged TOAST: placeholder", event(cdcv1.Operation_OPERATION_UPDATE, toast, nil), "u", false, true, UnavailableValue, unavailableBase64, `["Remark","raw"]`},
		{"update FULL: TOAST from the before-image", event(cdcv1.Operation_OPERATION_UPDATE, toast, row("1", "10.00", "old")), "u", true, true, "old", "3q0B", ""},
		{"delete under DEFAULT: key columns only", event(cdcv1.Operation_OPERATION_DELETE, nil, tuple.Of("1", "eu", nil, nil, nil, nil, nil, nil)), "d", true, false, nil, nil, ""},
	} {
		got, err := e.Encode(nil, tab, c.ev)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		d := decode(t, got)
		if d.Op != c.op || (d.Before != nil) != c.before || (d.After != nil) != c.after {
			t.Errorf("%s: op %s, before %v, after %v", c.name, d.Op, d.Before, d.After)
		}
		img := d.After
		if img == nil {
			img = d.Before
		}
		if img["Remark"] != c.remark || img["raw"] != c.raw {
			t.Errorf("%s: Remark %v, raw %v; want %v, %v", c.name, img["Remark"], img["raw"], c.remark, c.raw)
		}
		if string(e.UnchangedToast()) != c.header {
			t.Errorf("%s: header %s, want %s", c.name, e.UnchangedToast(), c.header)
		}
	}
	if e.UnchangedToastNulls() != 2 {
		t.Errorf("counted %d unavailable values, want 2", e.UnchangedToastNulls())
	}
	key, ok, _ := e.EncodeKey(nil, tab, event(cdcv1.Operation_OPERATION_DELETE, nil, tuple.Of("1", "eu", nil, nil, nil, nil, nil, nil)))
	if !ok || string(key) != `{"id":1,"region":"eu"}` {
		t.Errorf("delete key = %s", key)
	}
}

func TestSnapshotRowsAreReads(t *testing.T) {
	e, tab := encoder(false)
	ev := event(cdcv1.Operation_OPERATION_INSERT, row("1", "1", nil), nil)
	ev.Snapshot = true
	got, _ := e.Encode(nil, tab, ev)
	d := decode(t, got)
	if d.Op != "r" || d.Source["snapshot"] != "true" || d.After["Remark"] != nil {
		t.Errorf("snapshot row: %s", got)
	}
}

func TestDDLRecordsAreNotWrittenAndTruncateIsT(t *testing.T) {
	e, tab := encoder(false)
	got, err := e.EncodeDDL([]byte("x"), tab, DDL{Kind: "ALTER", SQL: "ALTER TABLE ..."})
	if err != nil || string(got) != "x" {
		t.Errorf("ALTER: %q, %v; want nothing appended", got, err)
	}
	got, err = e.EncodeDDL(nil, tab, DDL{Kind: "TRUNCATE", LSN: 5, Commit: time.UnixMilli(1700000000500)})
	if err != nil {
		t.Fatal(err)
	}
	d := decode(t, got)
	if d.Op != "t" || d.Before != nil || d.After != nil || d.Source["table"] != "orders" || d.Source["lsn"] != json.Number("5") {
		t.Errorf("TRUNCATE: %s", got)
	}
}

// With schemas, every message is {"schema","payload"} and the schema
// describes each payload field; the golden file holds one of each kind.
func TestSchemasGolden(t *testing.T) {
	e, tab := encoder(true)
	var msgs []json.RawMessage
	for _, ev := range []*cdcv1.ChangeEvent{
		event(cdcv1.Operation_OPERATION_INSERT, row("1", "10.50", "n"), nil),
		event(cdcv1.Operation_OPERATION_UPDATE, row("1", "11.00", nil), row("1", "10.50", "n")),
		event(cdcv1.Operation_OPERATION_DELETE, nil, row("1", "11.00", nil)),
	} {
		v, err := e.Encode(nil, tab, ev)
		if err != nil {
			t.Fatal(err)
		}
		k, _, err := e.EncodeKey(nil, tab, ev)
		if err != nil {
			t.Fatal(err)
		}
		for _, b := range [][]byte{k, v} {
			checkSchemaMatchesPayload(t, b)
			msgs = append(msgs, b)
		}
	}
	b, err := json.MarshalIndent(msgs, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join("testdata", "orders.schemas.golden.json")
	if *update {
		if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if string(want) != string(b)+"\n" {
		t.Errorf("messages differ from %s (run with -update and review the diff)", path)
	}
}

type connectSchema struct {
	Type     string          `json:"type"`
	Fields   []connectSchema `json:"fields"`
	Optional bool            `json:"optional"`
	Field    string          `json:"field"`
}

// checkSchemaMatchesPayload checks what JsonConverter checks on reading:
// the payload's members are the schema's fields, and null only where the
// field is optional.
func checkSchemaMatchesPayload(t *testing.T, b []byte) {
	t.Helper()
	var m struct {
		Schema  connectSchema   `json:"schema"`
		Payload json.RawMessage `json:"payload"`
	}
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("%s: %v", b, err)
	}
	checkStruct(t, m.Schema, m.Payload, "payload")
}

func checkStruct(t *testing.T, s connectSchema, v json.RawMessage, path string) {
	t.Helper()
	if string(v) == "null" {
		if !s.Optional {
			t.Errorf("%s: null for a required %s", path, s.Type)
		}
		return
	}
	if s.Type != "struct" {
		return
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(v, &obj); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	if len(obj) != len(s.Fields) {
		t.Errorf("%s: %d members for %d fields", path, len(obj), len(s.Fields))
	}
	for _, f := range s.Fields {
		fv, ok := obj[f.Field]
		if !ok {
			t.Errorf("%s.%s: missing", path, f.Field)
			continue
		}
		checkStruct(t, f, fv, path+"."+f.Field)
	}
}
