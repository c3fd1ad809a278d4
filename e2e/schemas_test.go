package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"github.com/jackc/pgx/v5"

	taskv1 "github.com/ferry-cdc/ferry/gen/ferry/task/v1"
	"github.com/ferry-cdc/ferry/platform/config"
	"github.com/ferry-cdc/ferry/services/testenv"
)

// superSource is the local PostgreSQL as its superuser (FERRY_PG_DSN's
// role), which PostgreSQL requires for a publication FOR TABLES IN SCHEMA.
// Its password travels as a file reference, like the ferry role's, and conn
// is a session of that role for reading and cleaning up what it owns.
func superSource(t *testing.T) (src *taskv1.SourceEndpoint, conn *pgx.Conn) {
	t.Helper()
	testenv.Integration(t)
	cfg, err := pgx.ParseConfig(config.Env("FERRY_PG_DSN", "postgres://postgres:postgres@127.0.0.1:55432/ferry?sslmode=disable"))
	if err != nil {
		t.Fatalf("FERRY_PG_DSN: %v", err)
	}
	pw := filepath.Join(t.TempDir(), "pg-superuser-password")
	if err := os.WriteFile(pw, []byte(cfg.Password+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err = pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatalf("connecting as the PostgreSQL superuser: %v; %s", err, stackHint)
	}
	t.Cleanup(func() { _ = conn.Close(context.Background()) })
	src = &taskv1.SourceEndpoint{
		Host: cfg.Host, Port: uint32(cfg.Port), Database: cfg.Database, User: cfg.User,
		Password: &taskv1.SecretRef{Source: &taskv1.SecretRef_File{File: pw}},
	}
	return src, conn
}

// TestSchemaSelectionCapturesTablesCreatedLater selects a whole schema: the
// rows of its table arrive, and so do those of a table created in it while
// the task streams, on the task's topic, each table described by a CREATE
// record on the DDL topic when first seen.
func TestSchemaSelectionCapturesTablesCreatedLater(t *testing.T) {
	conn := pgConnect(t)
	schema := uniqueName("e2e_schema")
	topic, ddlTopic := schema, schema+"_ddl"
	exec1(t, conn, `CREATE SCHEMA `+schema)
	t.Cleanup(func() { _, _ = conn.Exec(context.Background(), `DROP SCHEMA IF EXISTS `+schema+` CASCADE`) })
	exec1(t, conn, `CREATE TABLE `+schema+`.first (id bigint PRIMARY KEY, note text)`)

	src, super := superSource(t)
	f := startFerry(t)
	taskID := strings.ReplaceAll(schema, "_", "-")
	f.createTaskFromSpec(super, taskID, &taskv1.TaskSpec{
		Name:        "e2e " + schema,
		Source:      src,
		Destination: &taskv1.KafkaEndpoint{BootstrapServers: kafkaBootstrap(), Topic: topic},
		Objects:     &taskv1.ObjectSelection{Schemas: []*taskv1.SchemaSelection{{Schema: schema}}},
		SyncTypes:   &taskv1.SyncTypes{Schema: true},
		Kafka:       &taskv1.KafkaOptions{DdlTopic: ddlTopic, ConflictMode: taskv1.ConflictMode_CONFLICT_MODE_IGNORE},
		Advanced:    &taskv1.AdvancedOptions{ConnectionRetryMinutes: 10, OtherRetryMinutes: 2},
	})
	var published []string
	rows, err := super.Query(context.Background(), `SELECT n.nspname FROM pg_publication p
		JOIN pg_publication_namespace pn ON pn.pnpubid = p.oid JOIN pg_namespace n ON n.oid = pn.pnnspid
		WHERE p.pubname = $1`, slotName(taskID))
	if err == nil {
		published, err = pgx.CollectRows(rows, pgx.RowTo[string])
	}
	if err != nil || !reflect.DeepEqual(published, []string{schema}) {
		t.Fatalf("the task's publication takes schemas %v (%v), want [%s] FOR TABLES IN SCHEMA", published, err, schema)
	}
	data, ddl := newConsumer(t, topic), newConsumer(t, ddlTopic)

	exec1(t, conn, `INSERT INTO `+schema+`.first VALUES (1, 'one'), (2, 'two')`)
	expectRows(t, readMessages(t, data, 2, 30*time.Second), schema, "first",
		map[string]*string{"id": ptr("1"), "note": ptr("one")}, map[string]*string{"id": ptr("2"), "note": ptr("two")})

	// No modify-objects, no restart: the publication takes the new table.
	exec1(t, conn, `CREATE TABLE `+schema+`.later (id bigint PRIMARY KEY, qty integer)`)
	exec1(t, conn, `INSERT INTO `+schema+`.later VALUES (10, 5), (11, NULL)`)
	last := currentLSN(t, conn)
	expectRows(t, readMessages(t, data, 2, 30*time.Second), schema, "later",
		map[string]*string{"id": ptr("10"), "qty": ptr("5")}, map[string]*string{"id": ptr("11"), "qty": nil})

	wantSQL := []string{
		fmt.Sprintf(`CREATE TABLE "%s"."first" ("id" bigint, "note" text)`, schema),
		fmt.Sprintf(`CREATE TABLE "%s"."later" ("id" bigint, "qty" integer)`, schema),
	}
	for i, r := range readMessages(t, ddl, 2, 30*time.Second) {
		m := decodeCanal(t, r.Value)
		if !m.IsDdl || m.Type != "CREATE" || m.SQL != wantSQL[i] || m.Database != schema || r.TopicPartition.Partition != 0 {
			t.Errorf("DDL record %d: isDdl %v type %s %s.%s sql %q; want a CREATE with %q", i, m.IsDdl, m.Type, m.Database, m.Table, m.SQL, wantSQL[i])
		}
	}
	eventually(t, 30*time.Second, "the slot to confirm the later table's rows", func() (bool, string) {
		got := confirmedFlushLSN(t, super, slotName(taskID))
		return got >= last, fmt.Sprintf("confirmed_flush_lsn %d, the inserts end at %d", got, last)
	})
	f.stopAndRelease(super, taskID)
}

// expectRows checks that msgs are the INSERTs of rows into schema.table,
// in order.
func expectRows(t *testing.T, msgs []*kafka.Message, schema, table string, rows ...map[string]*string) {
	t.Helper()
	for i, msg := range msgs {
		m := decodeCanal(t, msg.Value)
		if m.Type != "INSERT" || m.IsDdl || m.Database != schema || m.Table != table || !reflect.DeepEqual(m.PkNames, []string{"id"}) ||
			len(m.Data) != 1 || !reflect.DeepEqual(m.Data[0], rows[i]) {
			t.Errorf("message %d: %s %s.%s pk %v data %v; want INSERT %s.%s pk [id] data %s",
				i, m.Type, m.Database, m.Table, m.PkNames, m.Data, schema, table, show(rows[i]))
		}
	}
}
