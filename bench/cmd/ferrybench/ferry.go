package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"google.golang.org/grpc"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	taskv1 "github.com/ferry-cdc/ferry/gen/ferry/task/v1"
	"github.com/ferry-cdc/ferry/platform/grpccodec"
	"github.com/ferry-cdc/ferry/platform/grpcsec"
)

// services in start order: the worker and control API call the others.
var services = []string{"catalog", "capture", "delivery", "control", "worker"}

// buildFerry builds the five binaries once per invocation, as the e2e suite
// does, so that every run measures the same code.
func buildFerry(ctx context.Context, repoRoot, dir string) error {
	cmd := exec.CommandContext(ctx, "go", "build", "-o", dir+"/",
		"./services/cmd/catalog", "./services/cmd/capture", "./services/cmd/delivery",
		"./services/cmd/control", "./workflows/cmd/worker")
	cmd.Dir = repoRoot
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("building Ferry's binaries: %w", err)
	}
	return nil
}

// ferry is one set of Ferry processes on free ports with a Temporal task
// queue of its own, so that a demo or e2e worker sharing the Temporal server
// never takes the benchmark's tasks (and the other way round).
type ferry struct {
	binDir, logDir string
	taskQueue      string
	temporal       string
	addrs          map[string]string
	procs          map[string]*exec.Cmd
	env            []string            // extra environment for every process
	procEnv        map[string][]string // extra environment for one process, by name
	conn           *grpc.ClientConn
	control        taskv1.TaskServiceClient
}

func startFerry(ctx context.Context, c *config, binDir, logDir, taskQueue string) (*ferry, error) {
	return startFerryWith(ctx, c, binDir, logDir, taskQueue, nil)
}

// startFerryWith is startFerry with extra environment for some processes
// (FERRY_CPU_PROFILE for capture and delivery, say).
func startFerryWith(ctx context.Context, c *config, binDir, logDir, taskQueue string, procEnv map[string][]string) (*ferry, error) {
	f := &ferry{binDir: binDir, logDir: logDir, taskQueue: taskQueue, temporal: c.temporalAddress,
		addrs: map[string]string{}, procs: map[string]*exec.Cmd{}, procEnv: procEnv, env: ferryEnv(c)}
	// Picked while all are held open, so no two are the same.
	var held []net.Listener
	for _, s := range []string{"catalog", "capture", "delivery", "control"} {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("finding a free port: %w", err)
		}
		held = append(held, l)
		f.addrs[s] = l.Addr().String()
	}
	for _, l := range held {
		_ = l.Close()
	}
	for _, s := range services {
		if err := f.start(ctx, s); err != nil {
			f.stop()
			return nil, err
		}
	}
	conn, err := dialFerry(f.addrs["control"], grpccodec.DialOption())
	if err != nil {
		f.stop()
		return nil, fmt.Errorf("dialing control: %w", err)
	}
	f.conn = conn
	f.control = taskv1.NewTaskServiceClient(conn)
	return f, nil
}

func freePort() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("finding a free port: %w", err)
	}
	defer func() { _ = l.Close() }()
	return l.Addr().String(), nil
}

func (f *ferry) start(ctx context.Context, name string) error {
	cmd := exec.Command(filepath.Join(f.binDir, name))
	cmd.Env = append(os.Environ(),
		"FERRY_CATALOG_LISTEN="+f.addrs["catalog"], "FERRY_CAPTURE_LISTEN="+f.addrs["capture"],
		"FERRY_DELIVERY_LISTEN="+f.addrs["delivery"], "FERRY_CONTROL_LISTEN="+f.addrs["control"],
		"FERRY_CATALOG_ADDRESS="+f.addrs["catalog"], "FERRY_CAPTURE_ADDRESS="+f.addrs["capture"],
		"FERRY_DELIVERY_ADDRESS="+f.addrs["delivery"], "FERRY_TEMPORAL_ADDRESS="+f.temporal,
		"FERRY_TASK_QUEUE="+f.taskQueue,
		// Port 0: the stack's services (and other runs) hold the default
		// metrics ports.
		"FERRY_"+strings.ToUpper(name)+"_METRICS_ADDR=127.0.0.1:0",
	)
	cmd.Env = append(cmd.Env, f.env...)
	cmd.Env = append(cmd.Env, f.procEnv[name]...)
	logFile, err := os.OpenFile(filepath.Join(f.logDir, name+".log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return fmt.Errorf("opening %s's log: %w", name, err)
	}
	defer func() { _ = logFile.Close() }() // the child keeps its own descriptor
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting %s: %w", name, err)
	}
	f.procs[name] = cmd
	if addr, ok := f.addrs[name]; ok {
		return f.waitServing(ctx, name, addr)
	}
	return nil
}

// dialFerry reaches one of Ferry's processes as they reach each other:
// with the stack's certificate (FERRY_TLS_*), so the benchmark measures the
// transport production runs.
func dialFerry(addr string, opts ...grpc.DialOption) (*grpc.ClientConn, error) {
	creds, err := grpcsec.FromEnv().DialOption(addr)
	if err != nil {
		return nil, fmt.Errorf("dialing %s: %w", addr, err)
	}
	return grpc.NewClient(addr, append(opts, creds)...)
}

func (f *ferry) waitServing(ctx context.Context, name, addr string) error {
	conn, err := dialFerry(addr, grpccodec.DialOption())
	if err != nil {
		return fmt.Errorf("dialing %s: %w", name, err)
	}
	defer func() { _ = conn.Close() }()
	h := healthpb.NewHealthClient(conn)
	return poll(ctx, 30*time.Second, 100*time.Millisecond, name+" to serve", func() (bool, string, error) {
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		res, err := h.Check(cctx, &healthpb.HealthCheckRequest{})
		if err != nil {
			return false, err.Error() + "; log: " + f.logTail(name), nil
		}
		return res.GetStatus() == healthpb.HealthCheckResponse_SERVING, res.GetStatus().String(), nil
	})
}

// stop ends the processes in reverse start order with SIGTERM, and SIGKILL
// after a grace period, so that a hung service cannot hang the benchmark.
func (f *ferry) stop() {
	if f.conn != nil {
		_ = f.conn.Close()
	}
	for i := len(services) - 1; i >= 0; i-- {
		cmd, ok := f.procs[services[i]]
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
		delete(f.procs, services[i])
	}
}

func (f *ferry) logTail(name string) string {
	b, _ := os.ReadFile(filepath.Join(f.logDir, name+".log"))
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return string(b)
}

// procSample is one process's CPU time so far and its peak resident set.
type procSample struct {
	CPUSeconds float64 `json:"cpu_seconds"`
	PeakRSSMB  float64 `json:"peak_rss_mb"`
}

// sample reads every Ferry process's counters from /proc.
func (f *ferry) sample() (map[string]procSample, error) {
	out := map[string]procSample{}
	for name, cmd := range f.procs {
		s, err := readProc(cmd.Process.Pid)
		if err != nil {
			return nil, fmt.Errorf("sampling %s: %w", name, err)
		}
		out[name] = s
	}
	return out, nil
}

// clockTicks is USER_HZ, the unit of utime and stime in /proc/PID/stat; it
// is 100 on every Linux architecture Go supports.
const clockTicks = 100

func readProc(pid int) (procSample, error) {
	var s procSample
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return s, fmt.Errorf("reading /proc/%d/stat: %w", pid, err)
	}
	// The command name may contain spaces; fields are counted after its ')'.
	rest := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+1:]))
	if len(rest) < 13 {
		return s, fmt.Errorf("short /proc/%d/stat", pid)
	}
	// rest[0] is field 3 (state); utime and stime are fields 14 and 15.
	utime, err1 := strconv.ParseFloat(rest[11], 64)
	stime, err2 := strconv.ParseFloat(rest[12], 64)
	if err1 != nil || err2 != nil {
		return s, fmt.Errorf("parsing /proc/%d/stat times: %w", pid, errors.Join(err1, err2))
	}
	s.CPUSeconds = (utime + stime) / clockTicks
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return s, fmt.Errorf("reading /proc/%d/status: %w", pid, err)
	}
	for _, line := range strings.Split(string(status), "\n") {
		var kb float64
		if _, err := fmt.Sscanf(line, "VmHWM: %f kB", &kb); err == nil {
			s.PeakRSSMB = kb / 1024
		}
	}
	return s, nil
}

// ferryEnv is the environment every Ferry process of the benchmark gets:
// its secrets are the stack's (.local, or wherever the password file is)
// and those of private PostgreSQL servers, in temporary directories.
func ferryEnv(c *config) []string {
	return []string{"FERRY_SECRET_DIRS=" + filepath.Join(c.repoRoot, ".local") + "," + os.TempDir() + "," + filepath.Dir(c.pgPasswordFile)}
}
