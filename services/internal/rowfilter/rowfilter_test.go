package rowfilter

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/ferry-cdc/ferry/services/testenv"
)

// One private server: the checks create (and roll back) publications, which
// on the shared server would briefly lock other tests' tables.
func TestCheckOnRealPostgres(t *testing.T) {
	pg := testenv.StartPostgres(t)
	conn := pg.Conn(t)
	testenv.Exec(t, conn,
		`CREATE TABLE keyed (id int8 PRIMARY KEY, region text, "Odd Col" int)`,
		`CREATE TABLE full_ident (id int8 PRIMARY KEY, region text)`,
		`ALTER TABLE full_ident REPLICA IDENTITY FULL`,
		`CREATE TABLE by_index (code text NOT NULL, region text)`,
		`CREATE UNIQUE INDEX by_index_code ON by_index (code)`,
		`ALTER TABLE by_index REPLICA IDENTITY USING INDEX by_index_code`,
		`CREATE TABLE parted (id int8, k int, v int, PRIMARY KEY (id, k)) PARTITION BY RANGE (k)`,
		`CREATE TABLE parted_lo PARTITION OF parted FOR VALUES FROM (0) TO (10)`,
		`CREATE TABLE parted_hi PARTITION OF parted FOR VALUES FROM (10) TO (20)`,
		`ALTER TABLE parted_hi REPLICA IDENTITY FULL`,
		`CREATE TABLE other (id int8 PRIMARY KEY)`,
	)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	accepted := []struct {
		table, filter, expr string
		columns             []string
	}{
		{"keyed", "id > 100", "(id > 100)", []string{"id"}},
		{"keyed", "id IN (1, 2) -- a trailing comment", "(id = ANY (ARRAY[(1)::bigint, (2)::bigint]))", []string{"id"}},
		{"keyed", "1 = 1", "(1 = 1)", nil},
		{"full_ident", "region = 'eu' AND id > 0", "((region = 'eu'::text) AND (id > 0))", []string{"id", "region"}},
		{"by_index", "code LIKE 'a%'", "(code ~~ 'a%'::text)", []string{"code"}},
		{"parted", "k < 5 AND id > 0", "((k < 5) AND (id > 0))", []string{"id", "k"}},
	}
	for _, c := range accepted {
		got, err := Check(ctx, conn, "public", c.table, c.filter)
		if err != nil {
			t.Errorf("Check(%s, %q): %v", c.table, c.filter, err)
			continue
		}
		if got.Expr != c.expr || !slices.Equal(got.Columns, c.columns) {
			t.Errorf("Check(%s, %q) = %q %q, want %q %q", c.table, c.filter, got.Expr, got.Columns, c.expr, c.columns)
		}
	}

	refused := []struct {
		table, filter string
		kind          Kind
		parts         []string
	}{
		{"keyed", "region = 'eu'", Identity, []string{`"public"."keyed"`, "region", `primary key "keyed_pkey" (id)`, `ALTER TABLE "public"."keyed" REPLICA IDENTITY FULL`, "cannot update table"}},
		{"keyed", `"Odd Col" > 1 AND id > 1`, Identity, []string{"Odd Col", "ALTER TABLE"}},
		{"by_index", "region = 'eu'", Identity, []string{`index "by_index_code" (code)`}},
		// Only the partition without REPLICA IDENTITY FULL is named.
		{"parted", "v > 1", Identity, []string{`"public"."parted_lo"`, "(id, k)", `ALTER TABLE "public"."parted_lo" REPLICA IDENTITY FULL`}},
		{"keyed", "nope = 1", Invalid, []string{`column "nope" does not exist`}},
		{"keyed", "id >", Invalid, []string{"syntax error"}},
		{"keyed", "id", Invalid, []string{"must be type boolean"}},
		{"keyed", "random() > 0.5", Invalid, []string{"mutable functions are not allowed"}},
		{"keyed", "id IN (SELECT 1)", Invalid, []string{"invalid publication WHERE expression"}},
		{"keyed", "xmin::text = '1'", Invalid, []string{"invalid publication WHERE expression"}},
		{"keyed", "true); DROP TABLE other; --", Invalid, []string{"syntax error"}},
		// Every statement parses; the extended protocol runs one at most.
		{"keyed", "true); DROP TABLE other; CREATE PUBLICATION x FOR TABLE other WHERE (true", Invalid, []string{"cannot insert multiple commands"}},
		{"keyed", "true), TABLE other WHERE (true", Invalid, []string{"reaches outside its own WHERE clause"}},
		{"keyed", "   ", Invalid, []string{"empty"}},
		{"missing", "id > 1", Missing, []string{`"public"."missing"`, "does not exist"}},
	}
	for _, c := range refused {
		_, err := Check(ctx, conn, "public", c.table, c.filter)
		var fe *Error
		if !errors.As(err, &fe) || fe.Kind != c.kind {
			t.Errorf("Check(%s, %q) = %v, want a refusal of kind %d", c.table, c.filter, err, c.kind)
			continue
		}
		for _, p := range append(c.parts, strconv.Quote(c.filter)) {
			if !strings.Contains(err.Error(), p) {
				t.Errorf("Check(%s, %q): %q does not name %q", c.table, c.filter, err, p)
			}
		}
	}

	var left int
	if err := conn.QueryRow(ctx, `SELECT (SELECT count(*) FROM pg_publication) + (SELECT count(*) FROM pg_class WHERE relname = 'other')`).Scan(&left); err != nil || left != 1 {
		t.Errorf("publications plus tables named other = %d (%v), want 1: no scratch publication stays, no table is dropped", left, err)
	}
	// The application's UPDATE and DELETE work as before.
	testenv.Exec(t, conn, `INSERT INTO keyed VALUES (1, 'eu', 1)`, `UPDATE keyed SET region = 'us'`, `DELETE FROM keyed`)
}

// A role that does not own the table may not publish it: a failure to
// check, with PostgreSQL's error, not a verdict on the filter.
func TestCheckNeedsOwnership(t *testing.T) {
	pg := testenv.StartPostgres(t)
	testenv.Exec(t, pg.SuperConn(t), `CREATE TABLE theirs (id int8 PRIMARY KEY)`, `GRANT SELECT ON theirs TO ferry`)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, err := Check(ctx, pg.Conn(t), "public", "theirs", "id > 1")
	var fe *Error
	var pgErr *pgconn.PgError
	if errors.As(err, &fe) || !errors.As(err, &pgErr) || pgErr.Code != "42501" || !strings.Contains(err.Error(), pgx.Identifier{"public", "theirs"}.Sanitize()) {
		t.Fatalf("Check as a non-owner = %v, want PostgreSQL's insufficient_privilege naming the table", err)
	}
}

// The replica identity is named as ALTER TABLE ... REPLICA IDENTITY sets it.
func TestIdentityNames(t *testing.T) {
	idx := "t_pkey"
	for _, c := range []struct {
		replident string
		index     *string
		want      string
	}{
		{"d", &idx, `the primary key "t_pkey"`},
		{"d", nil, "none: DEFAULT without a primary key"},
		{"i", &idx, `index "t_pkey"`},
		{"i", nil, "none: its index is gone"},
		{"n", nil, "REPLICA IDENTITY NOTHING"},
	} {
		if got := identityName(c.replident, c.index); got != c.want {
			t.Errorf("identityName(%q) = %q, want %q", c.replident, got, c.want)
		}
	}
}
