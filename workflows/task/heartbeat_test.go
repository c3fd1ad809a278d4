package task

import (
	"testing"

	taskv1 "github.com/ferry-cdc/ferry/gen/ferry/task/v1"
)

// Specs normalized before advanced.heartbeat_seconds had a default carry
// zero; their streams still get the default heartbeat.
func TestHeartbeatSecondsDefaultsForOldSpecs(t *testing.T) {
	if got := heartbeatSeconds(&taskv1.TaskSpec{}); got != DefaultHeartbeatSeconds {
		t.Fatalf("unset: %d, want %d", got, DefaultHeartbeatSeconds)
	}
	spec := &taskv1.TaskSpec{Advanced: &taskv1.AdvancedOptions{HeartbeatSeconds: 7}}
	if got := heartbeatSeconds(spec); got != 7 {
		t.Fatalf("set to 7: got %d", got)
	}
}
