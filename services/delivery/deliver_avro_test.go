package delivery

import (
	"context"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/linkedin/goavro/v2"

	cdcv1 "github.com/ferry-cdc/ferry/gen/ferry/cdc/v1"
	taskv1 "github.com/ferry-cdc/ferry/gen/ferry/task/v1"
	"github.com/ferry-cdc/ferry/services/delivery/dtsavro"
	"github.com/ferry-cdc/ferry/services/tuple"
)

// TestDeliverDTSAvro runs a Deliver stream with options.format DTS_AVRO:
// keys, routing and checkpoints as for Canal JSON, values DTS Avro Records
// that an independent Avro library decodes.
func TestDeliverDTSAvro(t *testing.T) {
	bootstrap := fakeKafka(t, 3, "orders")
	client, _ := startServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	s := openSession(t, ctx, client, start(bootstrap, "orders", &taskv1.KafkaOptions{
		Format:          taskv1.DataFormat_DATA_FORMAT_DTS_AVRO,
		PartitionPolicy: taskv1.PartitionPolicy_PARTITION_POLICY_HASH_PRIMARY_KEY,
	}))
	del := &cdcv1.ChangeEvent{Op: cdcv1.Operation_OPERATION_DELETE, RelationOid: ordersOID, Lsn: 0x1_00000010, CommitLsn: 0x1_00000020,
		Xid: 8, CommitTime: insert(0, "", 0).GetCommitTime(), OldTuple: tuple.Of("2", nil, nil, nil)}
	s.send(&cdcv1.ChangeBatch{Relations: []*cdcv1.Relation{ordersRelation()},
		Events: []*cdcv1.ChangeEvent{insert(1, "a", 90), insert(2, "b", 91), insert(3, "c", 92)}, WatermarkLsn: 100})
	s.send(&cdcv1.ChangeBatch{Events: []*cdcv1.ChangeEvent{del}, WatermarkLsn: 0x1_00000020})
	last, err := s.finish(20 * time.Second)
	if err != nil {
		t.Fatalf("stream ended with %v", err)
	}
	if last.GetSafeLsn() != 0x1_00000020 || last.GetAckedEvents() != 4 {
		t.Fatalf("final response %v, want safe %d acked 4", last, 0x1_00000020)
	}

	codec, err := goavro.NewCodec(dtsavro.SchemaJSON)
	if err != nil {
		t.Fatal(err)
	}
	var ids []int64
	for _, m := range consume(t, bootstrap, "orders", 4, 20*time.Second) {
		native, rest, err := codec.NativeFromBinary(m.Value)
		if err != nil || len(rest) != 0 {
			t.Fatalf("decoding %x: %v (%d bytes left)", m.Value, err, len(rest))
		}
		r := native.(map[string]any)
		key := string(m.Key)
		if want := JavaPartition(key, 3); m.TopicPartition.Partition != want {
			t.Fatalf("key %q on partition %d, want %d", key, m.TopicPartition.Partition, want)
		}
		checkAvroMessage(t, r, key)
		ids = append(ids, r["id"].(int64))
	}
	slices.Sort(ids)
	for i := 1; i < len(ids); i++ {
		if ids[i] != ids[i-1]+1 {
			t.Fatalf("ids not consecutive: %v", ids)
		}
	}
}

func checkAvroMessage(t *testing.T, r map[string]any, key string) {
	t.Helper()
	if r["objectName"].(map[string]any)["string"] != "shop.public.orders" || r["sourceTimestamp"] != commitTime.Unix() ||
		r["bornTimestamp"] != commitTime.UnixMilli() {
		t.Fatalf("unexpected header %v", r)
	}
	op := r["operation"]
	images := r["afterImages"]
	if op == "DELETE" {
		images = r["beforeImages"]
		if key != "2" || r["sourcePosition"] != "1/00000010" || r["safeSourcePosition"] != "1/00000020" {
			t.Fatalf("delete: key %q positions %v %v", key, r["sourcePosition"], r["safeSourcePosition"])
		}
	} else if op != "INSERT" {
		t.Fatalf("operation %v", op)
	}
	row := images.(map[string]any)["array"].([]any)
	id := row[0].(map[string]any)["com.alibaba.dts.formats.avro.Integer"].(map[string]any)["value"]
	if id != key {
		t.Fatalf("key %q for row id %v", key, id)
	}
	if op == "INSERT" {
		at := map[string]any{"com.alibaba.dts.formats.avro.Timestamp": map[string]any{"timestamp": commitTime.Unix(), "millis": int32(123_000)}}
		amount := map[string]any{"com.alibaba.dts.formats.avro.Decimal": map[string]any{"value": "12.50", "precision": int32(0), "scale": int32(0)}}
		if !reflect.DeepEqual(row[3], at) || !reflect.DeepEqual(row[2], amount) {
			t.Fatalf("insert images %v", row)
		}
	}
}
