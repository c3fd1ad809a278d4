package main

import (
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// Names of the Debezium baseline's own slot and publication; they never
// clash with Ferry's ("ferry_…") or the source limit's.
const (
	dbzSlot      = "bench_dbz_slot"
	dbzPub       = "bench_dbz_pub"
	dbzConnector = "ferrybench-debezium"
	// dbzStartTimeout bounds the JVM's and the connector's start, and its
	// warm-up, on a busy two-core machine.
	dbzStartTimeout = 3 * time.Minute
	// dbzWarmupRows are streamed before the clock, so that the JVM has
	// compiled Debezium's hot paths: cold, its first seconds run at a
	// fraction of its speed, which a long-running connector never sees.
	dbzWarmupRows = 20_000
)

// debeziumResult is one run of the Debezium baseline, timed as Ferry is.
type debeziumResult struct {
	StartSeconds          float64    `json:"start_seconds"` // JVM start to the slot streaming; not timed
	WarmupRows            int        `json:"warmup_rows"`   // streamed before the clock, ids above N
	WriteSeconds          float64    `json:"write_seconds"`
	ToKafkaSeconds        float64    `json:"to_kafka_seconds"`
	ToConfirmedSeconds    float64    `json:"to_confirmed_seconds"`
	ToStreamingSeconds    float64    `json:"to_streaming_seconds"` // resume to the slot active
	RowsPerSecToKafka     float64    `json:"rows_per_second_to_kafka"`
	RowsPerSecToConfirmed float64    `json:"rows_per_second_to_confirmed"`
	MBPerSecToKafka       float64    `json:"mb_per_second_to_kafka"`
	Topic                 topicAudit `json:"topic"`
	Process               procUsage  `json:"process"` // the Kafka Connect JVM
}

// measureDebezium runs the Debezium PostgreSQL connector in a fresh Kafka
// Connect standalone worker and times its catch-up as Ferry's is: once its
// slot streams and a warm-up went through, the connector is stopped (its
// task closes the replication connection, the slot goes inactive), the
// backlog is written, and the clock starts when the connector is resumed.
func measureDebezium(ctx context.Context, e *benchEnv, w workload, run int) (res debeziumResult, err error) {
	prefix := fmt.Sprintf("ferrybench_dbz_%d_%d", os.Getpid(), run)
	topic := prefix + ".public." + w.table
	heartbeats := "__debezium-heartbeat." + prefix
	dir, err := os.MkdirTemp("", "ferrybench-debezium-")
	if err != nil {
		return res, fmt.Errorf("creating the Kafka Connect folder: %w", err)
	}
	k, err := e.startDebezium(ctx, w, dir, prefix, topic, heartbeats)
	defer e.cleanupDebezium(ctx, k, dbzLeftovers{slot: w.dbzSlot, pub: w.dbzPub, dir: dir, topics: []string{topic, heartbeats},
		dropTable: func(ctx context.Context) error { return dropTable(ctx, e.owner, w.table) }}, &err)
	if err != nil {
		return res, err
	}
	started := time.Now()
	if err = k.waitSlot(ctx, e.super, w.dbzSlot, true, dbzStartTimeout); err != nil {
		return res, err
	}
	res.StartSeconds = time.Since(started).Seconds()
	warm := min(dbzWarmupRows, w.rows)
	res.WarmupRows = warm
	if err = k.warmUp(ctx, e, w, topic, warm); err != nil {
		return res, err
	}
	if err = k.put(ctx, "stop"); err != nil {
		return res, err
	}
	if err = k.waitSlot(ctx, e.super, w.dbzSlot, false, time.Minute); err != nil {
		return res, err
	}
	b, err := writeBacklog(ctx, e.owner, w)
	if err != nil {
		return res, err
	}
	res.WriteSeconds = b.took.Seconds()
	return k.timeCatchUp(ctx, e, w, res, topic, warm, b)
}

// warmUp streams rows N+1..N+warm (ids the audit ignores) through the
// connector and waits until they are in Kafka and confirmed. Stopped after
// that, the connector resumes from committed offsets, as a restarted one
// does.
func (k *connectWorker) warmUp(ctx context.Context, e *benchEnv, w workload, topic string, warm int) error {
	b, err := writeRows(ctx, e.owner, w.table, w.rows+1, w.rows+warm, w.txnRows)
	if err != nil {
		return err
	}
	confirmed := func(lsn uint64) bool { return lsn > b.lastTxn }
	if _, err := watchDrain(ctx, e.super, e.admin, topic, w.dbzSlot, warm, confirmed, time.Now(), dbzStartTimeout); err != nil {
		return fmt.Errorf("warming Debezium up: %w; %s", err, k.status(ctx))
	}
	return nil
}

// timeCatchUp resumes the stopped connector and times it to the two ends
// Ferry is timed to: the topic holding N messages, and the slot confirmed
// past the backlog. Debezium confirms commit positions only (the end of a
// transaction's commit record), never a keepalive's, so "past the backlog"
// is a position beyond the start of the last transaction: its commit. Other
// WAL written after that commit may put the write position b.end out of
// Debezium's reach for good, while Ferry does confirm keepalive positions.
func (k *connectWorker) timeCatchUp(ctx context.Context, e *benchEnv, w workload, res debeziumResult, topic string, warm int, b backlog) (debeziumResult, error) {
	pid := k.cmd.Process.Pid
	before, err := readProc(pid)
	if err != nil {
		return res, fmt.Errorf("sampling Kafka Connect: %w", err)
	}
	t0 := time.Now()
	if err := k.put(ctx, "resume"); err != nil {
		return res, err
	}
	confirmed := func(lsn uint64) bool { return lsn > b.lastTxn }
	d, err := watchDrain(ctx, e.super, e.admin, topic, w.dbzSlot, warm+w.rows, confirmed, t0, e.c.ferryTimeout)
	if err != nil {
		return res, fmt.Errorf("%w; %s", err, k.status(ctx))
	}
	after, err := readProc(pid)
	if err != nil {
		return res, fmt.Errorf("sampling Kafka Connect: %w", err)
	}
	cpu := after.CPUSeconds - before.CPUSeconds
	res.Process = procUsage{CPUSeconds: cpu, CPUSecondsPerMillion: cpu * 1e6 / float64(w.rows), PeakRSSMB: after.PeakRSSMB}
	end, err := topicEnd(e.admin, topic)
	if err != nil {
		return res, err
	}
	if res.Topic, err = auditTopic(ctx, e.c.kafkaBootstrap, topic, w.rows, int64(warm), end, debeziumIDs); err != nil {
		return res, err
	}
	if res.Topic.Missing > 0 {
		return res, fmt.Errorf("%d of %d rows never reached %s", res.Topic.Missing, w.rows, topic)
	}
	res.ToKafkaSeconds, res.ToConfirmedSeconds = d.toKafka.Seconds(), d.toConfirmed.Seconds()
	res.ToStreamingSeconds = d.toStreaming.Seconds()
	res.RowsPerSecToKafka = float64(w.rows) / res.ToKafkaSeconds
	res.RowsPerSecToConfirmed = float64(w.rows) / res.ToConfirmedSeconds
	res.MBPerSecToKafka = float64(res.Topic.Bytes) / 1e6 / res.ToKafkaSeconds
	return res, nil
}

// dbzLeftovers is what one Debezium measurement may leave behind.
type dbzLeftovers struct {
	slot, pub, dir string
	topics         []string
	// dropTable drops the scenario's table; nil when the tables outlive the
	// measurement.
	dropTable func(ctx context.Context) error
}

// targetLeftovers is what a connector on t leaves behind, its table
// included.
func (e *benchEnv) targetLeftovers(t dbzTarget, dir string, topics ...string) dbzLeftovers {
	return dbzLeftovers{slot: t.slot, pub: t.pub, dir: dir, topics: topics,
		dropTable: func(ctx context.Context) error { return dropNamedTable(ctx, e.owner, t.table) }}
}

// cleanupDebezium leaves nothing behind whatever happened: no worker, slot,
// publication or topic, and no table unless the tables outlive the
// measurement. After a failure the worker's folder (log, properties,
// offsets) is kept for whoever reads the error.
func (e *benchEnv) cleanupDebezium(ctx context.Context, k *connectWorker, l dbzLeftovers, failed *error) {
	ctx = context.WithoutCancel(ctx)
	k.stop()
	if err := dropSlotAndPublication(ctx, e.super, l.slot, l.pub); err != nil {
		log.Printf("cleanup: %v", err)
	}
	if l.dropTable != nil {
		if err := l.dropTable(ctx); err != nil {
			log.Printf("cleanup: %v", err)
		}
	}
	if err := deleteTopics(ctx, e.admin, l.topics...); err != nil {
		log.Printf("cleanup: %v", err)
	}
	if *failed != nil {
		log.Printf("Kafka Connect's log is in %s", filepath.Join(l.dir, "connect.log"))
		return
	}
	_ = os.RemoveAll(l.dir)
}

// startDebezium prepares what the connector expects to find (the table, a
// publication for it, its topics: the stack's broker does not create
// topics) and starts the worker.
func (e *benchEnv) startDebezium(ctx context.Context, w workload, dir, prefix string, topics ...string) (*connectWorker, error) {
	if err := recreateTable(ctx, e.owner, w.table); err != nil {
		return nil, err
	}
	return e.startDebeziumOn(ctx, dbzTarget{table: w.table, slot: w.dbzSlot, pub: w.dbzPub}, dir, prefix, topics...)
}

// dbzTarget is what one connector streams: a table that exists, through a
// slot and publication of its own, with connector settings added to (or
// overriding) the ones below.
type dbzTarget struct {
	table, slot, pub string
	extra            [][2]string
}

// startDebeziumOn is startDebezium for any table, which the caller has
// created.
func (e *benchEnv) startDebeziumOn(ctx context.Context, t dbzTarget, dir, prefix string, topics ...string) (*connectWorker, error) {
	if err := e.prepareDebezium(ctx, t.slot, t.pub, []string{t.table}, topics); err != nil {
		return nil, err
	}
	pw, err := os.ReadFile(e.c.pgPasswordFile)
	if err != nil {
		return nil, fmt.Errorf("reading the PostgreSQL password (is the stack up? `make up`): %w", err)
	}
	connector := [][2]string{
		{"name", dbzConnector},
		{"connector.class", "io.debezium.connector.postgresql.PostgresConnector"},
		{"tasks.max", "1"},
		// The role Ferry's task uses.
		{"database.hostname", e.c.pgHost}, {"database.port", strconv.Itoa(e.c.pgPort)},
		{"database.user", "ferry"}, {"database.password", strings.TrimRight(string(pw), "\r\n")},
		{"database.dbname", e.c.pgDatabase},
		{"topic.prefix", prefix},
		{"plugin.name", "pgoutput"},
		{"slot.name", t.slot},
		{"publication.name", t.pub},
		{"publication.autocreate.mode", "disabled"},
		{"table.include.list", "public." + t.table},
		// Stream only: the table is empty when the connector first starts.
		{"snapshot.mode", "no_data"},
		// Debezium confirms the commit position carried by the offset of the
		// last record it sent, and a transaction's own commit carries no
		// record: without heartbeats the backlog's last transaction stays
		// unconfirmed until the next change. Heartbeats (Debezium's own
		// remedy, to a topic of their own) carry it, at Ferry's cadence.
		{"heartbeat.interval.ms", "100"},
		// Logical decoding messages (pg_logical_emit_message, e.g. Ferry's
		// heartbeats from another task on the same server) are not the
		// table's changes, and would go to a topic of their own.
		{"message.prefix.exclude.list", ".*"},
	}
	return startConnect(e.dbzLibs, dir, connectWorkerConf(e.c, dir), append(connector, t.extra...))
}

// waitSlot waits until Debezium's slot exists and its active flag is want,
// and fails early, with the task's trace, when the worker dies.
func (k *connectWorker) waitSlot(ctx context.Context, conn *pgx.Conn, slot string, want bool, timeout time.Duration) error {
	return poll(ctx, timeout, 50*time.Millisecond, fmt.Sprintf("slot %s active=%v", slot, want), func() (bool, string, error) {
		select {
		case <-k.exited:
			return false, "", fmt.Errorf("kafka Connect exited; its log ends: %s", k.logTail())
		default:
		}
		s, err := readSlot(ctx, conn, slot)
		if err != nil {
			return false, "", err
		}
		// While CREATE_REPLICATION_SLOT waits for running transactions to
		// end, the slot is already active but has no confirmed position:
		// what commits before it has one is never decoded.
		if s.exists && s.active == want && (!want || s.confirmed > 0) {
			return true, "", nil
		}
		return false, fmt.Sprintf("slot exists %v active %v; %s", s.exists, s.active, k.status(ctx)), nil
	})
}

// prepareDebezium gives a connector a fresh publication for tables and the
// topics it writes (the stack's broker does not create topics).
func (e *benchEnv) prepareDebezium(ctx context.Context, slot, pub string, tables, topics []string) error {
	if err := dropSlotAndPublication(ctx, e.super, slot, pub); err != nil {
		return err
	}
	if _, err := e.super.Exec(ctx, fmt.Sprintf("CREATE PUBLICATION %s FOR TABLE %s", pub, qualified(tables))); err != nil {
		return fmt.Errorf("creating publication %s: %w", pub, err)
	}
	for _, t := range topics {
		if err := createTopic(ctx, e.admin, t); err != nil {
			return err
		}
	}
	return nil
}

// connectWorkerConf is every Debezium scenario's Kafka Connect worker
// settings, its offsets kept in dir.
func connectWorkerConf(c *config, dir string) [][2]string {
	return [][2]string{
		{"bootstrap.servers", c.kafkaBootstrap},
		{"key.converter", "org.apache.kafka.connect.json.JsonConverter"},
		{"key.converter.schemas.enable", "false"},
		{"value.converter", "org.apache.kafka.connect.json.JsonConverter"},
		{"value.converter.schemas.enable", "false"},
		{"offset.storage.file.filename", filepath.Join(dir, "offsets")},
		// Debezium confirms a slot position only when Connect commits
		// offsets, every 60 s by default; 100 ms is how often Ferry's
		// capture reports progress, so "confirmed" means the same for both.
		{"offset.flush.interval.ms", "100"},
		// Ferry's producer settings (services/delivery/kafkaconf.go, as the
		// Kafka limit uses them) in place of Connect's defaults (16 KB
		// batches, one request in flight, no compression): the comparison
		// is of the two pipelines, not of their producers' defaults.
		{"producer.compression.type", "lz4"},
		{"producer.acks", "all"},
		{"producer.enable.idempotence", "true"},
		{"producer.max.in.flight.requests.per.connection", "5"},
		{"producer.linger.ms", "5"},
		{"producer.batch.size", "1000000"},
	}
}
