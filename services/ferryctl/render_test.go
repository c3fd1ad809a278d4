package ferryctl

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	cdcv1 "github.com/ferry-cdc/ferry/gen/ferry/cdc/v1"
	taskv1 "github.com/ferry-cdc/ferry/gen/ferry/task/v1"
)

func TestFormatLSN(t *testing.T) {
	for _, tc := range []struct {
		lsn  uint64
		want string
	}{
		{0, "0/0"},
		{0x16B3748, "0/16B3748"},
		{0xC1E4A588, "0/C1E4A588"},
		{1<<32 | 1, "1/1"},
		{0x2A_0000_00FF, "2A/FF"},
		{^uint64(0), "FFFFFFFF/FFFFFFFF"},
	} {
		if got := FormatLSN(tc.lsn); got != tc.want {
			t.Errorf("FormatLSN(%#x) = %q, want %q", tc.lsn, got, tc.want)
		}
	}
}

func TestProgressBar(t *testing.T) {
	full := strings.Repeat("#", barWidth)
	for _, tc := range []struct {
		name            string
		rows, estimated uint64
		done            bool
		want            string
	}{
		{"nothing yet", 0, 1000, false, "[" + strings.Repeat(".", barWidth) + "]   0%  0/1000 rows"},
		{"half", 500, 1000, false, "[" + strings.Repeat("#", 15) + strings.Repeat(".", 15) + "]  50%  500/1000 rows"},
		{"a third rounds down", 1, 3, false, "[" + strings.Repeat("#", 10) + strings.Repeat(".", 20) + "]  33%  1/3 rows"},
		// reltuples is stale: more rows than estimated is not done.
		{"past a stale estimate", 1500, 1000, false, "[" + strings.Repeat("#", barWidth-1) + ".]  99%  1500/1000 rows"},
		{"done below the estimate", 900, 1000, true, "[" + full + "] done  900 rows"},
		{"no estimate", 1234, 0, false, "1234 rows (no estimate)"},
		{"done without estimate", 7, 0, true, "[" + full + "] done  7 rows"},
	} {
		if got := ProgressBar(tc.rows, tc.estimated, tc.done); got != tc.want {
			t.Errorf("%s: ProgressBar(%d, %d, %v) =\n%q, want\n%q", tc.name, tc.rows, tc.estimated, tc.done, got, tc.want)
		}
	}
}

func render(t *testing.T, res *taskv1.GetTaskResponse) string {
	t.Helper()
	var b bytes.Buffer
	if err := writeStatus(&b, res); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

func assertLines(t *testing.T, out string, want ...string) {
	t.Helper()
	for _, w := range want {
		if !strings.Contains(out, w) {
			t.Errorf("output lacks %q:\n%s", w, out)
		}
	}
}

func TestStatusDuringFullSync(t *testing.T) {
	out := render(t, &taskv1.GetTaskResponse{TaskId: "t1", State: &taskv1.TaskState{
		Phase: taskv1.Phase_PHASE_FULL_SYNC, Status: taskv1.Status_STATUS_RUNNING,
		Checkpoint: &cdcv1.Checkpoint{ConfirmedLsn: 0x1_0000_0010},
		FullSyncRows: []*taskv1.TableRowCount{
			{Table: &taskv1.TableRef{Table: "orders"}, Rows: 250, EstimatedRows: 1000},
			{Table: &taskv1.TableRef{Schema: "sales", Table: "items"}, Rows: 40, Done: true, EstimatedRows: 50},
			{Table: &taskv1.TableRef{Schema: "sales", Table: "fresh"}, Rows: 12},
		},
		Prechecks: []*taskv1.PrecheckItem{
			{Id: "wal_level", Severity: taskv1.Severity_SEVERITY_PASS},
			{Id: "primary_key", Severity: taskv1.Severity_SEVERITY_PASS, Acknowledged: true},
			{Id: "toast", Severity: taskv1.Severity_SEVERITY_WARN},
		},
	}})
	assertLines(t, out,
		"Task:            t1\n",
		"Phase:           PHASE_FULL_SYNC\n",
		"Status:          STATUS_RUNNING\n",
		"Checkpoint LSN:  1/10\n",
		"Prechecks:       2 passed (1 warning acknowledged), 1 warning (toast), 0 failed\n",
		"Full sync:\n",
		"  public.orders  [#######.......................]  25%  250/1000 rows\n",
		"  sales.items    ["+strings.Repeat("#", barWidth)+"] done  40 rows\n",
		"  sales.fresh    12 rows (no estimate)\n",
	)
	if strings.Contains(out, "Latency") || strings.Contains(out, "Backfills") {
		t.Errorf("full sync shows latency or backfills it does not have:\n%s", out)
	}
}

func TestStatusIncrementalUsesTheHeartbeat(t *testing.T) {
	out := render(t, &taskv1.GetTaskResponse{
		TaskId: "t2",
		State: &taskv1.TaskState{
			Phase: taskv1.Phase_PHASE_INCREMENTAL, Status: taskv1.Status_STATUS_RUNNING,
			Checkpoint: &cdcv1.Checkpoint{ConfirmedLsn: 0x100, Backfills: []*cdcv1.BackfillProgress{{Table: "stale"}}},
			SlotName:   "ferry_t2", PublicationName: "ferry_t2",
			// Rows of a finished full sync are history, not progress.
			FullSyncDone: true, FullSyncRows: []*taskv1.TableRowCount{{Table: &taskv1.TableRef{Table: "orders"}, Rows: 5, Done: true}},
		},
		HeartbeatConfirmedLsn: 0x16B3748,
		Heartbeat: &cdcv1.Checkpoint{
			ConfirmedLsn: 0x16B3748, AckedEvents: 42, DeadLettered: 1, LatencyMs: 1250,
			Backfills: []*cdcv1.BackfillProgress{
				{Schema: "public", Table: "added", Rows: 300, EstimatedRows: 1200},
				{Table: "small", Rows: 9, Done: true},
			},
		},
	})
	assertLines(t, out,
		"Checkpoint LSN:  0/16B3748\n",
		"Rows acked:      42 (1 dead-lettered) in the running attempt\n",
		"Latency:         1.25s (source commit to Kafka ack)\n",
		"Slot:            ferry_t2 (publication ferry_t2)\n",
		"Prechecks:       none recorded\n",
		"Backfills:\n",
		"  public.added  [#######.......................]  25%  300/1200 rows\n",
		"  public.small  ["+strings.Repeat("#", barWidth)+"] done  9 rows\n",
	)
	for _, no := range []string{"Full sync", "stale", "Last error"} {
		if strings.Contains(out, no) {
			t.Errorf("output shows %q:\n%s", no, out)
		}
	}
}

func TestStatusOfAFailingPausedTask(t *testing.T) {
	since := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	out := render(t, &taskv1.GetTaskResponse{TaskId: "t3", State: &taskv1.TaskState{
		Phase: taskv1.Phase_PHASE_INCREMENTAL, Status: taskv1.Status_STATUS_PAUSED, Paused: true,
		Checkpoint:          &cdcv1.Checkpoint{ConfirmedLsn: 0xAB_CDEF0123, LatencyMs: 99},
		ConsecutiveFailures: 3, FailingSince: timestamppb.New(since), FailingClass: taskv1.ErrorClass_ERROR_CLASS_CONNECTION,
		LastError: "connecting to 127.0.0.1:5432: refused", LastSignalError: "objects: table x does not exist",
		Prechecks: []*taskv1.PrecheckItem{{Id: "wal_level", Severity: taskv1.Severity_SEVERITY_FAIL}},
	}})
	assertLines(t, out,
		"Status:             STATUS_PAUSED\n",
		"Checkpoint LSN:     AB/CDEF0123\n",
		"Failures:           3 in a row since 2025-03-01T12:00:00Z (ERROR_CLASS_CONNECTION)\n",
		"Last error:         connecting to 127.0.0.1:5432: refused\n",
		"Last signal error:  objects: table x does not exist\n",
		"Prechecks:          0 passed, 0 warnings, 1 failed (wal_level)\n",
	)
	// Latency is the heartbeat's, from a running stream; without one there is none to show.
	if strings.Contains(out, "Latency") || strings.Contains(out, "Rows acked") {
		t.Errorf("a task without a heartbeat shows live figures:\n%s", out)
	}
}

func TestWritePrechecks(t *testing.T) {
	var b bytes.Buffer
	err := writePrechecks(&b, []*taskv1.PrecheckItem{
		{Id: "wal_level", Severity: taskv1.Severity_SEVERITY_PASS, Message: "wal_level is logical"},
		{Id: "primary_key", Severity: taskv1.Severity_SEVERITY_PASS, Acknowledged: true, Message: "public.t has no primary key", Fix: "add one"},
		{Id: "toast", Severity: taskv1.Severity_SEVERITY_WARN, Message: "wide rows", Fix: "set REPLICA IDENTITY FULL"},
		{Id: "slots", Severity: taskv1.Severity_SEVERITY_FAIL, Message: "no free slot", Fix: "raise max_replication_slots"},
	})
	if err != nil {
		t.Fatal(err)
	}
	want := `PASS  wal_level: wal_level is logical
PASS  primary_key: public.t has no primary key (warning acknowledged)
WARN  toast: wide rows
      fix: set REPLICA IDENTITY FULL
FAIL  slots: no free slot
      fix: raise max_replication_slots
2 passed (1 warning acknowledged), 1 warning (toast), 1 failed (slots)
`
	if b.String() != want {
		t.Fatalf("got\n%s\nwant\n%s", b.String(), want)
	}
}
