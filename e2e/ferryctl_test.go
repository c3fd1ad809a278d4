package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"

	taskv1 "github.com/ferry-cdc/ferry/gen/ferry/task/v1"
	"github.com/ferry-cdc/ferry/services/testenv"
)

// ctl runs the ferryctl binary against one Ferry's control API.
type ctl struct {
	t      *testing.T
	server string
}

type ctlResult struct {
	code           int
	stdout, stderr string
}

func (c ctl) run(args ...string) ctlResult {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(binDir, "ferryctl"), append([]string{"--timeout", "30s"}, args...)...)
	// The address comes from the environment, as an operator's shell sets it.
	cmd.Env = append(append(os.Environ(), testenv.FerryTransportEnv()...), "FERRY_CONTROL_ADDRESS="+c.server)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	res := ctlResult{stdout: out.String(), stderr: errOut.String()}
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		res.code = exit.ExitCode()
	case err != nil:
		c.t.Fatalf("running ferryctl %s: %v", strings.Join(args, " "), err)
	}
	return res
}

// ok runs a command that must succeed and returns its output.
func (c ctl) ok(args ...string) string {
	c.t.Helper()
	res := c.run(args...)
	if res.code != 0 || res.stderr != "" {
		c.t.Fatalf("ferryctl %s: exit %d, stderr %q, stdout %q", strings.Join(args, " "), res.code, res.stderr, res.stdout)
	}
	return res.stdout
}

// field is the value of a "Label:  value" line of `ferryctl status`.
func field(out, label string) string {
	for _, line := range strings.Split(out, "\n") {
		if rest, ok := strings.CutPrefix(line, label+":"); ok {
			return strings.TrimSpace(rest)
		}
	}
	return ""
}

// pgLSN reads pg_lsn's text: two upper-case hex halves, unpadded (unlike
// the zero-padded form DTS Avro uses, see parseLSN).
func pgLSN(t *testing.T, s string) uint64 {
	t.Helper()
	if !pgLSNText.MatchString(s) {
		t.Fatalf("checkpoint LSN %q is not PostgreSQL's X/Y upper-case hex", s)
	}
	hi, lo, _ := strings.Cut(s, "/")
	h, _ := strconv.ParseUint(hi, 16, 32)
	l, _ := strconv.ParseUint(lo, 16, 32)
	return h<<32 | l
}

var pgLSNText = regexp.MustCompile(`^(0|[1-9A-F][0-9A-F]{0,7})/(0|[1-9A-F][0-9A-F]{0,7})$`)

func ctlSpecYAML(table, topic string) string {
	src := sourceEndpoint()
	return fmt.Sprintf(`# written by TestFerryctl
name: ferryctl %s
source:
  host: %q
  port: %d
  database: %q
  user: %q
  password: {file: %q}
destination:
  bootstrap_servers: %q
  topic: %q
objects:
  tables:
    - {schema: public, table: %q}
sync_types: {schema: true}
kafka:
  conflict_mode: CONFLICT_MODE_IGNORE
  ddl_topic: %q
advanced:
  connection_retry_minutes: 10
  other_retry_minutes: 2
`, table, src.GetHost(), src.GetPort(), src.GetDatabase(), src.GetUser(), src.GetPassword().GetFile(),
		kafkaBootstrap(), topic, table, topic+"_ddl")
}

// TestFerryctl drives a task through its life with the ferryctl binary only:
// create from a YAML spec, status until it streams, pause, resume, stop with
// release; and checks that bad specs fail with the field named.
func TestFerryctl(t *testing.T) {
	conn := pgConnect(t)
	table := uniqueName("e2e_ctl")
	exec1(t, conn, fmt.Sprintf(`CREATE TABLE public.%s (id bigint PRIMARY KEY, note text)`, table))
	t.Cleanup(func() { _, _ = conn.Exec(context.Background(), "DROP TABLE IF EXISTS public."+table) })
	f := startFerry(t)
	c := ctl{t: t, server: f.addrs["control"]}
	taskID := strings.ReplaceAll(table, "_", "-")
	dir := t.TempDir()
	spec := filepath.Join(dir, "spec.yaml")
	if err := os.WriteFile(spec, []byte(ctlSpecYAML(table, table)), 0o600); err != nil {
		t.Fatal(err)
	}

	if out := c.ok("create", "-f", spec, "--id", taskID); !strings.HasPrefix(out, "created task "+taskID+" (run ") {
		t.Fatalf("create printed %q", out)
	}
	f.cleanupTask(conn, taskID)
	status := func() string { return c.ok("status", taskID) }
	eventually(t, 90*time.Second, "ferryctl status to show incremental sync", func() (bool, string) {
		out := status()
		return field(out, "Phase") == "PHASE_INCREMENTAL" && field(out, "Status") == "STATUS_RUNNING", out
	})

	// A row written now is acknowledged by Kafka, and status shows the
	// checkpoint pass it in PostgreSQL's notation.
	before := currentLSN(t, conn)
	exec1(t, conn, fmt.Sprintf(`INSERT INTO public.%s VALUES (1, 'via ferryctl')`, table))
	eventually(t, 60*time.Second, "the checkpoint in ferryctl status to pass the insert", func() (bool, string) {
		out := status()
		return pgLSN(t, field(out, "Checkpoint LSN")) > before, out
	})
	t.Logf("ferryctl status %s:\n%s", taskID, status())
	var res taskv1.GetTaskResponse
	if err := protojson.Unmarshal([]byte(c.ok("--output", "json", "status", taskID)), &res); err != nil {
		t.Fatalf("status --output json is not a GetTaskResponse: %v", err)
	}
	if res.GetTaskId() != taskID || res.GetState().GetPhase() != taskv1.Phase_PHASE_INCREMENTAL {
		t.Fatalf("status --output json: %v", &res)
	}
	if out := c.ok("list"); !strings.Contains(out, taskID) {
		t.Fatalf("list does not show %s:\n%s", taskID, out)
	}

	c.ok("pause", taskID)
	eventually(t, 30*time.Second, "ferryctl status to show the task paused", func() (bool, string) {
		out := status()
		return field(out, "Status") == "STATUS_PAUSED" && !slotActive(t, conn, slotName(taskID)), out
	})
	c.ok("resume", taskID)
	eventually(t, 60*time.Second, "ferryctl status to show the task running again", func() (bool, string) {
		out := status()
		return field(out, "Status") == "STATUS_RUNNING" && slotActive(t, conn, slotName(taskID)), out
	})

	c.ok("stop", taskID, "--release")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := f.temporal.GetWorkflow(ctx, taskID, "").Get(ctx, nil); err != nil {
		t.Fatalf("task %s ended with %v after ferryctl stop, want a clean stop", taskID, err)
	}
	var slots, pubs int
	if err := conn.QueryRow(ctx, `SELECT (SELECT count(*) FROM pg_replication_slots WHERE slot_name = $1),
		(SELECT count(*) FROM pg_publication WHERE pubname = $1)`, slotName(taskID)).Scan(&slots, &pubs); err != nil {
		t.Fatal(err)
	}
	if slots != 0 || pubs != 0 {
		t.Fatalf("after ferryctl stop --release: %d slots and %d publications remain", slots, pubs)
	}

	assertBadSpecsFail(t, c, dir, table)
}

// assertBadSpecsFail checks both kinds of bad spec: a typo ferryctl catches
// reading the file, and a value the control server refuses.
func assertBadSpecsFail(t *testing.T, c ctl, dir, table string) {
	t.Helper()
	good := ctlSpecYAML(table, table+"_bad")
	typo := filepath.Join(dir, "typo.yaml")
	if err := os.WriteFile(typo, []byte(strings.Replace(good, "bootstrap_servers:", "bootstrap_server:", 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	res := c.run("create", "-f", typo)
	wantTypo := fmt.Sprintf("ferryctl: create: %s: line 10: destination: unknown field \"bootstrap_server\"", typo)
	if res.code != 1 || !strings.HasPrefix(res.stderr, wantTypo) || strings.Count(res.stderr, "\n") != 1 {
		t.Fatalf("a misspelt field: exit %d, stderr %q; want exit 1 and one line starting %q", res.code, res.stderr, wantTypo)
	}

	refused := filepath.Join(dir, "refused.yaml")
	bad := strings.Replace(good, "  conflict_mode: CONFLICT_MODE_IGNORE\n",
		"  conflict_mode: CONFLICT_MODE_IGNORE\n  exactly_once: true\n  acks: ACKS_LEADER\n", 1)
	if err := os.WriteFile(refused, []byte(bad), 0o600); err != nil {
		t.Fatal(err)
	}
	res = c.run("create", "-f", refused)
	if res.code != 1 || !strings.HasPrefix(res.stderr, "ferryctl: create: InvalidArgument: ") ||
		!strings.Contains(res.stderr, "kafka.acks") || strings.Count(res.stderr, "\n") != 1 {
		t.Fatalf("a spec the server refuses: exit %d, stderr %q; want exit 1 and the server's InvalidArgument naming kafka.acks", res.code, res.stderr)
	}
}
