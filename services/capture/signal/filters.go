package signal

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/ferry-cdc/ferry/services/internal/rowfilter"
)

// Before PostgreSQL 15 there are no publication row filters: Ferry
// evaluates each filter itself (rowfilter.Program), with PostgreSQL's
// semantics, and keeps the filters where the stream and the snapshots both
// read them in WAL order, as they read a publication: in a row of its
// signal table, (publication, FilterPrefix), holding a JSON object of
// Ferry's rendering of each filter by quoted table name. Setup writes the
// row when the filters change. A snapshot reads it in its own transaction
// and pushes the rendering into its WHERE clause; the stream takes it from
// the row's change at that change's commit, so the changes after it are
// filtered with it, as PostgreSQL 15 filters the changes after an ALTER
// PUBLICATION. A stream starts with the row as it stands then: when a
// filter changed after the slot's confirmed position, the changes in
// between, replayed, are filtered with the new filter, where PostgreSQL 15
// would use the old one.
const FilterPrefix = "ferry.filters"

// EvaluatedFilters reports whether a server of this server_version_num
// leaves filters to Ferry.
func EvaluatedFilters(version int) bool { return version < rowfilter.MinServerVersion }

// ReadFilters is the publication's filters as its row holds them, or
// none when there is no row (or no signal table).
func ReadFilters(ctx context.Context, q Querier, pub string) (map[string]string, error) {
	var exists bool
	if err := q.QueryRow(ctx, "SELECT to_regclass($1) IS NOT NULL", TableName).Scan(&exists); err != nil || !exists {
		return nil, wrapSignal("looking up", err)
	}
	var content string
	err := q.QueryRow(ctx, "SELECT content FROM "+TableName+" WHERE slot_name = $1 AND prefix = $2", pub, FilterPrefix).Scan(&content)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading the filters of publication %s from %s: %w", pgx.Identifier{pub}.Sanitize(), TableName, err)
	}
	return ParseFilters(pub, []byte(content))
}

func ParseFilters(pub string, content []byte) (map[string]string, error) {
	var out map[string]string
	if err := json.Unmarshal(content, &out); err != nil {
		return nil, fmt.Errorf("the filters of publication %s in %s are not a JSON object of filters by table: %w", pgx.Identifier{pub}.Sanitize(), TableName, err)
	}
	return out, nil
}

// WriteFilters replaces the publication's filters, or deletes its row
// when there are none.
func WriteFilters(ctx context.Context, conn *pgx.Conn, pub string, filters map[string]string) error {
	var err error
	if len(filters) == 0 {
		_, err = conn.Exec(ctx, "DELETE FROM "+TableName+" WHERE slot_name = $1 AND prefix = $2", pub, FilterPrefix)
	} else {
		content, _ := json.Marshal(filters) // a map of strings always marshals
		err = upsertSignal(ctx, conn, pub, FilterPrefix, string(content))
	}
	if err != nil {
		return fmt.Errorf("writing the filters of publication %s to %s: %w", pgx.Identifier{pub}.Sanitize(), TableName, err)
	}
	return nil
}

// ForgetFilters deletes a released publication's filters, if Ferry's
// signal table holds any.
func ForgetFilters(ctx context.Context, conn *pgx.Conn, pub string) error {
	var exists bool
	if err := conn.QueryRow(ctx, "SELECT to_regclass($1) IS NOT NULL", TableName).Scan(&exists); err != nil || !exists {
		return wrapSignal("looking up", err)
	}
	return WriteFilters(ctx, conn, pub, nil)
}

// Querier runs publishedFilter's query in a snapshot's transaction.
type Querier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}
