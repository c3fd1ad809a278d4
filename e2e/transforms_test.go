package e2e

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	taskv1 "github.com/ferry-cdc/ferry/gen/ferry/task/v1"
)

func sha256Hex(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

func etlTransforms(filter string) []*taskv1.Transform {
	return []*taskv1.Transform{
		{Kind: &taskv1.Transform_Filter{Filter: filter}},
		{Kind: &taskv1.Transform_Compute{Compute: &taskv1.ComputedColumn{Name: "amount_cents", Expression: "int(row.amount * 100.0)"}}},
		{Kind: &taskv1.Transform_Mask{Mask: &taskv1.MaskColumn{Column: "email", Mask: &taskv1.MaskColumn_Hash{Hash: &taskv1.MaskHash{}}}}},
	}
}

// TestTransformsOnRealServices: a predicate, a computed column and a masked
// column apply to full sync and to the stream in Canal JSON; an UPDATE
// leaving the predicate arrives as a DELETE and one entering it as an
// INSERT; modify-objects changes the predicate while the task runs; a bad
// transform is refused by CreateTask and by the precheck, naming table,
// position and CEL's message.
func TestTransformsOnRealServices(t *testing.T) {
	conn := pgConnect(t)
	table := uniqueName("e2e_etl")
	exec1(t, conn, fmt.Sprintf(`CREATE TABLE public.%s (id bigint PRIMARY KEY, amount numeric(10,2), email text)`, table))
	exec1(t, conn, fmt.Sprintf(`ALTER TABLE public.%s REPLICA IDENTITY FULL`, table))
	t.Cleanup(func() { exec1(t, conn, "DROP TABLE IF EXISTS public."+table) })
	exec1(t, conn, fmt.Sprintf(`INSERT INTO public.%s VALUES (1, 50, 'one@example.com'), (2, 500.25, 'two@example.com')`, table))
	createTopic(t, table, nil)

	f := startFerry(t)
	taskID := strings.ReplaceAll(table, "_", "-")
	spec := func(ts []*taskv1.Transform) *taskv1.TaskSpec {
		return &taskv1.TaskSpec{
			Name:        "e2e " + table,
			Source:      sourceEndpoint(),
			Destination: &taskv1.KafkaEndpoint{BootstrapServers: kafkaBootstrap(), Topic: table},
			Objects:     &taskv1.ObjectSelection{Tables: []*taskv1.TableSelection{{Schema: "public", Table: table, Transforms: ts}}},
			SyncTypes:   &taskv1.SyncTypes{Schema: true, Full: true},
			Kafka:       &taskv1.KafkaOptions{ConflictMode: taskv1.ConflictMode_CONFLICT_MODE_IGNORE, DdlTopic: table + "_ddl"},
			Advanced:    &taskv1.AdvancedOptions{ConnectionRetryMinutes: 10, OtherRetryMinutes: 2},
		}
	}
	checkBadTransformRefused(t, f, taskID, spec(etlTransforms("row.amount > 100.0 && row.nope == 1")), table)

	f.createTaskFromSpec(conn, taskID, spec(etlTransforms("row.amount > 100.0")))
	c := newConsumer(t, table)
	exec1(t, conn, fmt.Sprintf(`INSERT INTO public.%s VALUES (3, 700, 'three@example.com'), (4, 10, 'four@example.com')`, table))
	exec1(t, conn, fmt.Sprintf(`UPDATE public.%s SET amount = 20 WHERE id = 2`, table))
	exec1(t, conn, fmt.Sprintf(`UPDATE public.%s SET amount = 1000 WHERE id = 4`, table))
	want := []struct {
		typ, id, cents, email string
		snapshot              bool
	}{
		{"INSERT", "2", "50025", "two@example.com", true},
		{"INSERT", "3", "70000", "three@example.com", false},
		{"DELETE", "2", "50025", "two@example.com", false},
		{"INSERT", "4", "100000", "four@example.com", false},
	}
	msgs := readMessages(t, c, len(want), 60*time.Second)
	for i, m := range msgs {
		cm := decodeCanal(t, m.Value)
		row := cm.Data[0]
		w := want[i]
		if cm.Type != w.typ || *row["id"] != w.id || *row["amount_cents"] != w.cents || *row["email"] != sha256Hex(w.email) ||
			cm.MysqlType["amount_cents"] != "bigint" || (header(m, "ferry.snapshot") == "true") != w.snapshot {
			t.Errorf("message %d: %s %s (snapshot header %q); want %s id %s amount_cents %s, email hashed, snapshot %v",
				i, cm.Type, show(row), header(m, "ferry.snapshot"), w.typ, w.id, w.cents, w.snapshot)
		}
	}

	// modify-objects changes the predicate while the task runs.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := f.control.ModifyObjects(ctx, &taskv1.ModifyObjectsRequest{TaskId: taskID,
		Objects: spec(etlTransforms("row.amount > 5.0")).GetObjects()}); err != nil {
		t.Fatalf("ModifyObjects: %v", err)
	}
	// The signal reaches the stream asynchronously: rows inserted before the
	// stream restarts are still filtered the old way, so keep inserting
	// until one passes the new predicate.
	deadline := time.Now().Add(60 * time.Second)
	for id := 5; ; id++ {
		if time.Now().After(deadline) {
			t.Fatal("no row passed the predicate modify-objects set within 60s")
		}
		exec1(t, conn, fmt.Sprintf(`INSERT INTO public.%s VALUES (%d, 6, 'late@example.com')`, table, id))
		m, err := c.ReadMessage(2 * time.Second)
		if err != nil {
			continue
		}
		if cm := decodeCanal(t, m.Value); *cm.Data[0]["amount_cents"] != "600" {
			t.Fatalf("after modify-objects: %s %s, want a row of amount 6", cm.Type, show(cm.Data[0]))
		}
		break
	}
	f.stopAndRelease(conn, taskID)
}

func checkBadTransformRefused(t *testing.T, f *ferry, taskID string, bad *taskv1.TaskSpec, table string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := f.control.CreateTask(ctx, &taskv1.CreateTaskRequest{TaskId: taskID, Spec: bad})
	msg := status.Convert(err).Message()
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(msg, "transform 0 of table public."+table) ||
		!strings.Contains(msg, "undefined field 'nope'") {
		t.Fatalf("CreateTask with a bad transform: %v; want InvalidArgument naming the table, position and CEL's message", err)
	}
	res, err := f.control.PrecheckTask(ctx, &taskv1.PrecheckTaskRequest{Spec: bad})
	if err != nil {
		t.Fatal(err)
	}
	for _, it := range res.GetItems() {
		if it.GetId() == "transforms" {
			if it.GetSeverity() != taskv1.Severity_SEVERITY_FAIL || !strings.Contains(it.GetMessage(), "undefined field 'nope'") {
				t.Fatalf("precheck item transforms: %v", it)
			}
			return
		}
	}
	t.Fatal("the precheck has no transforms item")
}
