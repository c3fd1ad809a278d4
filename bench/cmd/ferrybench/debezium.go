package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// The Debezium baseline's pinned versions. Debezium 3.4.3.Final is built
// and tested against Kafka 4.1.1, the broker version the local stack runs
// (deploy/local/versions.env), and Kafka Connect is taken at that version
// too. Both come from Maven Central through bench/debezium/pom.xml.
const (
	debeziumVersion       = "3.4.3.Final"
	connectVersion        = "4.1.1"
	connectLog4j2Version  = "2.24.3" // what Kafka 4.1 ships
	mavenDependencyPlugin = "3.8.1"
)

// debeziumLibs returns the folder of Kafka Connect's and Debezium's jars,
// resolving them from Maven Central into the cache on first use. A marker
// written only after Maven succeeds tells a complete set from one left by an
// interrupted download; the jars never enter the repository.
func debeziumLibs(ctx context.Context, repoRoot string) (string, error) {
	cache := os.Getenv("FERRY_CACHE")
	if cache == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return "", fmt.Errorf("finding the cache folder (set FERRY_CACHE): %w", err)
		}
		cache = filepath.Join(home, ".cache", "ferry")
	}
	libs := filepath.Join(cache, "debezium-"+debeziumVersion, "libs")
	if _, err := os.Stat(filepath.Join(libs, ".complete")); err == nil {
		return libs, nil
	}
	if _, err := exec.LookPath("mvn"); err != nil {
		return "", fmt.Errorf("the Debezium baseline needs Maven to fetch its jars: install maven, or pass -debezium=false: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(libs), 0o755); err != nil {
		return "", fmt.Errorf("creating %s: %w", filepath.Dir(libs), err)
	}
	tmp, err := os.MkdirTemp(filepath.Dir(libs), ".libs-")
	if err != nil {
		return "", fmt.Errorf("creating a download folder: %w", err)
	}
	defer func() { _ = os.RemoveAll(tmp) }()
	start := time.Now()
	cmd := exec.CommandContext(ctx, "mvn", "-q", "-B", "-Dstyle.color=never",
		"-f", filepath.Join(repoRoot, "bench", "debezium", "pom.xml"),
		"-Dkafka.version="+connectVersion, "-Ddebezium.version="+debeziumVersion,
		"-Dlog4j2.version="+connectLog4j2Version, "-Dmaven.dependency.plugin.version="+mavenDependencyPlugin,
		"-DoutputDirectory="+tmp, "dependency:copy-dependencies")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("resolving Debezium %s and Kafka Connect %s with Maven: %w\n%s", debeziumVersion, connectVersion, err, tail(out.String(), 3000))
	}
	if err := os.WriteFile(filepath.Join(tmp, ".complete"), nil, 0o644); err != nil {
		return "", fmt.Errorf("marking %s complete: %w", tmp, err)
	}
	if err := os.RemoveAll(libs); err != nil {
		return "", fmt.Errorf("removing the incomplete %s: %w", libs, err)
	}
	if err := os.Rename(tmp, libs); err != nil {
		return "", fmt.Errorf("moving the jars to %s: %w", libs, err)
	}
	log.Printf("Debezium %s and Kafka Connect %s cached in %s in %s", debeziumVersion, connectVersion, libs, time.Since(start).Round(time.Second))
	return libs, nil
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// connectJVM is the JVM command line Kafka's bin/connect-standalone.sh and
// kafka-run-class.sh use by default: the same heap and garbage collector
// settings a Debezium user starts from.
var connectJVM = []string{"-Xms256M", "-Xmx2G", "-server", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20",
	"-XX:InitiatingHeapOccupancyPercent=35", "-XX:+ExplicitGCInvokesConcurrent", "-Djava.awt.headless=true"}

// connectLog4j2 sends the worker's log to stdout, which goes to the log file.
const connectLog4j2 = `status = warn
appender.stdout.type = Console
appender.stdout.name = STDOUT
appender.stdout.layout.type = PatternLayout
appender.stdout.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.stdout.ref = STDOUT
`

// connectWorker is one Kafka Connect standalone worker running one
// connector, with its REST API on a free port.
type connectWorker struct {
	dir       string // properties, offsets and the log
	rest      string // base URL of the REST API
	connector string
	cmd       *exec.Cmd
	exited    chan struct{} // closed once the JVM is gone
	http      *http.Client
}

// startConnect writes the worker's and the connector's properties into dir
// and starts ConnectStandalone from the cached jars.
func startConnect(libs, dir string, worker, connector [][2]string) (*connectWorker, error) {
	addr, err := freePort()
	if err != nil {
		return nil, err
	}
	k := &connectWorker{dir: dir, rest: "http://" + addr, http: &http.Client{Timeout: 30 * time.Second}}
	worker = append(worker, [2]string{"listeners", k.rest})
	for _, kv := range connector {
		if kv[0] == "name" {
			k.connector = kv[1]
		}
	}
	files := map[string]string{"worker.properties": properties(worker), "log4j2.properties": connectLog4j2}
	confs := []string{filepath.Join(dir, "worker.properties")}
	if len(connector) > 0 { // none: the connector is created later through the REST API
		files["connector.properties"] = properties(connector)
		confs = append(confs, filepath.Join(dir, "connector.properties"))
	}
	for name, body := range files {
		// 0600: the connector's file holds the database password.
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o600); err != nil {
			return nil, fmt.Errorf("writing %s: %w", name, err)
		}
	}
	logFile, err := os.Create(filepath.Join(dir, "connect.log"))
	if err != nil {
		return nil, fmt.Errorf("creating the Kafka Connect log: %w", err)
	}
	defer func() { _ = logFile.Close() }() // the child keeps its own descriptor
	args := append(append([]string{}, connectJVM...), "-Dlog4j2.configurationFile="+filepath.Join(dir, "log4j2.properties"),
		"-cp", filepath.Join(libs, "*"), "org.apache.kafka.connect.cli.ConnectStandalone")
	args = append(args, confs...)
	k.cmd = exec.Command("java", args...)
	k.cmd.Stdout, k.cmd.Stderr = logFile, logFile
	if err := k.cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting Kafka Connect (is java on the PATH?): %w", err)
	}
	k.exited = make(chan struct{})
	go func() { _ = k.cmd.Wait(); close(k.exited) }()
	return k, nil
}

func properties(kvs [][2]string) string {
	var b strings.Builder
	for _, kv := range kvs {
		fmt.Fprintf(&b, "%s=%s\n", kv[0], kv[1])
	}
	return b.String()
}

// put sends PUT /connectors/<name>/<action>: "stop" shuts the connector and
// its task down (KIP-875; the task closes its replication connection),
// "resume" starts them again.
func (k *connectWorker) put(ctx context.Context, action string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, k.rest+"/connectors/"+k.connector+"/"+action, nil)
	if err != nil {
		return fmt.Errorf("building the %s request: %w", action, err)
	}
	res, err := k.http.Do(req)
	if err != nil {
		return fmt.Errorf("%s connector %s: %w", action, k.connector, err)
	}
	defer func() { _ = res.Body.Close() }()
	if res.StatusCode/100 != 2 {
		body, _ := io.ReadAll(io.LimitReader(res.Body, 2000))
		return fmt.Errorf("%s connector %s: HTTP %s: %s", action, k.connector, res.Status, body)
	}
	return nil
}

// status describes the connector and its task as the REST API reports
// them, with a failed task's trace, for the errors of a wait.
func (k *connectWorker) status(ctx context.Context) string {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, k.rest+"/connectors/"+k.connector+"/status", nil)
	if err != nil {
		return err.Error()
	}
	res, err := k.http.Do(req)
	if err != nil {
		return "REST API not answering: " + err.Error() + "; log: " + k.logTail()
	}
	defer func() { _ = res.Body.Close() }()
	var st struct {
		Connector struct{ State string } `json:"connector"`
		Tasks     []struct{ State, Trace string }
	}
	if err := json.NewDecoder(res.Body).Decode(&st); err != nil {
		return fmt.Sprintf("HTTP %s, undecodable status: %v", res.Status, err)
	}
	s := "connector " + st.Connector.State
	for _, t := range st.Tasks {
		s += ", task " + t.State
		if t.Trace != "" {
			s += ": " + tail(t.Trace, 2000)
		}
	}
	return s
}

func (k *connectWorker) logTail() string {
	b, _ := os.ReadFile(filepath.Join(k.dir, "connect.log"))
	return tail(string(b), 2000)
}

// stop ends the worker with SIGTERM (Connect shuts down cleanly on it) and
// SIGKILL after a grace period, so that a hung JVM cannot hang the benchmark.
func (k *connectWorker) stop() {
	if k == nil || k.exited == nil {
		return
	}
	_ = k.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-k.exited:
	case <-time.After(30 * time.Second):
		_ = k.cmd.Process.Kill()
		<-k.exited
	}
}

// debeziumIDs reads the row id of a Debezium change event as its
// JsonConverter writes it with schemas off: {"before":…,"after":{"id":…}}.
func debeziumIDs(value []byte) ([]int, error) {
	var ev struct {
		After *struct {
			ID *int `json:"id"`
		} `json:"after"`
	}
	if err := json.Unmarshal(value, &ev); err != nil {
		return nil, err
	}
	if ev.After == nil || ev.After.ID == nil {
		return nil, errors.New("a Debezium event without after.id")
	}
	return []int{*ev.After.ID}, nil
}
