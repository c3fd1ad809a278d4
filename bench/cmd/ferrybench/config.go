package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	envconfig "github.com/ferry-cdc/ferry/platform/config"
)

// config is everything one invocation needs. Connection settings come from
// the environment that `deploy/local/stack.sh env` prints, with the same
// defaults the e2e suite uses, so the harness runs against the local stack
// without extra setup.
type config struct {
	rows         int
	runs         int
	txnRows      int
	outDir       string
	repoRoot     string
	ferryTimeout time.Duration
	debezium     bool // run the Debezium baseline in the backlog scenario
	// scenarios to run: "backlog", "delivery", "bigtxn", "decode".
	scenarios map[string]bool
	// Formats and codecs of the backlog and bigtxn scenarios (combos.go).
	backlogCombos, bigCombos []combo

	// The bigtxn and decode scenarios (bench/README.md).
	bigRows     int
	bigDebezium bool
	decodeRows  int
	// The streamproto scenario (bench/README.md): a private PostgreSQL
	// spMajor, spRows rows per shape.
	spMajor, spRows int

	// The delivery scenario (bench/README.md).
	dlvRows       int
	dlvBatch      int
	codecs        []string
	latencyRate   int
	latencyFor    time.Duration
	latencyWarmup time.Duration
	dlvProfile    string

	// The mixed and latency scenarios (bench/README.md); latency uses
	// latencyRate, latencyFor and latencyWarmup too.
	mixedN        int
	mixedTxnRows  int
	mixedPrefill  int
	cpuProfileDir string
	// The full sync scenario (bench/README.md).
	fsRows, fsTables, fsTableRows, fsRuns int
	fsDbzMaxRows                          int
	// The tables10k scenario (bench/README.md).
	t10kTables, t10kRows, t10kRuns int
	t10kSelect                     string // "schema" or "tables"

	pgHost, pgDatabase string
	pgPort             int
	pgSuperDSN         string // postgres superuser: baseline slot, publication, cleanup
	pgPasswordFile     string // the "ferry" role's password, passed to Ferry as a file reference
	pgBin              string
	kafkaBootstrap     string
	temporalAddress    string
}

// allScenarios are the scenarios -scenarios knows, in the order they run;
// all of them run by default.
func allScenarios() []string {
	return []string{"backlog", "delivery", "mixed", "latency", "fullsync", "bigtxn", "decode", "streamproto", "tables10k"}
}

func parseConfig(args []string) (*config, error) {
	root, err := findRepoRoot()
	if err != nil {
		return nil, err
	}
	c := &config{repoRoot: root}
	fs := flag.NewFlagSet("ferrybench", flag.ContinueOnError)
	fs.IntVar(&c.rows, "n", 500_000, "rows in the backlog")
	fs.IntVar(&c.runs, "runs", 3, "runs; figures are medians over runs")
	fs.IntVar(&c.txnRows, "txn-rows", 1_000, "rows per source transaction")
	fs.StringVar(&c.outDir, "out", filepath.Join(root, "bench", "results"), "directory for latest.md and latest.json")
	fs.DurationVar(&c.ferryTimeout, "ferry-timeout", 10*time.Minute, "how long Ferry (or Debezium) may take to deliver one backlog")
	fs.BoolVar(&c.debezium, "debezium", true, "backlog, mixed, latency and fullsync scenarios: run the Debezium baseline (Kafka Connect standalone; fetches its jars with Maven on first use)")
	scenarios := fs.String("scenarios", strings.Join(allScenarios(), ","), "comma-separated scenarios to run: "+strings.Join(allScenarios(), ", "))
	backlogCombos := fs.String("backlog-combos", "canal/lz4,canal/zstd,avro/lz4,avro/zstd,debezium/lz4", "backlog scenario: comma-separated format/codec pairs Ferry runs with (formats canal, avro, debezium); Debezium runs once per run, against the first")
	bigCombos := fs.String("bigtxn-combos", "canal/lz4", "bigtxn scenario: comma-separated format/codec pairs, as -backlog-combos")
	fs.IntVar(&c.bigRows, "bigtxn-n", 1_000_000, "bigtxn and decode scenarios: rows in the one big transaction")
	fs.BoolVar(&c.bigDebezium, "bigtxn-debezium", true, "bigtxn scenario: run the Debezium baseline too (when -debezium)")
	fs.IntVar(&c.spMajor, "streamproto-pg", 17, "streamproto scenario: the PostgreSQL major (16 or later) of its private server")
	fs.IntVar(&c.spRows, "streamproto-n", 1_000_000, "streamproto scenario: rows written per shape")
	fs.IntVar(&c.decodeRows, "decode-n", 500_000, "decode scenario: rows of the backlog shape, in -txn-rows transactions")
	fs.IntVar(&c.dlvRows, "delivery-n", 200_000, "delivery scenario: rows per throughput measurement")
	fs.IntVar(&c.dlvBatch, "delivery-batch", 1_000, "delivery scenario: rows per change batch in the throughput measurement")
	codecList := fs.String("codecs", "lz4,zstd,gzip,snappy", "delivery scenario: comma-separated codecs to measure")
	fs.IntVar(&c.latencyRate, "latency-rate", 10_000, "delivery scenario: rows per second of the latency measurement")
	fs.DurationVar(&c.latencyFor, "latency-for", 12*time.Second, "delivery scenario: how long latency is measured, after the warm-up")
	fs.DurationVar(&c.latencyWarmup, "latency-warmup", 2*time.Second, "delivery scenario: paced warm-up left out of the latency figures")
	fs.StringVar(&c.dlvProfile, "delivery-cpuprofile", "", "delivery scenario: write a CPU profile of the last run's delivery process here")
	fs.IntVar(&c.mixedN, "mixed-n", 300_000, "mixed scenario: changes in the backlog (70% INSERT, 20% UPDATE, 10% DELETE)")
	fs.IntVar(&c.mixedTxnRows, "mixed-txn-rows", 10, "mixed scenario: changes per source transaction")
	fs.IntVar(&c.mixedPrefill, "mixed-prefill", 100_000, "mixed scenario: rows in the table before the backlog, for UPDATEs and DELETEs to change")
	fs.StringVar(&c.cpuProfileDir, "cpuprofile", "", "mixed scenario: the last run's capture and delivery write CPU profiles (capture.pprof, delivery.pprof) into this folder")
	fs.IntVar(&c.fsRows, "fullsync-rows", 10_000_000, "fullsync scenario: rows of the one big table")
	fs.IntVar(&c.fsTables, "fullsync-tables", 100, "fullsync scenario: number of small tables (0: leave that shape out)")
	fs.IntVar(&c.fsTableRows, "fullsync-table-rows", 100_000, "fullsync scenario: rows of each small table")
	fs.IntVar(&c.fsRuns, "fullsync-runs", 1, "fullsync scenario: runs per shape (one run of the default sizes takes 10-15 minutes on 2 cores)")
	fs.IntVar(&c.fsDbzMaxRows, "fullsync-debezium-max-rows", 1_000_000, "fullsync scenario: cap on the rows Debezium snapshots per shape (0: no cap); the report says when it applied")
	fs.IntVar(&c.t10kTables, "t10k-tables", 10_000, "tables10k scenario: tables in the task")
	fs.IntVar(&c.t10kRows, "t10k-rows", 3, "tables10k scenario: rows per table")
	fs.IntVar(&c.t10kRuns, "t10k-runs", 1, "tables10k scenario: runs (tasks) over the same tables")
	fs.StringVar(&c.t10kSelect, "t10k-select", "schema", "tables10k scenario: select the schema whole (schema) or every table by name (tables)")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if c.rows <= 0 || c.runs <= 0 || c.txnRows <= 0 {
		return nil, fmt.Errorf("-n, -runs and -txn-rows must be positive")
	}
	if c.mixedN <= 0 || c.mixedTxnRows <= 0 || c.mixedPrefill <= 0 {
		return nil, fmt.Errorf("-mixed-n, -mixed-txn-rows and -mixed-prefill must be positive")
	}
	if c.cpuProfileDir != "" {
		if err := os.MkdirAll(c.cpuProfileDir, 0o755); err != nil {
			return nil, fmt.Errorf("-cpuprofile: creating %s: %w", c.cpuProfileDir, err)
		}
		if c.cpuProfileDir, err = filepath.Abs(c.cpuProfileDir); err != nil {
			return nil, fmt.Errorf("-cpuprofile: %w", err)
		}
	}
	if c.fsRows <= 0 || c.fsRuns <= 0 || c.fsTables < 0 || c.fsTableRows < 0 || c.fsDbzMaxRows < 0 {
		return nil, fmt.Errorf("-fullsync-rows and -fullsync-runs must be positive, -fullsync-tables, -fullsync-table-rows and -fullsync-debezium-max-rows not negative")
	}
	if err := c.parseDelivery(*scenarios, *codecList); err != nil {
		return nil, err
	}
	if err := c.parseBigTxn(*backlogCombos, *bigCombos); err != nil {
		return nil, err
	}
	if c.spMajor < 16 || c.spRows < 4 {
		return nil, fmt.Errorf("-streamproto-pg must be 16 or later (protocol 4 is new in 16) and -streamproto-n at least 4")
	}
	c.pgHost = envconfig.Env("FERRY_PG_HOST", "127.0.0.1")
	c.pgDatabase = envconfig.Env("FERRY_PG_DATABASE", "ferry")
	if _, err := fmt.Sscan(envconfig.Env("FERRY_PG_PORT", "55432"), &c.pgPort); err != nil {
		return nil, fmt.Errorf("FERRY_PG_PORT: %w", err)
	}
	c.pgSuperDSN = envconfig.Env("FERRY_PG_DSN", fmt.Sprintf("postgres://postgres:postgres@%s:%d/%s?sslmode=disable", c.pgHost, c.pgPort, c.pgDatabase))
	c.pgPasswordFile = envconfig.Env("FERRY_PG_PASSWORD_FILE", filepath.Join(root, ".local", "secrets", "pg-password"))
	c.pgBin = envconfig.Env("FERRY_PG_BIN", "/usr/lib/postgresql/15/bin")
	c.kafkaBootstrap = envconfig.Env("FERRY_KAFKA_BOOTSTRAP", "127.0.0.1:59092")
	c.temporalAddress = envconfig.Env("FERRY_TEMPORAL_ADDRESS", "127.0.0.1:7233")
	return c, nil
}

// parseDelivery checks the scenario list and the delivery scenario's flags.
func (c *config) parseDelivery(scenarios, codecList string) error {
	c.scenarios = map[string]bool{}
	for _, s := range strings.Split(scenarios, ",") {
		if s = strings.TrimSpace(s); !slices.Contains(allScenarios(), s) {
			return fmt.Errorf("-scenarios: unknown scenario %q; use %s or a comma-separated list", s, strings.Join(allScenarios(), ", "))
		}
		c.scenarios[s] = true
	}
	for _, name := range strings.Split(codecList, ",") {
		name = strings.TrimSpace(name)
		if _, ok := codecs[name]; !ok {
			return fmt.Errorf("-codecs: unknown codec %q; use lz4, zstd, gzip or snappy", name)
		}
		c.codecs = append(c.codecs, name)
	}
	if c.dlvRows <= 0 || c.dlvBatch <= 0 || c.latencyRate < pacedBatchesPerSecond {
		return fmt.Errorf("-delivery-n and -delivery-batch must be positive and -latency-rate at least %d", pacedBatchesPerSecond)
	}
	if c.t10kTables <= 0 || c.t10kTables > 99_999 || c.t10kRows <= 0 || c.t10kRuns <= 0 || (c.t10kSelect != "schema" && c.t10kSelect != "tables") {
		return fmt.Errorf("-t10k-tables must be 1..99999, -t10k-rows and -t10k-runs positive, -t10k-select schema or tables")
	}
	if c.latencyFor < pacedInterval || c.latencyWarmup < 0 {
		return fmt.Errorf("-latency-for must be at least %s and -latency-warmup not negative", pacedInterval)
	}
	return nil
}

// ferryDSN connects as the non-superuser role Ferry's task uses, so that the
// table is owned by the role that creates the task's publication.
func (c *config) ferryDSN() (string, error) {
	pw, err := os.ReadFile(c.pgPasswordFile)
	if err != nil {
		return "", fmt.Errorf("reading the PostgreSQL password (is the stack up? `make up`): %w", err)
	}
	return fmt.Sprintf("postgres://ferry:%s@%s:%d/%s?sslmode=disable",
		strings.TrimRight(string(pw), "\r\n"), c.pgHost, c.pgPort, c.pgDatabase), nil
}

// findRepoRoot walks up from the working directory to go.work, so that
// `go run ./bench/cmd/ferrybench` works from the repository root and
// `go run .` works from the command's own folder.
func findRepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("working directory: %w", err)
	}
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.work")); err == nil {
			return d, nil
		}
		if d == filepath.Dir(d) {
			return "", fmt.Errorf("no go.work above %s: run from the Ferry checkout", dir)
		}
	}
}

// machine describes where the figures were taken: ratios travel between
// machines, absolute numbers do not.
type machine struct {
	CPUs     int    `json:"cpus"`
	MemoryMB int    `json:"memory_mb"`
	CPUModel string `json:"cpu_model"`
	GoVer    string `json:"go"`
}

// line is the machine as every report's header lists it.
func (m machine) line() string {
	return fmt.Sprintf("- Machine: %d CPUs, %d MiB memory, %s (%s)\n", m.CPUs, m.MemoryMB, m.CPUModel, m.GoVer)
}

func describeMachine() machine {
	m := machine{CPUs: runtime.NumCPU(), GoVer: runtime.Version(), CPUModel: "unknown"}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPUModel = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		var kb int
		for _, line := range strings.Split(string(b), "\n") {
			if _, err := fmt.Sscanf(line, "MemTotal: %d kB", &kb); err == nil {
				m.MemoryMB = kb / 1024
				break
			}
		}
	}
	return m
}
