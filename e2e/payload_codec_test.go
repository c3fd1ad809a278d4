package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"google.golang.org/protobuf/proto"

	taskv1 "github.com/ferry-cdc/ferry/gen/ferry/task/v1"
)

// With a payload key, the Temporal server holds ciphertext only: a task's
// history names neither its source, its tables, its secret references nor
// any row value, while the control API (which has the key) reads the task
// as before.
func TestPayloadKeySealsTheTaskHistory(t *testing.T) {
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(t.TempDir(), "payload-key")
	if err := os.WriteFile(keyFile, []byte(hex.EncodeToString(key)), 0o600); err != nil {
		t.Fatal(err)
	}
	conn := pgConnect(t)
	table := uniqueName("e2e_sealed")
	exec1(t, conn, fmt.Sprintf(`CREATE TABLE public.%s (id bigint PRIMARY KEY, secret_note text)`, table))
	t.Cleanup(func() { _, _ = conn.Exec(context.Background(), "DROP TABLE IF EXISTS public."+table) })

	f := startFerryWithEnv(t, "FERRY_PAYLOAD_KEY_FILE="+keyFile)
	taskID := strings.ReplaceAll(table, "_", "-")
	// The task's name and source database are search attributes, which
	// Temporal indexes in clear so that tasks can be listed; this one's
	// name leaves the table out.
	f.createTaskFromSpec(conn, taskID, &taskv1.TaskSpec{
		Name: "sealed", Source: sourceEndpoint(),
		Destination: &taskv1.KafkaEndpoint{BootstrapServers: kafkaBootstrap(), Topic: table},
		Objects:     &taskv1.ObjectSelection{Tables: []*taskv1.TableSelection{{Schema: "public", Table: table}}},
		Kafka:       &taskv1.KafkaOptions{ConflictMode: taskv1.ConflictMode_CONFLICT_MODE_IGNORE, DdlTopic: table + "_ddl"},
		SyncTypes:   &taskv1.SyncTypes{Schema: true},
		Advanced:    &taskv1.AdvancedOptions{ConnectionRetryMinutes: 10, OtherRetryMinutes: 2},
	})
	consumer := newConsumer(t, table)
	rowValue := "row-value-" + hex.EncodeToString(key[:6])
	exec1(t, conn, fmt.Sprintf(`INSERT INTO public.%s VALUES (1, $1)`, table), rowValue)
	readMessages(t, consumer, 1, 30*time.Second)
	// GetTask decodes the sealed state and heartbeat through the key.
	eventually(t, 30*time.Second, "GetTask to show the task streaming", func() (bool, string) {
		st := f.state(taskID)
		return st.GetSpec().GetObjects().GetTables()[0].GetTable() == table && st.GetCheckpoint() != nil, st.GetPhase().String()
	})

	history := rawHistory(t, f, taskID)
	src := sourceEndpoint()
	for name, clear := range map[string]string{
		"the table": table, "the password file": src.GetPassword().GetFile(),
		"the Kafka address": kafkaBootstrap(), "a row value": rowValue,
	} {
		if bytes.Contains(history, []byte(clear)) {
			t.Errorf("the task's history shows %s (%q) in clear", name, clear)
		}
	}
	if !bytes.Contains(history, []byte("binary/encrypted")) {
		t.Fatal("no sealed payload in the task's history")
	}
}

// rawHistory is every event of the task's workflow, as the Temporal server
// stores it, read without the key.
func rawHistory(t *testing.T, f *ferry, taskID string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	it := f.temporal.GetWorkflowHistory(ctx, taskID, "", false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	var all []byte
	for it.HasNext() {
		ev, err := it.Next()
		if err != nil {
			t.Fatalf("reading the history of %s: %v", taskID, err)
		}
		b, err := proto.Marshal(ev)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, b...)
	}
	return all
}
