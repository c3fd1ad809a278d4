package decode

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/ferry-cdc/ferry/services/testenv"
)

// keyColumns' catalog query runs on PostgreSQL 12, the kernel of Greenplum
// 7 and AnalyticDB for PostgreSQL 7, whose catalogs have no primary keys
// for GROUP BY to lean on, and on 15.
func TestKeyColumnsOnPostgres12And15(t *testing.T) {
	for _, major := range []int{12, 15} {
		conn := testenv.StartPostgresVersion(t, major).Conn(t)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		if _, err := conn.Exec(ctx, `CREATE TABLE keyed (b int, a int, v text, PRIMARY KEY (a, b))`); err != nil {
			cancel()
			t.Fatalf("PostgreSQL %d: %v", major, err)
		}
		var oid uint32
		if err := conn.QueryRow(ctx, `SELECT 'keyed'::regclass::oid`).Scan(&oid); err != nil {
			cancel()
			t.Fatalf("PostgreSQL %d: %v", major, err)
		}
		keys, err := NewRelations(conn).keyColumns(ctx, oid)
		cancel()
		if err != nil || !slices.Equal(keys, []string{"a", "b"}) {
			t.Errorf("PostgreSQL %d: key columns %v (%v), want [a b]", major, keys, err)
		}
	}
}
