package ferryctl

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"strings"

	taskv1 "github.com/ferry-cdc/ferry/gen/ferry/task/v1"
)

func commands() []command {
	return []command{
		{name: "create", args: "-f FILE [--id ID] [--paused]", summary: "Create a task from a TaskSpec file (YAML or JSON, protojson field names).", setup: setupCreate},
		{name: "precheck", args: "-f FILE", summary: "Run a spec's prechecks without creating a task; exits 1 when one fails.", setup: setupPrecheck},
		{name: "status", args: "ID", nargs: 1, summary: "Show a task's phase, status, checkpoint and progress.", setup: setupStatus},
		{name: "list", summary: "List the tasks.", setup: setupList},
		{name: "start", args: "ID", nargs: 1, summary: "Start a task created with --paused.", setup: simple(start)},
		{name: "pause", args: "ID", nargs: 1, summary: "Pause a task at its confirmed checkpoint.", setup: simple(pause)},
		{name: "resume", args: "ID", nargs: 1, summary: "Resume a paused task from its checkpoint.", setup: simple(resume)},
		{name: "restart", args: "ID", nargs: 1, summary: "Restart a task's current phase from its confirmed checkpoint.", setup: simple(restart)},
		{name: "modify", args: "ID -f FILE [--compression C] [--acks A]", nargs: 1, summary: "Replace a task's objects with an ObjectSelection file.",
			details: "The file is the whole new selection: tables it adds are snapshotted beside the stream\nwhen the task has full sync; tables it leaves out leave the publication.", setup: setupModify},
		{name: "throttle", args: "ID [--full-qps N] [--full-rows N] [--full-mb N] [--incr-rows N] [--incr-mb N]", nargs: 1, summary: "Change a task's throttles.",
			details: "A group given (--full-* or --incr-*) replaces that throttle whole: its flags left\nout are unlimited. A group not given is left as it is.", setup: setupThrottle},
		{name: "stop", args: "ID [--release]", nargs: 1, summary: "Stop a task for good.", setup: setupStop},
		{name: "delete", args: "ID", nargs: 1, summary: "Delete a task.", setup: simple(deleteTask)},
	}
}

func specFlag(fs *flag.FlagSet, what string) *string {
	return fs.String("f", "", "the "+what+": a YAML or JSON `FILE` with protojson field names (required)")
}

func requireFile(path, what string) error {
	if path == "" {
		return usagef("-f is required: give the %s file", what)
	}
	return nil
}

func loadSpec(path string) (*taskv1.TaskSpec, error) {
	if err := requireFile(path, "task spec"); err != nil {
		return nil, err
	}
	spec := &taskv1.TaskSpec{}
	if err := LoadMessage(path, spec); err != nil {
		return nil, err
	}
	return spec, nil
}

func setupCreate(fs *flag.FlagSet) action {
	file := specFlag(fs, "task spec")
	id := fs.String("id", "", "the task `ID`: letters, digits, '-' and '_'; generated when empty")
	paused := fs.Bool("paused", false, "create the task without starting it (not even its precheck runs) until `ferryctl start`")
	return func(ctx context.Context, s *session, _ []string) error {
		spec, err := loadSpec(*file)
		if err != nil {
			return err
		}
		res, err := s.client.CreateTask(ctx, &taskv1.CreateTaskRequest{TaskId: *id, Spec: spec, CreatePaused: *paused})
		if err != nil {
			return s.rpcError(err)
		}
		return s.printf(res, "created task %s (run %s)\n", res.GetTaskId(), res.GetRunId())
	}
}

func setupPrecheck(fs *flag.FlagSet) action {
	file := specFlag(fs, "task spec")
	return func(ctx context.Context, s *session, _ []string) error {
		spec, err := loadSpec(*file)
		if err != nil {
			return err
		}
		res, err := s.client.PrecheckTask(ctx, &taskv1.PrecheckTaskRequest{Spec: spec})
		if err != nil {
			return s.rpcError(err)
		}
		if err := s.print(res, func(w io.Writer) error { return writePrechecks(w, res.GetItems()) }); err != nil {
			return err
		}
		var failed []string
		for _, it := range res.GetItems() {
			if it.GetSeverity() == taskv1.Severity_SEVERITY_FAIL {
				failed = append(failed, it.GetId())
			}
		}
		if len(failed) > 0 {
			return fmt.Errorf("%s failed: %s", plural(len(failed), "precheck"), strings.Join(failed, ", "))
		}
		return nil
	}
}

func setupStatus(*flag.FlagSet) action {
	return func(ctx context.Context, s *session, pos []string) error {
		res, err := s.client.GetTask(ctx, &taskv1.GetTaskRequest{TaskId: pos[0]})
		if err != nil {
			return s.rpcError(err)
		}
		return s.print(res, func(w io.Writer) error { return writeStatus(w, res) })
	}
}

func setupList(*flag.FlagSet) action {
	return func(ctx context.Context, s *session, _ []string) error {
		// Every page, under the one timeout, printed as one answer.
		all := &taskv1.ListTasksResponse{}
		var token []byte
		for {
			res, err := s.client.ListTasks(ctx, &taskv1.ListTasksRequest{PageToken: token})
			if err != nil {
				return s.rpcError(err)
			}
			all.Tasks = append(all.Tasks, res.GetTasks()...)
			next := res.GetNextPageToken()
			if len(next) == 0 {
				break
			}
			if bytes.Equal(next, token) {
				return fmt.Errorf("the server returned page token %q twice; the list would never end", next)
			}
			token = next
		}
		return s.print(all, func(w io.Writer) error { return writeTaskList(w, all.GetTasks()) })
	}
}

// simple is a command that takes the task ID and nothing else.
func simple(run action) func(*flag.FlagSet) action {
	return func(*flag.FlagSet) action { return run }
}

func pause(ctx context.Context, s *session, pos []string) error {
	res, err := s.client.PauseTask(ctx, &taskv1.PauseTaskRequest{TaskId: pos[0]})
	if err != nil {
		return s.rpcError(err)
	}
	return s.printf(res, "asked task %s to pause\n", pos[0])
}

func start(ctx context.Context, s *session, pos []string) error {
	res, err := s.client.StartTask(ctx, &taskv1.StartTaskRequest{TaskId: pos[0]})
	if err != nil {
		return s.rpcError(err)
	}
	return s.printf(res, "asked task %s to start\n", pos[0])
}

func resume(ctx context.Context, s *session, pos []string) error {
	res, err := s.client.ResumeTask(ctx, &taskv1.ResumeTaskRequest{TaskId: pos[0]})
	if err != nil {
		return s.rpcError(err)
	}
	return s.printf(res, "asked task %s to resume\n", pos[0])
}

func restart(ctx context.Context, s *session, pos []string) error {
	res, err := s.client.RestartTask(ctx, &taskv1.RestartTaskRequest{TaskId: pos[0]})
	if err != nil {
		return s.rpcError(err)
	}
	if res.GetRunId() != "" {
		return s.printf(res, "task %s started again as run %s\n", pos[0], res.GetRunId())
	}
	return s.printf(res, "asked task %s to restart\n", pos[0])
}

func deleteTask(ctx context.Context, s *session, pos []string) error {
	res, err := s.client.DeleteTask(ctx, &taskv1.DeleteTaskRequest{TaskId: pos[0]})
	if err != nil {
		return s.rpcError(err)
	}
	return s.printf(res, "deleted task %s\n", pos[0])
}

func setupStop(fs *flag.FlagSet) action {
	release := fs.Bool("release", false, "drop the replication slot and publication Ferry created")
	return func(ctx context.Context, s *session, pos []string) error {
		res, err := s.client.StopTask(ctx, &taskv1.StopTaskRequest{TaskId: pos[0], Release: *release})
		if err != nil {
			return s.rpcError(err)
		}
		if *release {
			return s.printf(res, "asked task %s to stop and release its slot and publication\n", pos[0])
		}
		return s.printf(res, "asked task %s to stop; its slot and publication are kept\n", pos[0])
	}
}

func setupModify(fs *flag.FlagSet) action {
	file := specFlag(fs, "new ObjectSelection, whole")
	compression := compressionFlag()
	fs.Var(compression, "compression", "also change the compression: `C` is lz4, gzip, snappy or zstd")
	acks := acksFlag()
	fs.Var(acks, "acks", "also change the acks: `A` is none, leader or all")
	return func(ctx context.Context, s *session, pos []string) error {
		if err := requireFile(*file, "ObjectSelection"); err != nil {
			return err
		}
		objects := &taskv1.ObjectSelection{}
		if err := LoadMessage(*file, objects); err != nil {
			return err
		}
		res, err := s.client.ModifyObjects(ctx, &taskv1.ModifyObjectsRequest{
			TaskId:      pos[0],
			Objects:     objects,
			Compression: taskv1.Compression(compression.value),
			Acks:        taskv1.Acks(acks.value),
		})
		if err != nil {
			return s.rpcError(err)
		}
		return s.printf(res, "asked task %s to change its objects\n", pos[0])
	}
}

func setupThrottle(fs *flag.FlagSet) action {
	var qps, fullRows, fullMB, incrRows, incrMB uint32Flag
	fs.Var(&qps, "full-qps", "full sync: `N` queries per second (0: unlimited)")
	fs.Var(&fullRows, "full-rows", "full sync: `N` rows per second (0: unlimited)")
	fs.Var(&fullMB, "full-mb", "full sync: `N` megabytes per second (0: unlimited)")
	fs.Var(&incrRows, "incr-rows", "incremental: `N` rows per second (0: unlimited)")
	fs.Var(&incrMB, "incr-mb", "incremental: `N` megabytes per second (0: unlimited)")
	return func(ctx context.Context, s *session, pos []string) error {
		req := &taskv1.UpdateThrottleRequest{TaskId: pos[0]}
		if qps.set || fullRows.set || fullMB.set {
			req.Full = &taskv1.FullSyncThrottle{
				QueriesPerSecond: qps.value, RowsPerSecond: fullRows.value, MegabytesPerSecond: fullMB.value,
			}
		}
		if incrRows.set || incrMB.set {
			req.Incremental = &taskv1.IncrementalThrottle{RowsPerSecond: incrRows.value, MegabytesPerSecond: incrMB.value}
		}
		if req.Full == nil && req.Incremental == nil {
			return usagef("give at least one of --full-qps, --full-rows, --full-mb, --incr-rows, --incr-mb")
		}
		res, err := s.client.UpdateThrottle(ctx, req)
		if err != nil {
			return s.rpcError(err)
		}
		return s.printf(res, "asked task %s to change its throttle\n", pos[0])
	}
}
