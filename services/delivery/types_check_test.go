package delivery

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"github.com/jackc/pgx/v5"
	"github.com/linkedin/goavro/v2"

	"github.com/ferry-cdc/ferry/services/delivery/canal/canaltest"
)

// colInfo is a column of the all-types table as the catalog describes it.
type colInfo struct {
	name string
	oid  uint32
	base uint32 // a domain's base type, else oid
	typ  string // format_type
}

func columnInfo(t *testing.T, conn *pgx.Conn, schema string) []colInfo {
	t.Helper()
	rows, err := conn.Query(context.Background(), `
		SELECT attname, atttypid, CASE WHEN typtype = 'd' THEN typbasetype ELSE atttypid END,
		       format_type(atttypid, atttypmod)
		FROM pg_attribute JOIN pg_type ON pg_type.oid = atttypid
		WHERE attrelid = $1::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum`, schema+".all_types")
	if err != nil {
		t.Fatal(err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (colInfo, error) {
		var c colInfo
		return c, r.Scan(&c.name, &c.oid, &c.base, &c.typ)
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// wantChange is one row change as PostgreSQL's ::text of each column; a nil
// image is absent.
type wantChange struct {
	op            string
	before, after []*string
}

func expectedChanges(inserted, updated map[int][]*string) []wantChange {
	return []wantChange{
		{op: "INSERT", after: inserted[1]},
		{op: "INSERT", after: inserted[2]},
		{op: "INSERT", after: inserted[3]},
		{op: "UPDATE", before: inserted[2], after: updated[2]},
		{op: "DELETE", before: inserted[3]},
	}
}

// field is one member of an ordered JSON object, so golden files keep the
// formats' key and column order.
type field struct {
	k string
	v any
}

type object []field

func (o object) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, f := range o {
		if i > 0 {
			b.WriteByte(',')
		}
		k, _ := json.Marshal(f.k)
		v, err := json.Marshal(f.v)
		if err != nil {
			return nil, err
		}
		b.Write(k)
		b.WriteByte(':')
		b.Write(v)
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

func sameText(a, b *string) bool {
	return (a == nil) == (b == nil) && (a == nil || *a == *b)
}

func show(p *string) string {
	if p == nil {
		return "NULL"
	}
	return strconv.Quote(*p)
}

// checkCanalTypes decodes each message strictly and compares every value
// with PostgreSQL's ::text, then the whole message with the golden file.
func checkCanalTypes(t *testing.T, msgs []*kafka.Message, info []colInfo, want []wantChange, schema string) {
	t.Helper()
	var decoded []canaltest.Message
	for _, m := range msgs {
		decoded = append(decoded, canaltest.Decode(t, m.Value))
	}
	slices.SortFunc(decoded, func(a, b canaltest.Message) int { return int(*a.ID - *b.ID) })
	var golden []object
	for i, m := range decoded {
		w := want[i]
		row := w.after
		if w.op == "DELETE" {
			row = w.before
		}
		if *m.Type != w.op || *m.Database != schema || *m.Table != "all_types" || !slices.Equal(m.PkNames, []string{"id"}) || *m.IsDdl || *m.SQL != "" {
			t.Fatalf("message %d header: %+v, want %s on %s.all_types", i, m, w.op, schema)
		}
		if len(m.Data) != 1 || len(m.Data[0]) != len(info) || len(m.SQLType) != len(info) || len(m.MysqlType) != len(info) {
			t.Fatalf("message %d has %d data, %d sqlType, %d mysqlType entries for %d columns", i, len(m.Data[0]), len(m.SQLType), len(m.MysqlType), len(info))
		}
		wantOld := object{}
		for j, c := range info {
			if got := m.Data[0][c.name]; !sameText(got, row[j]) {
				t.Errorf("%s %d: data.%s (%s) = %s, PostgreSQL's text is %s", w.op, i, c.name, c.typ, show(got), show(row[j]))
			}
			if m.MysqlType[c.name] != c.typ {
				t.Errorf("mysqlType.%s = %q, format_type is %q", c.name, m.MysqlType[c.name], c.typ)
			}
			if w.op == "UPDATE" && !sameText(w.before[j], w.after[j]) {
				wantOld = append(wantOld, field{c.name, w.before[j]})
			}
		}
		checkCanalOld(t, m, w, wantOld)
		golden = append(golden, canalGolden(m, info))
	}
	compareGolden(t, "all_types.canal.golden.json", golden, schema)
}

func checkCanalOld(t *testing.T, m canaltest.Message, w wantChange, wantOld object) {
	t.Helper()
	if w.op != "UPDATE" {
		if m.Old != nil {
			t.Errorf("%s: old = %v, want null", w.op, m.Old)
		}
		return
	}
	if len(m.Old) != 1 || len(m.Old[0]) != len(wantOld) {
		t.Fatalf("UPDATE: old has %d columns, want the %d changed ones", len(m.Old[0]), len(wantOld))
	}
	for _, f := range wantOld {
		got, ok := m.Old[0][f.k]
		if !ok || !sameText(got, f.v.(*string)) {
			t.Errorf("UPDATE: old.%s = %s, PostgreSQL's text before the update is %s", f.k, show(got), show(f.v.(*string)))
		}
	}
}

// canalGolden is the message without id, es and ts (which change every
// run), with keys and columns in the order the message has them.
func canalGolden(m canaltest.Message, info []colInfo) object {
	types, data := object{}, object{}
	for _, c := range info {
		types = append(types, field{c.name, object{{"sqlType", m.SQLType[c.name]}, {"mysqlType", m.MysqlType[c.name]}}})
		data = append(data, field{c.name, m.Data[0][c.name]})
	}
	var old any
	if m.Old != nil {
		o := object{}
		for _, c := range info {
			if v, ok := m.Old[0][c.name]; ok {
				o = append(o, field{c.name, v})
			}
		}
		old = []object{o}
	}
	return object{{"database", *m.Database}, {"table", *m.Table}, {"pkNames", m.PkNames}, {"isDdl", *m.IsDdl},
		{"type", *m.Type}, {"sql", *m.SQL}, {"sqlType and mysqlType", types}, {"data", []object{data}}, {"old", old}}
}

// compareGolden writes v as indented JSON with the test's schema name
// replaced by "ferry_types", and compares it with testdata/name (or
// rewrites that file with -update).
func compareGolden(t *testing.T, name string, v any, schema string) {
	t.Helper()
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	b = append(bytes.ReplaceAll(b, []byte(schema), []byte("ferry_types")), '\n')
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if !bytes.Equal(want, b) {
		got := path + ".got"
		_ = os.WriteFile(got, b, 0o644)
		t.Errorf("%s differs from the golden file %s; compare with diff %s %s, and rerun with -update once the change is reviewed", name, path, path, got)
	}
}

const dtsNS = "com.alibaba.dts.formats.avro."

// checkAvroTypes decodes each Record with goavro from record.avsc and checks
// that every image value states PostgreSQL's ::text value, then compares
// the records with the golden file.
func checkAvroTypes(t *testing.T, msgs []*kafka.Message, info []colInfo, want []wantChange, schema string) {
	t.Helper()
	avsc, err := os.ReadFile(filepath.Join("dtsavro", "record.avsc"))
	if err != nil {
		t.Fatal(err)
	}
	codec, err := goavro.NewCodec(string(avsc))
	if err != nil {
		t.Fatal(err)
	}
	var recs []map[string]any
	for _, m := range msgs {
		native, rest, err := codec.NativeFromBinary(m.Value)
		if err != nil || len(rest) != 0 {
			t.Fatalf("goavro: %v (%d bytes left)", err, len(rest))
		}
		recs = append(recs, native.(map[string]any))
	}
	slices.SortFunc(recs, func(a, b map[string]any) int { return int(a["id"].(int64) - b["id"].(int64)) })
	var golden []object
	for i, r := range recs {
		w := want[i]
		if r["operation"] != w.op || r["objectName"].(map[string]any)["string"] != "shop."+schema+".all_types" {
			t.Fatalf("record %d: operation %v objectName %v, want %s on shop.%s.all_types", i, r["operation"], r["objectName"], w.op, schema)
		}
		fields := r["fields"].(map[string]any)["array"].([]any)
		if len(fields) != len(info) {
			t.Fatalf("record %d has %d fields for %d columns", i, len(fields), len(info))
		}
		for j, f := range fields {
			fm := f.(map[string]any)
			if fm["name"] != info[j].name || fm["dataTypeNumber"] != int32(info[j].oid) {
				t.Errorf("fields[%d] = %v, want %s with type OID %d", j, fm, info[j].name, info[j].oid)
			}
		}
		checkAvroImageTexts(t, w.op+" beforeImages", r["beforeImages"], w.before, info)
		checkAvroImageTexts(t, w.op+" afterImages", r["afterImages"], w.after, info)
		golden = append(golden, avroGolden(r, info))
	}
	compareGolden(t, "all_types.dtsavro.golden.json", golden, schema)
}

func checkAvroImageTexts(t *testing.T, what string, image any, want []*string, info []colInfo) {
	t.Helper()
	if want == nil {
		if image != nil {
			t.Errorf("%s = %v, want null", what, image)
		}
		return
	}
	arr, _ := image.(map[string]any)["array"].([]any)
	if len(arr) != len(info) {
		t.Fatalf("%s has %d values for %d columns", what, len(arr), len(info))
	}
	for j, c := range info {
		if err := avroStates(arr[j], want[j], c); err != nil {
			t.Errorf("%s.%s (%s): %v", what, c.name, c.typ, err)
		}
	}
}

// avroStates reports whether the decoded image value v states the same
// value as PostgreSQL's text want, reading each union member independently
// of the encoder.
func avroStates(v any, want *string, c colInfo) error {
	if v == nil || want == nil {
		if v != nil || want != nil {
			return fmt.Errorf("got %v, PostgreSQL's text is %s", v, show(want))
		}
		return nil
	}
	m := v.(map[string]any)
	if len(m) != 1 {
		return fmt.Errorf("not a union member: %v", v)
	}
	for name, x := range m {
		got, err := memberText(strings.TrimPrefix(name, dtsNS), x, c)
		if err != nil {
			return err
		}
		if got != *want && !sameFloat(got, *want, c) {
			return fmt.Errorf("%s states %q, PostgreSQL's text is %q", name, got, *want)
		}
	}
	return nil
}

func sameFloat(got, want string, c colInfo) bool {
	if c.base != 700 && c.base != 701 {
		return false
	}
	bits := 64
	if c.base == 700 {
		bits = 32
	}
	w, err := strconv.ParseFloat(want, bits)
	g, err2 := strconv.ParseFloat(got, 64)
	return err == nil && err2 == nil && (w == g && math.Signbit(w) == math.Signbit(g) || math.IsNaN(w) && math.IsNaN(g))
}

// memberText renders a decoded union member as PostgreSQL would print the
// value it states (floats in Go's shortest form, compared numerically).
func memberText(member string, x any, c colInfo) (string, error) {
	f, _ := x.(map[string]any)
	switch member {
	case "Integer", "Decimal":
		return f["value"].(string), nil
	case "Float":
		return strconv.FormatFloat(f["value"].(float64), 'g', -1, 64), nil
	case "Character":
		if f["charset"] != "utf8" || !utf8.Valid(f["value"].([]byte)) {
			return "", fmt.Errorf("Character %v is not utf8", f)
		}
		return string(f["value"].([]byte)), nil
	case "BinaryObject":
		return `\x` + hex.EncodeToString(f["value"].([]byte)), nil
	case "TextObject":
		if f["type"] != c.typ {
			return "", fmt.Errorf("TextObject type %q, format_type is %q", f["type"], c.typ)
		}
		return f["value"].(string), nil
	case "DateTime":
		return dateTimeText(f, c.base == 1082)
	case "Timestamp":
		sec, us := f["timestamp"].(int64), int64(f["millis"].(int32))
		if us < 0 || us > 999_999 {
			return "", fmt.Errorf("Timestamp micros %d out of range", us)
		}
		days := floorDivTest(sec, 86400)
		s := sec - days*86400
		y, mo, d := civilTest(days)
		return ymdText(y, mo, d, fmt.Sprintf(" %02d:%02d:%02d%s+00", s/3600, s/60%60, s%60, fracText(us))), nil
	}
	return "", fmt.Errorf("member %s %v for a value", member, x)
}

func dateTimeText(f map[string]any, dateOnly bool) (string, error) {
	get := func(k string) (int64, bool) {
		v, ok := f[k].(map[string]any)
		if !ok {
			return 0, false
		}
		return int64(v["int"].(int32)), true
	}
	y, _ := get("year")
	mo, _ := get("month")
	d, _ := get("day")
	h, hasTime := get("hour")
	if dateOnly != !hasTime {
		return "", fmt.Errorf("DateTime %v: time fields present for a date or missing for a timestamp", f)
	}
	if dateOnly {
		return ymdText(y, int(mo), int(d), ""), nil
	}
	mi, _ := get("minute")
	s, _ := get("second")
	us, _ := get("millis")
	return ymdText(y, int(mo), int(d), fmt.Sprintf(" %02d:%02d:%02d%s", h, mi, s, fracText(us))), nil
}

func fracText(us int64) string {
	if us == 0 {
		return ""
	}
	return strings.TrimRight(fmt.Sprintf(".%06d", us), "0")
}

// ymdText prints an astronomical year as PostgreSQL does (1 BC is year 0).
func ymdText(y int64, m, d int, rest string) string {
	if y <= 0 {
		return fmt.Sprintf("%04d-%02d-%02d%s BC", 1-y, m, d, rest)
	}
	return fmt.Sprintf("%04d-%02d-%02d%s", y, m, d, rest)
}

func floorDivTest(a, b int64) int64 {
	q := a / b
	if a%b != 0 && a < 0 {
		q--
	}
	return q
}

// civilTest is the days-from-civil inverse (H. Hinnant), written here again
// so the check does not borrow the encoder's arithmetic.
func civilTest(z int64) (int64, int, int) {
	z += 719468
	era := floorDivTest(z, 146097)
	doe := z - era*146097
	yoe := (doe - doe/1460 + doe/36524 - doe/146096) / 365
	doy := doe - (365*yoe + yoe/4 - yoe/100)
	mp := (5*doy + 2) / 153
	d := int(doy - (153*mp+2)/5 + 1)
	m := int(mp + 3)
	if m > 12 {
		m -= 12
	}
	y := yoe + era*400
	if m <= 2 {
		y++
	}
	return y, m, d
}

// avroGolden is the record without what changes every run (id, times,
// positions, txid), with images keyed by column, bytes as text or \x hex,
// doubles as Go's shortest text, and the OIDs of the test's own types named.
func avroGolden(r map[string]any, info []colInfo) object {
	fields := []object{}
	for _, c := range info {
		var oid any = c.oid
		if c.oid >= 16384 {
			oid = "oid of " + c.typ
		}
		fields = append(fields, object{{"name", c.name}, {"dataTypeNumber", oid}})
	}
	image := func(v any) any {
		if v == nil {
			return nil
		}
		arr := v.(map[string]any)["array"].([]any)
		o := object{}
		for j, c := range info {
			o = append(o, field{c.name, readable(arr[j])})
		}
		return o
	}
	return object{{"version", r["version"]}, {"source", r["source"]}, {"operation", r["operation"]},
		{"objectName", r["objectName"]}, {"processTimestamps", r["processTimestamps"]}, {"tags", r["tags"]},
		{"fields", fields}, {"beforeImages", image(r["beforeImages"])}, {"afterImages", image(r["afterImages"])}}
}

// readable turns a decoded union member into JSON a reviewer can read.
func readable(v any) any {
	m, ok := v.(map[string]any)
	if !ok {
		return v
	}
	out := map[string]any{}
	for k, x := range m {
		k = strings.TrimPrefix(k, dtsNS)
		inner, ok := x.(map[string]any)
		if !ok {
			out[k] = x
			continue
		}
		fields := map[string]any{}
		for fk, fv := range inner {
			switch fv := fv.(type) {
			case []byte:
				if k == "Character" {
					fields[fk] = string(fv)
				} else {
					fields[fk] = `\x` + hex.EncodeToString(fv)
				}
			case float64:
				fields[fk] = strconv.FormatFloat(fv, 'g', -1, 64)
			case map[string]any: // a ["null","int"] union
				fields[fk] = fv["int"]
			default:
				fields[fk] = fv
			}
		}
		out[k] = fields
	}
	return out
}
