package e2e

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// A chaos table is (id bigint PRIMARY KEY, ver bigint, pad text) with
// REPLICA IDENTITY FULL, so that a DELETE carries the version it removes.
// The writer gives every INSERT and UPDATE a version from one counter that
// only grows, and commits one transaction at a time, so a key's versions
// grow in commit order. A change's rank orders a key's changes: 2*ver for
// an INSERT or UPDATE (and a snapshot row), 2*ver+1 for the DELETE of
// version ver.

// chaosChange is one change the writer committed.
type chaosChange struct{ id, rank int64 }

// chaosTxn is a committed transaction and an upper bound of its commit
// LSN (the insert position read after the commit): a slot confirmed at or
// past lsn has confirmed the transaction. math.MaxUint64 when unknown.
type chaosTxn struct {
	lsn     uint64
	changes []chaosChange
}

// chaosWriter runs small INSERT, UPDATE and DELETE transactions on a
// chaos table through its own session to the server (not through the
// proxy: the faults are Ferry's, not the application's). A transaction whose
// commit failed may or may not have committed; the final comparison reads
// the table, so the writer only forgets it and reloads the live keys.
type chaosWriter struct {
	dsn, table string
	rng        *rand.Rand
	conn       *pgx.Conn
	ver, next  int64   // the next version and the next new id
	live       []int64 // ids the table holds, as far as the writer knows
	bulk       chan chan error
	stop, done chan struct{}

	mu       sync.Mutex
	txns     []chaosTxn
	failures int
}

const chaosPad = 400 // bytes of a bulk update's pad, to outgrow logical_decoding_work_mem

// startChaosWriter writes until finish; rows is the table's initial ids
// (1..rows, version 0).
func startChaosWriter(t *testing.T, dsn, table string, rows int, seed uint64) *chaosWriter {
	w := &chaosWriter{
		dsn: dsn, table: table, rng: rand.New(rand.NewPCG(seed, 0x5eed)),
		ver: 1, next: int64(rows) + 1, bulk: make(chan chan error), stop: make(chan struct{}), done: make(chan struct{}),
	}
	for id := int64(1); id <= int64(rows); id++ {
		w.live = append(w.live, id)
	}
	go w.run()
	t.Cleanup(w.finish)
	return w
}

func (w *chaosWriter) run() {
	defer close(w.done)
	pace := time.NewTicker(10 * time.Millisecond)
	defer pace.Stop()
	for {
		select {
		case <-w.stop:
			if w.conn != nil {
				_ = w.conn.Close(context.Background())
			}
			return
		case reply := <-w.bulk:
			reply <- w.attempt(w.bulkTxn)
		case <-pace.C:
			_ = w.attempt(w.smallTxn)
		}
	}
}

// attempt runs one transaction, reconnecting first if needed; a failure
// drops the session and the writer's idea of the live keys.
func (w *chaosWriter) attempt(txn func(context.Context, pgx.Tx) ([]chaosChange, []int64, []int64, error)) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := w.connect(ctx)
	if err == nil {
		err = w.commit(ctx, txn)
	}
	if err != nil {
		w.mu.Lock()
		w.failures++
		w.mu.Unlock()
		if w.conn != nil {
			_ = w.conn.Close(context.Background())
			w.conn = nil
		}
	}
	return err
}

func (w *chaosWriter) connect(ctx context.Context) error {
	if w.conn != nil {
		return nil
	}
	conn, err := pgx.Connect(ctx, w.dsn)
	if err != nil {
		return fmt.Errorf("connecting the chaos writer: %w", err)
	}
	rows, err := conn.Query(ctx, fmt.Sprintf(`SELECT id FROM public.%s ORDER BY id`, w.table))
	if err == nil {
		w.live, err = pgx.CollectRows(rows, pgx.RowTo[int64])
	}
	if err != nil {
		_ = conn.Close(ctx)
		return fmt.Errorf("reading the chaos table's keys: %w", err)
	}
	w.conn = conn
	return nil
}

// commit runs txn in a transaction, records its changes once committed and
// applies the keys it added and removed.
func (w *chaosWriter) commit(ctx context.Context, txn func(context.Context, pgx.Tx) ([]chaosChange, []int64, []int64, error)) error {
	tx, err := w.conn.Begin(ctx)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback(ctx) }()
	changes, added, removed, err := txn(ctx, tx)
	if err != nil {
		return err
	}
	if err := tx.Commit(ctx); err != nil {
		return err
	}
	lsn := uint64(math.MaxUint64)
	_ = w.conn.QueryRow(ctx, `SELECT (pg_current_wal_insert_lsn() - '0/0'::pg_lsn)::bigint`).Scan(&lsn)
	w.mu.Lock()
	w.txns = append(w.txns, chaosTxn{lsn: lsn, changes: changes})
	w.mu.Unlock()
	w.live = append(w.live, added...)
	for _, id := range removed {
		w.forget(id)
	}
	return nil
}

func (w *chaosWriter) forget(id int64) {
	for i, v := range w.live {
		if v == id {
			w.live[i] = w.live[len(w.live)-1]
			w.live = w.live[:len(w.live)-1]
			return
		}
	}
}

// smallTxn makes one to three changes: an INSERT of a new key, an UPDATE or
// a DELETE of a live one (never the same key twice in a transaction).
func (w *chaosWriter) smallTxn(ctx context.Context, tx pgx.Tx) (changes []chaosChange, added, removed []int64, err error) {
	touched := map[int64]bool{}
	for range 1 + w.rng.IntN(3) {
		op := w.rng.IntN(3)
		if len(w.live) < 10 {
			op = 0
		}
		var id int64
		if op > 0 {
			if id = w.live[w.rng.IntN(len(w.live))]; touched[id] {
				continue
			}
			touched[id] = true
		}
		c, err := w.change(ctx, tx, op, id)
		if err != nil {
			return nil, nil, nil, err
		}
		changes = append(changes, c)
		switch op {
		case 0:
			added = append(added, c.id)
		case 2:
			removed = append(removed, c.id)
		}
	}
	return changes, added, removed, nil
}

// change makes one change: op 0 INSERT (a new key), 1 UPDATE, 2 DELETE.
func (w *chaosWriter) change(ctx context.Context, tx pgx.Tx, op int, id int64) (chaosChange, error) {
	var err error
	var ver int64
	switch op {
	case 0:
		id, ver = w.next, w.ver
		w.next++
		_, err = tx.Exec(ctx, fmt.Sprintf(`INSERT INTO public.%s VALUES ($1, $2, 'i')`, w.table), id, ver)
	case 1:
		ver = w.ver
		var tag pgconn.CommandTag
		tag, err = tx.Exec(ctx, fmt.Sprintf(`UPDATE public.%s SET ver = $2, pad = 'u' WHERE id = $1`, w.table), id, ver)
		if err == nil && tag.RowsAffected() != 1 {
			err = fmt.Errorf("updating key %d: %d rows", id, tag.RowsAffected())
		}
	default:
		err = tx.QueryRow(ctx, fmt.Sprintf(`DELETE FROM public.%s WHERE id = $1 RETURNING ver`, w.table), id).Scan(&ver)
		return chaosChange{id: id, rank: 2*ver + 1}, err
	}
	w.ver++ // never reused, whether or not the transaction commits
	return chaosChange{id: id, rank: 2 * ver}, err
}

// bulkTxn updates up to 3,000 live keys with a wide pad in one
// transaction: decoded, it outgrows logical_decoding_work_mem, so
// PostgreSQL streams it and capture spools it.
func (w *chaosWriter) bulkTxn(ctx context.Context, tx pgx.Tx) ([]chaosChange, []int64, []int64, error) {
	base := w.ver
	// Past every base + id before the statement runs: a commit whose outcome
	// is unknown may have used them.
	w.ver = base + w.next + 1
	rows, err := tx.Query(ctx, fmt.Sprintf(`UPDATE public.%s SET ver = $1 + id, pad = repeat('b', %d)
		WHERE id IN (SELECT id FROM public.%[1]s ORDER BY id LIMIT 3000) RETURNING id`, w.table, chaosPad), base)
	if err != nil {
		return nil, nil, nil, err
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		return nil, nil, nil, err
	}
	var changes []chaosChange
	for _, id := range ids {
		changes = append(changes, chaosChange{id: id, rank: 2 * (base + id)})
	}
	return changes, nil, nil, nil
}

// bulkUpdate has the writer run bulkTxn between two small transactions.
func (w *chaosWriter) bulkUpdate() error {
	reply := make(chan error, 1)
	select {
	case w.bulk <- reply:
		return <-reply
	case <-w.done:
		return fmt.Errorf("the chaos writer has stopped")
	}
}

// finish stops the writer; calling it again does nothing.
func (w *chaosWriter) finish() {
	select {
	case <-w.stop:
	default:
		close(w.stop)
	}
	<-w.done
}

// committed is every committed transaction so far, and how many attempts
// failed (their outcome unknown).
func (w *chaosWriter) committed() ([]chaosTxn, int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]chaosTxn(nil), w.txns...), w.failures
}
