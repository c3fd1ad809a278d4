package main

import (
	"context"
	"fmt"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"google.golang.org/grpc"

	taskv1 "github.com/ferry-cdc/ferry/gen/ferry/task/v1"
	"github.com/ferry-cdc/ferry/platform/grpccodec"
)

// dlvRun is one run of the delivery scenario: every format and codec's
// throughput beside its baseline, then the paced latency per format, all
// against one delivery process started for the run.
type dlvRun struct {
	Run        int             `json:"run"`
	Throughput []dlvThroughput `json:"throughput"`
	Latency    []dlvLatency    `json:"latency"`
	PeakRSSMB  float64         `json:"delivery_peak_rss_mb"`
}

// runDeliveryScenario runs the delivery scenario c.runs times, stopping at
// the first failure: a figure for an incomplete delivery means nothing.
func runDeliveryScenario(ctx context.Context, e *benchEnv, rep *dlvReport) error {
	log.Printf("delivery: generating %d rows and encoding them for the baselines", e.c.dlvRows)
	data, err := prepareDelivery(e.c)
	if err != nil {
		return err
	}
	for run := 1; run <= e.c.runs; run++ {
		r, err := runDeliveryOnce(ctx, e, data, run)
		if err != nil {
			return fmt.Errorf("delivery run %d: %w", run, err)
		}
		rep.Runs = append(rep.Runs, r)
	}
	return nil
}

// runDeliveryOnce starts a fresh delivery process (so that its peak RSS is
// this run's) and measures every format and codec against it. With
// -delivery-cpuprofile the last run's process writes a CPU profile.
func runDeliveryOnce(ctx context.Context, e *benchEnv, data *dlvData, run int) (r dlvRun, err error) {
	r.Run = run
	logDir, err := os.MkdirTemp("", "ferrybench-delivery-")
	if err != nil {
		return r, fmt.Errorf("creating the log folder: %w", err)
	}
	var env []string
	if e.c.dlvProfile != "" && run == e.c.runs {
		env = append(env, "FERRY_CPU_PROFILE="+e.c.dlvProfile)
	}
	f, err := startDelivery(ctx, e, logDir, env)
	if err != nil {
		return r, err
	}
	defer func() {
		f.stop() // writes the profile
		if err != nil {
			log.Printf("delivery's log is in %s", filepath.Join(logDir, "delivery.log"))
			return
		}
		_ = os.RemoveAll(logDir)
	}()
	conn, err := dialFerry(f.addrs["delivery"], grpccodec.DialOption())
	if err != nil {
		return r, fmt.Errorf("dialing delivery: %w", err)
	}
	defer func() { _ = conn.Close() }()
	m := &dlvMeasure{e: e, f: f, conn: conn, data: data, run: run}
	for _, format := range dlvFormats {
		for _, codec := range e.c.codecs {
			t, err := m.throughput(ctx, format, codec)
			if err != nil {
				return r, fmt.Errorf("%s, %s: %w", formatName(format), codec, err)
			}
			log.Printf("delivery run %d: %s %s: delivery %.0f msgs/s, baseline %.0f msgs/s (%.0f%%)",
				run, formatName(format), codec, t.Delivery.MessagesPerSecond, t.Baseline.MessagesPerSecond, 100*t.Share)
			r.Throughput = append(r.Throughput, t)
		}
	}
	for _, format := range dlvFormats {
		l, err := m.latency(ctx, format, latencyCodec)
		if err != nil {
			return r, fmt.Errorf("%s latency: %w", formatName(format), err)
		}
		log.Printf("delivery run %d: %s at %.0f rows/s: ack latency p50 %.1f ms, p99 %.1f ms",
			run, formatName(format), l.RowsPerSecond, l.P50Ms, l.P99Ms)
		r.Latency = append(r.Latency, l)
	}
	s, err := f.sample()
	if err != nil {
		return r, err
	}
	r.PeakRSSMB = s["delivery"].PeakRSSMB
	return r, nil
}

// latencyCodec is the codec of the latency measurement: Ferry's default.
const latencyCodec = "lz4"

// startDelivery starts the delivery service's binary, the one the stack
// runs, as the backlog scenario starts Ferry's processes: on a free port,
// logging to logDir.
func startDelivery(ctx context.Context, e *benchEnv, logDir string, env []string) (*ferry, error) {
	addr, err := freePort()
	if err != nil {
		return nil, err
	}
	f := &ferry{binDir: e.binDir, logDir: logDir, addrs: map[string]string{"delivery": addr},
		procs: map[string]*exec.Cmd{}, env: append(ferryEnv(e.c), env...)}
	if err := f.start(ctx, "delivery"); err != nil {
		f.stop()
		return nil, fmt.Errorf("%w (logs in %s)", err, logDir)
	}
	return f, nil
}

// dlvMeasure is what one run's measurements share.
type dlvMeasure struct {
	e    *benchEnv
	f    *ferry
	conn *grpc.ClientConn
	data *dlvData
	run  int
}

// names gives a measurement its task id and topic, unique per invocation.
func (m *dlvMeasure) names(what string, format taskv1.DataFormat, codec string) (taskID, topic string) {
	f := strings.ToLower(strings.ReplaceAll(formatName(format), " ", ""))
	taskID = fmt.Sprintf("ferrybench-dlv-%d-%d-%s-%s-%s", os.Getpid(), m.run, what, f, codec)
	return taskID, strings.ReplaceAll(taskID, "-", "_")
}

// withTopics creates fresh one-partition topics for fn and deletes them
// afterwards whatever happened, so the broker's disk does not fill up.
func (m *dlvMeasure) withTopics(ctx context.Context, fn func() error, topics ...string) error {
	defer func() {
		if err := deleteTopics(context.WithoutCancel(ctx), m.e.admin, topics...); err != nil {
			log.Printf("cleanup: %v", err)
		}
	}()
	for _, t := range topics {
		if err := createTopic(ctx, m.e.admin, t); err != nil {
			return err
		}
	}
	return fn()
}
