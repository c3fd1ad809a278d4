package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/linkedin/goavro/v2"

	taskv1 "github.com/ferry-cdc/ferry/gen/ferry/task/v1"
)

const dts = "com.alibaba.dts.formats.avro."

// lsnText is pg_lsn's text with the low half zero-padded, as DTS Avro
// positions are written.
var lsnText = regexp.MustCompile(`^[0-9A-F]{1,8}/[0-9A-F]{8}$`)

func parseLSN(t *testing.T, s string) uint64 {
	t.Helper()
	hi, lo, ok := strings.Cut(s, "/")
	if !ok || !lsnText.MatchString(s) {
		t.Fatalf("position %q is not an LSN in X/XXXXXXXX form", s)
	}
	h, _ := strconv.ParseUint(hi, 16, 32)
	l, _ := strconv.ParseUint(lo, 16, 32)
	return h<<32 | l
}

func avroMember(name string, fields map[string]any) map[string]any {
	return map[string]any{dts + name: fields}
}

var noneValue = map[string]any{dts + "EmptyObject": "NONE"}

func TestAvroInsertUpdateDeleteRoundTrip(t *testing.T) {
	conn := pgConnect(t)
	table := uniqueName("e2e_avro")
	exec1(t, conn, fmt.Sprintf(`CREATE TABLE public.%s (
		id bigint PRIMARY KEY, sku text NOT NULL, qty integer, price numeric(10,2),
		note text, created timestamptz, payload bytea)`, table))
	t.Cleanup(func() { _, _ = conn.Exec(context.Background(), "DROP TABLE IF EXISTS public."+table) })

	f := startFerry(t)
	taskID := strings.ReplaceAll(table, "_", "-")
	f.createTaskWithOptions(conn, taskID, table, table, &taskv1.KafkaOptions{Format: taskv1.DataFormat_DATA_FORMAT_DTS_AVRO})
	consumer := newConsumer(t, table)

	exec1(t, conn, fmt.Sprintf(`INSERT INTO public.%s VALUES
		(1, 'SKU-1', 3, 12345678.90, NULL, '2026-01-02 03:04:05.123456+00', '\x00ff10')`, table))
	exec1(t, conn, fmt.Sprintf(`UPDATE public.%s SET qty = 4, note = 'gift' WHERE id = 1`, table))
	beforeDelete := currentLSN(t, conn)
	exec1(t, conn, fmt.Sprintf(`DELETE FROM public.%s WHERE id = 1`, table))
	msgs := readMessages(t, consumer, 3, 60*time.Second)

	codec := avroCodec(t)
	created := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC).Unix()
	inserted := []any{
		avroMember("Integer", map[string]any{"precision": int32(19), "value": "1"}),
		avroMember("Character", map[string]any{"charset": "utf8", "value": []byte("SKU-1")}),
		avroMember("Integer", map[string]any{"precision": int32(10), "value": "3"}),
		avroMember("Decimal", map[string]any{"value": "12345678.90", "precision": int32(10), "scale": int32(2)}),
		nil,
		avroMember("Timestamp", map[string]any{"timestamp": created, "millis": int32(123456)}),
		avroMember("BinaryObject", map[string]any{"type": "bytea", "value": []byte{0x00, 0xff, 0x10}}),
	}
	updated := append([]any(nil), inserted...)
	updated[2] = avroMember("Integer", map[string]any{"precision": int32(10), "value": "4"})
	updated[4] = avroMember("Character", map[string]any{"charset": "utf8", "value": []byte("gift")})
	// REPLICA IDENTITY DEFAULT: a delete reveals the key only.
	deleted := []any{inserted[0], noneValue, noneValue, noneValue, noneValue, noneValue, noneValue}
	want := []struct {
		op            string
		before, after []any
	}{{"INSERT", nil, inserted}, {"UPDATE", nil, updated}, {"DELETE", deleted, nil}}

	var lastID int64
	var lastPos uint64
	for i, msg := range msgs {
		native, rest, err := codec.NativeFromBinary(msg.Value)
		if err != nil || len(rest) != 0 {
			t.Fatalf("message %d: goavro: %v (%d bytes left)", i, err, len(rest))
		}
		r := native.(map[string]any)
		if r["operation"] != want[i].op {
			t.Fatalf("message %d operation %v, want %s", i, r["operation"], want[i].op)
		}
		checkAvroHeader(t, r, table)
		checkAvroImage(t, want[i].op+" beforeImages", r["beforeImages"], want[i].before)
		checkAvroImage(t, want[i].op+" afterImages", r["afterImages"], want[i].after)
		if string(msg.Key) != "1" {
			t.Errorf("%s: key %q, want 1", want[i].op, msg.Key)
		}
		pos := parseLSN(t, r["sourcePosition"].(string))
		safe := parseLSN(t, r["safeSourcePosition"].(string))
		id := r["id"].(int64)
		if pos > safe || pos <= lastPos || id <= lastID {
			t.Errorf("%s: position %s, safe %s, id %d after position %x and id %d: want positions below the commit, increasing ids and positions",
				want[i].op, r["sourcePosition"], r["safeSourcePosition"], id, lastPos, lastID)
		}
		if want[i].op == "DELETE" && pos < beforeDelete {
			t.Errorf("DELETE at %x, before the WAL position %x read ahead of it", pos, beforeDelete)
		}
		lastID, lastPos = id, pos
	}

	slot := slotName(taskID)
	eventually(t, 30*time.Second, "the slot to confirm the delete", func() (bool, string) {
		got := confirmedFlushLSN(t, conn, slot)
		return got > beforeDelete, fmt.Sprintf("confirmed_flush_lsn %d, delete started after %d", got, beforeDelete)
	})
	f.stopAndRelease(conn, taskID)
}

// avroCodec reads the schema delivery embeds, with an Avro library
// independent of the one delivery encodes with.
func avroCodec(t *testing.T) *goavro.Codec {
	t.Helper()
	schema, err := os.ReadFile(filepath.Join(repoRoot(), "services", "delivery", "dtsavro", "record.avsc"))
	if err != nil {
		t.Fatal(err)
	}
	codec, err := goavro.NewCodec(string(schema))
	if err != nil {
		t.Fatal(err)
	}
	return codec
}

func checkAvroHeader(t *testing.T, r map[string]any, table string) {
	t.Helper()
	op := r["operation"]
	wantObject := sourceEndpoint().GetDatabase() + ".public." + table
	if r["version"] != int32(1) || r["objectName"].(map[string]any)["string"] != wantObject ||
		!reflect.DeepEqual(r["source"], map[string]any{"sourceType": "PostgreSQL", "version": ""}) ||
		r["processTimestamps"] != nil || len(r["tags"].(map[string]any)) != 0 {
		t.Errorf("%s: header %v, want version 1, objectName %s, source PostgreSQL, no tags", op, r, wantObject)
	}
	if _, err := strconv.ParseUint(r["sourceTxid"].(string), 10, 32); err != nil {
		t.Errorf("%s: sourceTxid %q is not an xid", op, r["sourceTxid"])
	}
	sec, ms := r["sourceTimestamp"].(int64), r["bornTimestamp"].(int64)
	if now := time.Now().Unix(); sec < now-300 || sec > now+5 || ms/1000 != sec {
		t.Errorf("%s: sourceTimestamp %d, bornTimestamp %d: want the commit time in s and ms", op, sec, ms)
	}
	wantFields := []any{}
	for _, f := range []struct {
		name string
		oid  int32
	}{{"id", 20}, {"sku", 25}, {"qty", 23}, {"price", 1700}, {"note", 25}, {"created", 1184}, {"payload", 17}} {
		wantFields = append(wantFields, map[string]any{"name": f.name, "dataTypeNumber": f.oid})
	}
	if got := r["fields"].(map[string]any)["array"]; !reflect.DeepEqual(got, wantFields) {
		t.Errorf("%s: fields %v, want %v", op, got, wantFields)
	}
}

func checkAvroImage(t *testing.T, what string, got any, want []any) {
	t.Helper()
	if want == nil {
		if got != nil {
			t.Errorf("%s = %v, want null", what, got)
		}
		return
	}
	arr, _ := got.(map[string]any)["array"].([]any)
	if len(arr) != len(want) {
		t.Fatalf("%s = %v, want %d elements", what, got, len(want))
	}
	for i := range want {
		if !reflect.DeepEqual(arr[i], want[i]) {
			t.Errorf("%s[%d] = %#v, want %#v", what, i, arr[i], want[i])
		}
	}
}
