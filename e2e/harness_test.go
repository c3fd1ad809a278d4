package e2e

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"github.com/jackc/pgx/v5"
	"go.temporal.io/sdk/client"
	"google.golang.org/grpc"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	taskv1 "github.com/ferry-cdc/ferry/gen/ferry/task/v1"
	"github.com/ferry-cdc/ferry/platform/config"
	"github.com/ferry-cdc/ferry/platform/grpccodec"
	"github.com/ferry-cdc/ferry/services/testenv"
)

// The suite runs Ferry's real binaries against the local stack
// (deploy/local/stack.sh up): real PostgreSQL, Apache Kafka and Temporal.
// Nothing is mocked and nothing is skipped: a missing service fails the run.

const stackHint = "start the local stack with `make up`, or run the whole suite with `make test`"

var binDir string

func TestMain(m *testing.M) {
	flag.Parse()
	if testing.Short() {
		// Every test here needs the stack and skips under -short
		// (testenv.Integration): no binaries to build.
		os.Exit(m.Run())
	}
	dir, err := os.MkdirTemp("", "ferry-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir = dir
	if err := buildBinaries(dir); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

func repoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), ".."))
}

func buildBinaries(dir string) error {
	// The Dockerfile's list: what the image holds is what the suite runs.
	targets, err := dockerTargets()
	if err != nil {
		return fmt.Errorf("building Ferry's binaries: %w", err)
	}
	cmd := exec.Command("go", append([]string{"build", "-o", dir + "/"}, targets...)...)
	cmd.Dir = repoRoot()
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("building Ferry's binaries: %w", err)
	}
	return nil
}

func pgPort() uint32 {
	p, _ := strconv.Atoi(config.Env("FERRY_PG_PORT", "55432"))
	return uint32(p)
}

// sourceEndpoint is the local PostgreSQL as the non-superuser "ferry" role;
// its password travels as a file reference, never in clear.
func sourceEndpoint() *taskv1.SourceEndpoint {
	return &taskv1.SourceEndpoint{
		Host: "127.0.0.1", Port: pgPort(), Database: config.Env("FERRY_PG_DATABASE", "ferry"), User: "ferry",
		Password: &taskv1.SecretRef{Source: &taskv1.SecretRef_File{
			File: config.Env("FERRY_PG_PASSWORD_FILE", filepath.Join(repoRoot(), ".local", "secrets", "pg-password")),
		}},
	}
}

func kafkaBootstrap() string { return config.Env("FERRY_KAFKA_BOOTSTRAP", "127.0.0.1:59092") }

func temporalAddress() string { return config.Env("FERRY_TEMPORAL_ADDRESS", "127.0.0.1:7233") }

func pgConnect(t *testing.T) *pgx.Conn {
	t.Helper()
	testenv.Integration(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	pw, err := os.ReadFile(sourceEndpoint().GetPassword().GetFile())
	if err != nil {
		t.Fatalf("reading the PostgreSQL password: %v; %s", err, stackHint)
	}
	dsn := fmt.Sprintf("postgres://ferry:%s@127.0.0.1:%d/%s?sslmode=disable", string(trimNL(pw)), pgPort(), sourceEndpoint().GetDatabase())
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatalf("PostgreSQL is required: %v; %s", err, stackHint)
	}
	t.Cleanup(func() { _ = conn.Close(context.Background()) })
	return conn
}

func trimNL(b []byte) []byte {
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == '\r') {
		b = b[:len(b)-1]
	}
	return b
}

func exec1(t *testing.T, conn *pgx.Conn, sql string, args ...any) {
	t.Helper()
	if _, err := conn.Exec(context.Background(), sql, args...); err != nil {
		t.Fatalf("exec %q: %v", sql, err)
	}
}

func uniqueName(prefix string) string {
	return fmt.Sprintf("%s_%d_%d", prefix, os.Getpid(), time.Now().UnixNano()%1e9)
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	last := ""
	for {
		ok, state := cond()
		if ok {
			return
		}
		last = state
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s; last state: %s", timeout, what, last)
		}
		<-tick.C
	}
}

// freePorts picks n distinct free ports (testenv.FreePorts: held open
// together, and below the kernel's ephemeral range).
func freePorts(t *testing.T, n int) []string {
	t.Helper()
	var addrs []string
	for _, p := range testenv.FreePorts(t, n) {
		addrs = append(addrs, fmt.Sprintf("127.0.0.1:%d", p))
	}
	return addrs
}

// ferry is one running set of Ferry processes with a task queue of its own,
// so that a demo worker on the same Temporal server never takes its tasks.
type ferry struct {
	t         *testing.T
	addrs     map[string]string
	taskQueue string
	procs     map[string]*exec.Cmd
	// order is every instance started, first to last; an instance is its
	// kind ("capture"), or its kind and number ("capture-2") when a kind
	// runs several.
	order []string
	// targets are what clients dial for a kind: one instance's address,
	// or a static list of every instance's.
	targets  map[string]string
	logDir   string
	control  taskv1.TaskServiceClient
	temporal client.Client
	env      []string // extra environment for every process
}

var services = []string{"catalog", "capture", "delivery", "control", "worker"}

func startFerry(t *testing.T) *ferry {
	t.Helper()
	return startFerryWithEnv(t)
}

// startFerryWithEnv is startFerry with extra environment for every process.
func startFerryWithEnv(t *testing.T, env ...string) *ferry {
	t.Helper()
	return startFerryScaled(t, 1, env...)
}

// startFerryScaled starts catalog and control once, and capture, delivery
// and the worker n times each (capture-1 … capture-n); the others reach
// capture and delivery through a static list of their instances, which
// they balance round robin.
func startFerryScaled(t *testing.T, n int, env ...string) *ferry {
	t.Helper()
	testenv.Integration(t)
	f := &ferry{
		env:       env,
		t:         t,
		addrs:     map[string]string{},
		targets:   map[string]string{},
		taskQueue: uniqueName("ferry-e2e"),
		procs:     map[string]*exec.Cmd{},
		logDir:    t.TempDir(),
	}
	f.planInstances(n)
	t.Cleanup(f.stopAll)
	for _, kind := range services {
		for _, name := range f.instancesOf(kind, n) {
			f.start(name)
		}
	}
	conn, err := grpc.NewClient(f.addrs["control"], ferryDial(t, f.addrs["control"]), grpccodec.DialOption())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	f.control = taskv1.NewTaskServiceClient(conn)
	tc, err := client.Dial(client.Options{HostPort: temporalAddress()})
	if err != nil {
		t.Fatalf("Temporal is required: %v; %s", err, stackHint)
	}
	t.Cleanup(tc.Close)
	f.temporal = tc
	return f
}

// planInstances picks every gRPC instance's address while all are held
// open, so no two get the same port, and the targets clients dial.
func (f *ferry) planInstances(n int) {
	var names []string
	for _, kind := range []string{"catalog", "capture", "delivery", "control"} {
		names = append(names, f.instancesOf(kind, n)...)
	}
	for i, addr := range freePorts(f.t, len(names)) {
		f.addrs[names[i]] = addr
	}
	for _, kind := range []string{"catalog", "capture", "delivery", "control"} {
		var addrs []string
		for _, name := range f.instancesOf(kind, n) {
			addrs = append(addrs, f.addrs[name])
		}
		f.targets[kind] = addrs[0]
		if len(addrs) > 1 {
			f.targets[kind] = "static:///" + strings.Join(addrs, ",")
			f.addrs[kind] = addrs[0] // tests that name the kind reach the first
		}
	}
}

// instancesOf names a kind's instances: catalog and control run once.
func (f *ferry) instancesOf(kind string, n int) []string {
	if n == 1 || kind == "catalog" || kind == "control" {
		return []string{kind}
	}
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("%s-%d", kind, i+1)
	}
	return names
}

func (f *ferry) start(name string) {
	f.t.Helper()
	kind, _, _ := strings.Cut(name, "-")
	cmd := exec.Command(filepath.Join(binDir, kind))
	cmd.Env = append(os.Environ(),
		"FERRY_"+strings.ToUpper(kind)+"_LISTEN="+f.addrs[name],
		"FERRY_CATALOG_ADDRESS="+f.targets["catalog"], "FERRY_CAPTURE_ADDRESS="+f.targets["capture"],
		"FERRY_DELIVERY_ADDRESS="+f.targets["delivery"], "FERRY_TEMPORAL_ADDRESS="+temporalAddress(),
		"FERRY_TASK_QUEUE="+f.taskQueue,
		// Secrets here are the stack's (.local) and those of private
		// PostgreSQL servers, in temporary directories.
		"FERRY_SECRET_DIRS="+secretDirs(),
		// Port 0: the kernel picks the port as the process binds it, so
		// no other process can take it in between, as one picked ahead can.
		"FERRY_"+strings.ToUpper(kind)+"_METRICS_ADDR=127.0.0.1:0",
	)
	cmd.Env = append(cmd.Env, testenv.FerryTransportEnv()...)
	cmd.Env = append(cmd.Env, f.env...)
	logFile, err := os.OpenFile(filepath.Join(f.logDir, name+".log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		f.t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		f.t.Fatalf("starting %s: %v", name, err)
	}
	f.procs[name] = cmd
	if !slices.Contains(f.order, name) {
		f.order = append(f.order, name)
	}
	if addr, ok := f.addrs[name]; ok {
		f.waitServing(name, addr)
	}
}

// ferryDial is how the tests reach Ferry's processes: with the stack's
// certificate (FERRY_TLS_*), as Ferry's processes reach each other.
func ferryDial(t *testing.T, addr string) grpc.DialOption {
	t.Helper()
	d, err := testenv.FerryTransport().DialOption(addr)
	if err != nil {
		t.Fatalf("Ferry's processes speak mutual TLS with the stack's certificate: %v; %s", err, stackHint)
	}
	return d
}

// controlGrpcurl is grpcurl's part of a control API call as the README
// writes it: TLS under the stack's CA, and the bearer token.
func controlGrpcurl(t *testing.T) []string {
	t.Helper()
	token := testenv.ControlToken()
	if token == "" {
		t.Fatalf("the control API's token (%s) is missing; %s", testenv.ControlTokenFile(), stackHint)
	}
	return []string{"-cacert", testenv.FerryTransport().CAFile, "-H", "authorization: Bearer " + token}
}

func (f *ferry) waitServing(name, addr string) {
	f.t.Helper()
	conn, err := grpc.NewClient(addr, ferryDial(f.t, addr), grpccodec.DialOption())
	if err != nil {
		f.t.Fatal(err)
	}
	defer func() { _ = conn.Close() }()
	h := healthpb.NewHealthClient(conn)
	eventually(f.t, 30*time.Second, name+" to serve", func() (bool, string) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		res, err := h.Check(ctx, &healthpb.HealthCheckRequest{})
		if err != nil {
			return false, err.Error() + "; log: " + f.logTail(name)
		}
		return res.GetStatus() == healthpb.HealthCheckResponse_SERVING, res.GetStatus().String()
	})
}

// kill sends SIGKILL, the way a crashed host or OOM kill ends a process.
func (f *ferry) kill(name string) {
	f.t.Helper()
	cmd := f.procs[name]
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		f.t.Fatalf("killing %s: %v", name, err)
	}
	_ = cmd.Wait()
	delete(f.procs, name)
}

func (f *ferry) stopAll() {
	for i := len(f.order) - 1; i >= 0; i-- {
		cmd, ok := f.procs[f.order[i]]
		if !ok {
			continue
		}
		_ = cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	}
	if f.t.Failed() {
		for _, s := range f.order {
			f.t.Logf("---- %s log (tail) ----\n%s", s, f.logTail(s))
		}
	}
}

func (f *ferry) logTail(name string) string {
	b, _ := os.ReadFile(filepath.Join(f.logDir, name+".log"))
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

// consumer reads a topic from the beginning on every partition.
func newConsumer(t *testing.T, topic string) *kafka.Consumer {
	t.Helper()
	testenv.Integration(t)
	c, err := kafka.NewConsumer(&kafka.ConfigMap{
		"bootstrap.servers":  kafkaBootstrap(),
		"group.id":           uniqueName("e2e"),
		"auto.offset.reset":  "earliest",
		"enable.auto.commit": false,
		"isolation.level":    "read_committed",
	})
	if err != nil {
		t.Fatalf("Kafka consumer: %v; %s", err, stackHint)
	}
	t.Cleanup(func() { _ = c.Close() })
	if err := c.Subscribe(topic, nil); err != nil {
		t.Fatalf("subscribing to %s: %v", topic, err)
	}
	return c
}

func createTopic(t *testing.T, name string, configs map[string]string) {
	t.Helper()
	createTopicAt(t, kafkaBootstrap(), name, configs)
}

// createTopicAt is createTopic on the broker at bootstrap.
func createTopicAt(t *testing.T, bootstrap, name string, configs map[string]string) {
	t.Helper()
	testenv.Integration(t)
	admin, err := kafka.NewAdminClient(&kafka.ConfigMap{"bootstrap.servers": bootstrap})
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := admin.CreateTopics(ctx, []kafka.TopicSpecification{{Topic: name, NumPartitions: 1, ReplicationFactor: 1, Config: configs}})
	if err != nil {
		t.Fatalf("creating topic %s: %v; %s", name, err, stackHint)
	}
	if res[0].Error.Code() != kafka.ErrNoError {
		t.Fatalf("creating topic %s: %v", name, res[0].Error)
	}
}

// secretDirs are where the tests' secret references point: the stack's
// (.local, or wherever its env says, as for a worktree using another
// checkout's stack) and private PostgreSQL servers' temporary directories.
func secretDirs() string {
	dirs := []string{filepath.Join(repoRoot(), ".local"), os.TempDir()}
	for _, v := range []string{"FERRY_PG_PASSWORD_FILE", "FERRY_KAFKA_TLS_CA_FILE", "FERRY_KAFKA_SCRAM256_PASSWORD_FILE", "FERRY_KAFKA_SCRAM512_PASSWORD_FILE"} {
		if f := os.Getenv(v); f != "" {
			dirs = append(dirs, filepath.Dir(f))
		}
	}
	return strings.Join(dirs, ",")
}
