package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// table is the backlog scenario's table; other scenarios use the same
// columns under names of their own (workload.table).
const table = "bench_orders"

// createTableSQL is a scenario's one table (%s: its name). REPLICA IDENTITY
// stays DEFAULT: the backlog is inserts only.
const createTableSQL = `CREATE TABLE public.%s (
	id bigint PRIMARY KEY, customer text, amount numeric(12,2), placed_at timestamptz, note text)`

// insertSelect generates rows $1..$2 from the id alone, so every run and
// every machine writes exactly the same bytes: multiplicative hashes stand
// in for a seeded random generator.
const insertSelect = `SELECT g,
	       'customer-' || lpad(((g * 7919) % 100003)::text, 6, '0'),
	       ((g * 104729) % 10000000) / 100.0,
	       timestamptz '2026-01-01 00:00:00+00' + (g * 1237 % 31536000) * interval '1 second',
	       'order ' || g || ' ' || md5(g::text)
	FROM generate_series($1::bigint, $2::bigint) g`

func connect(ctx context.Context, dsn string) (*pgx.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return nil, fmt.Errorf("connecting to PostgreSQL (is the stack up? `make up`): %w", err)
	}
	return conn, nil
}

// recreateTable drops what an aborted invocation may have left and creates
// the table empty.
func recreateTable(ctx context.Context, conn *pgx.Conn, table string) error {
	if _, err := conn.Exec(ctx, "DROP TABLE IF EXISTS public."+table); err != nil {
		return fmt.Errorf("dropping %s: %w", table, err)
	}
	if _, err := conn.Exec(ctx, fmt.Sprintf(createTableSQL, table)); err != nil {
		return fmt.Errorf("creating %s: %w", table, err)
	}
	return nil
}

func dropTable(ctx context.Context, conn *pgx.Conn, table string) error {
	if _, err := conn.Exec(ctx, "DROP TABLE IF EXISTS public."+table); err != nil {
		return fmt.Errorf("dropping %s: %w", table, err)
	}
	return nil
}

// backlog is where a written backlog lies in the WAL.
type backlog struct {
	// end is the WAL position after the last commit: the point a consumer
	// has to reach.
	end uint64
	// lastTxn is the WAL position just before the last transaction: a
	// consumer that confirms only commit positions (Debezium) has confirmed
	// the last commit once it confirms anything past lastTxn, even when other
	// WAL written after the commit puts end beyond its reach.
	lastTxn uint64
	took    time.Duration
}

// workload is what an end-to-end scenario writes: rows 1..rows into its own
// table in transactions of txnRows rows, and the names of the baselines'
// slots and publications, so that scenarios never share an object.
type workload struct {
	table         string
	rows, txnRows int
	// The source limit's and Debezium's slots and publications.
	srcSlot, srcPub string
	dbzSlot, dbzPub string
}

// backlogWorkload is the backlog scenario's.
func backlogWorkload(c *config) workload {
	return workload{table: table, rows: c.rows, txnRows: c.txnRows,
		srcSlot: srcSlot, srcPub: srcPub, dbzSlot: dbzSlot, dbzPub: dbzPub}
}

// writeBacklog inserts rows 1..w.rows in transactions of w.txnRows rows each
// (every Exec is its own autocommitted transaction).
func writeBacklog(ctx context.Context, conn *pgx.Conn, w workload) (backlog, error) {
	return writeRows(ctx, conn, w.table, 1, w.rows, w.txnRows)
}

// writeRows inserts rows first..last as writeBacklog does.
func writeRows(ctx context.Context, conn *pgx.Conn, table string, first, last, txnRows int) (backlog, error) {
	var b backlog
	start := time.Now()
	for lo := first; lo <= last; lo += txnRows {
		hi := min(lo+txnRows-1, last)
		if hi == last {
			lsn, err := currentLSN(ctx, conn)
			if err != nil {
				return b, err
			}
			b.lastTxn = lsn
		}
		if _, err := conn.Exec(ctx, "INSERT INTO public."+table+" "+insertSelect, lo, hi); err != nil {
			return b, fmt.Errorf("inserting rows %d..%d: %w", lo, hi, err)
		}
	}
	b.took = time.Since(start)
	lsn, err := currentLSN(ctx, conn)
	b.end = lsn
	return b, err
}

func currentLSN(ctx context.Context, conn *pgx.Conn) (uint64, error) {
	var lsn uint64
	if err := conn.QueryRow(ctx, `SELECT (pg_current_wal_lsn() - '0/0'::pg_lsn)::bigint`).Scan(&lsn); err != nil {
		return 0, fmt.Errorf("reading pg_current_wal_lsn: %w", err)
	}
	return lsn, nil
}

// slotState is one row of pg_replication_slots; exists is false when the
// slot is gone.
type slotState struct {
	exists, active bool
	confirmed      uint64
}

func readSlot(ctx context.Context, conn *pgx.Conn, slot string) (slotState, error) {
	var s slotState
	var confirmed *uint64
	err := conn.QueryRow(ctx, `SELECT active, (confirmed_flush_lsn - '0/0'::pg_lsn)::bigint
		FROM pg_replication_slots WHERE slot_name = $1`, slot).Scan(&s.active, &confirmed)
	if errors.Is(err, pgx.ErrNoRows) {
		return s, nil
	}
	if err != nil {
		return s, fmt.Errorf("reading slot %s: %w", slot, err)
	}
	s.exists = true
	if confirmed != nil {
		s.confirmed = *confirmed
	}
	return s, nil
}

// dropSlotAndPublication removes a slot (only when inactive: an active one
// belongs to a process still running) and a publication of the same name.
func dropSlotAndPublication(ctx context.Context, conn *pgx.Conn, slot, pub string) error {
	if _, err := conn.Exec(ctx, `SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots
		WHERE slot_name = $1 AND NOT active`, slot); err != nil {
		return fmt.Errorf("dropping slot %s: %w", slot, err)
	}
	if _, err := conn.Exec(ctx, "DROP PUBLICATION IF EXISTS "+pgx.Identifier{pub}.Sanitize()); err != nil {
		return fmt.Errorf("dropping publication %s: %w", pub, err)
	}
	return nil
}

// lsnString formats an LSN the way pg_recvlogical's --endpos reads it.
func lsnString(lsn uint64) string { return fmt.Sprintf("%X/%X", lsn>>32, uint32(lsn)) }

// poll calls cond every interval until it reports done, fails, or the
// deadline passes.
func poll(ctx context.Context, timeout, interval time.Duration, what string, cond func() (bool, string, error)) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tick := time.NewTicker(interval)
	defer tick.Stop()
	last := ""
	for {
		done, state, err := cond()
		if err != nil {
			return fmt.Errorf("waiting for %s: %w", what, err)
		}
		if done {
			return nil
		}
		last = state
		select {
		case <-ctx.Done():
			return fmt.Errorf("timed out after %s waiting for %s; last state: %s", timeout, what, last)
		case <-tick.C:
		}
	}
}

// dropSlotWhenInactive waits until the slot's walsender has gone (it
// outlives its client for a moment) and drops the slot and the publication;
// dropSlotAndPublication alone leaves an active slot in place.
func dropSlotWhenInactive(ctx context.Context, conn *pgx.Conn, slot, pub string) error {
	err := poll(ctx, 30*time.Second, 50*time.Millisecond, "slot "+slot+" to be inactive", func() (bool, string, error) {
		s, err := readSlot(ctx, conn, slot)
		return !s.active, fmt.Sprintf("exists %v active %v", s.exists, s.active), err
	})
	if err != nil {
		return err
	}
	return dropSlotAndPublication(ctx, conn, slot, pub)
}
