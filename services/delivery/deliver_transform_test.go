package delivery

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/linkedin/goavro/v2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	cdcv1 "github.com/ferry-cdc/ferry/gen/ferry/cdc/v1"
	deliveryv1 "github.com/ferry-cdc/ferry/gen/ferry/delivery/v1"
	taskv1 "github.com/ferry-cdc/ferry/gen/ferry/task/v1"
	"github.com/ferry-cdc/ferry/services/delivery/canal/canaltest"
	"github.com/ferry-cdc/ferry/services/delivery/dtsavro"
	"github.com/ferry-cdc/ferry/services/tuple"
)

// ordersTransforms keep odd ids, add amount_cents, hash note and send id 3
// to topic "big".
func ordersTransforms() []*taskv1.Transform {
	return []*taskv1.Transform{
		{Kind: &taskv1.Transform_Filter{Filter: "row.id % 2 == 1"}},
		{Kind: &taskv1.Transform_Compute{Compute: &taskv1.ComputedColumn{Name: "amount_cents", Expression: "int(row.amount * 100.0)"}}},
		{Kind: &taskv1.Transform_Mask{Mask: &taskv1.MaskColumn{Column: "note", Mask: &taskv1.MaskColumn_Truncate{Truncate: &taskv1.MaskTruncate{Length: 1}}}}},
		{Kind: &taskv1.Transform_Route{Route: `row.id == 3 ? "big" : ""`}},
	}
}

func transformStart(bootstrap string, format taskv1.DataFormat, ts []*taskv1.Transform) *deliveryv1.StartDelivery {
	st := start(bootstrap, "orders", &taskv1.KafkaOptions{Format: format})
	st.Objects.Tables = []*taskv1.TableSelection{{Schema: "public", Table: "orders", Transforms: ts}}
	return st
}

// TestDeliverTransformsCanal: filtered rows are left out, the computed and
// masked columns are in the messages, and a route sends a row elsewhere.
func TestDeliverTransformsCanal(t *testing.T) {
	bootstrap := fakeKafka(t, 1, "orders", "big")
	client, _ := startServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	s := openSession(t, ctx, client, transformStart(bootstrap, taskv1.DataFormat_DATA_FORMAT_CANAL_JSON, ordersTransforms()))
	s.send(&cdcv1.ChangeBatch{Relations: []*cdcv1.Relation{ordersRelation()},
		Events: []*cdcv1.ChangeEvent{insert(1, "alpha", 90), insert(2, "beta", 91), insert(3, "gamma", 92)}, WatermarkLsn: 100})
	if _, err := s.finish(20 * time.Second); err != nil {
		t.Fatal(err)
	}
	m := canaltest.Decode(t, consume(t, bootstrap, "orders", 1, 20*time.Second)[0].Value)
	row := m.Data[0]
	if *row["id"] != "1" || *row["note"] != "a" || *row["amount_cents"] != "1250" || m.MysqlType["amount_cents"] != "bigint" {
		t.Fatalf("row %s", mustJSON(t, m))
	}
	big := canaltest.Decode(t, consume(t, bootstrap, "big", 1, 20*time.Second)[0].Value)
	if *big.Data[0]["id"] != "3" {
		t.Fatalf("routed row %s", mustJSON(t, big))
	}
}

func TestDeliverTransformsAvro(t *testing.T) {
	bootstrap := fakeKafka(t, 1, "orders", "big")
	client, _ := startServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	s := openSession(t, ctx, client, transformStart(bootstrap, taskv1.DataFormat_DATA_FORMAT_DTS_AVRO, ordersTransforms()))
	s.send(&cdcv1.ChangeBatch{Relations: []*cdcv1.Relation{ordersRelation()},
		Events: []*cdcv1.ChangeEvent{insert(1, "alpha", 90), insert(2, "beta", 91)}, WatermarkLsn: 100})
	if _, err := s.finish(20 * time.Second); err != nil {
		t.Fatal(err)
	}
	codec, err := goavro.NewCodec(dtsavro.SchemaJSON)
	if err != nil {
		t.Fatal(err)
	}
	native, _, err := codec.NativeFromBinary(consume(t, bootstrap, "orders", 1, 20*time.Second)[0].Value)
	if err != nil {
		t.Fatal(err)
	}
	text := mustJSON(t, native)
	// Character values are bytes, which JSON writes in base64: "a" is YQ==.
	for _, want := range []string{`"name":"amount_cents"`, `"value":"1250"`, `"value":"YQ=="`} {
		if !strings.Contains(text, want) {
			t.Fatalf("record %s lacks %s", text, want)
		}
	}
	if strings.Contains(text, "YWxwaGE=") {
		t.Fatalf("record %s carries the unmasked note", text)
	}
}

// TestDeliverTransformRuntimeError: a division by zero stops the stream
// naming table, key columns and LSN but no value, or goes to the dead-letter topic when set.
func TestDeliverTransformRuntimeError(t *testing.T) {
	bad := []*taskv1.Transform{{Kind: &taskv1.Transform_Compute{Compute: &taskv1.ComputedColumn{Name: "r", Expression: "10 / (row.id - 2)"}}}}
	bootstrap := fakeKafka(t, 1, "orders", "dlq")
	client, _ := startServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	s := openSession(t, ctx, client, transformStart(bootstrap, taskv1.DataFormat_DATA_FORMAT_CANAL_JSON, bad))
	s.send(&cdcv1.ChangeBatch{Relations: []*cdcv1.Relation{ordersRelation()},
		Events: []*cdcv1.ChangeEvent{insert(1, "a", 90), insert(2, "secret", 91)}, WatermarkLsn: 100})
	_, err := s.drain(20 * time.Second)
	msg := status.Convert(err).Message()
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(msg, "public.orders") || !strings.Contains(msg, "key columns id") ||
		!strings.Contains(msg, "LSN 91") || !strings.Contains(msg, "division by zero") ||
		strings.Contains(msg, "secret") || strings.Contains(msg, `"2"`) || strings.Contains(msg, "12.50") || strings.Contains(msg, "key 2") {
		t.Fatalf("got %v, want InvalidArgument naming table, key and LSN without values", err)
	}

	st := transformStart(bootstrap, taskv1.DataFormat_DATA_FORMAT_CANAL_JSON, bad)
	st.Options.DeadLetterTopic = "dlq"
	s = openSession(t, ctx, client, st)
	s.send(&cdcv1.ChangeBatch{Relations: []*cdcv1.Relation{ordersRelation()},
		Events: []*cdcv1.ChangeEvent{insert(2, "secret", 91)}, WatermarkLsn: 100})
	last, err := s.finish(20 * time.Second)
	if err != nil || last.GetDeadLettered() != 1 {
		t.Fatalf("final %v, %v; want one row dead-lettered", last, err)
	}
	d := consume(t, bootstrap, "dlq", 1, 20*time.Second)[0]
	headers := map[string]string{}
	for _, h := range d.Headers {
		headers[h.Key] = string(h.Value)
	}
	if string(d.Key) != "2" || headers[hdrReason] != reasonTransformFailed || headers[hdrTransform] != "0" || headers[hdrLSN] != "91" {
		t.Fatalf("dead letter key %q headers %v", d.Key, headers)
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestDeliverTransformUnchangedToast: an UPDATE that left note alone stays
// an UPDATE under a filter on note, and the masked note stays unchanged:
// out of Canal's data, named in the ferry.unchanged-toast header.
func TestDeliverTransformUnchangedToast(t *testing.T) {
	ts := []*taskv1.Transform{
		{Kind: &taskv1.Transform_Filter{Filter: "row.note != null"}},
		{Kind: &taskv1.Transform_Mask{Mask: &taskv1.MaskColumn{Column: "note", Mask: &taskv1.MaskColumn_Hash{Hash: &taskv1.MaskHash{}}}}},
	}
	bootstrap := fakeKafka(t, 1, "orders")
	client, _ := startServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	s := openSession(t, ctx, client, transformStart(bootstrap, taskv1.DataFormat_DATA_FORMAT_CANAL_JSON, ts))
	upd := insert(5, "", 90)
	upd.Op, upd.NewTuple = cdcv1.Operation_OPERATION_UPDATE, tuple.Of("5", tuple.UnchangedToast, "1.00", nil)
	s.send(&cdcv1.ChangeBatch{Relations: []*cdcv1.Relation{ordersRelation()}, Events: []*cdcv1.ChangeEvent{upd}, WatermarkLsn: 100})
	if _, err := s.finish(20 * time.Second); err != nil {
		t.Fatal(err)
	}
	msg := consume(t, bootstrap, "orders", 1, 20*time.Second)[0]
	m := canaltest.Decode(t, msg.Value)
	var toast string
	for _, h := range msg.Headers {
		if h.Key == UnchangedToastHeader {
			toast = string(h.Value)
		}
	}
	if len(m.Data) != 1 {
		t.Fatalf("message %s, want one row", mustJSON(t, m))
	}
	if _, has := m.Data[0]["note"]; *m.Type != "UPDATE" || has || toast != `["note"]` {
		t.Fatalf("message %s header %q; want an UPDATE without note, naming it unchanged", mustJSON(t, m), toast)
	}
}
