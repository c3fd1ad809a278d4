package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	taskv1 "github.com/ferry-cdc/ferry/gen/ferry/task/v1"
)

// TestSetupFailuresShowAsRetrying makes setup fail on every attempt, as a
// setup refused by the source does, while the precheck passes: a physical
// replication slot already holds the task's slot name, which setup cannot
// use and the precheck does not look for. GetTask must say RETRYING with
// setup's error; once the slot is dropped the task must stream.
func TestSetupFailuresShowAsRetrying(t *testing.T) {
	conn := pgConnect(t)
	table := uniqueName("e2e_setup_retry")
	taskID := strings.ReplaceAll(table, "_", "-")
	slot := slotName(taskID)
	exec1(t, conn, fmt.Sprintf(`CREATE TABLE public.%s (id bigint PRIMARY KEY, val text NOT NULL)`, table))
	exec1(t, conn, `SELECT pg_create_physical_replication_slot($1)`, slot)
	f := startFerry(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := f.control.CreateTask(ctx, &taskv1.CreateTaskRequest{TaskId: taskID, Spec: &taskv1.TaskSpec{
		Name:        "e2e " + table,
		Source:      sourceEndpoint(),
		Destination: &taskv1.KafkaEndpoint{BootstrapServers: kafkaBootstrap(), Topic: table},
		Objects:     &taskv1.ObjectSelection{Tables: []*taskv1.TableSelection{{Schema: "public", Table: table}}},
		Kafka:       &taskv1.KafkaOptions{ConflictMode: taskv1.ConflictMode_CONFLICT_MODE_IGNORE, DdlTopic: table + "_ddl"},
		SyncTypes:   &taskv1.SyncTypes{Schema: true},
		Advanced:    &taskv1.AdvancedOptions{ConnectionRetryMinutes: 30, OtherRetryMinutes: 10},
	}})
	if err != nil {
		t.Fatalf("CreateTask %s: %v", taskID, err)
	}
	f.cleanupTask(conn, taskID)

	var st *taskv1.TaskState
	eventually(t, 60*time.Second, "task "+taskID+" to show setup retrying", func() (bool, string) {
		st = f.state(taskID)
		return st.GetPhase() == taskv1.Phase_PHASE_SCHEMA_SYNC && st.GetStatus() == taskv1.Status_STATUS_RETRYING &&
				st.GetConsecutiveFailures() >= 2,
			fmt.Sprintf("phase %s status %s failures %d error %q", st.GetPhase(), st.GetStatus(), st.GetConsecutiveFailures(), st.GetLastError())
	})
	if want := "replication slot " + slot + " exists"; !strings.Contains(st.GetLastError(), want) {
		t.Errorf("last error = %q, want setup's error naming the slot (%q)", st.GetLastError(), want)
	}
	if st.GetFailingClass() != taskv1.ErrorClass_ERROR_CLASS_OTHER || st.GetFailingSince() == nil {
		t.Errorf("failing class %v since %v, want OTHER with its start", st.GetFailingClass(), st.GetFailingSince())
	}
	if until := st.GetRetryingUntil().AsTime().Sub(st.GetFailingSince().AsTime()); until != 10*time.Minute {
		t.Errorf("retrying until %s after the first failure, want the 10 min other-issues window", until)
	}
	for _, it := range st.GetPrechecks() {
		if it.GetSeverity() == taskv1.Severity_SEVERITY_FAIL {
			t.Errorf("precheck item %s failed (%s); the test needs a precheck that passes", it.GetId(), it.GetMessage())
		}
	}

	exec1(t, conn, `SELECT pg_drop_replication_slot($1)`, slot)
	f.waitStreaming(conn, taskID)
	st = f.state(taskID)
	if st.GetStatus() != taskv1.Status_STATUS_RUNNING || st.GetFailingSince() != nil || st.GetRetryingUntil() != nil {
		t.Errorf("streaming: status %s, failing since %v, retrying until %v; want RUNNING with the window cleared",
			st.GetStatus(), st.GetFailingSince(), st.GetRetryingUntil())
	}
	rows := collectRows(t, kafkaBootstrap(), table)
	exec1(t, conn, fmt.Sprintf(`INSERT INTO public.%s VALUES (1, 'after the fix')`, table))
	eventually(t, 60*time.Second, "the row inserted after the fix in Kafka", func() (bool, string) {
		return len(rows.missing(1)) == 0, rows.summary()
	})
}
