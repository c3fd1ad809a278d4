package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	taskv1 "github.com/ferry-cdc/ferry/gen/ferry/task/v1"
	"github.com/ferry-cdc/ferry/platform/taskapi"
)

// A transaction left open on the source holds the slot's restart point back;
// the task's source alert says so while it is open, and again when it ends.
func TestSourceAlertOnALongTransaction(t *testing.T) {
	conn := pgConnect(t)
	table := uniqueName("e2e_srcalert")
	exec1(t, conn, fmt.Sprintf(`CREATE TABLE public.%s (id bigint PRIMARY KEY)`, table))
	t.Cleanup(func() { _, _ = conn.Exec(context.Background(), "DROP TABLE IF EXISTS public."+table) })
	hook := startWebhook(t)
	f := startFerry(t)
	taskID := strings.ReplaceAll(table, "_", "-")
	f.createTaskFromSpec(conn, taskID, &taskv1.TaskSpec{
		Name: "source alerts", Source: sourceEndpoint(),
		Destination: &taskv1.KafkaEndpoint{BootstrapServers: kafkaBootstrap(), Topic: table},
		Objects:     &taskv1.ObjectSelection{Tables: []*taskv1.TableSelection{{Schema: "public", Table: table}}},
		Kafka:       &taskv1.KafkaOptions{ConflictMode: taskv1.ConflictMode_CONFLICT_MODE_IGNORE, DdlTopic: table + "_ddl"},
		SyncTypes:   &taskv1.SyncTypes{Schema: true},
		Advanced:    &taskv1.AdvancedOptions{ConnectionRetryMinutes: 10, OtherRetryMinutes: 2},
		Alerts: &taskv1.AlertRules{WebhookUrl: hook.url, TransactionThresholdSeconds: 2, SourceCheckSeconds: 5,
			RetainedWalThresholdMegabytes: 1 << 20}, // a terabyte: must never fire here
	})

	holder := pgConnect(t)
	tx, err := holder.Begin(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(context.Background()) }()
	if _, err := tx.Exec(context.Background(), fmt.Sprintf(`INSERT INTO public.%s VALUES (1)`, table)); err != nil {
		t.Fatal(err)
	}
	var firing map[string]any
	eventually(t, 60*time.Second, "the long_transaction alert to fire", func() (bool, string) {
		firing = hook.find(taskapi.AlertKindLongTransaction, taskapi.AlertFiring)
		return firing != nil, fmt.Sprintf("%d alerts", hook.count())
	})
	if firing["unit"] != "seconds" || firing["threshold"] != 2.0 || firing["value"].(float64) <= 2 || firing["task_id"] != taskID {
		t.Fatalf("firing alert %v, want the transaction's age in seconds over the 2 s threshold", firing)
	}
	if err := tx.Commit(context.Background()); err != nil {
		t.Fatal(err)
	}
	eventually(t, 60*time.Second, "the long_transaction alert to resolve", func() (bool, string) {
		return hook.find(taskapi.AlertKindLongTransaction, taskapi.AlertResolved) != nil, fmt.Sprintf("%d alerts", hook.count())
	})
	if a := hook.find(taskapi.AlertKindRetainedWAL, taskapi.AlertFiring); a != nil {
		t.Fatalf("retained WAL fired under a terabyte threshold: %v", a)
	}
	t.Logf("alert: %s", firing["message"])
}
