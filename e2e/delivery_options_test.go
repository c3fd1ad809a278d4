package e2e

import (
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"

	taskv1 "github.com/ferry-cdc/ferry/gen/ferry/task/v1"
)

func header(m *kafka.Message, key string) string {
	for _, h := range m.Headers {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}

// TestDeliveryOptionsOnRealServices drives one task with schema sync, a DDL
// topic, a dead-letter topic, the upper-case name policy, a renamed and a
// dropped column and no DELETEs, then alters the table while it streams.
func TestDeliveryOptionsOnRealServices(t *testing.T) {
	conn := pgConnect(t)
	table := uniqueName("e2e_opts")
	topic, ddlTopic, dlq := table, table+"_ddl", table+"_dlq"
	exec1(t, conn, fmt.Sprintf(`CREATE TABLE public.%s (id bigint PRIMARY KEY, name text, secret text, big text)`, table))
	t.Cleanup(func() { exec1(t, conn, "DROP TABLE IF EXISTS public."+table) })
	// The data topic exists already, with a small message limit; schema
	// sync creates the DDL and dead-letter topics.
	createTopic(t, topic, map[string]string{"max.message.bytes": "8192"})

	f := startFerry(t)
	taskID := strings.ReplaceAll(table, "_", "-")
	f.createTaskFromSpec(conn, taskID, &taskv1.TaskSpec{
		Name:        "e2e " + table,
		Source:      sourceEndpoint(),
		Destination: &taskv1.KafkaEndpoint{BootstrapServers: kafkaBootstrap(), Topic: topic},
		SyncTypes:   &taskv1.SyncTypes{Schema: true},
		Objects: &taskv1.ObjectSelection{NameCase: taskv1.NameCase_NAME_CASE_UPPER, Tables: []*taskv1.TableSelection{{
			Schema: "public", Table: table,
			Columns:    []*taskv1.ColumnMapping{{Name: "name", Rename: "label"}, {Name: "secret", Drop: true}},
			Operations: []taskv1.OperationSet{taskv1.OperationSet_OPERATION_SET_INSERT, taskv1.OperationSet_OPERATION_SET_UPDATE},
		}}},
		Kafka:    &taskv1.KafkaOptions{DdlTopic: ddlTopic, DeadLetterTopic: dlq, ConflictMode: taskv1.ConflictMode_CONFLICT_MODE_IGNORE},
		Advanced: &taskv1.AdvancedOptions{ConnectionRetryMinutes: 10, OtherRetryMinutes: 2},
	})
	data, ddl, dead := newConsumer(t, topic), newConsumer(t, ddlTopic), newConsumer(t, dlq)

	exec1(t, conn, fmt.Sprintf(`INSERT INTO public.%s VALUES (1, 'one', 's1', 'small')`, table))
	exec1(t, conn, fmt.Sprintf(`INSERT INTO public.%s VALUES (2, 'two', 's2', repeat('x', 20000))`, table))
	exec1(t, conn, fmt.Sprintf(`UPDATE public.%s SET name = 'uno' WHERE id = 1`, table))
	exec1(t, conn, fmt.Sprintf(`DELETE FROM public.%s WHERE id = 1`, table))
	exec1(t, conn, fmt.Sprintf(`ALTER TABLE public.%s ADD COLUMN qty integer`, table))
	exec1(t, conn, fmt.Sprintf(`INSERT INTO public.%s VALUES (3, 'three', 's3', 'small', 7)`, table))
	last := currentLSN(t, conn)

	upper := strings.ToUpper(table)
	rows := readMessages(t, data, 3, 30*time.Second)
	want := []struct {
		typ  string
		data map[string]*string
	}{
		{"INSERT", map[string]*string{"ID": ptr("1"), "label": ptr("one"), "BIG": ptr("small")}},
		{"UPDATE", map[string]*string{"ID": ptr("1"), "label": ptr("uno"), "BIG": ptr("small")}},
		{"INSERT", map[string]*string{"ID": ptr("3"), "label": ptr("three"), "BIG": ptr("small"), "QTY": ptr("7")}},
	}
	for i, msg := range rows {
		m := decodeCanal(t, msg.Value)
		if m.Type != want[i].typ || m.Database != "PUBLIC" || m.Table != upper || !reflect.DeepEqual(m.PkNames, []string{"ID"}) ||
			!reflect.DeepEqual(m.Data[0], want[i].data) {
			t.Errorf("row %d: %s %s.%s pk %v data %s; want %s PUBLIC.%s pk [ID] data %s",
				i, m.Type, m.Database, m.Table, m.PkNames, show(m.Data[0]), want[i].typ, upper, show(want[i].data))
		}
	}

	// The row over the data topic's limit went to the dead-letter topic,
	// whole, with headers that say where it belonged.
	d := readMessages(t, dead, 1, 30*time.Second)[0]
	if m := decodeCanal(t, d.Value); string(d.Key) != "2" || *m.Data[0]["BIG"] != strings.Repeat("x", 20000) ||
		header(d, "ferry.topic") != topic || header(d, "ferry.table") != table || header(d, "ferry.reason") != "message_too_large" {
		t.Errorf("dead letter: key %q, headers %v", d.Key, d.Headers)
	}

	// Schema sync described the table on first sight; the ALTER followed.
	recs := readMessages(t, ddl, 2, 30*time.Second)
	wantSQL := []string{
		fmt.Sprintf(`CREATE TABLE "PUBLIC"."%s" ("ID" bigint, "label" text, "BIG" text)`, upper),
		fmt.Sprintf(`ALTER TABLE "PUBLIC"."%s" ADD COLUMN "QTY" integer`, upper),
	}
	for i, r := range recs {
		m := decodeCanal(t, r.Value)
		if !m.IsDdl || m.SQL != wantSQL[i] || r.TopicPartition.Partition != 0 || m.Data != nil || m.SQLType != nil {
			t.Errorf("DDL record %d: isDdl %v partition %d sql %q; want %q", i, m.IsDdl, r.TopicPartition.Partition, m.SQL, wantSQL[i])
		}
	}

	// The DELETE was not shipped, yet the slot confirms past it: a skipped
	// row and a dead-lettered one both count as delivered.
	eventually(t, 30*time.Second, "the slot to confirm the last insert", func() (bool, string) {
		got := confirmedFlushLSN(t, conn, slotName(taskID))
		return got >= last, fmt.Sprintf("confirmed_flush_lsn %d, last insert ends at %d", got, last)
	})
	eventually(t, 30*time.Second, "the heartbeat to count the dead letter", func() (bool, string) {
		hb := f.task(taskID).GetHeartbeat()
		return hb.GetDeadLettered() == 1, fmt.Sprintf("heartbeat %v", hb)
	})
	f.stopAndRelease(conn, taskID)
}
