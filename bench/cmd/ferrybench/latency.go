package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"github.com/jackc/pgx/v5"
)

// The latency scenario's table, slot and publication names.
const (
	latencyTable   = "bench_latency"
	latencyDbzSlot = "bench_latency_dbz_slot"
	latencyDbzPub  = "bench_latency_dbz_pub"
	// latencyWriters is how many connections share the paced writes: one
	// transaction commits in a few milliseconds (synchronous commit, as an
	// application's would), so one connection alone could not keep 100 a
	// second on a busy machine.
	latencyWriters = 4
)

// latencyCreateSQL: written_us is the writer's clock when the row was
// written (clock_timestamp(), microseconds since the epoch), a moment
// before its transaction commits.
const latencyCreateSQL = `CREATE TABLE public.bench_latency (
	id bigint PRIMARY KEY, written_us bigint NOT NULL, note text)`

// latencyInsertSQL writes one transaction's rows $1..$2 (autocommit: the
// statement's end is the commit).
const latencyInsertSQL = `INSERT INTO public.bench_latency
	SELECT g, (extract(epoch FROM clock_timestamp()) * 1000000)::bigint, 'row ' || g || ' ' || md5(g::text)
	FROM generate_series($1::bigint, $2::bigint) g`

// pacedWrite is what a paced write did: rows 1..rows, the first warm of them
// not counted.
type pacedWrite struct {
	rows, warm int
	// held is the measured rows' rate: rows after the warm-up over the time
	// from the first due transaction after it to the last commit.
	held float64
}

// writePaced inserts rate rows/s, as 100 transactions a second each due at
// its tick, over several connections, for warmup+measure. A transaction
// that cannot start on time starts late (its rows carry the time they were
// written, so the lag shows in the rate held, not in the latency).
func writePaced(ctx context.Context, dsn string, rate int, warmup, measure time.Duration) (pacedWrite, error) {
	perTxn := max(1, rate/pacedBatchesPerSecond)
	warmTxns := int(warmup / pacedInterval)
	txns := warmTxns + int(measure/pacedInterval)
	p := pacedWrite{rows: txns * perTxn, warm: warmTxns * perTxn}
	conns := make([]*pgx.Conn, latencyWriters)
	for i := range conns {
		c, err := connect(ctx, dsn)
		if err != nil {
			return p, err
		}
		defer func() { _ = c.Close(context.WithoutCancel(ctx)) }()
		conns[i] = c
	}
	jobs := make(chan int, txns)
	errs := make(chan error, len(conns))
	var mu sync.Mutex
	var lastCommit time.Time
	var wg sync.WaitGroup
	for _, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := range jobs {
				lo := k*perTxn + 1
				if _, err := c.Exec(ctx, latencyInsertSQL, lo, lo+perTxn-1); err != nil {
					errs <- fmt.Errorf("inserting rows %d..%d into %s: %w", lo, lo+perTxn-1, latencyTable, err)
					return
				}
				mu.Lock()
				if now := time.Now(); now.After(lastCommit) {
					lastCommit = now
				}
				mu.Unlock()
			}
		}()
	}
	t0 := time.Now()
	tick := time.NewTicker(pacedInterval)
	for k := 0; k < txns; k++ {
		if k > 0 {
			select {
			case <-tick.C:
			case <-ctx.Done():
			}
		}
		jobs <- k
	}
	tick.Stop()
	close(jobs)
	wg.Wait()
	close(errs)
	if err := errors.Join(<-errs, ctx.Err()); err != nil {
		return p, err
	}
	measuredFrom := t0.Add(time.Duration(warmTxns) * pacedInterval)
	p.held = float64(p.rows-p.warm) / lastCommit.Sub(measuredFrom).Seconds()
	return p, nil
}

// latencyFigures are one side's latencies, from the row's written_us to
// the broker's LogAppendTime of its message, over the measured rows.
type latencyFigures struct {
	Rows      int     `json:"rows"`
	RateHeld  float64 `json:"rows_per_second_held"`
	P50ms     float64 `json:"p50_ms"`
	P99ms     float64 `json:"p99_ms"`
	MaxMs     float64 `json:"max_ms"`
	MessagesN int     `json:"messages"`
}

// rowStamp reads a message's row id and written_us; a format has one.
type rowStamp func(value []byte) (id, writtenUS int64, err error)

// readLatencies reads the topic from offset skip to end and computes the
// latency of every row after the warm-up. Every row 1..p.rows must be there
// exactly once, and every message must carry the broker's append time.
func readLatencies(ctx context.Context, bootstrap, topic string, skip, end int64, p pacedWrite, stamp rowStamp) (latencyFigures, error) {
	f := latencyFigures{Rows: p.rows - p.warm, RateHeld: p.held}
	c, err := kafka.NewConsumer(&kafka.ConfigMap{"bootstrap.servers": bootstrap, "group.id": "ferrybench-latency",
		"enable.auto.commit": false, "auto.offset.reset": "earliest"})
	if err != nil {
		return f, fmt.Errorf("creating the latency consumer: %w", err)
	}
	defer func() { _ = c.Close() }()
	if err := assignAll(c, topic, skip); err != nil {
		return f, err
	}
	seen := make([]bool, p.rows+1)
	lat := make([]time.Duration, 0, f.Rows)
	deadline := time.Now().Add(5 * time.Minute)
	for int64(f.MessagesN) < end-skip {
		if err := ctx.Err(); err != nil {
			return f, fmt.Errorf("reading %s: %w", topic, err)
		}
		if time.Now().After(deadline) {
			return f, fmt.Errorf("reading %s: read %d of %d messages in 5 minutes", topic, f.MessagesN, end-skip)
		}
		msg, err := c.ReadMessage(500 * time.Millisecond)
		if err != nil {
			var kerr kafka.Error
			if errors.As(err, &kerr) && kerr.IsTimeout() {
				continue
			}
			return f, fmt.Errorf("reading %s: %w", topic, err)
		}
		f.MessagesN++
		if msg.TimestampType != kafka.TimestampLogAppendTime {
			return f, fmt.Errorf("%s: a message's timestamp is %s, not LogAppendTime", topic, msg.TimestampType)
		}
		id, us, err := stamp(msg.Value)
		if err != nil {
			return f, fmt.Errorf("%s offset %v: %w", topic, msg.TopicPartition.Offset, err)
		}
		if id < 1 || id > int64(p.rows) || seen[id] {
			return f, fmt.Errorf("%s offset %v: row %d unexpected or repeated", topic, msg.TopicPartition.Offset, id)
		}
		seen[id] = true
		if id > int64(p.warm) {
			lat = append(lat, time.Duration(msg.Timestamp.UnixMicro()-us)*time.Microsecond)
		}
	}
	if len(lat) != f.Rows || f.MessagesN != p.rows {
		return f, fmt.Errorf("%s holds %d messages, %d measured rows; want %d and %d", topic, f.MessagesN, len(lat), p.rows, f.Rows)
	}
	slices.Sort(lat)
	f.P50ms, f.P99ms, f.MaxMs = ms(percentile(lat, 0.50)), ms(percentile(lat, 0.99)), ms(lat[len(lat)-1])
	return f, nil
}

// canalStamp reads Canal JSON's data[0]: its values are text.
func canalStamp(value []byte) (int64, int64, error) {
	var m struct {
		Data []struct {
			ID        string `json:"id"`
			WrittenUS string `json:"written_us"`
		} `json:"data"`
	}
	if err := json.Unmarshal(value, &m); err != nil {
		return 0, 0, err
	}
	if len(m.Data) != 1 {
		return 0, 0, fmt.Errorf("a Canal JSON message with %d rows, not 1", len(m.Data))
	}
	id, err1 := strconv.ParseInt(m.Data[0].ID, 10, 64)
	us, err2 := strconv.ParseInt(m.Data[0].WrittenUS, 10, 64)
	return id, us, errors.Join(err1, err2)
}

// debeziumStamp reads a Debezium event's after image (numbers).
func debeziumStamp(value []byte) (int64, int64, error) {
	var ev struct {
		After *struct {
			ID        int64 `json:"id"`
			WrittenUS int64 `json:"written_us"`
		} `json:"after"`
	}
	if err := json.Unmarshal(value, &ev); err != nil {
		return 0, 0, err
	}
	if ev.After == nil {
		return 0, 0, errors.New("a Debezium event without after")
	}
	return ev.After.ID, ev.After.WrittenUS, nil
}

// createAppendTimeTopic creates a one-partition topic whose broker stamps
// every message with the time it appended it (LogAppendTime), whatever
// timestamp the producer set.
func createAppendTimeTopic(ctx context.Context, admin *kafka.AdminClient, topic string) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	res, err := admin.CreateTopics(ctx, []kafka.TopicSpecification{{Topic: topic, NumPartitions: 1,
		Config: map[string]string{"message.timestamp.type": "LogAppendTime"}}}, kafka.SetAdminOperationTimeout(20*time.Second))
	if err != nil {
		return fmt.Errorf("creating topic %s: %w", topic, err)
	}
	if c := res[0].Error.Code(); c != kafka.ErrNoError {
		return fmt.Errorf("creating topic %s: %w", topic, res[0].Error)
	}
	return nil
}

func recreateLatencyTable(ctx context.Context, conn *pgx.Conn) error {
	if err := dropNamedTable(ctx, conn, latencyTable); err != nil {
		return err
	}
	if _, err := conn.Exec(ctx, latencyCreateSQL); err != nil {
		return fmt.Errorf("creating %s: %w", latencyTable, err)
	}
	return nil
}
