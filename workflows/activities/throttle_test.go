package activities

import (
	"context"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	capturev1 "github.com/ferry-cdc/ferry/gen/ferry/capture/v1"
	taskv1 "github.com/ferry-cdc/ferry/gen/ferry/task/v1"
)

// throttleInstance is one capture instance: it holds n of the slot's
// calls, or is down.
type throttleInstance struct {
	capturev1.CaptureServiceClient
	n    uint32
	down bool
	got  *capturev1.UpdateThrottleRequest
}

func (c *throttleInstance) UpdateThrottle(_ context.Context, req *capturev1.UpdateThrottleRequest, _ ...grpc.CallOption) (*capturev1.UpdateThrottleResponse, error) {
	c.got = req
	if c.down {
		return nil, status.Error(codes.Unavailable, "connection refused")
	}
	return &capturev1.UpdateThrottleResponse{StreamsUpdated: c.n}, nil
}

func throttleInput() *taskv1.ApplyThrottleInput {
	return &taskv1.ApplyThrottleInput{SlotName: "ferry_orders", Spec: &taskv1.TaskSpec{Advanced: &taskv1.AdvancedOptions{
		IncrementalThrottle: &taskv1.IncrementalThrottle{RowsPerSecond: 500},
	}}}
}

// Several capture instances: the one holding the slot's stream takes the
// throttle wherever it is, and one that is down does not fail the update.
func TestApplyThrottleReachesEveryCaptureInstance(t *testing.T) {
	idle, down, holder := &throttleInstance{}, &throttleInstance{down: true}, &throttleInstance{n: 1}
	a := &Activities{CaptureInstances: func(context.Context) ([]capturev1.CaptureServiceClient, error) {
		return []capturev1.CaptureServiceClient{idle, down, holder}, nil
	}}
	res, err := a.ApplyThrottle(context.Background(), throttleInput())
	if err != nil || res.GetStreamsUpdated() != 1 {
		t.Fatalf("ApplyThrottle = %v, %v; want 1 stream updated", res, err)
	}
	for i, c := range []*throttleInstance{idle, down, holder} {
		if c.got.GetSlotName() != "ferry_orders" || c.got.GetIncremental().GetRowsPerSecond() != 500 {
			t.Errorf("instance %d was asked %v", i, c.got)
		}
	}

	// Nobody holds it and every instance answers: zero, and no error (the
	// stream may be between attempts; the workflow tries again later).
	a.CaptureInstances = func(context.Context) ([]capturev1.CaptureServiceClient, error) {
		return []capturev1.CaptureServiceClient{idle, &throttleInstance{}}, nil
	}
	if res, err := a.ApplyThrottle(context.Background(), throttleInput()); err != nil || res.GetStreamsUpdated() != 0 {
		t.Fatalf("with every instance idle: %v, %v; want 0 streams and no error", res, err)
	}

	// Nobody holds it and an instance is down: the error says so, since the
	// holder may be the one that is down.
	a.CaptureInstances = func(context.Context) ([]capturev1.CaptureServiceClient, error) {
		return []capturev1.CaptureServiceClient{idle, down}, nil
	}
	if _, err := a.ApplyThrottle(context.Background(), throttleInput()); err == nil || !strings.Contains(err.Error(), "ferry_orders") {
		t.Fatalf("with the only other instance down: %v, want an error naming the slot", err)
	}
}
