package e2e

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The consumer harness feeds Ferry's messages to the libraries users read
// its topics with, from their own jars (e2e/consumers/CanalCheck.java): each
// library version reads every message of a test in one JVM run, and prints
// one verdict per message.

// flinkColumn is one column of the Flink table a test declares over a
// topic: its name and its Flink SQL type.
type flinkColumn struct{ name, typ string }

// flinkRowType renders the columns as the ROW<...> type Flink's
// LogicalTypeParser reads; a backtick in a name is doubled, as Flink SQL
// escapes it.
func flinkRowType(cols []flinkColumn) string {
	parts := make([]string, len(cols))
	for i, c := range cols {
		parts[i] = "`" + strings.ReplaceAll(c.name, "`", "``") + "` " + c.typ
	}
	return "ROW<" + strings.Join(parts, ", ") + ">"
}

// canalInput is one message for the checker: an id of the test's choosing,
// the table it is read as, and the Kafka record value.
type canalInput struct {
	id    string
	cols  []flinkColumn
	value []byte
}

// flinkRow is a row Flink produced: its RowKind and its fields, rendered
// by CanalCheck (decimals plain, dates and times ISO, NULL as nil).
type flinkRow struct {
	Kind   string    `json:"kind"`
	Fields []*string `json:"fields"`
}

// flinkVerdict is CanalCheck's answer for one message: the rows, or the
// exception Flink threw with its causes.
type flinkVerdict struct {
	ID    string     `json:"id"`
	OK    bool       `json:"ok"`
	Error string     `json:"error"`
	Rows  []flinkRow `json:"rows"`
}

// flinkLibs returns the jar folder of each pinned Flink version, keyed by
// version, resolving them on first use as `make consumer-libs` does.
func flinkLibs(t *testing.T) map[string]string {
	t.Helper()
	cmd := exec.Command(filepath.Join(repoRoot(), "deploy/local/stack.sh"), "consumer-libs")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("stack.sh consumer-libs: %v\n%s", err, stderr.Bytes())
	}
	libs := map[string]string{}
	for _, dir := range strings.Fields(string(out)) {
		version := strings.TrimPrefix(filepath.Base(filepath.Dir(dir)), "consumers-flink-")
		libs[version] = dir
	}
	if len(libs) < 2 {
		t.Fatalf("stack.sh consumer-libs printed %q, want a 1.x and a 2.x Flink", out)
	}
	return libs
}

// runCanalCheck runs the checker once per Flink version over every input
// and returns each version's verdicts by input id.
func runCanalCheck(t *testing.T, inputs []canalInput) map[string]map[string]flinkVerdict {
	t.Helper()
	java, err := exec.LookPath("java")
	if err != nil {
		t.Fatalf("the consumer harness needs a JVM (Java 17): %v", err)
	}
	in := filepath.Join(t.TempDir(), "canal.tsv")
	var buf bytes.Buffer
	for _, m := range inputs {
		fmt.Fprintf(&buf, "%s\t%s\t%s\n", m.id, flinkRowType(m.cols), base64.StdEncoding.EncodeToString(m.value))
	}
	if err := os.WriteFile(in, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	src := filepath.Join(repoRoot(), "e2e/consumers/CanalCheck.java")
	all := map[string]map[string]flinkVerdict{}
	for version, libs := range flinkLibs(t) {
		start := time.Now()
		cmd := exec.Command(java, "-XX:TieredStopAtLevel=1", "-Xshare:auto", "-cp", libs+"/*", src, in)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("CanalCheck on Flink %s: %v\n%s", version, err, stderr.Bytes())
		}
		all[version] = parseVerdicts(t, version, out, len(inputs))
		t.Logf("Flink %s read %d messages in one JVM run of %s", version, len(inputs), time.Since(start).Round(10*time.Millisecond))
	}
	return all
}

func parseVerdicts(t *testing.T, version string, out []byte, n int) map[string]flinkVerdict {
	t.Helper()
	got := map[string]flinkVerdict{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 0, 1<<20), 64<<20)
	for sc.Scan() {
		var v flinkVerdict
		if err := json.Unmarshal(sc.Bytes(), &v); err != nil {
			t.Fatalf("Flink %s: verdict line %q: %v", version, sc.Bytes(), err)
		}
		got[v.ID] = v
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if len(got) != n {
		t.Fatalf("Flink %s: %d verdicts for %d messages", version, len(got), n)
	}
	return got
}
