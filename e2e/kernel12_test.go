package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	taskv1 "github.com/ferry-cdc/ferry/gen/ferry/task/v1"
	"github.com/ferry-cdc/ferry/services/testenv"
)

// TestFullSyncOnPostgres12 runs a task with full sync on the PostgreSQL 12
// kernel, the one Greenplum 7 and AnalyticDB for PostgreSQL 7 have: its
// pgoutput forwards no logical messages, so full sync cannot read chunks
// between watermarks and must read the exported snapshot, keyed tables or
// not.
func TestFullSyncOnPostgres12(t *testing.T) {
	pg := testenv.StartPostgresVersion(t, 12)
	conn := pg.Conn(t)
	table := uniqueName("e2e_pg12")
	taskID := strings.ReplaceAll(table, "_", "-")
	exec1(t, conn, fmt.Sprintf(`CREATE TABLE public.%s (id bigint PRIMARY KEY, val text NOT NULL)`, table))
	exec1(t, conn, fmt.Sprintf(`INSERT INTO public.%s SELECT g, 'row ' || g FROM generate_series(1, 100) g`, table))
	f := startFerry(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := f.control.CreateTask(ctx, &taskv1.CreateTaskRequest{TaskId: taskID, Spec: &taskv1.TaskSpec{
		Name:        "e2e " + table,
		Source:      pg.Source(),
		Destination: &taskv1.KafkaEndpoint{BootstrapServers: kafkaBootstrap(), Topic: table},
		Objects:     &taskv1.ObjectSelection{Tables: []*taskv1.TableSelection{{Schema: "public", Table: table}}},
		Kafka:       &taskv1.KafkaOptions{ConflictMode: taskv1.ConflictMode_CONFLICT_MODE_IGNORE, DdlTopic: table + "_ddl"},
		SyncTypes:   &taskv1.SyncTypes{Schema: true, Full: true},
		Advanced:    &taskv1.AdvancedOptions{ConnectionRetryMinutes: 10, OtherRetryMinutes: 2},
	}})
	if err != nil {
		t.Fatalf("CreateTask %s: %v", taskID, err)
	}
	t.Cleanup(func() { f.releaseIfRunning(taskID) })
	rows := collectRows(t, kafkaBootstrap(), table)
	eventually(t, 120*time.Second, "task "+taskID+" to finish full sync and stream", func() (bool, string) {
		st := f.state(taskID)
		return st.GetPhase() == taskv1.Phase_PHASE_INCREMENTAL && st.GetFullSyncDone(),
			fmt.Sprintf("phase %s status %s error %q", st.GetPhase(), st.GetStatus(), st.GetLastError())
	})
	if st := f.state(taskID); st.GetFullSyncChunked() {
		t.Errorf("full sync ran chunked on PostgreSQL 12, whose pgoutput drops the watermarks")
	}
	exec1(t, conn, fmt.Sprintf(`INSERT INTO public.%s VALUES (101, 'streamed')`, table))
	eventually(t, 60*time.Second, "the 100 snapshot rows and the streamed one in Kafka", func() (bool, string) {
		return len(rows.missing(101)) == 0, rows.summary()
	})
}
