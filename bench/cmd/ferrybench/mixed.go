package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/jackc/pgx/v5"
)

// The mixed scenario's table, and the names of its slots and publications:
// none clash with the backlog scenario's, so that runs of both (or of other
// invocations on the same server) never touch each other's objects.
const (
	mixedTable   = "bench_mixed"
	mixedSrcSlot = "bench_mixed_src_slot"
	mixedSrcPub  = "bench_mixed_src_pub"
	mixedDbzSlot = "bench_mixed_dbz_slot"
	mixedDbzPub  = "bench_mixed_dbz_pub"
	// mixedSeed makes the workload the same in every run and on every
	// machine.
	mixedSeed = 20260105
	// mixedWriteTxnsPerBatch is how many transactions go to PostgreSQL in one
	// round trip while writing the backlog (pipelined, each its own BEGIN …
	// COMMIT): the writer is not timed, it only has to be quick.
	mixedWriteTxnsPerBatch = 100
)

// mixedCreateSQL is the table with a primary key and REPLICA IDENTITY
// DEFAULT, the common case: an UPDATE carries the new row only, a DELETE the
// key only.
const mixedCreateSQL = `CREATE TABLE public.bench_mixed (
	id bigint PRIMARY KEY, customer text, amount numeric(12,2), placed_at timestamptz, note text, version bigint NOT NULL)`

// Row values are computed in SQL from the id (and, for an UPDATE, the
// change's sequence number) alone, as the backlog scenario's are.
const (
	mixedPrefillSQL = `INSERT INTO public.bench_mixed
	SELECT g, 'customer-' || lpad(((g * 7919) % 100003)::text, 6, '0'), ((g * 104729) % 10000000) / 100.0,
	       timestamptz '2026-01-01 00:00:00+00' + (g * 1237 % 31536000) * interval '1 second',
	       'order ' || g || ' ' || md5(g::text), 0
	FROM generate_series($1::bigint, $2::bigint) g`
	mixedInsertSQL = `INSERT INTO public.bench_mixed VALUES ($1::bigint,
	'customer-' || lpad((($1::bigint * 7919) % 100003)::text, 6, '0'), (($1::bigint * 104729) % 10000000) / 100.0,
	timestamptz '2026-01-01 00:00:00+00' + ($1::bigint * 1237 % 31536000) * interval '1 second',
	'order ' || $1::bigint || ' ' || md5($1::text), 0)`
	mixedUpdateSQL = `UPDATE public.bench_mixed SET amount = (($1::bigint * 104729 + $2::bigint * 7919) % 10000000) / 100.0,
	note = 'order ' || $1::bigint || ' v' || $2::bigint || ' ' || md5(($1::bigint * 31 + $2::bigint)::text), version = $2::bigint
	WHERE id = $1::bigint`
	mixedDeleteSQL = `DELETE FROM public.bench_mixed WHERE id = $1::bigint`
)

// Kinds of change, as Canal JSON names them.
const (
	opInsert = "INSERT"
	opUpdate = "UPDATE"
	opDelete = "DELETE"
)

// mixOp is one change: an INSERT of a new id, or an UPDATE or DELETE of a
// row that exists when it runs.
type mixOp struct {
	kind string
	id   int64
	seq  int64 // the change's number in the workload; an UPDATE writes it
}

// mixWorkload is the whole backlog, generated once per invocation and
// written identically for the source limit, Ferry and Debezium.
type mixWorkload struct {
	prefill int // rows 1..prefill exist before the slot does
	txnRows int
	ops     []mixOp
	counts  map[string]int
}

// newMixWorkload draws n changes, 70% INSERT, 20% UPDATE and 10% DELETE,
// from a seeded generator. UPDATE and DELETE targets are drawn uniformly
// from the rows alive at that point (the prefill and earlier inserts, less
// earlier deletes), so every statement changes exactly one row.
func newMixWorkload(n, prefill, txnRows int) *mixWorkload {
	w := &mixWorkload{prefill: prefill, txnRows: txnRows, ops: make([]mixOp, 0, n), counts: map[string]int{}}
	rng := rand.New(rand.NewPCG(mixedSeed, uint64(n)))
	live := make([]int64, 0, prefill+n)
	for id := 1; id <= prefill; id++ {
		live = append(live, int64(id))
	}
	next := int64(prefill) + 1
	for i := 0; i < n; i++ {
		op := mixOp{kind: opInsert, seq: int64(i + 1)}
		switch d := rng.IntN(10); {
		case d >= 7 && len(live) > 0 && d < 9:
			op.kind, op.id = opUpdate, live[rng.IntN(len(live))]
		case d >= 9 && len(live) > 0:
			j := rng.IntN(len(live))
			op.kind, op.id = opDelete, live[j]
			live[j] = live[len(live)-1]
			live = live[:len(live)-1]
		}
		if op.kind == opInsert {
			op.id = next
			next++
			live = append(live, op.id)
		}
		w.ops = append(w.ops, op)
		w.counts[op.kind]++
	}
	return w
}

// recreateMixedTable creates the table afresh and fills it with the
// prefill rows, so that UPDATEs and DELETEs have rows to change from the
// first transaction on.
func recreateMixedTable(ctx context.Context, conn *pgx.Conn, prefill int) error {
	if err := dropNamedTable(ctx, conn, mixedTable); err != nil {
		return err
	}
	if _, err := conn.Exec(ctx, mixedCreateSQL); err != nil {
		return fmt.Errorf("creating %s: %w", mixedTable, err)
	}
	for lo := 1; lo <= prefill; lo += 50_000 {
		if _, err := conn.Exec(ctx, mixedPrefillSQL, lo, min(lo+49_999, prefill)); err != nil {
			return fmt.Errorf("filling %s: %w", mixedTable, err)
		}
	}
	return nil
}

func dropNamedTable(ctx context.Context, conn *pgx.Conn, name string) error {
	if _, err := conn.Exec(ctx, "DROP TABLE IF EXISTS public."+pgx.Identifier{name}.Sanitize()); err != nil {
		return fmt.Errorf("dropping %s: %w", name, err)
	}
	return nil
}

// write runs the workload in transactions of txnRows changes, one statement
// per change, many transactions per round trip. Commits are asynchronous
// (synchronous_commit off, for this session only) except the last: the
// writer is not timed, the WAL is the same, and the last commit's flush
// makes all of it durable and visible to logical decoding before any clock
// starts.
func (w *mixWorkload) write(ctx context.Context, dsn string) (backlog, error) {
	var b backlog
	conn, err := connect(ctx, dsn)
	if err != nil {
		return b, err
	}
	defer func() { _ = conn.Close(context.WithoutCancel(ctx)) }()
	if _, err := conn.Exec(ctx, "SET synchronous_commit = off"); err != nil {
		return b, fmt.Errorf("setting synchronous_commit: %w", err)
	}
	start := time.Now()
	// The last transaction goes alone, so that lastTxn is just before it.
	last := (len(w.ops) - 1) / w.txnRows * w.txnRows
	perBatch := w.txnRows * mixedWriteTxnsPerBatch
	for lo := 0; lo < last; lo += perBatch {
		if err := w.sendBatch(ctx, conn, lo, min(lo+perBatch, last)); err != nil {
			return b, err
		}
	}
	if b.lastTxn, err = currentLSN(ctx, conn); err != nil {
		return b, err
	}
	if err := w.sendBatch(ctx, conn, last, len(w.ops)); err != nil {
		return b, err
	}
	b.took = time.Since(start)
	b.end, err = currentLSN(ctx, conn)
	return b, err
}

// sendBatch sends changes lo..hi-1 as transactions of txnRows changes in
// one pipelined batch; the batch's last transaction commits synchronously.
func (w *mixWorkload) sendBatch(ctx context.Context, conn *pgx.Conn, lo, hi int) error {
	var batch pgx.Batch
	for t := lo; t < hi; t += w.txnRows {
		batch.Queue("BEGIN")
		end := min(t+w.txnRows, hi)
		if end == len(w.ops) {
			batch.Queue("SET LOCAL synchronous_commit = on")
		}
		for _, op := range w.ops[t:end] {
			switch op.kind {
			case opInsert:
				batch.Queue(mixedInsertSQL, op.id)
			case opUpdate:
				batch.Queue(mixedUpdateSQL, op.id, op.seq)
			case opDelete:
				batch.Queue(mixedDeleteSQL, op.id)
			}
		}
		batch.Queue("COMMIT")
	}
	res := conn.SendBatch(ctx, &batch)
	for i := 0; i < batch.Len(); i++ {
		tag, err := res.Exec()
		if err != nil {
			_ = res.Close()
			return fmt.Errorf("writing changes %d..%d of the mixed workload: %w", lo+1, hi, err)
		}
		if (tag.Insert() || tag.Update() || tag.Delete()) && tag.RowsAffected() != 1 {
			_ = res.Close()
			return fmt.Errorf("writing changes %d..%d of the mixed workload: %q changed %d rows, not 1", lo+1, hi, tag, tag.RowsAffected())
		}
	}
	if err := res.Close(); err != nil {
		return fmt.Errorf("writing changes %d..%d of the mixed workload: %w", lo+1, hi, err)
	}
	return nil
}
