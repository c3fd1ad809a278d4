package delivery

import (
	"context"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	cdcv1 "github.com/ferry-cdc/ferry/gen/ferry/cdc/v1"
	taskv1 "github.com/ferry-cdc/ferry/gen/ferry/task/v1"
	"github.com/ferry-cdc/ferry/services/delivery/canal"
	"github.com/ferry-cdc/ferry/services/delivery/canal/canaltest"
	"github.com/ferry-cdc/ferry/services/testenv"
	"github.com/ferry-cdc/ferry/services/tuple"
)

func TestAlterSQL(t *testing.T) {
	enc := canal.New(canal.Options{Objects: &taskv1.ObjectSelection{Tables: []*taskv1.TableSelection{{
		Schema: "public", Table: "orders", Columns: []*taskv1.ColumnMapping{{Name: "note", Rename: "remark"}},
	}}}})
	tab := enc.SetRelation(ordersRelation())
	old := defOf(tab)
	if got, want := createSQL(tab, old), `CREATE TABLE "public"."orders" ("id" bigint, "remark" text, "amount" numeric(10,2), "at" timestamp with time zone)`; got != want {
		t.Fatalf("create:\n got %s\nwant %s", got, want)
	}
	r := proto.Clone(ordersRelation()).(*cdcv1.Relation)
	r.Columns = append(r.Columns[:2:2], &cdcv1.Column{Name: "amount", TypeOid: 1700, TypeName: "numeric(12,4)"},
		&cdcv1.Column{Name: `we"ird`, TypeOid: 23, TypeName: "integer"})
	r.ReplicaIdentity = cdcv1.ReplicaIdentity_REPLICA_IDENTITY_FULL
	d := defOf(enc.SetRelation(r))
	want := `ALTER TABLE "public"."orders" DROP COLUMN "at", ALTER COLUMN "amount" TYPE numeric(12,4), ` +
		`ADD COLUMN "we""ird" integer, REPLICA IDENTITY FULL`
	if got := alterSQL(tab, old, d); got != want {
		t.Fatalf("alter:\n got %s\nwant %s", got, want)
	}
	if got := alterSQL(tab, d, d); got != "" || !d.equal(d) || d.equal(old) {
		t.Fatalf("no change gave %q", got)
	}
}

// ddlRecords reads the DDL records among the first n messages of topic.
func ddlRecords(t *testing.T, bootstrap, topic string, n int) []canaltest.Message {
	t.Helper()
	var out []canaltest.Message
	for _, m := range consume(t, bootstrap, topic, n, 30*time.Second) {
		if msg := canaltest.Decode(t, m.Value); *msg.IsDdl {
			if m.TopicPartition.Partition != 0 {
				t.Fatalf("DDL record on partition %d", m.TopicPartition.Partition)
			}
			out = append(out, msg)
		}
	}
	return out
}

func TestDDLRecordsReal(t *testing.T) {
	bootstrap := realKafka(t)
	client, _ := startServer(t)
	data := createTopic(t, client, bootstrap, "ferry_ddl_data", nil)
	ddl := createTopic(t, client, bootstrap, "ferry_ddl", nil)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	task := testenv.UniqueName("ddl-task")
	open := func(schemaSync bool) *session {
		st := start(bootstrap, data, &taskv1.KafkaOptions{DdlTopic: ddl})
		st.TaskId, st.WriteTableDefinitions = task, schemaSync
		return openSession(t, ctx, client, st)
	}
	v1 := ordersRelation()
	v2 := proto.Clone(v1).(*cdcv1.Relation)
	v2.Columns = append(v2.Columns, &cdcv1.Column{Name: "qty", TypeOid: 23, TypeName: "integer"})
	withQty := func(id int64, lsn uint64) *cdcv1.ChangeEvent {
		ev := insert(id, "q", lsn)
		tuple.Append(ev.NewTuple, tuple.Text, []byte("5"))
		return ev
	}

	// Schema sync: the first sight writes CREATE; a resent, unchanged
	// definition writes nothing; a new column writes ALTER.
	s := open(true)
	s.send(&cdcv1.ChangeBatch{Relations: []*cdcv1.Relation{v1}, Events: []*cdcv1.ChangeEvent{insert(1, "a", 100)}, WatermarkLsn: 110})
	s.send(&cdcv1.ChangeBatch{Relations: []*cdcv1.Relation{v1}, Events: []*cdcv1.ChangeEvent{insert(2, "b", 200)}, WatermarkLsn: 210})
	s.send(&cdcv1.ChangeBatch{Relations: []*cdcv1.Relation{v2}, Events: []*cdcv1.ChangeEvent{withQty(3, 300)}, WatermarkLsn: 310})
	if _, err := s.finish(30 * time.Second); err != nil {
		t.Fatal(err)
	}
	recs := ddlRecords(t, bootstrap, ddl, 2)
	if *recs[0].Type != "CREATE" || !strings.HasPrefix(*recs[0].SQL, `CREATE TABLE "public"."orders" ("id" bigint`) ||
		*recs[1].Type != "ALTER" || *recs[1].SQL != `ALTER TABLE "public"."orders" ADD COLUMN "qty" integer` {
		t.Fatalf("DDL records: %s / %s", *recs[0].SQL, *recs[1].SQL)
	}
	if *recs[1].Es != commitTime.UnixMilli() {
		t.Fatalf("ALTER es %d, want the commit time of the first row using it", *recs[1].Es)
	}

	// A restarted stream remembers what it wrote: v2 again is no news,
	// but a change made while it was away (qty dropped) is.
	s = open(true)
	s.send(&cdcv1.ChangeBatch{Relations: []*cdcv1.Relation{v2}, Events: []*cdcv1.ChangeEvent{withQty(4, 400)}, WatermarkLsn: 410})
	s.send(&cdcv1.ChangeBatch{Relations: []*cdcv1.Relation{v1}, Events: []*cdcv1.ChangeEvent{insert(5, "c", 500)}, WatermarkLsn: 510})
	if _, err := s.finish(30 * time.Second); err != nil {
		t.Fatal(err)
	}
	recs = ddlRecords(t, bootstrap, ddl, 3)
	if len(recs) != 3 || *recs[2].SQL != `ALTER TABLE "public"."orders" DROP COLUMN "qty"` {
		t.Fatalf("after restart: %d records, last %s", len(recs), *recs[len(recs)-1].SQL)
	}
	// The rows themselves all reached the data topic, none on the DDL one.
	if got := len(consume(t, bootstrap, data, 5, 30*time.Second)); got != 5 {
		t.Fatalf("%d rows on the data topic", got)
	}
}
