package ferryctl

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"

	cdcv1 "github.com/ferry-cdc/ferry/gen/ferry/cdc/v1"
	taskv1 "github.com/ferry-cdc/ferry/gen/ferry/task/v1"
	"github.com/ferry-cdc/ferry/platform/grpccodec"
	"github.com/ferry-cdc/ferry/platform/grpcsec"
)

// recorder is a TaskService that records each request and answers with a
// canned response or error: it tests what the CLI sends and prints, not
// what the control server does (e2e/ferryctl_test.go runs the real one).
type recorder struct {
	taskv1.UnimplementedTaskServiceServer
	mu       sync.Mutex
	requests []proto.Message
	answers  map[string][]proto.Message // by method, one per call
	errs     map[string]error
	block    bool // hold calls until the client gives up
}

func answer[T proto.Message](ctx context.Context, r *recorder, method string, req proto.Message) (T, error) {
	r.mu.Lock()
	r.requests = append(r.requests, proto.Clone(req))
	var zero T
	err, block := r.errs[method], r.block
	var res proto.Message
	if q := r.answers[method]; len(q) > 0 {
		res, r.answers[method] = q[0], q[1:]
	}
	r.mu.Unlock()
	if block {
		<-ctx.Done()
		return zero, ctx.Err()
	}
	if err != nil {
		return zero, err
	}
	if res == nil {
		return zero, status.Errorf(codes.Internal, "test gave no answer for %s", method)
	}
	return res.(T), nil
}

func (r *recorder) CreateTask(ctx context.Context, q *taskv1.CreateTaskRequest) (*taskv1.CreateTaskResponse, error) {
	return answer[*taskv1.CreateTaskResponse](ctx, r, "CreateTask", q)
}

func (r *recorder) GetTask(ctx context.Context, q *taskv1.GetTaskRequest) (*taskv1.GetTaskResponse, error) {
	return answer[*taskv1.GetTaskResponse](ctx, r, "GetTask", q)
}

func (r *recorder) ListTasks(ctx context.Context, q *taskv1.ListTasksRequest) (*taskv1.ListTasksResponse, error) {
	return answer[*taskv1.ListTasksResponse](ctx, r, "ListTasks", q)
}

func (r *recorder) PrecheckTask(ctx context.Context, q *taskv1.PrecheckTaskRequest) (*taskv1.PrecheckTaskResponse, error) {
	return answer[*taskv1.PrecheckTaskResponse](ctx, r, "PrecheckTask", q)
}

func (r *recorder) PauseTask(ctx context.Context, q *taskv1.PauseTaskRequest) (*taskv1.PauseTaskResponse, error) {
	return answer[*taskv1.PauseTaskResponse](ctx, r, "PauseTask", q)
}

func (r *recorder) StartTask(ctx context.Context, q *taskv1.StartTaskRequest) (*taskv1.StartTaskResponse, error) {
	return answer[*taskv1.StartTaskResponse](ctx, r, "StartTask", q)
}

func (r *recorder) ResumeTask(ctx context.Context, q *taskv1.ResumeTaskRequest) (*taskv1.ResumeTaskResponse, error) {
	return answer[*taskv1.ResumeTaskResponse](ctx, r, "ResumeTask", q)
}

func (r *recorder) RestartTask(ctx context.Context, q *taskv1.RestartTaskRequest) (*taskv1.RestartTaskResponse, error) {
	return answer[*taskv1.RestartTaskResponse](ctx, r, "RestartTask", q)
}

func (r *recorder) ModifyObjects(ctx context.Context, q *taskv1.ModifyObjectsRequest) (*taskv1.ModifyObjectsResponse, error) {
	return answer[*taskv1.ModifyObjectsResponse](ctx, r, "ModifyObjects", q)
}

func (r *recorder) UpdateThrottle(ctx context.Context, q *taskv1.UpdateThrottleRequest) (*taskv1.UpdateThrottleResponse, error) {
	return answer[*taskv1.UpdateThrottleResponse](ctx, r, "UpdateThrottle", q)
}

func (r *recorder) StopTask(ctx context.Context, q *taskv1.StopTaskRequest) (*taskv1.StopTaskResponse, error) {
	return answer[*taskv1.StopTaskResponse](ctx, r, "StopTask", q)
}

func (r *recorder) DeleteTask(ctx context.Context, q *taskv1.DeleteTaskRequest) (*taskv1.DeleteTaskResponse, error) {
	return answer[*taskv1.DeleteTaskResponse](ctx, r, "DeleteTask", q)
}

// serve starts r on a loopback port with Ferry's codec, as the control
// server runs.
func serve(t *testing.T, r *recorder) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(grpccodec.ServerOption())
	taskv1.RegisterTaskServiceServer(srv, r)
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(srv.Stop)
	return l.Addr().String()
}

type result struct {
	code           int
	stdout, stderr string
}

func runCLI(t *testing.T, addr string, output Output, args ...string) result {
	t.Helper()
	var out, errOut bytes.Buffer
	cfg := Config{Server: addr, Timeout: 10 * time.Second, Output: output, Transport: grpcsec.Settings{Insecure: true}}
	code := Run(context.Background(), cfg, args, &out, &errOut)
	return result{code, out.String(), errOut.String()}
}

func (r *recorder) only(t *testing.T) proto.Message {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.requests) != 1 {
		t.Fatalf("server got %d requests, want 1: %v", len(r.requests), r.requests)
	}
	return r.requests[0]
}

func assertRequest(t *testing.T, got, want proto.Message) {
	t.Helper()
	if !proto.Equal(got, want) {
		t.Fatalf("request\n%s\nwant\n%s", prototext.Format(got), prototext.Format(want))
	}
}

func TestCreateSendsTheSpecFile(t *testing.T) {
	r := &recorder{answers: map[string][]proto.Message{"CreateTask": {&taskv1.CreateTaskResponse{TaskId: "orders", RunId: "run-1"}}}}
	addr := serve(t, r)
	spec := writeFile(t, "spec.yaml", specYAML)
	// The flag after the file works as well as before it.
	res := runCLI(t, addr, OutputText, "create", "-f", spec, "--id", "orders")
	if res.code != ExitOK || res.stderr != "" {
		t.Fatalf("exit %d, stderr %q", res.code, res.stderr)
	}
	if res.stdout != "created task orders (run run-1)\n" {
		t.Fatalf("stdout %q", res.stdout)
	}
	assertRequest(t, r.only(t), &taskv1.CreateTaskRequest{TaskId: "orders", Spec: wantSpec()})
}

func TestServerErrorsKeepCodeAndMessage(t *testing.T) {
	msg := "invalid task spec: kafka.acks: ACKS_LEADER cannot be used with kafka.exactly_once"
	r := &recorder{errs: map[string]error{
		"CreateTask":  status.Error(codes.InvalidArgument, msg),
		"RestartTask": status.Error(codes.Unimplemented, "control: RestartTask is not implemented yet"),
		"GetTask":     status.Error(codes.NotFound, "task nope not found"),
	}}
	addr := serve(t, r)
	spec := writeFile(t, "spec.json", specJSON)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"create", "-f", spec}, "ferryctl: create: InvalidArgument: " + msg + "\n"},
		{[]string{"restart", "t1"}, "ferryctl: restart: Unimplemented: control: RestartTask is not implemented yet\n"},
		{[]string{"status", "nope"}, "ferryctl: status: NotFound: task nope not found\n"},
	} {
		res := runCLI(t, addr, OutputText, tc.args...)
		if res.code != ExitFailure || res.stderr != tc.want || res.stdout != "" {
			t.Errorf("%v: exit %d, stdout %q, stderr %q; want exit 1 and stderr %q", tc.args, res.code, res.stdout, res.stderr, tc.want)
		}
	}
}

func TestSpecFileErrorsNameTheFile(t *testing.T) {
	addr := serve(t, &recorder{})
	spec := writeFile(t, "bad.yaml", "name: x\nsync_types:\n  schema: true\n  ful: true\n")
	res := runCLI(t, addr, OutputText, "create", "-f", spec)
	want := "ferryctl: create: " + spec + ": line 4: sync_types: unknown field \"ful\" in ferry.task.v1.SyncTypes; did you mean \"full\"?\n"
	if res.code != ExitFailure || res.stderr != want {
		t.Fatalf("exit %d, stderr %q; want 1 and %q", res.code, res.stderr, want)
	}
}

func TestUsageErrorsExit2WithTheCommandsUsage(t *testing.T) {
	addr := serve(t, &recorder{})
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{nil, []string{"ferryctl: no command given", "commands:", "throttle"}},
		{[]string{"launch"}, []string{`ferryctl: unknown command "launch"`, "commands:"}},
		{[]string{"create"}, []string{"ferryctl: create: -f is required: give the task spec file", "usage: ferryctl [global flags] create -f FILE [--id ID] [--paused]\n", "-id ID"}},
		{[]string{"status"}, []string{"ferryctl: status: want the task ID, got 0 arguments", "usage: ferryctl [global flags] status ID\n"}},
		{[]string{"pause", "a", "b"}, []string{"ferryctl: pause: want the task ID, got 2 arguments"}},
		{[]string{"stop", "t1", "--purge"}, []string{"ferryctl: stop: flag provided but not defined: -purge", "-release"}},
		{[]string{"throttle", "t1"}, []string{"ferryctl: throttle: give at least one of --full-qps", "-incr-mb"}},
		{[]string{"throttle", "t1", "--full-qps", "-5"}, []string{`invalid value "-5" for flag -full-qps: want a whole number from 0 to 4294967295`}},
		{[]string{"throttle", "t1", "--incr-rows", "4294967296"}, []string{"want a whole number from 0 to 4294967295"}},
		{[]string{"modify", "t1", "-f", "x.yaml", "--compression", "lz5"}, []string{`invalid value "lz5" for flag -compression: want one of lz4, gzip, snappy, zstd`}},
		{[]string{"modify", "t1", "--acks", "some"}, []string{"want one of none, leader, all"}},
		{[]string{"modify", "t1"}, []string{"ferryctl: modify: -f is required: give the ObjectSelection file"}},
		{[]string{"status", ""}, []string{"an empty argument names nothing"}},
		{[]string{"list", "extra"}, []string{`ferryctl: list: unexpected argument "extra"`}},
	} {
		res := runCLI(t, addr, OutputText, tc.args...)
		if res.code != ExitUsage {
			t.Errorf("%q: exit %d, want 2; stderr %q", tc.args, res.code, res.stderr)
		}
		if first := strings.SplitN(res.stderr, "\n", 2)[0]; !strings.HasPrefix(first, "ferryctl: ") {
			t.Errorf("%q: stderr starts %q, want a one-line error first", tc.args, first)
		}
		for _, w := range tc.want {
			if !strings.Contains(res.stderr, w) {
				t.Errorf("%q: stderr lacks %q:\n%s", tc.args, w, res.stderr)
			}
		}
	}
}

func TestHelp(t *testing.T) {
	for _, args := range [][]string{{"help"}, {"help", "throttle"}, {"throttle", "-h"}} {
		res := runCLI(t, "127.0.0.1:1", OutputText, args...)
		if res.code != ExitOK || res.stderr != "" || !strings.Contains(res.stdout, "usage: ferryctl") {
			t.Errorf("%q: exit %d, stdout %q, stderr %q", args, res.code, res.stdout, res.stderr)
		}
	}
	res := runCLI(t, "127.0.0.1:1", OutputText, "help", "throttle")
	if !strings.Contains(res.stdout, "replaces that throttle whole") || !strings.Contains(res.stdout, "-full-mb N") {
		t.Errorf("throttle help:\n%s", res.stdout)
	}
}

func TestFlagsAfterTheID(t *testing.T) {
	r := &recorder{answers: map[string][]proto.Message{"StopTask": {&taskv1.StopTaskResponse{}, &taskv1.StopTaskResponse{}, &taskv1.StopTaskResponse{}}}}
	addr := serve(t, r)
	for _, args := range [][]string{{"stop", "t1", "--release"}, {"stop", "--release", "t1"}, {"stop", "-release=true", "--", "t1"}} {
		if res := runCLI(t, addr, OutputText, args...); res.code != ExitOK ||
			res.stdout != "asked task t1 to stop and release its slot and publication\n" {
			t.Fatalf("%q: exit %d, stdout %q, stderr %q", args, res.code, res.stdout, res.stderr)
		}
	}
	for _, q := range r.requests {
		assertRequest(t, q, &taskv1.StopTaskRequest{TaskId: "t1", Release: true})
	}
}

func TestIDAfterDoubleDashMayLookLikeAFlag(t *testing.T) {
	r := &recorder{answers: map[string][]proto.Message{"PauseTask": {&taskv1.PauseTaskResponse{}}}}
	addr := serve(t, r)
	if res := runCLI(t, addr, OutputText, "pause", "--", "-odd"); res.code != ExitOK {
		t.Fatalf("exit %d, stderr %q", res.code, res.stderr)
	}
	assertRequest(t, r.only(t), &taskv1.PauseTaskRequest{TaskId: "-odd"})
}

func TestSimpleCommands(t *testing.T) {
	for _, tc := range []struct {
		args   []string
		method string
		res    proto.Message
		want   proto.Message
		out    string
	}{
		{[]string{"pause", "t1"}, "PauseTask", &taskv1.PauseTaskResponse{}, &taskv1.PauseTaskRequest{TaskId: "t1"}, "asked task t1 to pause\n"},
		{[]string{"start", "t1"}, "StartTask", &taskv1.StartTaskResponse{}, &taskv1.StartTaskRequest{TaskId: "t1"}, "asked task t1 to start\n"},
		{[]string{"resume", "t1"}, "ResumeTask", &taskv1.ResumeTaskResponse{}, &taskv1.ResumeTaskRequest{TaskId: "t1"}, "asked task t1 to resume\n"},
		{[]string{"restart", "t1"}, "RestartTask", &taskv1.RestartTaskResponse{}, &taskv1.RestartTaskRequest{TaskId: "t1"}, "asked task t1 to restart\n"},
		{[]string{"restart", "t1"}, "RestartTask", &taskv1.RestartTaskResponse{RunId: "r2"}, &taskv1.RestartTaskRequest{TaskId: "t1"}, "task t1 started again as run r2\n"},
		{[]string{"stop", "t1"}, "StopTask", &taskv1.StopTaskResponse{}, &taskv1.StopTaskRequest{TaskId: "t1"}, "asked task t1 to stop; its slot and publication are kept\n"},
		{[]string{"delete", "t1"}, "DeleteTask", &taskv1.DeleteTaskResponse{}, &taskv1.DeleteTaskRequest{TaskId: "t1"}, "deleted task t1\n"},
	} {
		r := &recorder{answers: map[string][]proto.Message{tc.method: {tc.res}}}
		res := runCLI(t, serve(t, r), OutputText, tc.args...)
		if res.code != ExitOK || res.stdout != tc.out {
			t.Errorf("%q: exit %d, stdout %q, stderr %q; want %q", tc.args, res.code, res.stdout, res.stderr, tc.out)
		}
		assertRequest(t, r.only(t), tc.want)
	}
}

func TestModifySendsObjectsAndOptions(t *testing.T) {
	objects := writeFile(t, "objects.yml", "tables:\n  - {schema: public, table: a}\n  - {schema: public, table: b}\n")
	for _, tc := range []struct {
		flags []string
		want  *taskv1.ModifyObjectsRequest
	}{
		{nil, &taskv1.ModifyObjectsRequest{}},
		{[]string{"--compression", "ZSTD", "--acks", "leader"}, &taskv1.ModifyObjectsRequest{
			Compression: taskv1.Compression_COMPRESSION_ZSTD, Acks: taskv1.Acks_ACKS_LEADER}},
		{[]string{"--compression", "snappy"}, &taskv1.ModifyObjectsRequest{Compression: taskv1.Compression_COMPRESSION_SNAPPY}},
		{[]string{"--acks", "none"}, &taskv1.ModifyObjectsRequest{Acks: taskv1.Acks_ACKS_NONE}},
	} {
		r := &recorder{answers: map[string][]proto.Message{"ModifyObjects": {&taskv1.ModifyObjectsResponse{}}}}
		args := append([]string{"modify", "t1", "-f", objects}, tc.flags...)
		if res := runCLI(t, serve(t, r), OutputText, args...); res.code != ExitOK {
			t.Fatalf("%q: exit %d, stderr %q", args, res.code, res.stderr)
		}
		tc.want.TaskId = "t1"
		tc.want.Objects = &taskv1.ObjectSelection{Tables: []*taskv1.TableSelection{{Schema: "public", Table: "a"}, {Schema: "public", Table: "b"}}}
		assertRequest(t, r.only(t), tc.want)
	}
}

func TestThrottleSendsOnlyTheGroupsGiven(t *testing.T) {
	for _, tc := range []struct {
		flags []string
		want  *taskv1.UpdateThrottleRequest
	}{
		{[]string{"--incr-rows", "500"}, &taskv1.UpdateThrottleRequest{Incremental: &taskv1.IncrementalThrottle{RowsPerSecond: 500}}},
		{[]string{"--full-qps", "10", "--full-mb", "4"}, &taskv1.UpdateThrottleRequest{Full: &taskv1.FullSyncThrottle{QueriesPerSecond: 10, MegabytesPerSecond: 4}}},
		// Zero is a value given: it lifts the limit.
		{[]string{"--full-rows", "0", "--incr-mb", "8"}, &taskv1.UpdateThrottleRequest{
			Full: &taskv1.FullSyncThrottle{}, Incremental: &taskv1.IncrementalThrottle{MegabytesPerSecond: 8}}},
		{[]string{"--full-qps=1", "--full-rows=2", "--full-mb=3", "--incr-rows=4", "--incr-mb=4294967295"}, &taskv1.UpdateThrottleRequest{
			Full:        &taskv1.FullSyncThrottle{QueriesPerSecond: 1, RowsPerSecond: 2, MegabytesPerSecond: 3},
			Incremental: &taskv1.IncrementalThrottle{RowsPerSecond: 4, MegabytesPerSecond: 4294967295}}},
	} {
		r := &recorder{answers: map[string][]proto.Message{"UpdateThrottle": {&taskv1.UpdateThrottleResponse{}}}}
		args := append([]string{"throttle", "t1"}, tc.flags...)
		if res := runCLI(t, serve(t, r), OutputText, args...); res.code != ExitOK || res.stdout != "asked task t1 to change its throttle\n" {
			t.Fatalf("%q: exit %d, stdout %q, stderr %q", args, res.code, res.stdout, res.stderr)
		}
		tc.want.TaskId = "t1"
		assertRequest(t, r.only(t), tc.want)
	}
}

func TestPrecheckExitsOneOnAFailure(t *testing.T) {
	items := []*taskv1.PrecheckItem{
		{Id: "wal_level", Severity: taskv1.Severity_SEVERITY_FAIL, Message: "wal_level is replica", Fix: "set wal_level = logical and restart"},
		{Id: "toast", Severity: taskv1.Severity_SEVERITY_WARN, Message: "wide rows"},
	}
	spec := writeFile(t, "spec.yaml", specYAML)
	for _, output := range []Output{OutputText, OutputJSON} {
		r := &recorder{answers: map[string][]proto.Message{"PrecheckTask": {&taskv1.PrecheckTaskResponse{Items: items}}}}
		res := runCLI(t, serve(t, r), output, "precheck", "-f", spec)
		if res.code != ExitFailure || res.stderr != "ferryctl: precheck: 1 precheck failed: wal_level\n" {
			t.Errorf("%s: exit %d, stderr %q", output, res.code, res.stderr)
		}
		if output == OutputText && !strings.HasPrefix(res.stdout, "FAIL  wal_level: wal_level is replica\n      fix: set wal_level = logical and restart\nWARN  toast: wide rows\n") {
			t.Errorf("stdout %q", res.stdout)
		}
		assertRequest(t, r.only(t), &taskv1.PrecheckTaskRequest{Spec: wantSpec()})
	}
	r := &recorder{answers: map[string][]proto.Message{"PrecheckTask": {&taskv1.PrecheckTaskResponse{Items: items[1:]}}}}
	if res := runCLI(t, serve(t, r), OutputText, "precheck", "-f", spec); res.code != ExitOK {
		t.Errorf("warnings alone: exit %d, stderr %q", res.code, res.stderr)
	}
}

func TestListReadsEveryPage(t *testing.T) {
	r := &recorder{answers: map[string][]proto.Message{"ListTasks": {
		&taskv1.ListTasksResponse{Tasks: []*taskv1.TaskSummary{{TaskId: "a", Name: "first", Phase: "PHASE_INCREMENTAL", Status: "STATUS_RUNNING"}}, NextPageToken: []byte("p2")},
		&taskv1.ListTasksResponse{Tasks: []*taskv1.TaskSummary{{TaskId: "bb", Name: "second", Phase: "PHASE_STOPPED", Status: "STATUS_STOPPED"}}},
	}}}
	res := runCLI(t, serve(t, r), OutputText, "list")
	want := "TASK  NAME    PHASE              STATUS\n" +
		"a     first   PHASE_INCREMENTAL  STATUS_RUNNING\n" +
		"bb    second  PHASE_STOPPED      STATUS_STOPPED\n"
	if res.code != ExitOK || res.stdout != want {
		t.Fatalf("exit %d, stderr %q, stdout\n%s\nwant\n%s", res.code, res.stderr, res.stdout, want)
	}
	if len(r.requests) != 2 || !proto.Equal(r.requests[1], &taskv1.ListTasksRequest{PageToken: []byte("p2")}) {
		t.Fatalf("requests %v, want the second page asked for with the first's token", r.requests)
	}
}

func TestJSONOutputIsTheResponse(t *testing.T) {
	want := &taskv1.GetTaskResponse{TaskId: "t1", State: &taskv1.TaskState{
		Phase: taskv1.Phase_PHASE_INCREMENTAL, Status: taskv1.Status_STATUS_PAUSED, Paused: true,
		Checkpoint: &cdcv1.Checkpoint{ConfirmedLsn: 1 << 40},
	}}
	r := &recorder{answers: map[string][]proto.Message{"GetTask": {want}}}
	res := runCLI(t, serve(t, r), OutputJSON, "status", "t1")
	if res.code != ExitOK {
		t.Fatalf("exit %d, stderr %q", res.code, res.stderr)
	}
	var generic map[string]any
	if err := json.Unmarshal([]byte(res.stdout), &generic); err != nil {
		t.Fatalf("stdout is not JSON: %v\n%s", err, res.stdout)
	}
	if _, ok := generic["task_id"]; !ok {
		t.Errorf("JSON %s lacks task_id: fields take their proto names, as spec files do", res.stdout)
	}
	got := &taskv1.GetTaskResponse{}
	if err := protojson.Unmarshal([]byte(res.stdout), got); err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	// Stable from run to run, unlike protojson's own spacing.
	if again := runCLIWith(t, want, "status"); again != res.stdout {
		t.Fatalf("JSON differs between runs:\n%s\n%s", res.stdout, again)
	}
}

func runCLIWith(t *testing.T, res *taskv1.GetTaskResponse, cmd string) string {
	r := &recorder{answers: map[string][]proto.Message{"GetTask": {res}}}
	return runCLI(t, serve(t, r), OutputJSON, cmd, res.GetTaskId()).stdout
}

func TestJSONOutputOfAnEmptyResponse(t *testing.T) {
	r := &recorder{answers: map[string][]proto.Message{"PauseTask": {&taskv1.PauseTaskResponse{}}}}
	if res := runCLI(t, serve(t, r), OutputJSON, "pause", "t1"); res.code != ExitOK || res.stdout != "{}\n" {
		t.Fatalf("exit %d, stdout %q, stderr %q", res.code, res.stdout, res.stderr)
	}
}

func TestTimeoutAndUnreachableServer(t *testing.T) {
	addr := serve(t, &recorder{block: true})
	var out, errOut bytes.Buffer
	code := Run(context.Background(), Config{Server: addr, Timeout: 200 * time.Millisecond, Transport: grpcsec.Settings{Insecure: true}}, []string{"status", "t1"}, &out, &errOut)
	if code != ExitFailure || !strings.HasPrefix(errOut.String(), "ferryctl: status: DeadlineExceeded: ") ||
		!strings.HasSuffix(errOut.String(), "(after --timeout 200ms)\n") {
		t.Fatalf("exit %d, stderr %q", code, errOut.String())
	}

	// A port nothing listens on: the one freed by closing a listener.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := l.Addr().String()
	_ = l.Close()
	res := runCLI(t, dead, OutputText, "list")
	if res.code != ExitFailure || !strings.HasPrefix(res.stderr, "ferryctl: list: Unavailable: ") ||
		!strings.HasSuffix(res.stderr, "(control server "+dead+"; set --server or FERRY_CONTROL_ADDRESS)\n") ||
		strings.Count(res.stderr, "\n") != 1 {
		t.Fatalf("exit %d, stderr %q", res.code, res.stderr)
	}
}

func TestTimeoutMustBeSet(t *testing.T) {
	var out, errOut bytes.Buffer
	code := Run(context.Background(), Config{Server: "127.0.0.1:1", Transport: grpcsec.Settings{Insecure: true}}, []string{"list"}, &out, &errOut)
	if code != ExitUsage || errOut.String() != "ferryctl: --timeout must be above zero, not 0s\n" {
		t.Fatalf("exit %d, stderr %q", code, errOut.String())
	}
}

func TestListStopsOnARepeatedPageToken(t *testing.T) {
	page := &taskv1.ListTasksResponse{Tasks: []*taskv1.TaskSummary{{TaskId: "a"}}, NextPageToken: []byte("same")}
	r := &recorder{answers: map[string][]proto.Message{"ListTasks": {page, page, page}}}
	res := runCLI(t, serve(t, r), OutputText, "list")
	if res.code != ExitFailure || !strings.Contains(res.stderr, `page token "same" twice`) || len(r.requests) != 2 {
		t.Fatalf("exit %d, stderr %q, %d requests", res.code, res.stderr, len(r.requests))
	}
}

func TestParseOutput(t *testing.T) {
	for in, want := range map[string]Output{"text": OutputText, "json": OutputJSON, "JSON": OutputJSON} {
		if got, err := ParseOutput(in); err != nil || got != want {
			t.Errorf("ParseOutput(%q) = %q, %v", in, got, err)
		}
	}
	if _, err := ParseOutput("yaml"); err == nil || err.Error() != `want text or json, not "yaml"` {
		t.Errorf("ParseOutput(yaml) = %v", err)
	}
}
