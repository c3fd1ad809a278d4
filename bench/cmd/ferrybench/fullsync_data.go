package main

import (
	"context"
	"fmt"
	"log"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
)

// fsPart is one shape of the full sync scenario: one big table, or many
// small ones, each of rows rows.
type fsPart struct {
	name   string
	tables []string
	rows   int // per table
}

func (p fsPart) total() int { return len(p.tables) * p.rows }

// fsParts are the scenario's shapes: 1 × -fullsync-rows and
// -fullsync-tables × -fullsync-table-rows (left out when either is zero).
func fsParts(c *config) []fsPart {
	parts := []fsPart{{name: fmt.Sprintf("1 × %d rows", c.fsRows), tables: []string{"bench_full"}, rows: c.fsRows}}
	if c.fsTables > 0 && c.fsTableRows > 0 {
		p := fsPart{name: fmt.Sprintf("%d × %d rows", c.fsTables, c.fsTableRows), rows: c.fsTableRows}
		for i := 1; i <= c.fsTables; i++ {
			p.tables = append(p.tables, fmt.Sprintf("bench_full_t%03d", i))
		}
		parts = append(parts, p)
	}
	return parts
}

// fsCreateSQL is every full sync table's shape: the types a user's tables
// mix, so that capture's decoding and the encoder's formatting of each are
// in the figures.
const fsCreateSQL = `CREATE TABLE public.%s (id int8 PRIMARY KEY, qty int4, amount numeric(12,2),
	note text, created_at timestamptz, attrs jsonb, paid bool)`

// fsInsertSQL generates rows $1..$2 from the id alone, as insertSQL does:
// every run and machine reads the same bytes. Notes run from 10 to 300
// bytes, cut from four distinct md5s (so that lz4 sees text about as
// compressible as hex, not one repeated word).
const fsInsertSQL = `INSERT INTO public.%s
	SELECT g,
	       ((g * 7919) %% 1000000)::int4,
	       ((g * 104729) %% 100000000) / 100.0,
	       substr(repeat(md5(g::text) || md5((g * 31)::text) || md5((g * 131)::text) || md5((g * 1031)::text) || ' ', 3),
	              1 + (g %% 13)::int, 10 + ((g * 2654435761) %% 291)::int),
	       timestamptz '2026-01-01 00:00:00+00' + (g * 1237 %% 31536000) * interval '1 second',
	       jsonb_build_object('k', g %% 1000, 'tag', 'tag-' || (g %% 17), 'ok', g %% 2 = 0),
	       g %% 3 = 0
	FROM generate_series($1::bigint, $2::bigint) g`

// fsColumns is the select list of the COPY baseline: every column, as
// Ferry and Debezium read them.
const fsColumns = "id, qty, amount, note, created_at, attrs, paid"

// fsInsertChunk bounds one INSERT, so that progress shows and no single
// transaction holds gigabytes.
const fsInsertChunk = 1_000_000

// fsFillConnections is how many connections generate the rows: one per
// core of the two-core machines the benchmark is sized for.
const fsFillConnections = 2

// createFullSyncTables creates and fills every part's tables once per
// invocation, then VACUUM ANALYZEs them: the vacuum sets hint bits and the
// visibility map, so no measured read (the first COPY above all) pays for
// writing hint bits the others then find set, and ANALYZE gives the
// catalog's row estimates Ferry reports progress against.
func createFullSyncTables(ctx context.Context, conn *pgx.Conn, dsn string, parts []fsPart) error {
	if err := dropFullSyncTables(ctx, conn, parts); err != nil {
		return err
	}
	var fills, vacuums []fsStatement
	for _, p := range parts {
		for _, t := range p.tables {
			if _, err := conn.Exec(ctx, fmt.Sprintf(fsCreateSQL, t)); err != nil {
				return fmt.Errorf("creating %s: %w", t, err)
			}
			for lo := 1; lo <= p.rows; lo += fsInsertChunk {
				hi := min(lo+fsInsertChunk-1, p.rows)
				fills = append(fills, fsStatement{what: fmt.Sprintf("filling %s with rows %d..%d", t, lo, hi),
					sql: fmt.Sprintf(fsInsertSQL, t), args: []any{lo, hi}})
			}
			vacuums = append(vacuums, fsStatement{what: "vacuuming " + t, sql: "VACUUM (ANALYZE) public." + t})
		}
	}
	start := time.Now()
	if err := execParallel(ctx, dsn, fills); err != nil {
		return err
	}
	log.Printf("fullsync: %d rows written in %s; vacuuming", totalRows(parts), time.Since(start).Round(time.Second))
	return execParallel(ctx, dsn, vacuums)
}

type fsStatement struct {
	what string
	sql  string
	args []any
}

// execParallel runs the statements on fsFillConnections connections of
// their own, stopping at the first failure.
func execParallel(ctx context.Context, dsn string, stmts []fsStatement) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	jobs := make(chan fsStatement, len(stmts))
	for _, s := range stmts {
		jobs <- s
	}
	close(jobs)
	errs := make(chan error, fsFillConnections)
	var wg sync.WaitGroup
	for range fsFillConnections {
		wg.Add(1)
		go func() {
			defer wg.Done()
			conn, err := connect(ctx, dsn)
			if err != nil {
				errs <- err
				cancel()
				return
			}
			defer func() { _ = conn.Close(context.WithoutCancel(ctx)) }()
			for s := range jobs {
				if _, err := conn.Exec(ctx, s.sql, s.args...); err != nil {
					errs <- fmt.Errorf("%s: %w", s.what, err)
					cancel()
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	return <-errs
}

func dropFullSyncTables(ctx context.Context, conn *pgx.Conn, parts []fsPart) error {
	for _, p := range parts {
		for _, t := range p.tables {
			if _, err := conn.Exec(ctx, "DROP TABLE IF EXISTS public."+t); err != nil {
				return fmt.Errorf("dropping %s: %w", t, err)
			}
		}
	}
	return nil
}

// fsCopyResult is the source limit of a full sync: psql's COPY of every
// table to a sink that keeps nothing.
type fsCopyResult struct {
	Seconds     float64 `json:"seconds"`
	Connections int     `json:"connections"`
	Bytes       int64   `json:"bytes"` // COPY text
	RowsPerSec  float64 `json:"rows_per_second"`
	MBPerSec    float64 `json:"mb_per_second"`
}

// fsCopyConnections is how many tables the COPY baseline reads at once: as
// many as capture's ReadSnapshot does by default (services/capture,
// defaultSnapshotParallelism), so that the capture-alone ratio compares
// like with like. A source limit is what PostgreSQL can deliver, and with
// one table per connection a single big table reads on one either way.
const fsCopyConnections = 4

// measureCopy runs `psql -c "COPY (SELECT …) TO STDOUT"` per table, up to
// fsCopyConnections at once. psql's output goes to a counter rather than
// /dev/null so that the report has the COPY text's size; a pipe costs psql
// one write per buffer, nothing next to its reading.
func measureCopy(ctx context.Context, c *config, p fsPart) (fsCopyResult, error) {
	res := fsCopyResult{Connections: min(fsCopyConnections, len(p.tables))}
	tables := make(chan string, len(p.tables))
	for _, t := range p.tables {
		tables <- t
	}
	close(tables)
	var bytes atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, res.Connections)
	start := time.Now()
	for range res.Connections {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for t := range tables {
				n, err := copyTable(ctx, c, t)
				if err != nil {
					errs <- err
					return
				}
				bytes.Add(n)
			}
		}()
	}
	wg.Wait()
	took := time.Since(start).Seconds()
	close(errs)
	if err := <-errs; err != nil {
		return res, err
	}
	res.Seconds, res.Bytes = took, bytes.Load()
	res.RowsPerSec = float64(p.total()) / took
	res.MBPerSec = float64(res.Bytes) / 1e6 / took
	return res, nil
}

type countWriter struct{ n int64 }

func (w *countWriter) Write(p []byte) (int, error) { w.n += int64(len(p)); return len(p), nil }

func copyTable(ctx context.Context, c *config, table string) (int64, error) {
	ctx, cancel := context.WithTimeout(ctx, c.ferryTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(c.pgBin, "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1",
		"-d", c.pgSuperDSN, "-c", fmt.Sprintf("COPY (SELECT %s FROM public.%s) TO STDOUT", fsColumns, table))
	var out countWriter
	var stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Run(); err != nil {
		return 0, fmt.Errorf("psql COPY of %s: %w: %s", table, err, stderr.String())
	}
	return out.n, nil
}
