package e2e

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	taskv1 "github.com/ferry-cdc/ferry/gen/ferry/task/v1"
	"github.com/ferry-cdc/ferry/platform/grpccodec"
	"github.com/ferry-cdc/ferry/services/testenv"

	"google.golang.org/grpc"
)

// TestDemoRunsAsTheREADMESays runs what `make demo` runs after the stack is
// up: Ferry's processes started by stack.sh on their fixed ports, then
// demo.sh, which drives a task through grpcurl with the stack's token and
// prints rows from Kafka. The README's first command must keep working
// (it broke once when slot names gained a hash and no test ran it).
func TestDemoRunsAsTheREADMESays(t *testing.T) {
	testenv.Integration(t)
	stack := filepath.Join(repoRoot(), "deploy", "local", "stack.sh")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if out, err := exec.CommandContext(ctx, stack, "up", "ferry").CombinedOutput(); err != nil {
		t.Fatalf("stack.sh up ferry: %v\n%s", err, out)
	}
	taskID := strings.ReplaceAll(uniqueName("e2e-demo"), "_", "-")
	t.Cleanup(func() {
		releaseDemoTask(t, taskID)
		if out, err := exec.Command(stack, "down", "ferry").CombinedOutput(); err != nil {
			t.Errorf("stack.sh down ferry: %v\n%s", err, out)
		}
	})
	cmd := exec.CommandContext(ctx, filepath.Join(repoRoot(), "deploy", "local", "demo.sh"))
	cmd.Env = append(cmd.Environ(), "FERRY_DEMO_TASK="+taskID)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("demo.sh: %v\n%s", err, out)
	}
	for _, want := range []string{`"type":"INSERT"`, `"type":"UPDATE"`, `"type":"DELETE"`, "first message visible after"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("demo.sh's output lacks %s:\n%s", want, out)
		}
	}
}

// releaseDemoTask stops the demo's task and drops its slot, as the demo's
// printed Stop+release command does.
func releaseDemoTask(t *testing.T, taskID string) {
	addr := "127.0.0.1:7400"
	conn, err := grpc.NewClient(addr, ferryDial(t, addr), grpccodec.DialOption())
	if err != nil {
		t.Errorf("dialing the stack's control API: %v", err)
		return
	}
	defer func() { _ = conn.Close() }()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := taskv1.NewTaskServiceClient(conn).StopTask(ctx, &taskv1.StopTaskRequest{TaskId: taskID, Release: true}); err != nil {
		t.Errorf("stopping the demo task %s: %v", taskID, err)
	}
	eventually(t, 60*time.Second, "the demo task to stop", func() (bool, string) {
		res, err := taskv1.NewTaskServiceClient(conn).GetTask(ctx, &taskv1.GetTaskRequest{TaskId: taskID})
		if err != nil {
			return false, err.Error()
		}
		st := res.GetState().GetStatus()
		return st == taskv1.Status_STATUS_STOPPED, fmt.Sprint(st)
	})
}
