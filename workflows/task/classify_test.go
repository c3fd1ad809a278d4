package task

import (
	"errors"
	"fmt"
	"testing"

	"go.temporal.io/sdk/temporal"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	cdcv1 "github.com/ferry-cdc/ferry/gen/ferry/cdc/v1"
	taskv1 "github.com/ferry-cdc/ferry/gen/ferry/task/v1"
	"github.com/ferry-cdc/ferry/platform/taskapi"
	"github.com/ferry-cdc/ferry/workflows/activities"
)

// TestClassifyRPCKafkaFaults feeds ClassifyRPC the statuses delivery returns
// for Kafka faults (services/delivery/faults_integration_test.go) and checks
// the retry window each one gets.
func TestClassifyRPCKafkaFaults(t *testing.T) {
	checkClassification(t, "starting the delivery stream", []classifyCase{
		{"unreachable broker", status.Error(codes.Unavailable, "no Kafka broker at 127.0.0.1:1 answered within 15s (last error: Local: Broker transport failure); check destination.bootstrap_servers"),
			taskapi.ErrConnection, taskv1.ErrorClass_ERROR_CLASS_CONNECTION, false},
		{"messages timed out", status.Error(codes.Unavailable, "delivering a row of table public.orders to topic \"t\" failed: Local: Message timed out"),
			taskapi.ErrConnection, taskv1.ErrorClass_ERROR_CLASS_CONNECTION, false},
		{"deadline", status.Error(codes.DeadlineExceeded, "context deadline exceeded"),
			taskapi.ErrConnection, taskv1.ErrorClass_ERROR_CLASS_CONNECTION, false},
		// A deleted topic heals only when someone recreates it: the shorter
		// window for other failures, then the task fails.
		{"topic deleted", status.Error(codes.FailedPrecondition, "topic \"t\" for table public.orders is missing in Kafka (Local: Unknown partition): create it"),
			taskapi.ErrOther, taskv1.ErrorClass_ERROR_CLASS_OTHER, false},
		{"row too large", status.Error(codes.InvalidArgument, "row of table public.orders encodes to 2000000 bytes"),
			taskapi.ErrConfig, taskv1.ErrorClass_ERROR_CLASS_OTHER, true},
	})
	// A status wrapped on the way keeps its code, and its message loses
	// gRPC's "rpc error: code = ... desc =" envelope.
	wrapped := fmt.Errorf("capture stream: %w", status.Error(codes.Unavailable, "streaming from replication slot s: connection refused"))
	err := activities.ClassifyRPC("incremental sync", wrapped)
	var appErr *temporal.ApplicationError
	if !errors.As(err, &appErr) || classify(err) != taskv1.ErrorClass_ERROR_CLASS_CONNECTION ||
		appErr.Message() != "incremental sync: capture stream: streaming from replication slot s: connection refused" {
		t.Fatalf("wrapped status: %v", err)
	}
	var canErr *temporal.CanceledError
	if err := activities.ClassifyRPC("x", status.Error(codes.Canceled, "cancelled"), nil); !errors.As(err, &canErr) {
		t.Fatalf("Canceled became %T %v, want a cancellation", err, err)
	}
}

// classifyCase is a service status and the retry treatment it must get.
type classifyCase struct {
	name         string
	err          error
	typ          string
	class        taskv1.ErrorClass
	nonRetryable bool
}

// checkClassification runs ClassifyRPC on each case: the application error
// type, retryability, message, workflow class and carried checkpoint.
func checkClassification(t *testing.T, what string, cases []classifyCase) {
	t.Helper()
	cp := &cdcv1.Checkpoint{ConfirmedLsn: 77}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := activities.ClassifyRPC(what, c.err, cp)
			var appErr *temporal.ApplicationError
			if !errors.As(err, &appErr) {
				t.Fatalf("ClassifyRPC(%v) = %T %v, want an application error", c.err, err, err)
			}
			if appErr.Type() != c.typ || appErr.NonRetryable() != c.nonRetryable {
				t.Fatalf("type %s non-retryable %v, want %s and %v", appErr.Type(), appErr.NonRetryable(), c.typ, c.nonRetryable)
			}
			if want := what + ": " + status.Convert(c.err).Message(); appErr.Message() != want {
				t.Fatalf("message %q, want %q", appErr.Message(), want)
			}
			if got := classify(err); got != c.class {
				t.Fatalf("workflow class %v, want %v", got, c.class)
			}
			if got := CheckpointFromError(err); got.GetConfirmedLsn() != 77 {
				t.Fatalf("checkpoint %v, want 77", got)
			}
		})
	}
}
