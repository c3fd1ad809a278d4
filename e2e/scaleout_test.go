package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	enumspb "go.temporal.io/api/enums/v1"

	capturev1 "github.com/ferry-cdc/ferry/gen/ferry/capture/v1"
	taskv1 "github.com/ferry-cdc/ferry/gen/ferry/task/v1"
	"github.com/ferry-cdc/ferry/platform/grpccodec"
	"github.com/ferry-cdc/ferry/platform/taskapi"

	"google.golang.org/grpc"
)

// scaledTask is one of the scale-out test's tasks: its table, whose ids
// start at a range of their own, and what reached its topic.
type scaledTask struct {
	table, taskID string
	first         int // the table's first id; no other table's ids come near
	snapshotRows  int // full sync rows its topic must hold
	rows          *failoverRows
	w             *idWriter
}

// TestScaledOutFerryLosesNothingWhenOneOfEachDies runs two instances each
// of capture, delivery and the worker, reached through static lists and
// balanced round robin, with four tasks at once, each with its own table,
// writer and topic. Mid-stream one instance of each kind is SIGKILLed and
// stays dead: the survivors carry every task on, every committed row
// arrives in its own topic and no other, each task keeps its own slot, and
// a throttle update still reaches whichever capture holds the stream, and
// pause, resume and modify-objects steer tasks whichever instances serve
// them.
func TestScaledOutFerryLosesNothingWhenOneOfEachDies(t *testing.T) {
	conn := pgConnect(t)
	f := startFerryScaled(t, 2)
	src := sourceEndpoint()
	src.Hosts = []*taskv1.HostPort{{Host: src.GetHost(), Port: src.GetPort()}}
	tasks := make([]*scaledTask, 4)
	for i := range tasks {
		tasks[i] = startScaledTask(t, f, conn, i)
	}
	for _, st := range tasks {
		st.w = startIDWriter(t, src, st.table, st.first+100)
	}
	waitScaledRows(t, tasks, 150, "rows of every task before the kills")

	capVictim := captureHoldingStreams(t, f, tasks)
	for _, victim := range []string{capVictim, "delivery-1", "worker-1"} {
		f.kill(victim)
	}
	t.Logf("killed %s, delivery-1 and worker-1 mid-stream", capVictim)
	waitScaledRows(t, tasks, 400, "rows of every task after the kills")
	checkThrottleReachesTheStream(t, f, tasks[0].taskID)
	checkPauseAndResume(t, f, conn, tasks[1])
	checkModifyAddsATable(t, f, conn, tasks[2])

	for _, st := range tasks {
		committed := st.w.finish()
		eventually(t, 90*time.Second, "every committed row of "+st.table, func() (bool, string) {
			missing := st.rows.missing(committed)
			s := f.state(st.taskID)
			return len(missing) == 0, fmt.Sprintf("%d of %d missing (first %v); task %s %s", len(missing), len(committed), first(missing), s.GetStatus(), s.GetLastError())
		})
		checkOwnRowsOnly(t, st)
		t.Logf("%s: %d rows written, %s", st.taskID, len(committed), st.rows.summary())
	}
	checkOwnSlots(t, f, conn, tasks)
	for _, st := range tasks {
		f.stopAndRelease(conn, st.taskID)
	}
}

// startScaledTask makes table i with 100 rows from its own id range and a
// task with full sync that streams it to its own topic.
func startScaledTask(t *testing.T, f *ferry, conn *pgx.Conn, i int) *scaledTask {
	t.Helper()
	st := &scaledTask{table: uniqueName(fmt.Sprintf("e2e_scale%d", i)), first: (i + 1) * 10_000_000, snapshotRows: 100}
	st.taskID = strings.ReplaceAll(st.table, "_", "-")
	exec1(t, conn, fmt.Sprintf(`CREATE TABLE public.%s (id bigint PRIMARY KEY, val text NOT NULL)`, st.table))
	exec1(t, conn, fmt.Sprintf(`INSERT INTO public.%s SELECT g, 'row ' || g FROM generate_series(%d, %d) g`, st.table, st.first, st.first+99))
	t.Cleanup(func() { _, _ = conn.Exec(context.Background(), "DROP TABLE IF EXISTS public."+st.table) })
	st.rows = collectFailoverRows(t, st.table)
	f.createTaskFromSpec(conn, st.taskID, &taskv1.TaskSpec{
		Name:        "e2e scale-out " + st.table,
		Source:      sourceEndpoint(),
		Destination: &taskv1.KafkaEndpoint{BootstrapServers: kafkaBootstrap(), Topic: st.table},
		Objects:     &taskv1.ObjectSelection{Tables: []*taskv1.TableSelection{{Schema: "public", Table: st.table}}},
		Kafka:       &taskv1.KafkaOptions{ConflictMode: taskv1.ConflictMode_CONFLICT_MODE_IGNORE, DdlTopic: st.table + "_ddl"},
		SyncTypes:   &taskv1.SyncTypes{Schema: true, Full: true},
		Advanced:    &taskv1.AdvancedOptions{ConnectionRetryMinutes: 10, OtherRetryMinutes: 5},
	})
	return st
}

// waitScaledRows waits until every task has n rows of its writer in Kafka.
func waitScaledRows(t *testing.T, tasks []*scaledTask, n int, what string) {
	t.Helper()
	eventually(t, 120*time.Second, what, func() (bool, string) {
		var lag []string
		for _, st := range tasks {
			committed := st.w.committed()
			arrived := len(committed) - len(st.rows.missing(committed))
			if arrived < n {
				lag = append(lag, fmt.Sprintf("%s %d of %d", st.taskID, arrived, n))
			}
		}
		return len(lag) == 0, strings.Join(lag, "; ")
	})
}

// captureHoldingStreams names a capture instance that serves some task's
// stream, asked the way the worker asks: an UpdateThrottle to each
// instance, here with the tasks' own (unlimited) throttle, which changes
// nothing, and counts how many running calls took it.
func captureHoldingStreams(t *testing.T, f *ferry, tasks []*scaledTask) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	held := map[string]int{}
	for _, name := range []string{"capture-1", "capture-2"} {
		c, err := grpc.NewClient(f.addrs[name], ferryDial(t, f.addrs[name]), grpccodec.DialOption())
		if err != nil {
			t.Fatal(err)
		}
		for _, st := range tasks {
			res, err := capturev1.NewCaptureServiceClient(c).UpdateThrottle(ctx, &capturev1.UpdateThrottleRequest{SlotName: slotName(st.taskID), Incremental: &taskv1.IncrementalThrottle{}})
			if err != nil {
				t.Fatalf("asking %s about %s: %v", name, st.taskID, err)
			}
			held[name] += int(res.GetStreamsUpdated())
		}
		_ = c.Close()
	}
	t.Logf("streams held: capture-1 %d, capture-2 %d", held["capture-1"], held["capture-2"])
	if held["capture-1"]+held["capture-2"] < len(tasks) {
		t.Fatalf("the capture instances hold %d streams, want one per task (%d)", held["capture-1"]+held["capture-2"], len(tasks))
	}
	if held["capture-1"] == 0 {
		return "capture-2"
	}
	return "capture-1"
}

// checkThrottleReachesTheStream changes a task's throttle through the
// control API and reads, in the task's history, how many running calls
// the worker's ApplyThrottle reached across the capture instances.
func checkThrottleReachesTheStream(t *testing.T, f *ferry, taskID string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if _, err := f.control.UpdateThrottle(ctx, &taskv1.UpdateThrottleRequest{TaskId: taskID,
		Incremental: &taskv1.IncrementalThrottle{RowsPerSecond: 1_000_000}}); err != nil {
		t.Fatalf("UpdateThrottle %s: %v", taskID, err)
	}
	eventually(t, 45*time.Second, "ApplyThrottle to reach the stream of "+taskID, func() (bool, string) {
		n, found := f.lastThrottleResult(ctx, taskID)
		return found && n >= 1, fmt.Sprintf("completed %v, streams updated %d", found, n)
	})
}

// lastThrottleResult is the streams_updated of the task's last completed
// ApplyThrottle activity.
func (f *ferry) lastThrottleResult(ctx context.Context, taskID string) (uint32, bool) {
	it := f.temporal.GetWorkflowHistory(ctx, taskID, "", false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	scheduled := map[int64]string{}
	var n uint32
	found := false
	dc := taskapi.DataConverterWith(nil)
	for it.HasNext() {
		ev, err := it.Next()
		if err != nil {
			f.t.Fatalf("reading history of %s: %v", taskID, err)
		}
		if a := ev.GetActivityTaskScheduledEventAttributes(); a != nil {
			scheduled[ev.GetEventId()] = a.GetActivityType().GetName()
		}
		if a := ev.GetActivityTaskCompletedEventAttributes(); a != nil && scheduled[a.GetScheduledEventId()] == taskapi.ActivityApplyThrottle {
			var res capturev1.UpdateThrottleResponse
			if err := dc.FromPayloads(a.GetResult(), &res); err != nil {
				f.t.Fatalf("decoding ApplyThrottle's result: %v", err)
			}
			n, found = res.GetStreamsUpdated(), true
		}
	}
	return n, found
}

// checkOwnRowsOnly wants only the task's own ids in its topic.
func checkOwnRowsOnly(t *testing.T, st *scaledTask) {
	t.Helper()
	st.rows.mu.Lock()
	defer st.rows.mu.Unlock()
	for id := range st.rows.seen {
		if id < st.first || id >= st.first+10_000_000 {
			t.Errorf("topic %s holds row %d of another table", st.table, id)
		}
	}
	if st.rows.snapBefore != st.snapshotRows {
		t.Errorf("topic %s holds %d snapshot rows, want its tables' %d", st.table, st.rows.snapBefore, st.snapshotRows)
	}
}

// checkOwnSlots wants each task on a slot and publication of its own.
func checkOwnSlots(t *testing.T, f *ferry, conn *pgx.Conn, tasks []*scaledTask) {
	t.Helper()
	names := map[string]string{}
	for _, st := range tasks {
		s := f.state(st.taskID)
		if s.GetSlotName() != slotName(st.taskID) || s.GetPublicationName() != slotName(st.taskID) {
			t.Errorf("task %s runs on slot %s and publication %s, want its own %s", st.taskID, s.GetSlotName(), s.GetPublicationName(), slotName(st.taskID))
		}
		if other, dup := names[s.GetSlotName()]; dup {
			t.Errorf("tasks %s and %s share slot %s", other, st.taskID, s.GetSlotName())
		}
		names[s.GetSlotName()] = st.taskID
		if !slotReading(conn, s.GetSlotName()) {
			t.Errorf("slot %s of %s is not being read after the kills", s.GetSlotName(), st.taskID)
		}
	}
}

// checkPauseAndResume pauses a task while its writer goes on, sees its
// slot let go, and resumes it; the rows written meanwhile are counted with
// the rest at the end.
func checkPauseAndResume(t *testing.T, f *ferry, conn *pgx.Conn, st *scaledTask) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := f.control.PauseTask(ctx, &taskv1.PauseTaskRequest{TaskId: st.taskID}); err != nil {
		t.Fatalf("PauseTask %s: %v", st.taskID, err)
	}
	eventually(t, 60*time.Second, st.taskID+" to pause", func() (bool, string) {
		s := f.state(st.taskID)
		return s.GetStatus() == taskv1.Status_STATUS_PAUSED && !slotReading(conn, slotName(st.taskID)), "status " + s.GetStatus().String()
	})
	paused := st.w.committedCount()
	eventually(t, 30*time.Second, "rows written while "+st.taskID+" is paused", func() (bool, string) {
		return st.w.committedCount() >= paused+100, fmt.Sprintf("%d rows since the pause", st.w.committedCount()-paused)
	})
	if _, err := f.control.ResumeTask(ctx, &taskv1.ResumeTaskRequest{TaskId: st.taskID}); err != nil {
		t.Fatalf("ResumeTask %s: %v", st.taskID, err)
	}
	f.waitStreaming(conn, st.taskID)
}

// checkModifyAddsATable adds a table of 50 rows from the task's id range
// to a running task; its full sync reaches the task's topic.
func checkModifyAddsATable(t *testing.T, f *ferry, conn *pgx.Conn, st *scaledTask) {
	t.Helper()
	added := st.table + "_added"
	from := st.first + 5_000_000
	exec1(t, conn, fmt.Sprintf(`CREATE TABLE public.%s (id bigint PRIMARY KEY, val text NOT NULL)`, added))
	exec1(t, conn, fmt.Sprintf(`INSERT INTO public.%s SELECT g, 'row ' || g FROM generate_series(%d, %d) g`, added, from, from+49))
	t.Cleanup(func() { _, _ = conn.Exec(context.Background(), "DROP TABLE IF EXISTS public."+added) })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := f.control.ModifyObjects(ctx, &taskv1.ModifyObjectsRequest{TaskId: st.taskID, Objects: &taskv1.ObjectSelection{
		Tables: []*taskv1.TableSelection{{Schema: "public", Table: st.table}, {Schema: "public", Table: added}},
	}}); err != nil {
		t.Fatalf("ModifyObjects adding %s to %s: %v", added, st.taskID, err)
	}
	st.snapshotRows += 50
	want := make([]int, 50)
	for i := range want {
		want[i] = from + i
	}
	eventually(t, 90*time.Second, "the added table's rows in "+st.table, func() (bool, string) {
		missing := st.rows.missing(want)
		return len(missing) == 0, fmt.Sprintf("%d of 50 missing", len(missing))
	})
}
