package capture

import (
	"context"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	capturev1 "github.com/ferry-cdc/ferry/gen/ferry/capture/v1"
	cdcv1 "github.com/ferry-cdc/ferry/gen/ferry/cdc/v1"
	taskv1 "github.com/ferry-cdc/ferry/gen/ferry/task/v1"
	"github.com/ferry-cdc/ferry/services/testenv"
)

// superSource is the shared server as its superuser, which whole-schema
// publications need (superPG's role and password).
func superSource(t *testing.T) *taskv1.SourceEndpoint {
	t.Helper()
	src := testenv.Source(t)
	src.User = "postgres"
	if v := os.Getenv("FERRY_PG_SUPERUSER"); v != "" {
		src.User = v
	}
	if os.Getenv("FERRY_PG_SUPERUSER_PASSWORD") == "" {
		t.Setenv("FERRY_PG_SUPERUSER_PASSWORD", "postgres") // deploy/local/stack.sh's default
	}
	src.Password = &taskv1.SecretRef{Source: &taskv1.SecretRef_Env{Env: "FERRY_PG_SUPERUSER_PASSWORD"}}
	return src
}

// schemaFixture is a fresh schema on the shared server with the slot and
// publication of one test, which a superuser creates and so must drop.
type schemaFixture struct {
	client    capturev1.CaptureServiceClient
	src       *taskv1.SourceEndpoint
	schema    string
	slot, pub string
}

func newSchemaFixture(t *testing.T, tables ...string) *schemaFixture {
	t.Helper()
	f := &schemaFixture{client: startServer(t), src: superSource(t), schema: testenv.UniqueName("pub_schema"),
		slot: testenv.UniqueName("ferry_slot"), pub: testenv.UniqueName("ferry_pub")}
	stmts := []string{"CREATE SCHEMA " + quoteIdent(f.schema)}
	for _, name := range tables {
		stmts = append(stmts, "CREATE TABLE "+quoteIdent(f.schema, name)+" (id int8 PRIMARY KEY, note text)")
	}
	testenv.Exec(t, testenv.PG(t), stmts...)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
		defer cancel()
		conn := superPG(t)
		if _, err := dropSlot(ctx, conn, f.slot); err != nil {
			t.Errorf("cleanup: %v", err)
		}
		if _, err := dropPublication(ctx, conn, f.pub); err != nil {
			t.Errorf("cleanup: %v", err)
		}
		testenv.Exec(t, conn, "DROP SCHEMA "+quoteIdent(f.schema)+" CASCADE")
	})
	return f
}

func (f *schemaFixture) ensure(t *testing.T, req *capturev1.EnsureReplicationRequest) (*capturev1.EnsureReplicationResponse, error) {
	t.Helper()
	req = proto.Clone(req).(*capturev1.EnsureReplicationRequest)
	req.Source, req.PublicationName = f.src, f.pub
	if req.SlotName == "" && !req.PublicationOnly {
		req.SlotName = f.slot
	}
	return f.client.EnsureReplication(context.Background(), req)
}

// published reads what the publication names: FOR ALL TABLES, its schemas
// and its tables, as "ALL", "schema s" and "table s.t" sorted.
func published(t *testing.T, conn *pgx.Conn, pub string) []string {
	t.Helper()
	rows, err := conn.Query(context.Background(), `
		SELECT 'ALL' FROM pg_publication WHERE pubname = $1 AND puballtables
		UNION ALL
		SELECT 'schema ' || n.nspname FROM pg_publication p
		JOIN pg_publication_namespace pn ON pn.pnpubid = p.oid JOIN pg_namespace n ON n.oid = pn.pnnspid
		WHERE p.pubname = $1
		UNION ALL
		SELECT 'table ' || n.nspname || '.' || c.relname FROM pg_publication p
		JOIN pg_publication_rel r ON r.prpubid = p.oid JOIN pg_class c ON c.oid = r.prrelid
		JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE p.pubname = $1`, pub)
	if err != nil {
		t.Fatal(err)
	}
	got, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(got)
	return got
}

func expectPublished(t *testing.T, conn *pgx.Conn, pub string, want ...string) {
	t.Helper()
	if got := published(t, conn, pub); !slices.Equal(got, want) {
		t.Fatalf("publication %s names %q, want %q", pub, got, want)
	}
}

// rowsOf lists the ids of the inserts into the relation named schema.table.
func rowsOf(batches []*cdcv1.ChangeBatch, schema, name string) []int64 {
	oids := map[uint32]bool{}
	for _, b := range batches {
		for _, r := range b.GetRelations() {
			if r.GetSchema() == schema && r.GetTable() == name {
				oids[r.GetOid()] = true
			}
		}
	}
	var out []int64
	for _, ev := range events(batches) {
		if oids[ev.GetRelationOid()] && ev.GetOp() == cdcv1.Operation_OPERATION_INSERT {
			out = append(out, colInt(ev.GetNewTuple(), 0))
		}
	}
	return out
}

// A table created in a published schema after the slot exists is streamed
// without anyone touching the publication; a table of another schema is not.
func TestSchemaPublicationStreamsTablesCreatedLater(t *testing.T) {
	f := newSchemaFixture(t, "first")
	other := testenv.UniqueName("unpublished")
	conn := testenv.PG(t)
	testenv.Exec(t, conn, "CREATE TABLE "+quoteIdent("public", other)+" (id int8 PRIMARY KEY)")
	t.Cleanup(func() { testenv.Exec(t, testenv.PG(t), "DROP TABLE "+quoteIdent("public", other)) })

	res, err := f.ensure(t, &capturev1.EnsureReplicationRequest{Schemas: []string{f.schema}, Tables: []*taskv1.TableRef{table(f.schema, "first")}})
	if err != nil || !res.GetPublicationCreated() || !res.GetSlotCreated() {
		t.Fatalf("EnsureReplication = %v, %v; want the publication and slot created", res, err)
	}
	expectPublished(t, superPG(t), f.pub, "schema "+f.schema)

	s := openStream(t, f.client, &capturev1.StartStream{Source: f.src, SlotName: f.slot, PublicationName: f.pub})
	testenv.Exec(t, conn,
		"INSERT INTO "+quoteIdent(f.schema, "first")+" VALUES (1, 'before')",
		"CREATE TABLE "+quoteIdent(f.schema, "later")+" (id int8 PRIMARY KEY, note text)",
		"INSERT INTO "+quoteIdent("public", other)+" VALUES (99)",
		"INSERT INTO "+quoteIdent(f.schema, "later")+" VALUES (2, 'new'), (3, 'table')",
	)
	batches := s.until(t, "the rows of the later table", func(bs []*cdcv1.ChangeBatch) bool {
		return len(rowsOf(bs, f.schema, "later")) == 2
	})
	if got := rowsOf(batches, f.schema, "first"); !slices.Equal(got, []int64{1}) {
		t.Errorf("rows of %s.first = %v, want [1]", f.schema, got)
	}
	if got := rowsOf(batches, f.schema, "later"); !slices.Equal(got, []int64{2, 3}) {
		t.Errorf("rows of %s.later = %v, want [2 3]", f.schema, got)
	}
	if got := rowsOf(batches, "public", other); len(got) != 0 {
		t.Errorf("rows of the unpublished table were streamed: %v", got)
	}
	for _, ev := range events(batches) {
		if ev.GetOp() == cdcv1.Operation_OPERATION_INSERT && colInt(ev.GetNewTuple(), 0) == 2 && colText(ev.GetNewTuple(), 1) != "new" {
			t.Errorf("row 2 of the later table = %v, want note 'new'", ev.GetNewTuple())
		}
	}
}

// An existing publication follows the selection between tables, schemas
// with tables outside them, and back, while its slot exists; turning it
// into FOR ALL TABLES under that slot is refused with the way out.
func TestEnsureReplicationSwitchesBetweenTablesAndSchemas(t *testing.T) {
	f := newSchemaFixture(t, "a", "b")
	outside := testenv.UniqueName("outside")
	testenv.Exec(t, testenv.PG(t), "CREATE TABLE "+quoteIdent("public", outside)+" (id int8 PRIMARY KEY)")
	t.Cleanup(func() { testenv.Exec(t, testenv.PG(t), "DROP TABLE "+quoteIdent("public", outside)) })
	super := superPG(t)
	a, b, out := table(f.schema, "a"), table(f.schema, "b"), table("", outside)

	if _, err := f.ensure(t, &capturev1.EnsureReplicationRequest{Tables: []*taskv1.TableRef{a, out}}); err != nil {
		t.Fatal(err)
	}
	expectPublished(t, super, f.pub, "table "+f.schema+".a", "table public."+outside)

	// The tables of the schema are left to the schema; the one outside stays.
	res, err := f.ensure(t, &capturev1.EnsureReplicationRequest{Schemas: []string{f.schema}, Tables: []*taskv1.TableRef{a, b, out}})
	if err != nil || res.GetPublicationCreated() || res.GetSlotCreated() {
		t.Fatalf("switching to the schema: %v, %v; want nothing created", res, err)
	}
	expectPublished(t, super, f.pub, "schema "+f.schema, "table public."+outside)

	// Modify-objects names no slot.
	if _, err := f.ensure(t, &capturev1.EnsureReplicationRequest{Tables: []*taskv1.TableRef{b}, PublicationOnly: true}); err != nil {
		t.Fatalf("back to a table list without a slot name: %v", err)
	}
	expectPublished(t, super, f.pub, "table "+f.schema+".b")

	_, err = f.ensure(t, &capturev1.EnsureReplicationRequest{AllTables: true})
	if st := status.Convert(err); st.Code() != codes.FailedPrecondition || !strings.Contains(st.Message(), f.slot) ||
		!strings.Contains(st.Message(), "create it again") {
		t.Fatalf("FOR ALL TABLES under a live slot: %v; want FailedPrecondition naming the slot and the fix", err)
	}
	expectPublished(t, super, f.pub, "table "+f.schema+".b")
}

// The shared server's role is no superuser: a schema publication is refused
// with the statement that fixes it, and the alternative.
func TestSchemaPublicationNeedsASuperuser(t *testing.T) {
	f := newSchemaFixture(t, "a")
	f.src = testenv.Source(t)
	_, err := f.ensure(t, &capturev1.EnsureReplicationRequest{Schemas: []string{f.schema}, PublicationOnly: true})
	if st := status.Convert(err); st.Code() != codes.PermissionDenied || !strings.Contains(st.Message(), "WITH SUPERUSER") ||
		!strings.Contains(st.Message(), "objects.tables") {
		t.Fatalf("schema publication as %s: %v; want PermissionDenied with the fix", f.src.GetUser(), err)
	}
	for _, bad := range []*capturev1.EnsureReplicationRequest{
		{Source: f.src, PublicationName: f.pub, PublicationOnly: true},
		{Source: f.src, PublicationName: f.pub, PublicationOnly: true, Schemas: []string{""}},
		{Source: f.src, PublicationName: f.pub, Tables: []*taskv1.TableRef{table(f.schema, "a")}}, // no slot
	} {
		if _, err := f.client.EnsureReplication(context.Background(), bad); status.Code(err) != codes.InvalidArgument {
			t.Errorf("EnsureReplication(%v) = %v, want InvalidArgument", bad, err)
		}
	}
}

// FOR ALL TABLES runs on a private server: on the shared one it would make
// PostgreSQL refuse UPDATE and DELETE on every keyless table of other tests.
// A setup retried before its slot exists may turn a list into FOR ALL
// TABLES; the stream then carries a table created later in a new schema.
func TestAllTablesPublication(t *testing.T) {
	pg := testenv.StartPostgres(t)
	client := startServer(t)
	src := pg.Source()
	src.User, src.Password = "postgres", nil // trusted on loopback
	testenv.Exec(t, pg.Conn(t), "CREATE TABLE public.t1 (id int8 PRIMARY KEY)")
	const slot, pub = "ferry_all_slot", "ferry_all_pub"
	ensure := func(req *capturev1.EnsureReplicationRequest) (*capturev1.EnsureReplicationResponse, error) {
		req.Source, req.SlotName, req.PublicationName = src, slot, pub
		return client.EnsureReplication(context.Background(), req)
	}
	if _, err := ensure(&capturev1.EnsureReplicationRequest{Tables: []*taskv1.TableRef{table("public", "t1")}, PublicationOnly: true}); err != nil {
		t.Fatal(err)
	}
	res, err := ensure(&capturev1.EnsureReplicationRequest{AllTables: true})
	if err != nil || !res.GetSlotCreated() {
		t.Fatalf("FOR ALL TABLES before the slot exists: %v, %v; want the publication recreated and the slot created", res, err)
	}
	super := pg.SuperConn(t)
	expectPublished(t, super, pub, "ALL")
	var viaRoot bool
	if err := super.QueryRow(context.Background(), "SELECT pubviaroot FROM pg_publication WHERE pubname = $1", pub).Scan(&viaRoot); err != nil || !viaRoot {
		t.Fatalf("publish_via_partition_root = %v (%v), want true", viaRoot, err)
	}

	s := openStream(t, client, &capturev1.StartStream{Source: src, SlotName: slot, PublicationName: pub})
	testenv.Exec(t, pg.Conn(t),
		"CREATE SCHEMA later",
		"CREATE TABLE later.t2 (id int8 PRIMARY KEY)",
		"INSERT INTO public.t1 VALUES (1)",
		"INSERT INTO later.t2 VALUES (2)",
	)
	batches := s.until(t, "rows of both tables", func(bs []*cdcv1.ChangeBatch) bool { return len(rowsOf(bs, "later", "t2")) == 1 })
	if got := rowsOf(batches, "public", "t1"); !slices.Equal(got, []int64{1}) {
		t.Errorf("rows of public.t1 = %v, want [1]", got)
	}
	if got := rowsOf(batches, "later", "t2"); !slices.Equal(got, []int64{2}) {
		t.Errorf("rows of later.t2 = %v, want [2]", got)
	}
	if _, err := ensure(&capturev1.EnsureReplicationRequest{AllTables: true}); err != nil {
		t.Fatalf("FOR ALL TABLES again: %v", err)
	}
	_, err = ensure(&capturev1.EnsureReplicationRequest{Schemas: []string{"later"}})
	if st := status.Convert(err); st.Code() != codes.FailedPrecondition || !strings.Contains(st.Message(), slot) {
		t.Fatalf("back to a schema under the live slot: %v; want FailedPrecondition naming %s", err, slot)
	}
	expectPublished(t, super, pub, "ALL")
}
