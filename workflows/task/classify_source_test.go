package task

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"go.temporal.io/sdk/temporal"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	cdcv1 "github.com/ferry-cdc/ferry/gen/ferry/cdc/v1"
	taskv1 "github.com/ferry-cdc/ferry/gen/ferry/task/v1"
	"github.com/ferry-cdc/ferry/platform/taskapi"
	"github.com/ferry-cdc/ferry/workflows/activities"
)

// TestClassifyRPCSourceFaults feeds ClassifyRPC the statuses capture returns
// for PostgreSQL faults (services/capture/faults_test.go, messages as
// observed there) and checks the retry window each one gets: the source
// coming back by itself is the connection window; what an administrator
// must fix is the other-issues window; what no fix can bring back fails at
// once.
func TestClassifyRPCSourceFaults(t *testing.T) {
	checkClassification(t, "incremental sync", []classifyCase{
		{"server restart", status.Error(codes.Unavailable, "streaming from replication slot s (publication p): receiving from the replication stream: receive message failed: unexpected EOF; PostgreSQL could not be reached or the connection was lost: check that it is running and reachable; Ferry retries and resumes from the last acknowledged position"),
			taskapi.ErrConnection, taskv1.ErrorClass_ERROR_CLASS_CONNECTION, false},
		{"server shutting down", status.Error(codes.Unavailable, "connecting to postgres ferry@h:5432/ferry: FATAL: the database system is shutting down (SQLSTATE 57P03); the server is shutting down or restarting, or an administrator ended the session; Ferry retries and resumes from the last acknowledged position"),
			taskapi.ErrConnection, taskv1.ErrorClass_ERROR_CLASS_CONNECTION, false},
		// wal_level=replica with the task's slot in place: PostgreSQL
		// refuses to start, so capture sees a server that is down.
		{"server down", status.Error(codes.Unavailable, "connecting to postgres ferry@h:5432/ferry: dial tcp h:5432: connect: connection refused; PostgreSQL could not be reached or the connection was lost: check that it is running and reachable; Ferry retries and resumes from the last acknowledged position"),
			taskapi.ErrConnection, taskv1.ErrorClass_ERROR_CLASS_CONNECTION, false},
		{"wal_level", status.Error(codes.FailedPrecondition, "the source has wal_level = replica; set wal_level = logical in postgresql.conf and restart PostgreSQL"),
			taskapi.ErrOther, taskv1.ErrorClass_ERROR_CLASS_OTHER, false},
		{"REPLICATION revoked", status.Error(codes.PermissionDenied, `opening a replication connection: FATAL: must be superuser or replication role to start walsender (SQLSTATE 42501); role "ferry" lacks the REPLICATION attribute that logical replication needs: run ALTER ROLE "ferry" WITH REPLICATION as a superuser`),
			taskapi.ErrOther, taskv1.ErrorClass_ERROR_CLASS_OTHER, false},
		{"SELECT revoked", status.Error(codes.PermissionDenied, `reading "public"."t" in snapshot 5-2-1: ERROR: permission denied for table t (SQLSTATE 42501); role "ferry" may not read the table: run GRANT SELECT ON "public"."t" TO "ferry"`),
			taskapi.ErrOther, taskv1.ErrorClass_ERROR_CLASS_OTHER, false},
		{"publication missing at start", status.Error(codes.FailedPrecondition, `publication "p" does not exist, but replication slot s does: the publication was dropped while the task ran. Changes written while it was missing cannot be decoded even after it is recreated, so stop the task with release and create it again with full sync`),
			taskapi.ErrOther, taskv1.ErrorClass_ERROR_CLASS_OTHER, false},
		{"publication dropped while streaming", status.Error(codes.DataLoss, `streaming from replication slot s: replication stream: ERROR: publication "p" does not exist (SQLSTATE 42704); publication "p" was dropped while the slot still needed it. ... stop it with release and create it again with full sync`),
			taskapi.ErrConfig, taskv1.ErrorClass_ERROR_CLASS_OTHER, true},
		{"slot dropped", status.Error(codes.DataLoss, "replication slot s does not exist: it was dropped (or never created). ... stop it with release and create it again with full sync to read the tables again"),
			taskapi.ErrConfig, taskv1.ErrorClass_ERROR_CLASS_OTHER, true},
	})
}

// A dropped slot fails the task on the first attempt, with capture's
// message as the task's last error: retrying could only fail again.
func TestDroppedSlotFailsTheTaskAtOnce(t *testing.T) {
	msg := "replication slot s does not exist: it was dropped (or never created). ... create it again with full sync to read the tables again"
	w := newWFTest(t)
	w.onIncremental(func(context.Context, *taskv1.IncrementalActivityInput) error {
		return activities.ClassifyRPC("incremental sync", status.Error(codes.DataLoss, msg), &cdcv1.Checkpoint{ConfirmedLsn: 100})
	})
	start := w.Now()
	err := w.run()
	var appErr *temporal.ApplicationError
	if !errors.As(err, &appErr) || appErr.Type() != taskapi.ErrConfig || !appErr.NonRetryable() {
		t.Fatalf("workflow error = %v, want a non-retryable %s", err, taskapi.ErrConfig)
	}
	if len(w.increments) != 1 || w.Now().Sub(start) > time.Minute {
		t.Fatalf("%d attempts over %s, want one attempt and no retry window", len(w.increments), w.Now().Sub(start))
	}
	if st := w.state(); st.GetStatus() != taskv1.Status_STATUS_FAILED || !strings.Contains(st.GetLastError(), "full sync") {
		t.Fatalf("state = %v, want FAILED with capture's message", st)
	}
}
