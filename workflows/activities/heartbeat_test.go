package activities

import (
	"testing"
	"time"

	taskv1 "github.com/ferry-cdc/ferry/gen/ferry/task/v1"
	"github.com/ferry-cdc/ferry/platform/taskapi"
)

// Specs normalized before advanced.heartbeat_seconds had a default carry
// zero; their streams still get the default heartbeat.
func TestHeartbeatSecondsDefaultsForOldSpecs(t *testing.T) {
	if got := heartbeatSeconds(&taskv1.TaskSpec{}); got != taskapi.DefaultHeartbeatSeconds {
		t.Fatalf("unset: %d, want %d", got, taskapi.DefaultHeartbeatSeconds)
	}
	spec := &taskv1.TaskSpec{Advanced: &taskv1.AdvancedOptions{HeartbeatSeconds: 7}}
	if got := heartbeatSeconds(spec); got != 7 {
		t.Fatalf("set to 7: got %d", got)
	}
}

// Acks record a heartbeat at most once per ackHeartbeatGap: the first at
// once, then none until the gap has passed.
func TestHeartbeatGateSpacesAckHeartbeats(t *testing.T) {
	var g heartbeatGate
	t0 := time.Unix(1_000, 0)
	for _, step := range []struct {
		at   time.Duration
		want bool
	}{
		{0, true}, {time.Millisecond, false}, {ackHeartbeatGap - time.Millisecond, false},
		{ackHeartbeatGap, true}, {ackHeartbeatGap + 1, false}, {3 * ackHeartbeatGap, true},
	} {
		if got := g.due(t0.Add(step.at)); got != step.want {
			t.Fatalf("at %s: due %v, want %v", step.at, got, step.want)
		}
	}
}
