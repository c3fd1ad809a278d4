package delivery

import (
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	cdcv1 "github.com/ferry-cdc/ferry/gen/ferry/cdc/v1"
	deliveryv1 "github.com/ferry-cdc/ferry/gen/ferry/delivery/v1"
	taskv1 "github.com/ferry-cdc/ferry/gen/ferry/task/v1"
	"github.com/ferry-cdc/ferry/services/delivery/transform"
	"github.com/ferry-cdc/ferry/services/tuple"
)

// BenchmarkEncode7Columns measures every format on the same 7-column row
// (the e2e table's: bigint key, text, integer, numeric, NULL text,
// timestamptz, bytea).
func BenchmarkEncode7Columns(b *testing.B) {
	rel := &cdcv1.Relation{
		Oid: 1, Schema: "public", Table: "orders", KeyColumns: []string{"id"},
		ReplicaIdentity: cdcv1.ReplicaIdentity_REPLICA_IDENTITY_DEFAULT,
		Columns: []*cdcv1.Column{
			{Name: "id", TypeOid: 20, TypeName: "bigint", Key: true},
			{Name: "sku", TypeOid: 25, TypeName: "text"},
			{Name: "qty", TypeOid: 23, TypeName: "integer"},
			{Name: "price", TypeOid: 1700, TypeName: "numeric(10,2)", TypeModifier: 10<<16 | 2 + 4},
			{Name: "note", TypeOid: 25, TypeName: "text"},
			{Name: "created", TypeOid: 1184, TypeName: "timestamp with time zone"},
			{Name: "payload", TypeOid: 17, TypeName: "bytea"},
		},
	}
	ev := &cdcv1.ChangeEvent{
		Op: cdcv1.Operation_OPERATION_INSERT, RelationOid: 1, Lsn: 0x16_B374D848, CommitLsn: 0x16_B374D9A0, Xid: 1234,
		CommitTime: timestamppb.New(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)),
		// PostgreSQL's text output, as capture sends it.
		NewTuple: tuple.Of("123456", "SKU-123456", "3", "12345678.90", nil, "2026-01-02 03:04:05.123456+00", `\x00ff10`),
	}
	// The typical transform: a predicate, one computed column and one
	// masked column, against the same row without it.
	typical := []*taskv1.Transform{
		{Kind: &taskv1.Transform_Filter{Filter: "row.price > 100.0"}},
		{Kind: &taskv1.Transform_Compute{Compute: &taskv1.ComputedColumn{Name: "total", Expression: "row.price * double(row.qty)"}}},
		{Kind: &taskv1.Transform_Mask{Mask: &taskv1.MaskColumn{Column: "sku", Mask: &taskv1.MaskColumn_Hash{Hash: &taskv1.MaskHash{}}}}},
	}
	for _, o := range []struct {
		name string
		opts *taskv1.KafkaOptions
	}{
		{"DATA_FORMAT_CANAL_JSON", &taskv1.KafkaOptions{Format: taskv1.DataFormat_DATA_FORMAT_CANAL_JSON}},
		{"DATA_FORMAT_DTS_AVRO", &taskv1.KafkaOptions{Format: taskv1.DataFormat_DATA_FORMAT_DTS_AVRO}},
		{"DATA_FORMAT_DEBEZIUM_JSON", &taskv1.KafkaOptions{Format: taskv1.DataFormat_DATA_FORMAT_DEBEZIUM_JSON}},
		{"DATA_FORMAT_DEBEZIUM_JSON_SCHEMAS", &taskv1.KafkaOptions{Format: taskv1.DataFormat_DATA_FORMAT_DEBEZIUM_JSON, DebeziumSchemas: true}},
		// The Flink value style rewrites the timestamptz column.
		{"DATA_FORMAT_CANAL_JSON_FLINK", &taskv1.KafkaOptions{Format: taskv1.DataFormat_DATA_FORMAT_CANAL_JSON,
			CanalValueStyle: taskv1.CanalValueStyle_CANAL_VALUE_STYLE_FLINK}},
	} {
		for _, ts := range [][]*taskv1.Transform{nil, typical} {
			name := o.name
			if ts != nil {
				name += "/transformed"
			}
			b.Run(name, func(b *testing.B) { benchEncode(b, o.opts, rel, ev, ts) })
		}
	}
}

func benchEncode(b *testing.B, opts *taskv1.KafkaOptions, rel *cdcv1.Relation, ev *cdcv1.ChangeEvent, ts []*taskv1.Transform) {
	p, err := transform.Compile(rel, ts)
	if err != nil {
		b.Fatal(err)
	}
	out := rel
	if p != nil {
		out = p.Relation()
	}
	enc := newEncoder(&deliveryv1.StartDelivery{SourceDatabase: "shop", Options: opts})
	tab := enc.SetRelation(out)
	var buf []byte
	b.ReportAllocs()
	for b.Loop() {
		e := ev
		if p != nil {
			res, err := p.Apply(ev)
			if err != nil || res.Event == nil {
				b.Fatal(res, err)
			}
			e = res.Event
		}
		if buf, err = enc.Encode(buf[:0], tab, e); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(len(buf)), "bytes/msg")
}
