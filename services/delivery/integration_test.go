package delivery

import (
	"context"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	cdcv1 "github.com/ferry-cdc/ferry/gen/ferry/cdc/v1"
	deliveryv1 "github.com/ferry-cdc/ferry/gen/ferry/delivery/v1"
	taskv1 "github.com/ferry-cdc/ferry/gen/ferry/task/v1"
	"github.com/ferry-cdc/ferry/services/delivery/canal/canaltest"
	"github.com/ferry-cdc/ferry/services/testenv"
	"github.com/ferry-cdc/ferry/services/tuple"
)

// realKafka returns the local Apache Kafka's bootstrap address or fails.
func realKafka(t *testing.T) string {
	t.Helper()
	bootstrap := testenv.KafkaBootstrap(t)
	a, err := kafka.NewAdminClient(&kafka.ConfigMap{"bootstrap.servers": bootstrap, "log_level": 0})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if _, err := a.GetMetadata(nil, false, 5000); err != nil {
		t.Fatalf("the local Apache Kafka at %s is required (start the local stack with `make up`): %v", bootstrap, err)
	}
	return bootstrap
}

func ensure(t *testing.T, c deliveryv1.DeliveryServiceClient, bootstrap string, topics ...*deliveryv1.TopicSpec) *deliveryv1.EnsureTopicsResponse {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp, err := c.EnsureTopics(ctx, &deliveryv1.EnsureTopicsRequest{Kafka: &taskv1.KafkaEndpoint{BootstrapServers: bootstrap}, Topics: topics})
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

func TestEnsureTopicsReal(t *testing.T) {
	bootstrap := realKafka(t)
	client, _ := startServer(t)
	a, b := testenv.UniqueName("ferry_ens_a"), testenv.UniqueName("ferry_ens_b")
	resp := ensure(t, client, bootstrap, &deliveryv1.TopicSpec{Name: a, Partitions: 3}, &deliveryv1.TopicSpec{Name: b})
	slices.Sort(resp.Created)
	want := []string{a, b}
	slices.Sort(want)
	if !slices.Equal(resp.Created, want) || len(resp.Existing) != 0 {
		t.Fatalf("first call: %v", resp)
	}
	resp = ensure(t, client, bootstrap, &deliveryv1.TopicSpec{Name: a, Partitions: 3}, &deliveryv1.TopicSpec{Name: b})
	if len(resp.Created) != 0 || len(resp.Existing) != 2 {
		t.Fatalf("second call: %v", resp)
	}
	admin, err := kafka.NewAdminClient(&kafka.ConfigMap{"bootstrap.servers": bootstrap})
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	md, err := admin.GetMetadata(&a, false, 10_000)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(md.Topics[a].Partitions); n != 3 {
		t.Fatalf("%s has %d partitions, want 3", a, n)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_, err = client.EnsureTopics(ctx, &deliveryv1.EnsureTopicsRequest{Kafka: &taskv1.KafkaEndpoint{}, Topics: []*deliveryv1.TopicSpec{{Name: "x"}}})
	if status.Code(err) != codes.InvalidArgument {
		t.Fatalf("empty bootstrap servers: %v", err)
	}
}

func TestDeliverRealKafka(t *testing.T) {
	bootstrap := realKafka(t)
	// Every codec, and every acks setting, on the real broker: each pair
	// must deliver, decode and be acknowledged the same way.
	for _, c := range []struct {
		comp taskv1.Compression
		acks taskv1.Acks
	}{
		{taskv1.Compression_COMPRESSION_LZ4, taskv1.Acks_ACKS_ALL},
		{taskv1.Compression_COMPRESSION_ZSTD, taskv1.Acks_ACKS_LEADER},
		{taskv1.Compression_COMPRESSION_GZIP, taskv1.Acks_ACKS_NONE},
		{taskv1.Compression_COMPRESSION_SNAPPY, taskv1.Acks_ACKS_ALL},
	} {
		comp := c.comp
		t.Run(comp.String()+"/"+c.acks.String(), func(t *testing.T) {
			client, _ := startServer(t)
			topic := testenv.UniqueName("ferry_deliver")
			ensure(t, client, bootstrap, &deliveryv1.TopicSpec{Name: topic, Partitions: 4})
			ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
			defer cancel()
			st := start(bootstrap, topic, &taskv1.KafkaOptions{Compression: comp, Acks: c.acks,
				PartitionPolicy: taskv1.PartitionPolicy_PARTITION_POLICY_HASH_TABLE})
			st.Objects = &taskv1.ObjectSelection{NameCase: taskv1.NameCase_NAME_CASE_UPPER, Tables: []*taskv1.TableSelection{{
				Schema: "public", Table: "orders", Columns: []*taskv1.ColumnMapping{{Name: "amount", Drop: true}, {Name: "note", Rename: "remark"}},
			}}}
			s := openSession(t, ctx, client, st)

			upd := &cdcv1.ChangeEvent{Op: cdcv1.Operation_OPERATION_UPDATE, RelationOid: ordersOID, Lsn: 120, CommitLsn: 121,
				CommitTime: timestamppb.New(commitTime),
				NewTuple:   tuple.Of("20", tuple.UnchangedToast, "1.00", nil),
				OldTuple:   tuple.Of("2", nil, nil, nil)}
			del := &cdcv1.ChangeEvent{Op: cdcv1.Operation_OPERATION_DELETE, RelationOid: ordersOID, Lsn: 130, CommitLsn: 131,
				CommitTime: timestamppb.New(commitTime),
				OldTuple:   tuple.Of("1", nil, nil, nil)}
			s.send(&cdcv1.ChangeBatch{Relations: []*cdcv1.Relation{ordersRelation()},
				Events: []*cdcv1.ChangeEvent{insert(1, "first\nline ü", 100), insert(2, `quote " and \`, 101)}, WatermarkLsn: 110})
			s.waitSafe(110, 30*time.Second)
			s.send(&cdcv1.ChangeBatch{Events: []*cdcv1.ChangeEvent{upd}})
			s.send(&cdcv1.ChangeBatch{Events: []*cdcv1.ChangeEvent{del}, WatermarkLsn: 140})
			last, err := s.finish(30 * time.Second)
			if err != nil {
				t.Fatal(err)
			}
			if last.GetSafeLsn() != 140 || last.GetAckedEvents() != 4 {
				t.Fatalf("final %v, want safe 140, acked 4", last)
			}

			msgs := consume(t, bootstrap, topic, 4, 30*time.Second)
			type got struct {
				m     canaltest.Message
				key   string
				toast string // the ferry.unchanged-toast header
			}
			var rows []got
			for _, m := range msgs {
				if want := JavaPartition("public.orders", 4); m.TopicPartition.Partition != want {
					t.Fatalf("partition %d, want %d (hash of the table)", m.TopicPartition.Partition, want)
				}
				var toast string
				for _, h := range m.Headers {
					if h.Key == UnchangedToastHeader {
						toast = string(h.Value)
					}
				}
				rows = append(rows, got{canaltest.Decode(t, m.Value), string(m.Key), toast})
			}
			slices.SortFunc(rows, func(a, b got) int { return int(*a.m.ID - *b.m.ID) })
			for i, r := range rows {
				m := r.m
				if *m.Database != "PUBLIC" || *m.Table != "ORDERS" || *m.IsDdl || *m.SQL != "" || *m.Es != commitTime.UnixMilli() {
					t.Fatalf("row %d header: %+v", i, m)
				}
				if now := time.Now().UnixMilli(); *m.Ts > now || *m.Ts < now-120_000 {
					t.Fatalf("row %d ts %d is not recent", i, *m.Ts)
				}
				if !slices.Equal(m.PkNames, []string{"ID"}) {
					t.Fatalf("pkNames %v", m.PkNames)
				}
				if len(m.SQLType) != 3 || m.SQLType["ID"] != -5 || m.SQLType["remark"] != -1 || m.SQLType["AT"] != 2014 {
					t.Fatalf("sqlType %v", m.SQLType)
				}
				if len(m.MysqlType) != 3 || m.MysqlType["ID"] != "bigint" || m.MysqlType["remark"] != "text" || m.MysqlType["AT"] != "timestamp with time zone" {
					t.Fatalf("mysqlType %v", m.MysqlType)
				}
				// The UPDATE leaves its unchanged TOAST value out.
				if cols := 3 - min(len(r.toast), 1); len(m.Data) != 1 || len(m.Data[0]) != cols {
					t.Fatalf("data %v, want %d columns", m.Data, cols)
				}
				if i > 0 && *m.ID != *rows[i-1].m.ID+1 {
					t.Fatalf("ids not consecutive")
				}
			}
			val := func(p *string) string {
				if p == nil {
					return "<null>"
				}
				return *p
			}
			d := rows[0].m.Data[0]
			if *rows[0].m.Type != "INSERT" || val(d["ID"]) != "1" || val(d["remark"]) != "first\nline ü" ||
				val(d["AT"]) != "2024-05-06 07:08:09.123+00" || rows[0].m.Old != nil || rows[0].key != "1" {
				t.Fatalf("insert 1: %+v key %q", d, rows[0].key)
			}
			if d := rows[1].m.Data[0]; val(d["remark"]) != `quote " and \` || rows[1].key != "2" {
				t.Fatalf("insert 2: %+v", d)
			}
			// The UPDATE changed the key from 2 to 20: keyed by the old key,
			// the unchanged TOAST value is left out of data and named in the
			// header (DEFAULT identity does not reveal it), and old shows the
			// key's prior value.
			u := rows[2]
			_, hasRemark := u.m.Data[0]["remark"]
			if *u.m.Type != "UPDATE" || u.key != "2" || val(u.m.Data[0]["ID"]) != "20" || hasRemark || u.toast != `["remark"]` ||
				len(u.m.Old) != 1 || len(u.m.Old[0]) != 1 || val(u.m.Old[0]["ID"]) != "2" {
				t.Fatalf("update: %+v old %+v key %q", u.m.Data, u.m.Old, u.key)
			}
			dl := rows[3]
			if *dl.m.Type != "DELETE" || dl.key != "1" || val(dl.m.Data[0]["ID"]) != "1" || dl.m.Old != nil {
				t.Fatalf("delete: %+v", dl.m)
			}
		})
	}
}

func TestDeliverTooLargeReal(t *testing.T) {
	bootstrap := realKafka(t)
	client, _ := startServer(t)
	topic := createTopic(t, client, bootstrap, "ferry_small", map[string]string{"max.message.bytes": "4096"})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	s := openSession(t, ctx, client, start(bootstrap, topic, nil))
	s.send(&cdcv1.ChangeBatch{Relations: []*cdcv1.Relation{ordersRelation()},
		Events: []*cdcv1.ChangeEvent{insert(1, "small", 100)}, WatermarkLsn: 110})
	s.waitSafe(110, 30*time.Second)
	// A batch whose second row is too large: the first is delivered, the
	// watermark never becomes safe.
	s.send(&cdcv1.ChangeBatch{Events: []*cdcv1.ChangeEvent{insert(2, "fine", 200), insert(3, strings.Repeat("x", 10_000), 201)}, WatermarkLsn: 210})
	s.send(&cdcv1.ChangeBatch{Events: []*cdcv1.ChangeEvent{insert(4, "after", 300)}, WatermarkLsn: 310})
	last, err := s.drain(30 * time.Second)
	if status.Code(err) != codes.InvalidArgument {
		t.Fatalf("got %v, want InvalidArgument", err)
	}
	msg := status.Convert(err).Message()
	for _, want := range []string{"public.orders", "key columns id", "note", topic, "4096"} {
		if !strings.Contains(msg, want) {
			t.Fatalf("error %q does not mention %q", msg, want)
		}
	}
	if strings.Contains(msg, `"3"`) || strings.Contains(msg, "key 3") {
		t.Fatalf("error %q names the row's key value", msg)
	}
	t.Logf("error: %s", msg)
	if last.GetSafeLsn() != 110 {
		t.Fatalf("final safe LSN %d, want 110 (must not pass the failed row)", last.GetSafeLsn())
	}
	for _, r := range s.seen {
		if r.GetSafeLsn() > 110 {
			t.Fatalf("safe LSN %d passed the failed row", r.GetSafeLsn())
		}
	}
	// Nothing from the failed batch onward but what precedes the failed row.
	msgs := consume(t, bootstrap, topic, 2, 30*time.Second)
	for _, m := range msgs {
		if id, _ := strconv.Atoi(string(m.Key)); id > 2 {
			t.Fatalf("row %d after the failed one was delivered", id)
		}
	}
}

// createTopic creates a one-partition topic with configs and waits, as the
// setup activity does, until EnsureTopics sees it led.
func createTopic(t *testing.T, client deliveryv1.DeliveryServiceClient, bootstrap, prefix string, configs map[string]string) string {
	t.Helper()
	topic := testenv.UniqueName(prefix)
	admin, err := kafka.NewAdminClient(&kafka.ConfigMap{"bootstrap.servers": bootstrap})
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := admin.CreateTopics(ctx, []kafka.TopicSpecification{{Topic: topic, NumPartitions: 1, Config: configs}})
	if err != nil || res[0].Error.Code() != kafka.ErrNoError {
		t.Fatalf("creating %s: %v %v", topic, err, res)
	}
	if got := ensure(t, client, bootstrap, &deliveryv1.TopicSpec{Name: topic}); len(got.GetExisting()) != 1 {
		t.Fatalf("EnsureTopics = %v, want %s reported as existing", got, topic)
	}
	return topic
}

func header(m *kafka.Message, key string) string {
	for _, h := range m.Headers {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}

func TestDeadLetterTopicReal(t *testing.T) {
	bootstrap := realKafka(t)
	client, _ := startServer(t)
	topic := createTopic(t, client, bootstrap, "ferry_small", map[string]string{"max.message.bytes": "4096"})
	dlq := createTopic(t, client, bootstrap, "ferry_dlq", map[string]string{"max.message.bytes": "20000"})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	s := openSession(t, ctx, client, start(bootstrap, topic, &taskv1.KafkaOptions{DeadLetterTopic: dlq}))
	big, huge := strings.Repeat("x", 10_000), strings.Repeat("y", 30_000)
	s.send(&cdcv1.ChangeBatch{Relations: []*cdcv1.Relation{ordersRelation()},
		Events:       []*cdcv1.ChangeEvent{insert(1, "small", 100), insert(2, big, 101), insert(3, huge, 102), insert(4, "after", 103)},
		WatermarkLsn: 110})
	last := s.waitSafe(110, 30*time.Second)
	if last.GetAckedEvents() != 4 || last.GetDeadLettered() != 2 {
		t.Fatalf("acked %d, dead-lettered %d; want 4 and 2", last.GetAckedEvents(), last.GetDeadLettered())
	}
	if _, err := s.finish(30 * time.Second); err != nil {
		t.Fatal(err)
	}

	var keys []string
	for _, m := range consume(t, bootstrap, topic, 2, 30*time.Second) {
		keys = append(keys, string(m.Key))
	}
	slices.Sort(keys)
	if !slices.Equal(keys, []string{"1", "4"}) {
		t.Fatalf("data topic keys %v, want [1 4]", keys)
	}
	dead := consume(t, bootstrap, dlq, 2, 30*time.Second)
	slices.SortFunc(dead, func(a, b *kafka.Message) int { return strings.Compare(string(a.Key), string(b.Key)) })
	// Row 2 fits the dead-letter topic's limit and arrives whole; row 3
	// does not, and arrives as headers alone.
	if m := canaltest.Decode(t, dead[0].Value); string(dead[0].Key) != "2" || *m.Data[0]["note"] != big {
		t.Fatalf("first dead letter: key %q, value %.80q", dead[0].Key, dead[0].Value)
	}
	if string(dead[1].Key) != "3" || len(dead[1].Value) != 0 || header(dead[1], hdrValueDropped) != "true" {
		t.Fatalf("second dead letter: key %q, %d value bytes, headers %v", dead[1].Key, len(dead[1].Value), dead[1].Headers)
	}
	for _, m := range dead {
		for k, want := range map[string]string{hdrReason: reasonTooLarge, hdrSchema: "public", hdrTable: "orders", hdrTopic: topic, hdrTopicLimit: "4096"} {
			if got := header(m, k); got != want {
				t.Fatalf("dead letter %s: header %s = %q, want %q", m.Key, k, got, want)
			}
		}
		if size, _ := strconv.Atoi(header(m, hdrSize)); size <= 4096 {
			t.Fatalf("dead letter %s: header %s = %d, want the oversized size", m.Key, hdrSize, size)
		}
	}
}
