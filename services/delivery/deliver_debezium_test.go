package delivery

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"

	cdcv1 "github.com/ferry-cdc/ferry/gen/ferry/cdc/v1"
	deliveryv1 "github.com/ferry-cdc/ferry/gen/ferry/delivery/v1"
	taskv1 "github.com/ferry-cdc/ferry/gen/ferry/task/v1"
	"github.com/ferry-cdc/ferry/services/testenv"
	"github.com/ferry-cdc/ferry/services/tuple"
)

// dbzEnvelope is the part of a Debezium JSON value these tests read.
type dbzEnvelope struct {
	Before map[string]any `json:"before"`
	After  map[string]any `json:"after"`
	Op     string         `json:"op"`
	Source struct {
		Table string `json:"table"`
		LSN   uint64 `json:"lsn"`
	} `json:"source"`
}

// Debezium JSON end to end through delivery: JSON keys, a tombstone on the
// DELETE's partition right after it, no CREATE record with schema sync,
// and TRUNCATE as a "t" event on partition 0. The safe LSN covers the
// tombstone.
func TestDeliverDebeziumKfake(t *testing.T) {
	bootstrap := fakeKafka(t, 3, "orders")
	client, _ := startServer(t)
	deliverDebezium(t, client, bootstrap, "orders", false)
}

// With exactly-once, the tombstone commits in the DELETE's transaction: a
// read_committed reader (consume's) sees both.
func TestDeliverDebeziumExactlyOnceReal(t *testing.T) {
	bootstrap := realKafka(t)
	client, _ := startServer(t)
	topic := testenv.UniqueName("ferry_dbz_eos")
	ensure(t, client, bootstrap, &deliveryv1.TopicSpec{Name: topic, Partitions: 3})
	deliverDebezium(t, client, bootstrap, topic, true)
}

func deliverDebezium(t *testing.T, client deliveryv1.DeliveryServiceClient, bootstrap, topic string, exactlyOnce bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	st := start(bootstrap, topic, &taskv1.KafkaOptions{
		Format:          taskv1.DataFormat_DATA_FORMAT_DEBEZIUM_JSON,
		PartitionPolicy: taskv1.PartitionPolicy_PARTITION_POLICY_HASH_PRIMARY_KEY,
		ExactlyOnce:     exactlyOnce,
	})
	st.TaskId = strings.ReplaceAll(st.TaskId, "_", "-")
	st.WriteTableDefinitions = true
	s := openSession(t, ctx, client, st)
	upd := insert(1, "a2", 93)
	upd.Op = cdcv1.Operation_OPERATION_UPDATE
	del := &cdcv1.ChangeEvent{Op: cdcv1.Operation_OPERATION_DELETE, RelationOid: ordersOID, Lsn: 94, CommitLsn: 94, Xid: 8,
		OldTuple: tuple.Of("2", nil, nil, nil)}
	s.send(&cdcv1.ChangeBatch{Relations: []*cdcv1.Relation{ordersRelation()},
		Events: []*cdcv1.ChangeEvent{insert(1, "a", 90), insert(2, "b", 91), upd, del, truncateEvent(95, 96, false, false, ordersOID)}, WatermarkLsn: 100})
	last, err := s.finish(20 * time.Second)
	if err != nil {
		t.Fatalf("stream ended with %v", err)
	}
	if last.GetSafeLsn() != 100 || last.GetAckedEvents() != 6 {
		t.Fatalf("final response %v, want safe 100 acked 6 (four rows, a tombstone, a TRUNCATE)", last)
	}
	msgs := consume(t, bootstrap, topic, 6, 20*time.Second)
	checkDebeziumMessages(t, msgs)
}

func checkDebeziumMessages(t *testing.T, msgs []*kafka.Message) {
	t.Helper()
	byPart := map[int32][]*kafka.Message{}
	for _, m := range msgs {
		byPart[m.TopicPartition.Partition] = append(byPart[m.TopicPartition.Partition], m)
	}
	var ops []string
	deletePart := int32(-1)
	for part, ms := range byPart {
		for i, m := range ms {
			if m.Value == nil {
				if i == 0 || string(ms[i-1].Key) != `{"id":2}` || string(m.Key) != `{"id":2}` {
					t.Errorf("partition %d: tombstone with key %s not right after the DELETE of id 2", part, m.Key)
				}
				if part != deletePart {
					t.Errorf("tombstone on partition %d, the DELETE on %d", part, deletePart)
				}
				ops = append(ops, "tombstone")
				continue
			}
			var env dbzEnvelope
			if err := json.Unmarshal(m.Value, &env); err != nil {
				t.Fatalf("%s: %v", m.Value, err)
			}
			ops = append(ops, env.Op)
			switch env.Op {
			case "d":
				deletePart = part
				if env.After != nil || env.Before["id"] != float64(2) || env.Before["note"] != nil {
					t.Errorf("DELETE: before %v after %v", env.Before, env.After)
				}
			case "t":
				if part != 0 || m.Key != nil || env.Source.Table != "orders" || env.Source.LSN != 95 {
					t.Errorf("TRUNCATE on partition %d key %s source %+v", part, m.Key, env.Source)
				}
			case "u":
				if env.Before != nil || env.After["note"] != "a2" || string(m.Key) != `{"id":1}` {
					t.Errorf("UPDATE without before-image: before %v after %v key %s", env.Before, env.After, m.Key)
				}
			case "c":
				if env.After["amount"] != "12.50" || env.After["at"] != "2024-05-06T07:08:09.123Z" {
					t.Errorf("INSERT after %v", env.After)
				}
			default:
				t.Errorf("unexpected op %q: %s", env.Op, m.Value)
			}
		}
	}
	if len(ops) != 6 {
		t.Errorf("ops %v, want c c u d tombstone t", ops)
	}
}

// An UPDATE that changes the key is written as Debezium writes it: a
// DELETE of the old key and its tombstone, on the old key's partition,
// then a create of the new key, so that compaction drops the old key.
func TestDeliverDebeziumKeyChangeIsDeleteTombstoneCreate(t *testing.T) {
	bootstrap := fakeKafka(t, 3, "orders")
	client, _ := startServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	st := start(bootstrap, "orders", &taskv1.KafkaOptions{
		Format: taskv1.DataFormat_DATA_FORMAT_DEBEZIUM_JSON, PartitionPolicy: taskv1.PartitionPolicy_PARTITION_POLICY_HASH_PRIMARY_KEY,
	})
	s := openSession(t, ctx, client, st)
	moved := insert(7, "moved", 92)
	moved.Op, moved.OldTuple = cdcv1.Operation_OPERATION_UPDATE, tuple.Of("1", nil, nil, nil)
	s.send(&cdcv1.ChangeBatch{Relations: []*cdcv1.Relation{ordersRelation()},
		Events: []*cdcv1.ChangeEvent{insert(1, "a", 90), moved}, WatermarkLsn: 100})
	last, err := s.finish(20 * time.Second)
	if err != nil {
		t.Fatalf("stream ended with %v", err)
	}
	if last.GetSafeLsn() != 100 || last.GetAckedEvents() != 4 {
		t.Fatalf("final response %v, want safe 100 acked 4 (the insert, then delete, tombstone, create)", last)
	}
	byKey := map[string][]string{}
	parts := map[string]int32{}
	for _, m := range consume(t, bootstrap, "orders", 4, 20*time.Second) {
		op := "tombstone"
		if m.Value != nil {
			var env dbzEnvelope
			if err := json.Unmarshal(m.Value, &env); err != nil {
				t.Fatalf("%s: %v", m.Value, err)
			}
			op = env.Op
		}
		byKey[string(m.Key)] = append(byKey[string(m.Key)], op)
		if p, seen := parts[string(m.Key)]; seen && p != m.TopicPartition.Partition {
			t.Errorf("key %s on partitions %d and %d", m.Key, p, m.TopicPartition.Partition)
		}
		parts[string(m.Key)] = m.TopicPartition.Partition
	}
	if got := strings.Join(byKey[`{"id":1}`], " "); got != "c d tombstone" {
		t.Errorf("the old key's messages: %s, want c d tombstone", got)
	}
	if got := strings.Join(byKey[`{"id":7}`], " "); got != "c" {
		t.Errorf("the new key's messages: %s, want c", got)
	}
}
