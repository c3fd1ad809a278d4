package delivery

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/linkedin/goavro/v2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	cdcv1 "github.com/ferry-cdc/ferry/gen/ferry/cdc/v1"
	deliveryv1 "github.com/ferry-cdc/ferry/gen/ferry/delivery/v1"
	taskv1 "github.com/ferry-cdc/ferry/gen/ferry/task/v1"
	"github.com/ferry-cdc/ferry/services/delivery/canal/canaltest"
	"github.com/ferry-cdc/ferry/services/delivery/dtsavro"
	"github.com/ferry-cdc/ferry/services/testenv"
)

// Relations beside public.orders: public.lines, selected, and
// hidden.audit, which the task does not select.
const (
	linesOID = 16401
	auditOID = 16402
)

func namedRelation(oid uint32, schema, table string) *cdcv1.Relation {
	r := proto.Clone(ordersRelation()).(*cdcv1.Relation)
	r.Oid, r.Schema, r.Table = oid, schema, table
	return r
}

func truncateEvent(lsn, commit uint64, cascade, restart bool, oids ...uint32) *cdcv1.ChangeEvent {
	return &cdcv1.ChangeEvent{
		Op: cdcv1.Operation_OPERATION_TRUNCATE, RelationOid: oids[0], Lsn: lsn, CommitLsn: commit, Xid: 7,
		CommitTime: timestamppb.New(commitTime),
		Truncate:   &cdcv1.Truncate{RelationOids: oids, Cascade: cascade, RestartIdentity: restart},
	}
}

// truncateStart is a task over public.orders (INSERTs only) and
// public.lines, upper-cased, writing DDL records to ddl unless it is "".
func truncateStart(bootstrap, ddl string, opts *taskv1.KafkaOptions) *deliveryv1.StartDelivery {
	opts.DdlTopic = ddl
	st := start(bootstrap, "orders", opts)
	st.Objects = &taskv1.ObjectSelection{NameCase: taskv1.NameCase_NAME_CASE_UPPER, Tables: []*taskv1.TableSelection{
		{Schema: "public", Table: "orders", Operations: []taskv1.OperationSet{taskv1.OperationSet_OPERATION_SET_INSERT}},
		{Schema: "public", Table: "lines", Columns: []*taskv1.ColumnMapping{{Name: "note", Rename: "remark"}}},
	}}
	return st
}

// sendTruncates sends a row, a TRUNCATE of the three tables with both
// options, another row (one transaction), then a TRUNCATE of lines alone.
func sendTruncates(t *testing.T, s *session) {
	t.Helper()
	s.send(&cdcv1.ChangeBatch{
		Relations: []*cdcv1.Relation{ordersRelation(), namedRelation(linesOID, "public", "lines"), namedRelation(auditOID, "hidden", "audit")},
		Events: []*cdcv1.ChangeEvent{insert(1, "a", 90), truncateEvent(95, 99, true, true, ordersOID, auditOID, linesOID),
			insert(2, "b", 97)},
		WatermarkLsn: 100,
	})
	s.send(&cdcv1.ChangeBatch{Events: []*cdcv1.ChangeEvent{truncateEvent(110, 115, false, false, linesOID)}, WatermarkLsn: 120})
	last, err := s.finish(20 * time.Second)
	if err != nil {
		t.Fatalf("stream ended with %v", err)
	}
	if last.GetSafeLsn() != 120 || last.GetAckedEvents() != 4 {
		t.Fatalf("final response %v, want safe 120 acked 4 (two rows, two DDL records)", last)
	}
}

// A TRUNCATE becomes one Canal JSON DDL record on the DDL topic, partition
// 0, between the rows around it (ids follow the stream's order), naming
// the selected tables as their rows do, whatever the operations filter.
func TestTruncateCanalDDLRecord(t *testing.T) {
	bootstrap := fakeKafka(t, 3, "orders", "ddl")
	client, _ := startServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	sendTruncates(t, openSession(t, ctx, client, truncateStart(bootstrap, "ddl", &taskv1.KafkaOptions{})))

	rows := consume(t, bootstrap, "orders", 2, 20*time.Second)
	recs := consume(t, bootstrap, "ddl", 2, 20*time.Second)
	var rowIDs [2]int64
	for i, m := range rows {
		rowIDs[i] = *canaltest.Decode(t, m.Value).ID
	}
	want := []struct{ table, sql string }{
		{"ORDERS", `TRUNCATE TABLE \"PUBLIC\".\"ORDERS\", \"PUBLIC\".\"LINES\" RESTART IDENTITY CASCADE`},
		{"LINES", `TRUNCATE TABLE \"PUBLIC\".\"LINES\"`},
	}
	for i, m := range recs {
		if m.TopicPartition.Partition != 0 {
			t.Fatalf("TRUNCATE record on partition %d", m.TopicPartition.Partition)
		}
		c := canaltest.Decode(t, m.Value)
		exact := fmt.Sprintf(`{"id":%d,"database":"PUBLIC","table":%q,"pkNames":null,"isDdl":true,"type":"TRUNCATE","es":%d,"ts":%d,`+
			`"sql":"%s","sqlType":null,"mysqlType":null,"data":null,"old":null}`, *c.ID, want[i].table, commitTime.UnixMilli(), *c.Ts, want[i].sql)
		if string(m.Value) != exact {
			t.Fatalf("record %d:\n got %s\nwant %s", i, m.Value, exact)
		}
		if i == 0 && (*c.ID <= min(rowIDs[0], rowIDs[1]) || *c.ID >= max(rowIDs[0], rowIDs[1])) {
			t.Fatalf("TRUNCATE has id %d, not between the rows' %v", *c.ID, rowIDs)
		}
	}
}

// Without a DDL topic the record goes to the table's data topic, partition
// 0, whatever the partition policy.
func TestTruncateOnDataTopic(t *testing.T) {
	bootstrap := fakeKafka(t, 3, "orders")
	client, _ := startServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	sendTruncates(t, openSession(t, ctx, client, truncateStart(bootstrap, "", &taskv1.KafkaOptions{
		PartitionPolicy: taskv1.PartitionPolicy_PARTITION_POLICY_HASH_PRIMARY_KEY,
	})))
	var ddl []string
	for _, m := range consume(t, bootstrap, "orders", 4, 20*time.Second) {
		if c := canaltest.Decode(t, m.Value); *c.IsDdl {
			if m.TopicPartition.Partition != 0 || *c.Type != "TRUNCATE" {
				t.Fatalf("DDL record %s on partition %d", m.Value, m.TopicPartition.Partition)
			}
			ddl = append(ddl, *c.SQL)
		}
	}
	if len(ddl) != 2 || !strings.HasPrefix(ddl[0], `TRUNCATE TABLE "PUBLIC"."ORDERS", "PUBLIC"."LINES"`) {
		t.Fatalf("DDL records %q", ddl)
	}
}

// In DTS Avro the record is operation DDL with the statement in the string
// branch of afterImages, as for CREATE and ALTER.
func TestTruncateDTSAvroDDLRecord(t *testing.T) {
	bootstrap := fakeKafka(t, 1, "orders", "ddl")
	client, _ := startServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	sendTruncates(t, openSession(t, ctx, client, truncateStart(bootstrap, "ddl", &taskv1.KafkaOptions{
		Format: taskv1.DataFormat_DATA_FORMAT_DTS_AVRO,
	})))
	codec, err := goavro.NewCodec(dtsavro.SchemaJSON)
	if err != nil {
		t.Fatal(err)
	}
	want := []struct{ object, sql, pos string }{
		{"SHOP.PUBLIC.ORDERS", `TRUNCATE TABLE "PUBLIC"."ORDERS", "PUBLIC"."LINES" RESTART IDENTITY CASCADE`, "0/0000005F"},
		{"SHOP.PUBLIC.LINES", `TRUNCATE TABLE "PUBLIC"."LINES"`, "0/0000006E"},
	}
	for i, m := range consume(t, bootstrap, "ddl", 2, 20*time.Second) {
		native, rest, err := codec.NativeFromBinary(m.Value)
		if err != nil || len(rest) != 0 {
			t.Fatalf("decoding %x: %v (%d bytes left)", m.Value, err, len(rest))
		}
		r := native.(map[string]any)
		w := want[i]
		if r["operation"] != "DDL" || r["objectName"].(map[string]any)["string"] != w.object ||
			r["sourcePosition"] != w.pos || r["safeSourcePosition"] != w.pos ||
			r["sourceTimestamp"] != commitTime.Unix() || r["bornTimestamp"] != commitTime.UnixMilli() {
			t.Fatalf("record %d header: %v", i, r)
		}
		if r["fields"] != nil || r["beforeImages"] != nil || r["afterImages"].(map[string]any)["string"] != w.sql {
			t.Fatalf("record %d: fields %v, beforeImages %v, afterImages %v; want null, null and %q", i, r["fields"], r["beforeImages"], r["afterImages"], w.sql)
		}
	}
}

// With truncate_mode FAIL the stream stops at the TRUNCATE with a
// non-retryable error naming the selected tables, and the safe LSN stays
// before its transaction; nothing is written for it.
func TestTruncateFailMode(t *testing.T) {
	bootstrap := fakeKafka(t, 1, "orders", "ddl")
	client, _ := startServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	s := openSession(t, ctx, client, truncateStart(bootstrap, "ddl", &taskv1.KafkaOptions{TruncateMode: taskv1.TruncateMode_TRUNCATE_MODE_FAIL}))
	s.send(&cdcv1.ChangeBatch{
		Relations:    []*cdcv1.Relation{ordersRelation(), namedRelation(linesOID, "public", "lines"), namedRelation(auditOID, "hidden", "audit")},
		Events:       []*cdcv1.ChangeEvent{insert(1, "a", 90)},
		WatermarkLsn: 100,
	})
	s.waitSafe(100, 20*time.Second)
	s.send(&cdcv1.ChangeBatch{Events: []*cdcv1.ChangeEvent{insert(2, "b", 105), truncateEvent(110, 115, false, false, auditOID, linesOID)}, WatermarkLsn: 120})
	last, err := s.drain(20 * time.Second)
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "TRUNCATE of table public.lines at LSN 0/6E ") ||
		strings.Contains(err.Error(), "audit") || !strings.Contains(err.Error(), "TRUNCATE_MODE_DDL_RECORD") {
		t.Fatalf("stream ended with %v, want InvalidArgument naming public.lines alone and the way out", err)
	}
	if last.GetSafeLsn() != 100 {
		t.Fatalf("safe LSN %d after the refused TRUNCATE, want 100", last.GetSafeLsn())
	}
}

// In an exactly-once stream the TRUNCATE record commits in the Kafka
// transaction of its source transaction, with the checkpoint that covers it.
func TestTruncateExactlyOnceReal(t *testing.T) {
	bootstrap := realKafka(t)
	client, _ := startServer(t)
	topic := testenv.UniqueName("ferry_trunc_eos")
	ensure(t, client, bootstrap, &deliveryv1.TopicSpec{Name: topic, Partitions: 1})
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	st := start(bootstrap, topic, &taskv1.KafkaOptions{ExactlyOnce: true})
	st.TaskId = strings.ReplaceAll(topic, "_", "-")
	s := openSession(t, ctx, client, st)
	s.send(&cdcv1.ChangeBatch{Relations: []*cdcv1.Relation{ordersRelation()},
		Events: []*cdcv1.ChangeEvent{inTxn(1, 95, 100), truncateEvent(96, 100, false, false, ordersOID), inTxn(2, 97, 100)}, WatermarkLsn: 110})
	s.waitSafe(110, 30*time.Second)
	if _, err := s.finish(30 * time.Second); err != nil {
		t.Fatalf("stream ended with %v", err)
	}
	// Keys: the rows' ids, and "" for the keyless DDL record.
	if counts := testenv.ReadCommittedKeys(t, bootstrap, topic, 3, 30*time.Second); counts["1"] != 1 || counts["2"] != 1 || counts[""] != 1 {
		t.Fatalf("read_committed counts %v, want rows 1 and 2 and one TRUNCATE record", counts)
	}
	if got := storedCheckpoint(t, bootstrap, st.TaskId); got != 110 {
		t.Fatalf("checkpoint %d, want 110", got)
	}
}
