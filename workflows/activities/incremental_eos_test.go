package activities

import (
	"errors"
	"strings"
	"testing"

	"go.temporal.io/sdk/temporal"
	"google.golang.org/protobuf/proto"

	catalogv1 "github.com/ferry-cdc/ferry/gen/ferry/catalog/v1"
	cdcv1 "github.com/ferry-cdc/ferry/gen/ferry/cdc/v1"
	deliveryv1 "github.com/ferry-cdc/ferry/gen/ferry/delivery/v1"
	taskv1 "github.com/ferry-cdc/ferry/gen/ferry/task/v1"
	"github.com/ferry-cdc/ferry/platform/taskapi"
)

func progress(table string, lsn, rows uint64, done bool) *cdcv1.BackfillProgress {
	return &cdcv1.BackfillProgress{Schema: "public", Table: table, Lsn: lsn, Rows: rows, Done: done}
}

// The checkpoint heartbeated at 120 lags Kafka: delivery committed chunks
// of a and b up to 300. Each table takes the further along progress; a
// table the task no longer backfills, and progress at or below 120 (left
// from an earlier backfill of a table added again), change nothing.
func TestResumeTakesKafkasFurtherProgress(t *testing.T) {
	cp := &checkpointTracker{lsn: 120, untilBackfilled: true, backfills: newBackfillProgress([]*cdcv1.BackfillProgress{
		{Schema: "public", Table: "a", EstimatedRows: 900}, progress("b", 110, 40, false), progress("d", 0, 0, false),
	})}
	cp.resume(&deliveryv1.DeliverResponse{SafeLsn: 300, ResumedFromLsn: 300, ResumedBackfills: []*cdcv1.BackfillProgress{
		progress("a", 250, 500, false), progress("b", 300, 80, true), progress("c", 280, 7, true), progress("d", 90, 100, true),
	}})
	if cp.get() != 300 {
		t.Fatalf("resumed at %d, want Kafka's 300", cp.get())
	}
	got := cp.snapshot().GetBackfills()
	want := []*cdcv1.BackfillProgress{
		{Schema: "public", Table: "a", Lsn: 250, Rows: 500, EstimatedRows: 900}, progress("b", 300, 80, true), progress("d", 0, 0, false),
	}
	if len(got) != len(want) {
		t.Fatalf("backfills %v, want %v", got, want)
	}
	for i := range want {
		if !proto.Equal(got[i], want[i]) {
			t.Errorf("backfill %d = %v, want %v", i, got[i], want[i])
		}
	}
	if cp.finished() {
		t.Fatal("finished with a and d still to read")
	}
	if p := cp.pendingBackfills(); len(p) != 2 || p[0].GetTable() != "a" || p[1].GetTable() != "d" {
		t.Fatalf("capture would be asked for %v, want a and d", p)
	}
}

// Kafka behind the heartbeat (a stream that never committed) moves nothing.
func TestResumeBehindTheHeartbeatKeepsIt(t *testing.T) {
	cp := &checkpointTracker{lsn: 500, backfills: newBackfillProgress([]*cdcv1.BackfillProgress{progress("a", 480, 60, false)})}
	cp.resume(&deliveryv1.DeliverResponse{SafeLsn: 400, ResumedFromLsn: 400, ResumedBackfills: []*cdcv1.BackfillProgress{progress("a", 400, 50, false)}})
	if got := cp.snapshot(); got.GetConfirmedLsn() != 500 || got.GetBackfills()[0].GetRows() != 60 {
		t.Fatalf("after resuming behind: %v", got)
	}
}

func TestSetupRefusesExactlyOnceFullSyncWithoutKeys(t *testing.T) {
	eos := &taskv1.TaskSpec{Kafka: &taskv1.KafkaOptions{ExactlyOnce: true}, SyncTypes: &taskv1.SyncTypes{Full: true}}
	resolved := &catalogv1.ResolveTablesResponse{
		Tables:        []*taskv1.TableRef{{Schema: "public", Table: "a"}, {Schema: "public", Table: "logs"}},
		HasPrimaryKey: []bool{true, false},
	}
	full := &taskv1.SetupActivityInput{Spec: eos, PublicationOnly: true, ChunkIfKeyed: true}
	err := checkExactlyOnceFullSync(full, resolved, allKeyed(resolved))
	var app *temporal.ApplicationError
	if !errors.As(err, &app) || app.Type() != taskapi.ErrConfig || !app.NonRetryable() ||
		!strings.Contains(err.Error(), "exactly_once with full sync needs a primary key on every table: public.logs;") {
		t.Fatalf("got %v, want a non-retryable taskapi.ErrConfig naming public.logs", err)
	}
	resolved.HasPrimaryKey[1] = true
	if err := checkExactlyOnceFullSync(full, resolved, allKeyed(resolved)); err != nil {
		t.Fatalf("every table keyed: %v", err)
	}
	resolved.HasPrimaryKey[1] = false
	for _, in := range []*taskv1.SetupActivityInput{
		{Spec: eos, ChunkIfKeyed: true}, // no full sync pending
		{Spec: &taskv1.TaskSpec{SyncTypes: &taskv1.SyncTypes{Full: true}}, PublicationOnly: true, ChunkIfKeyed: true},
	} {
		if err := checkExactlyOnceFullSync(in, resolved, false); err != nil {
			t.Errorf("%v: refused: %v", in, err)
		}
	}
}
