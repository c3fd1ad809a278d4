package testenv

import (
	"bufio"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Broker is an Apache Kafka (KRaft, one node) private to one test, run from
// the jars the local stack caches. Unlike the shared broker it may be
// stopped and started again, on the same ports and data, to test faults.
type Broker struct {
	t       testing.TB
	dir     string // config, data and log
	libs    string
	port    int
	ctlPort int
	// advertised is the port clients are told to use; 0: port. A test puts
	// a proxy there to cut the network between clients and the broker.
	advertised int

	cmd    *exec.Cmd
	exited chan struct{} // closed when cmd has been waited for
	// StartTime is how long the last Start took, until the broker was
	// ready (see metadataReady).
	StartTime time.Duration
}

// brokerStartTimeout bounds a start until the broker answers metadata; the
// JVM and KRaft need a few seconds on a busy two-core machine.
const brokerStartTimeout = 90 * time.Second

// brokerStopTimeout bounds a graceful shutdown before the process is killed.
const brokerStopTimeout = 60 * time.Second

// StartKafka formats and starts a private broker in t.TempDir() on free
// loopback ports; t.Cleanup kills it. Missing jars fail the test with what
// to run.
func StartKafka(t testing.TB) *Broker {
	t.Helper()
	return StartKafkaAdvertising(t, 0)
}

// StartKafkaAdvertising is StartKafka with the broker advertising port
// advertised on 127.0.0.1 (0: its own), where the test runs a proxy to the
// broker's own port (Port): clients then reach it only through the proxy.
func StartKafkaAdvertising(t testing.TB, advertised int) *Broker {
	t.Helper()
	Integration(t)
	libs, err := kafkaLibs()
	if err != nil {
		t.Fatalf("a private Kafka broker needs the cached Kafka jars: %v; %s", err, hint)
	}
	b := &Broker{t: t, dir: t.TempDir(), libs: libs, advertised: advertised}
	b.port, b.ctlPort = freePort(t), freePort(t)
	for b.ctlPort == b.port || b.port == advertised || b.ctlPort == advertised {
		b.port, b.ctlPort = freePort(t), freePort(t)
	}
	if b.advertised == 0 {
		b.advertised = b.port
	}
	if err := b.writeConfig(); err != nil {
		t.Fatalf("writing the private Kafka broker's config: %v", err)
	}
	if err := b.format(); err != nil {
		t.Fatalf("formatting the private Kafka broker's storage in %s: %v", b.dir, err)
	}
	t.Cleanup(b.kill)
	b.Start()
	return b
}

// Bootstrap is the broker's PLAINTEXT address.
func (b *Broker) Bootstrap() string { return fmt.Sprintf("127.0.0.1:%d", b.port) }

// Port is the broker's own PLAINTEXT port, whatever it advertises.
func (b *Broker) Port() int { return b.port }

// kafkaLibs finds the jar folder deploy/local/stack.sh fills:
// $FERRY_CACHE/kafka-$KAFKA_VERSION/libs, complete once .complete exists.
func kafkaLibs() (string, error) {
	vars, err := readEnvFile(filepath.Join(RepoRoot(), "deploy", "local", "versions.env"))
	if err != nil {
		return "", err
	}
	version := vars["KAFKA_VERSION"]
	if version == "" {
		return "", errors.New("deploy/local/versions.env sets no KAFKA_VERSION")
	}
	cache := os.Getenv("FERRY_CACHE")
	if cache == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return "", fmt.Errorf("finding the cache folder: %w", err)
		}
		cache = filepath.Join(home, ".cache", "ferry")
	}
	libs := filepath.Join(cache, "kafka-"+version, "libs")
	if _, err := os.Stat(filepath.Join(libs, ".complete")); err != nil {
		return "", fmt.Errorf("no complete jar set in %s", libs)
	}
	return libs, nil
}

// readEnvFile reads the KEY=VALUE lines of a file bash sources.
func readEnvFile(path string) (map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	defer func() { _ = f.Close() }()
	out := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if k, v, ok := strings.Cut(line, "="); ok && !strings.HasPrefix(line, "#") {
			out[k] = strings.Trim(v, `"'`)
		}
	}
	return out, sc.Err()
}

func freePort(t testing.TB) int {
	t.Helper()
	return FreePorts(t, 1)[0]
}

// writeConfig mirrors kafka_write_config in deploy/local/stack.sh, without
// the secured listeners.
func (b *Broker) writeConfig() error {
	conf := fmt.Sprintf(`node.id=1
process.roles=broker,controller
controller.quorum.voters=1@127.0.0.1:%[2]d
listeners=PLAINTEXT://127.0.0.1:%[1]d,CONTROLLER://127.0.0.1:%[2]d
advertised.listeners=PLAINTEXT://127.0.0.1:%[4]d
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=%[3]s
num.partitions=1
default.replication.factor=1
min.insync.replicas=1
offsets.topic.replication.factor=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
auto.create.topics.enable=false
group.initial.rebalance.delay.ms=0
num.network.threads=2
num.io.threads=4
log.retention.hours=24
log.segment.bytes=104857600
`, b.port, b.ctlPort, filepath.Join(b.dir, "data"), b.advertised)
	return os.WriteFile(b.configPath(), []byte(conf), 0o600)
}

func (b *Broker) configPath() string { return filepath.Join(b.dir, "server.properties") }

func (b *Broker) log4j(name string) string {
	return filepath.Join(RepoRoot(), "deploy", "local", "kafka", name)
}

// format runs StorageTool as kafka_format does, with a cluster id made
// here (Kafka's Uuid: 16 random bytes, URL-safe base64, not starting with
// '-') to save a JVM start.
func (b *Broker) format() error {
	id := make([]byte, 16)
	clusterID := "-"
	for strings.HasPrefix(clusterID, "-") {
		if _, err := rand.Read(id); err != nil {
			return err
		}
		clusterID = base64.RawURLEncoding.EncodeToString(id)
	}
	cmd := exec.Command("java", "-Xmx256m", "-Dlog4j2.configurationFile="+b.log4j("log4j2-tools.properties"),
		"-cp", filepath.Join(b.libs, "*"), "kafka.tools.StorageTool", "format",
		"--cluster-id", clusterID, "--config", b.configPath())
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("StorageTool format: %w: %s", err, out)
	}
	return nil
}

// Start starts the broker on its ports and data and waits until metadata
// lists it and a leader for every partition.
func (b *Broker) Start() {
	b.t.Helper()
	if b.cmd != nil {
		b.t.Fatalf("private Kafka broker %s: Start while running", b.Bootstrap())
	}
	logf, err := os.OpenFile(b.logPath(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		b.t.Fatalf("opening the private Kafka broker's log: %v", err)
	}
	defer func() { _ = logf.Close() }()
	// JVM flags as stack.sh's up_kafka, with a smaller heap.
	cmd := exec.Command("java", "-Xms128m", "-Xmx384m", "-server", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20",
		"-XX:InitiatingHeapOccupancyPercent=35", "-XX:+ExplicitGCInvokesConcurrent",
		"-Djava.awt.headless=true", "-Dkafka.logs.dir="+b.dir,
		"-Dlog4j2.configurationFile="+b.log4j("log4j2.properties"),
		"-cp", filepath.Join(b.libs, "*"), "kafka.Kafka", b.configPath())
	cmd.Stdout, cmd.Stderr = logf, logf
	// The broker dies with the test binary even if cleanups never run.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	began := time.Now()
	if err := cmd.Start(); err != nil {
		b.t.Fatalf("starting the private Kafka broker: %v", err)
	}
	b.cmd, b.exited = cmd, make(chan struct{})
	go func(done chan struct{}) { _ = cmd.Wait(); close(done) }(b.exited)
	if err := b.waitReady(); err != nil {
		b.kill()
		b.t.Fatalf("private Kafka broker %s: %v; its log ends:\n%s", b.Bootstrap(), err, b.logTail())
	}
	b.StartTime = time.Since(began)
}

func (b *Broker) logPath() string { return filepath.Join(b.dir, "kafka.log") }

func (b *Broker) waitReady() error {
	deadline := time.NewTimer(brokerStartTimeout)
	defer deadline.Stop()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	var last error
	for {
		if last = metadataReady(b.Bootstrap()); last == nil {
			return nil
		}
		select {
		case <-b.exited:
			return fmt.Errorf("the process exited during start-up (%v)", b.cmd.ProcessState)
		case <-deadline.C:
			return fmt.Errorf("not ready (metadata with a leader for every partition) within %s (last: %w)", brokerStartTimeout, last)
		case <-tick.C:
		}
	}
}

// Stop shuts the broker down gracefully (SIGTERM) and waits for it to exit,
// killing it after brokerStopTimeout.
func (b *Broker) Stop() {
	b.t.Helper()
	if b.cmd == nil {
		return
	}
	if err := b.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		b.t.Fatalf("stopping the private Kafka broker: %v", err)
	}
	select {
	case <-b.exited:
		b.cmd = nil
	case <-time.After(brokerStopTimeout):
		b.kill()
		b.t.Fatalf("private Kafka broker %s did not exit within %s of SIGTERM; killed it. Its log ends:\n%s",
			b.Bootstrap(), brokerStopTimeout, b.logTail())
	}
}

// Kill SIGKILLs the broker, as a crashed host does; Start brings it back
// on its data.
func (b *Broker) Kill() { b.kill() }

// kill ends the process at once, if it runs.
func (b *Broker) kill() {
	if b.cmd == nil {
		return
	}
	_ = b.cmd.Process.Kill()
	<-b.exited
	b.cmd = nil
}

func (b *Broker) logTail() string {
	data, err := os.ReadFile(b.logPath())
	if err != nil {
		return err.Error()
	}
	if len(data) > 4000 {
		data = data[len(data)-4000:]
	}
	return string(data)
}

// metadataReady sends one Metadata request (v4, all topics) and succeeds
// when the answer lists a broker and every partition of every topic has a
// leader: then clients can use the topics a restart kept, which a bound port
// alone does not prove. Raw, so that testenv needs no cgo Kafka client.
func metadataReady(addr string) error {
	conn, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer func() { _ = conn.Close() }()
	_ = conn.SetDeadline(time.Now().Add(2 * time.Second))
	const clientID = "ferry-testenv"
	// Header v1: api_key 3 (Metadata), version 4, correlation id, client id.
	req := binary.BigEndian.AppendUint16(nil, 3)
	req = binary.BigEndian.AppendUint16(req, 4)
	req = binary.BigEndian.AppendUint32(req, 1)
	req = binary.BigEndian.AppendUint16(req, uint16(len(clientID)))
	req = append(req, clientID...)
	// Body v4: topics null (all), allow_auto_topic_creation false.
	req = binary.BigEndian.AppendUint32(req, 0xffffffff)
	req = append(req, 0)
	frame := binary.BigEndian.AppendUint32(nil, uint32(len(req)))
	if _, err := conn.Write(append(frame, req...)); err != nil {
		return err
	}
	var size int32
	if err := binary.Read(conn, binary.BigEndian, &size); err != nil {
		return fmt.Errorf("reading the metadata response: %w", err)
	}
	if size < 8 || size > 64<<20 {
		return fmt.Errorf("metadata response of %d bytes", size)
	}
	body := make([]byte, size)
	if _, err := io.ReadFull(conn, body); err != nil {
		return fmt.Errorf("reading the metadata response: %w", err)
	}
	return checkMetadata(&wire{b: body})
}

// checkMetadata reads a Metadata v4 response after its size.
func checkMetadata(r *wire) error {
	if corr := r.i32(); corr != 1 {
		return fmt.Errorf("metadata response has correlation id %d, want 1", corr)
	}
	r.i32() // throttle_time_ms
	brokers := r.i32()
	for range max(brokers, 0) {
		r.i32() // node_id
		r.str() // host
		r.i32() // port
		r.str() // rack
	}
	r.str() // cluster_id
	r.i32() // controller_id
	if brokers < 1 {
		return fmt.Errorf("metadata lists %d brokers", brokers)
	}
	for range max(r.i32(), 0) {
		code, name := r.i16(), r.str()
		r.n(1) // is_internal
		if code != 0 {
			return fmt.Errorf("topic %s has error %d", name, code)
		}
		for range max(r.i32(), 0) {
			code, part, leader := r.i16(), r.i32(), r.i32()
			r.n(4 * int(max(r.i32(), 0))) // replica_nodes
			r.n(4 * int(max(r.i32(), 0))) // isr_nodes
			if code != 0 || leader < 0 {
				return fmt.Errorf("partition %s[%d] has error %d, leader %d", name, part, code, leader)
			}
		}
	}
	return r.err
}

// wire reads big-endian Kafka protocol fields; past the end it records an
// error and returns zeros.
type wire struct {
	b   []byte
	err error
}

func (w *wire) n(k int) []byte {
	if k < 0 || k > len(w.b) {
		if w.err == nil {
			w.err = errors.New("metadata response ends early")
		}
		w.b = nil
		return make([]byte, max(k, 0))
	}
	out := w.b[:k]
	w.b = w.b[k:]
	return out
}

func (w *wire) i16() int16 { return int16(binary.BigEndian.Uint16(w.n(2))) }
func (w *wire) i32() int32 { return int32(binary.BigEndian.Uint32(w.n(4))) }

// str reads a (nullable) string.
func (w *wire) str() string { return string(w.n(int(max(w.i16(), 0)))) }
