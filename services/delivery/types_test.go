package delivery

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"google.golang.org/grpc"

	capturev1 "github.com/ferry-cdc/ferry/gen/ferry/capture/v1"
	cdcv1 "github.com/ferry-cdc/ferry/gen/ferry/cdc/v1"
	deliveryv1 "github.com/ferry-cdc/ferry/gen/ferry/delivery/v1"
	taskv1 "github.com/ferry-cdc/ferry/gen/ferry/task/v1"
	"github.com/ferry-cdc/ferry/services/capture"
	"github.com/ferry-cdc/ferry/services/testenv"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata")

// typeCase is one column of the all-types table and the SQL literals it
// takes: a in row 2, b in row 3, u in row 2's UPDATE ("" leaves it as is).
// Row 1 is NULL everywhere but its key.
type typeCase struct {
	col, typ string
	a, b, u  string
	noArray  bool // no array column (the type is already an array)
}

// typeCases lists every built-in PostgreSQL 15 type with edge values, plus
// an enum, a composite and a domain ("S." is the test's own schema). Each
// gets an array column a_<col> too, unless noArray.
var typeCases = []typeCase{
	{col: "c_bool", typ: "bool", a: "true", b: "false", u: "NULL"},
	{col: "c_int2", typ: "int2", a: "32767", b: "-32768", u: "0"},
	{col: "c_int4", typ: "int4", a: "2147483647", b: "-2147483648", u: "1"},
	{col: "c_int8", typ: "int8", a: "9223372036854775807", b: "-9223372036854775808", u: "-1"},
	{col: "c_oid", typ: "oid", a: "4294967295", b: "0", u: "16384"},
	{col: "c_numeric", typ: "numeric", a: "'12345678901234567890.123456789012345'", b: "'NaN'", u: "'-Infinity'"},
	{col: "c_numeric_inf", typ: "numeric", a: "'Infinity'", b: "'-0.000000000000000000001'", u: "'1e-6'"},
	{col: "c_numeric_ps", typ: "numeric(38,15)", a: "'-12345678901234567890.123456789012345'", b: "'0.000000000000001'", u: "'1'"},
	{col: "c_numeric_neg", typ: "numeric(5,-2)", a: "12345", b: "-9949", u: "0"},
	{col: "c_float4", typ: "float4", a: "'3.4028235e+38'", b: "'NaN'", u: "'-Infinity'"},
	{col: "c_float4_b", typ: "real", a: "'0.1'", b: "'-0'", u: "'Infinity'"},
	{col: "c_float4_c", typ: "float4", a: "'1.17549435e-38'", b: "'123456'", u: "'1e-45'"},
	{col: "c_float8", typ: "float8", a: "'1.7976931348623157e+308'", b: "'-Infinity'", u: "'NaN'"},
	{col: "c_float8_b", typ: "double precision", a: "'0.1'", b: "'5e-324'", u: "'-0'"},
	{col: "c_float8_c", typ: "float8", a: "'1e15'", b: "'123456789012345.6'", u: "'Infinity'"},
	{col: "c_money", typ: "money", a: "'12345678.91'", b: "'-92233720368547758.08'", u: "'0'"},
	{col: "c_char", typ: "char(5)", a: "'ab'", b: "'ü€𝄞x'", u: "'abcde'"},
	{col: "c_varchar", typ: "varchar(50)", a: "'héllo wörld'", b: `E'tab\there "quote" \\ back'`, u: "''"},
	{col: "c_text", typ: "text", a: `E'line1\nline2 \u2028 ☃ \u0001 \r'`, b: "''", u: "'NULL'"},
	{col: "c_name", typ: "name", a: "'pg_catalog'", b: "'ñame'", u: "'x'"},
	{col: "c_qchar", typ: `"char"`, a: "'a'", b: "'Z'", u: `'\'`},
	{col: "c_citext", typ: "citext", a: "'MiXeD Case'", b: "'ǅungla'", u: "'x'"},
	{col: "c_bytea", typ: "bytea", a: `'\x00ff0001'`, b: `'\x'`, u: `'\x000a5c22'`},
	{col: "c_date", typ: "date", a: "'5874897-12-31'", b: "'-infinity'", u: "'0044-03-15 BC'"},
	{col: "c_date_b", typ: "date", a: "'infinity'", b: "'2024-02-29'", u: "'10000-01-01'"},
	{col: "c_time", typ: "time", a: "'23:59:59.999999'", b: "'00:00:00'", u: "'24:00:00'"},
	{col: "c_time3", typ: "time(3)", a: "'12:34:56.7894'", b: "'00:00:00.001'", u: ""},
	{col: "c_timetz", typ: "timetz", a: "'12:34:56.789012-05:30'", b: "'00:00:00+15:59'", u: "'23:59:59.999999-15:59'"},
	{col: "c_timestamp", typ: "timestamp", a: "'294276-12-31 23:59:59.999999'", b: "'-infinity'", u: "'4713-01-01 00:00:00 BC'"},
	{col: "c_timestamp_b", typ: "timestamp(3)", a: "'infinity'", b: "'2000-01-01 00:00:00.0015'", u: "'10000-01-01 00:00:00'"},
	{col: "c_timestamptz", typ: "timestamptz", a: "'2024-02-29 23:59:59.999999+05:45'", b: "'infinity'", u: "'12345-06-07 08:09:10.5-03:30'"},
	{col: "c_timestamptz_b", typ: "timestamptz", a: "'-infinity'", b: "'1969-12-31 23:59:59.999999-00'", u: "'0001-01-01 00:00:00+00 BC'"},
	{col: "c_timestamptz_c", typ: "timestamp(0) with time zone", a: "'2024-01-01 12:00:00.7 Asia/Kathmandu'", b: "'1900-01-01 00:00:00 Europe/Amsterdam'", u: ""},
	{col: "c_interval", typ: "interval", a: "'1 year 2 mons 3 days 04:05:06.789012'", b: "'-178000000 years'", u: "'-1 days +00:00:00.000001'"},
	{col: "c_interval_b", typ: "interval day to second(3)", a: "'1.2345 seconds'", b: "'-00:00:00.001'", u: ""},
	{col: "c_uuid", typ: "uuid", a: "'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'", b: "'00000000-0000-0000-0000-000000000000'", u: "'FFFFFFFF-FFFF-FFFF-FFFF-FFFFFFFFFFFF'"},
	{col: "c_json", typ: "json", a: `'{"b": 1,  "a" : [1, 2.50, "\u00fc\u0000"]}'`, b: "'null'", u: `'"x"'`},
	{col: "c_jsonb", typ: "jsonb", a: `'{"b": 1, "a": [1, 2.50, "ü", 1e400]}'`, b: "'null'", u: "'[]'"},
	{col: "c_xml", typ: "xml", a: `'<a x="1">ü &amp; <b/></a>'`, b: "'plain text'", u: "'<x/>'"},
	{col: "c_inet", typ: "inet", a: "'192.168.0.1/24'", b: "'::ffff:1.2.3.4'", u: "'2001:db8::1/128'"},
	{col: "c_cidr", typ: "cidr", a: "'10.0.0.0/8'", b: "'2001:db8::/32'", u: "'0.0.0.0/0'"},
	{col: "c_macaddr", typ: "macaddr", a: "'08:00:2b:01:02:03'", b: "'08-00-2B-FF-FF-FF'", u: ""},
	{col: "c_macaddr8", typ: "macaddr8", a: "'08:00:2b:01:02:03:04:05'", b: "'08002bfffe010203'", u: ""},
	{col: "c_bit", typ: "bit(4)", a: "B'1010'", b: "B'0000'", u: "B'1111'"},
	{col: "c_varbit", typ: "varbit(16)", a: "B'1'", b: "B''", u: "B'1010101010101010'"},
	{col: "c_tsvector", typ: "tsvector", a: "'a fat cat:1A sat:2,3 ü'", b: "''", u: `$$'it''s' 'x\y'$$`},
	{col: "c_tsquery", typ: "tsquery", a: "'fat & (rat | cat) & !dog'", b: "'ü:* <-> x'", u: ""},
	{col: "c_point", typ: "point", a: "'(1.5,-2)'", b: "'(1e300,0.1)'", u: "'(NaN,-0)'"},
	{col: "c_line", typ: "line", a: "'{1,-1,0}'", b: "'[(0,0),(1,2)]'", u: ""},
	{col: "c_lseg", typ: "lseg", a: "'[(0,0),(1,1)]'", b: "'[(0.1,0.2),(0.3,0.4)]'", u: ""},
	{col: "c_box", typ: "box", a: "'(1,1),(0,0)'", b: "'(0.1,0.2),(0.3,0.4)'", u: ""},
	{col: "c_path", typ: "path", a: "'[(0,0),(1,1),(2,0)]'", b: "'((0,0),(1,1))'", u: ""},
	{col: "c_polygon", typ: "polygon", a: "'((0,0),(1,1),(1,0))'", b: "'((0.5,0.5))'", u: ""},
	{col: "c_circle", typ: "circle", a: "'<(0,0),1.5>'", b: "'<(0.1,0.2),0>'", u: ""},
	{col: "r_int4", typ: "int4range", a: "'[1,10)'", b: "'(,)'", u: "'empty'"},
	{col: "r_int8", typ: "int8range", a: "'[-9223372036854775808,9223372036854775807)'", b: "'empty'", u: ""},
	{col: "r_num", typ: "numrange", a: "'(-1.5,12345678901234567890.5]'", b: "'(,0)'", u: ""},
	{col: "r_ts", typ: "tsrange", a: "'[2024-01-01 00:00:00.000001,infinity)'", b: "'(,)'", u: ""},
	{col: "r_tstz", typ: "tstzrange", a: "'[2024-01-01 05:30:00+05:30,)'", b: "'empty'", u: ""},
	{col: "r_date", typ: "daterange", a: "'[2000-01-01,2000-01-02]'", b: "'[-infinity,infinity)'", u: ""},
	{col: "m_int4", typ: "int4multirange", a: "'{[1,3),[5,7)}'", b: "'{}'", u: "'{[1,2]}'"},
	{col: "m_int8", typ: "int8multirange", a: "'{[1,2]}'", b: "'{(,)}'", u: ""},
	{col: "m_num", typ: "nummultirange", a: "'{[1.5,2.5], [3,4)}'", b: "'{}'", u: ""},
	{col: "m_ts", typ: "tsmultirange", a: "'{[2024-01-01,2024-01-02)}'", b: "'{}'", u: ""},
	{col: "m_tstz", typ: "tstzmultirange", a: "'{[2024-01-01 00:00+05,)}'", b: "'{}'", u: ""},
	{col: "m_date", typ: "datemultirange", a: "'{[2000-01-01,2000-01-02], [2000-01-05,2000-01-06)}'", b: "'{}'", u: ""},
	{col: "c_enum", typ: "S.mood", a: "'happy ☺'", b: "'sad'", u: "'ok'"},
	{col: "c_composite", typ: "S.pair", a: `'(1,"a ""b"" ,c")'`, b: "'(,)'", u: "ROW(-1, NULL)"},
	{col: "c_domain", typ: "S.posint", a: "42", b: "2147483647", u: "1"},
	{col: "c_domain_text", typ: "S.label", a: "'ü label'", b: "''", u: ""},
	{col: "c_domain_real", typ: "S.temp", a: "'0.1'", b: "'NaN'", u: "'-3.4028235e+38'"},
	{col: "a2_int4", typ: "int4[]", a: "'{{1,NULL},{NULL,4}}'", b: "'[0:1]={7,8}'", u: "'{}'", noArray: true},
	{col: "a2_text", typ: "text[]", a: `'{{"a,b",NULL},{"NULL","q\"\\"}}'`, b: `'{{"ü"}}'`, u: "", noArray: true},
	{col: "a2_float8", typ: "float8[]", a: "'{{NaN,-Infinity},{0.1,NULL}}'", b: "'{}'", u: "", noArray: true},
}

// typeColumns expands typeCases into the table's columns (after id): each
// case, then its array column.
func typeColumns(schema string) []typeCase {
	var cols []typeCase
	for _, c := range typeCases {
		c.typ = strings.ReplaceAll(c.typ, "S.", schema+".")
		cols = append(cols, c)
		if c.noArray {
			continue
		}
		arr := typeCase{col: "a_" + strings.TrimPrefix(c.col, "c_"), typ: c.typ + "[]"}
		arr.a = fmt.Sprintf("ARRAY[(%s)::%s, NULL]", c.a, c.typ)
		arr.b = fmt.Sprintf("ARRAY[(%s)::%s]", c.b, c.typ)
		if c.u != "" {
			arr.u = fmt.Sprintf("ARRAY[NULL, (%s)::%s]", c.u, c.typ)
		}
		cols = append(cols, arr)
	}
	return cols
}

// createTypesTable creates schema (with citext, an enum, a composite and
// two domains) and the all-types table with REPLICA IDENTITY FULL.
func createTypesTable(t *testing.T, conn *pgx.Conn, schema string, cols []typeCase) {
	t.Helper()
	// citext is a trusted extension: the database owner may create it.
	testenv.Exec(t, conn, `CREATE EXTENSION IF NOT EXISTS citext`)
	t.Cleanup(func() { testenv.Exec(t, testenv.PG(t), `DROP SCHEMA IF EXISTS `+schema+` CASCADE`) })
	var ddl strings.Builder
	fmt.Fprintf(&ddl, "CREATE TABLE %s.all_types (id int4 PRIMARY KEY", schema)
	for _, c := range cols {
		fmt.Fprintf(&ddl, ",\n%s %s", c.col, c.typ)
	}
	ddl.WriteString(")")
	testenv.Exec(t, conn,
		`CREATE SCHEMA `+schema,
		`CREATE TYPE `+schema+`.mood AS ENUM ('sad', 'ok', 'happy ☺')`,
		`CREATE TYPE `+schema+`.pair AS (a int4, b text)`,
		`CREATE DOMAIN `+schema+`.posint AS int4 CHECK (VALUE > 0)`,
		`CREATE DOMAIN `+schema+`.label AS varchar(20)`,
		`CREATE DOMAIN `+schema+`.temp AS real`,
		ddl.String(),
		`ALTER TABLE `+schema+`.all_types REPLICA IDENTITY FULL`)
}

// writeTypeRows inserts rows 1 to 3, updates row 2 and deletes row 3, each
// in its own transaction. It returns PostgreSQL's own ::text of every value
// after the inserts and after the update, by id.
func writeTypeRows(t *testing.T, conn *pgx.Conn, schema string, cols []typeCase) (inserted, updated map[int][]*string) {
	t.Helper()
	q := schema + ".all_types"
	names := make([]string, len(cols))
	as, bs := make([]string, len(cols)), make([]string, len(cols))
	var sets []string
	for i, c := range cols {
		names[i], as[i], bs[i] = c.col, c.a, c.b
		if c.u != "" {
			sets = append(sets, c.col+" = "+c.u)
		}
	}
	list := strings.Join(names, ", ")
	testenv.Exec(t, conn,
		fmt.Sprintf("INSERT INTO %s (id) VALUES (1)", q),
		fmt.Sprintf("INSERT INTO %s (id, %s) VALUES (2, %s)", q, list, strings.Join(as, ", ")),
		fmt.Sprintf("INSERT INTO %s (id, %s) VALUES (3, %s)", q, list, strings.Join(bs, ", ")))
	inserted = readTexts(t, conn, q, cols)
	testenv.Exec(t, conn,
		fmt.Sprintf("UPDATE %s SET %s WHERE id = 2", q, strings.Join(sets, ", ")),
		fmt.Sprintf("DELETE FROM %s WHERE id = 3", q))
	updated = readTexts(t, conn, q, cols)
	updated[3] = inserted[3]
	return inserted, updated
}

// readTexts reads every value as the type's output function prints it, in a
// session with the settings capture's replication session uses (pgsource),
// id first. format('%s') calls the output function; a ::text cast does not
// always (bool gives "true", char(n) loses its padding, inet gains a /32).
func readTexts(t *testing.T, conn *pgx.Conn, table string, cols []typeCase) map[int][]*string {
	t.Helper()
	exprs := []string{"id::text"}
	for _, c := range cols {
		exprs = append(exprs, fmt.Sprintf("CASE WHEN num_nulls(%[1]s) = 0 THEN format('%%s', %[1]s) END", c.col))
	}
	rows, err := conn.Query(context.Background(), "SELECT "+strings.Join(exprs, ", ")+" FROM "+table+" ORDER BY id")
	if err != nil {
		t.Fatalf("reading %s as text: %v", table, err)
	}
	defer rows.Close()
	out := map[int][]*string{}
	for rows.Next() {
		vals := make([]*string, len(exprs))
		dst := make([]any, len(exprs))
		for i := range vals {
			dst[i] = &vals[i]
		}
		if err := rows.Scan(dst...); err != nil {
			t.Fatal(err)
		}
		id, err := strconv.Atoi(*vals[0])
		if err != nil {
			t.Fatal(err)
		}
		out[id] = vals
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// startCapture serves the real capture service on a loopback port.
func startCapture(t *testing.T) capturev1.CaptureServiceClient {
	t.Helper()
	cc, _ := testenv.ServeGRPC(t, func(gs *grpc.Server) {
		capturev1.RegisterCaptureServiceServer(gs, capture.NewServer(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))))
	})
	return capturev1.NewCaptureServiceClient(cc)
}

// pumpChanges streams capture's batches into every delivery session, as the
// incremental activity does, until want events and a watermark past their
// last commit have gone through; then it ends the sessions and checks that
// delivery reported that watermark safe. It returns the events seen.
func pumpChanges(t *testing.T, cc capturev1.CaptureServiceClient, start *capturev1.StartStream, sessions []*session, want int) []*cdcv1.ChangeEvent {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	st, err := cc.StreamChanges(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Send(&capturev1.StreamChangesRequest{Kind: &capturev1.StreamChangesRequest_Start{Start: start}}); err != nil {
		t.Fatal(err)
	}
	var evs []*cdcv1.ChangeEvent
	var watermark uint64
	for len(evs) < want || watermark <= evs[len(evs)-1].GetCommitLsn() {
		resp, err := st.Recv()
		if err != nil {
			t.Fatalf("capture stream after %d of %d events: %v", len(evs), want, err)
		}
		b := resp.GetBatch()
		evs = append(evs, b.GetEvents()...)
		watermark = max(watermark, b.GetWatermarkLsn())
		for _, s := range sessions {
			s.send(b)
		}
	}
	if len(evs) != want {
		t.Fatalf("capture sent %d events, want %d", len(evs), want)
	}
	for _, s := range sessions {
		last, err := s.finish(60 * time.Second)
		if err != nil || last.GetSafeLsn() < evs[len(evs)-1].GetCommitLsn() {
			t.Fatalf("delivery ended with %v, last response %v; want the last commit %d safe", err, last, evs[len(evs)-1].GetCommitLsn())
		}
	}
	return evs
}

// TestAllTypesRoundTrip streams a table with a column of every built-in
// PostgreSQL 15 type (and arrays, ranges, multiranges, an enum, a composite
// and domains) through the real capture and delivery services into the
// real Kafka, in Canal JSON, DTS Avro and Debezium JSON (with schemas).
// Every Canal value, and every Debezium value whose schema is a string of
// the text, must equal
// PostgreSQL's own ::text, every DTS Avro value (decoded with goavro, not
// the encoder's library) must state the same value, and both formats must
// match the reviewed golden files (go test -run TestAllTypesRoundTrip
// -update rewrites them).
func TestAllTypesRoundTrip(t *testing.T) {
	bootstrap := realKafka(t)
	conn := testenv.PG(t)
	schema := testenv.UniqueName("ferry_types")
	cols := typeColumns(schema)
	createTypesTable(t, conn, schema, cols)

	cc := startCapture(t)
	slot, pub := testenv.UniqueName("ferry_types_slot"), testenv.UniqueName("ferry_types_pub")
	if _, err := cc.EnsureReplication(context.Background(), &capturev1.EnsureReplicationRequest{Source: testenv.Source(t),
		SlotName: slot, PublicationName: pub, Tables: []*taskv1.TableRef{{Schema: schema, Table: "all_types"}}}); err != nil {
		t.Fatalf("EnsureReplication: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := cc.ReleaseReplication(ctx, &capturev1.ReleaseReplicationRequest{Source: testenv.Source(t), SlotName: slot, PublicationName: pub}); err != nil {
			t.Errorf("releasing %s and %s: %v", slot, pub, err)
		}
	})
	inserted, updated := writeTypeRows(t, conn, schema, cols)

	dc, _ := startServer(t)
	canalTopic, avroTopic := testenv.UniqueName("ferry_types_canal"), testenv.UniqueName("ferry_types_avro")
	dbzTopic := testenv.UniqueName("ferry_types_dbz")
	ensure(t, dc, bootstrap, &deliveryv1.TopicSpec{Name: canalTopic, Partitions: 1}, &deliveryv1.TopicSpec{Name: avroTopic, Partitions: 1},
		&deliveryv1.TopicSpec{Name: dbzTopic, Partitions: 1})
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	objects := &taskv1.ObjectSelection{Schemas: []*taskv1.SchemaSelection{{Schema: schema}}}
	canalStart := start(bootstrap, canalTopic, nil)
	avroStart := start(bootstrap, avroTopic, &taskv1.KafkaOptions{Format: taskv1.DataFormat_DATA_FORMAT_DTS_AVRO})
	dbzStart := start(bootstrap, dbzTopic, &taskv1.KafkaOptions{Format: taskv1.DataFormat_DATA_FORMAT_DEBEZIUM_JSON, DebeziumSchemas: true})
	canalStart.Objects, avroStart.Objects, dbzStart.Objects = objects, objects, objects
	sessions := []*session{openSession(t, ctx, dc, canalStart), openSession(t, ctx, dc, avroStart), openSession(t, ctx, dc, dbzStart)}
	pumpChanges(t, cc, &capturev1.StartStream{Source: testenv.Source(t), SlotName: slot, PublicationName: pub}, sessions, 5)

	info := columnInfo(t, conn, schema)
	want := expectedChanges(inserted, updated)
	checkCanalTypes(t, consume(t, bootstrap, canalTopic, len(want), 30*time.Second), info, want, schema)
	checkAvroTypes(t, consume(t, bootstrap, avroTopic, len(want), 30*time.Second), info, want, schema)
	checkDebeziumTypes(t, consume(t, bootstrap, dbzTopic, len(want)+1, 30*time.Second), info, want, schema)
}
