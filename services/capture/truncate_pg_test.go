package capture

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"

	capturev1 "github.com/ferry-cdc/ferry/gen/ferry/capture/v1"
	cdcv1 "github.com/ferry-cdc/ferry/gen/ferry/cdc/v1"
	taskv1 "github.com/ferry-cdc/ferry/gen/ferry/task/v1"
	"github.com/ferry-cdc/ferry/services/testenv"
)

// TRUNCATEs of one table, of two in one statement, through CASCADE, and of
// a partitioned table arrive from a real PostgreSQL as events in WAL order
// among the rows around them, each with its options, and a partitioned
// table as its root alone, since Ferry publishes via the root.
func TestTruncateArrivesInWALOrder(t *testing.T) {
	checkTruncateOrder(t, testenv.StartPostgres(t))
}

// TestTruncateEveryVersion: PostgreSQL 12 publishes partitions' leaves, and
// capture names their root in a TRUNCATE as 13 and later do themselves.
func TestTruncateEveryVersion(t *testing.T) {
	for _, major := range testenv.SupportedMajors {
		if major == 15 {
			continue
		}
		t.Run(fmt.Sprint(major), func(t *testing.T) {
			checkTruncateOrder(t, testenv.StartPostgresVersion(t, major))
		})
	}
}

func checkTruncateOrder(t *testing.T, pg *testenv.Postgres) {
	conn := pg.Conn(t)
	for _, s := range []string{
		"CREATE TABLE public.tr_a (id int8 PRIMARY KEY, note text)",
		"CREATE TABLE public.tr_b (id int8 PRIMARY KEY, a_id int8 REFERENCES public.tr_a, n serial)",
		"CREATE TABLE public.tr_p (id int8, part int4) PARTITION BY LIST (part)",
		"CREATE TABLE public.tr_p1 PARTITION OF public.tr_p FOR VALUES IN (1)",
		"CREATE TABLE public.tr_p2 PARTITION OF public.tr_p FOR VALUES IN (2)",
	} {
		testenv.Exec(t, conn, s)
	}
	client := startServer(t)
	resp, err := client.EnsureReplication(context.Background(), &capturev1.EnsureReplicationRequest{
		Source: pg.Source(), SlotName: "tr_slot", PublicationName: "tr_pub",
		Tables: []*taskv1.TableRef{table("public", "tr_a"), table("public", "tr_b"), table("public", "tr_p")},
	})
	if err != nil {
		t.Fatalf("EnsureReplication: %v", err)
	}
	s := openStream(t, client, &capturev1.StartStream{Source: pg.Source(), SlotName: "tr_slot", PublicationName: "tr_pub", StartLsn: resp.GetConfirmedLsn()})
	for _, stmt := range []string{
		"INSERT INTO public.tr_b (id) VALUES (1)",
		"TRUNCATE public.tr_b",
		"BEGIN; INSERT INTO public.tr_a VALUES (2, 'b'); INSERT INTO public.tr_b (id, a_id) VALUES (10, 2); TRUNCATE public.tr_a CASCADE; INSERT INTO public.tr_a VALUES (3, 'c'); COMMIT",
		"INSERT INTO public.tr_b (id) VALUES (11)",
		"TRUNCATE public.tr_a, public.tr_b RESTART IDENTITY",
		"INSERT INTO public.tr_p VALUES (1, 1), (2, 2)",
		"TRUNCATE public.tr_p",
		"INSERT INTO public.tr_a VALUES (4, 'd')",
	} {
		testenv.Exec(t, conn, stmt)
	}
	batches := s.untilEvents(t, 12)
	checkWatermarks(t, batches)
	names := map[uint32]string{}
	for _, b := range batches {
		for _, r := range b.GetRelations() {
			names[r.GetOid()] = r.GetTable()
		}
	}
	var got []string
	var lsn, commit uint64
	for _, ev := range events(batches) {
		if ev.GetLsn() <= lsn || ev.GetCommitLsn() < commit || ev.GetCommitLsn() < ev.GetLsn() {
			t.Fatalf("event %v out of WAL order after lsn %d, commit %d", ev, lsn, commit)
		}
		lsn, commit = ev.GetLsn(), ev.GetCommitLsn()
		got = append(got, describeEvent(ev, names))
	}
	want := []string{
		"INSERT tr_b", "TRUNCATE tr_b",
		"INSERT tr_a", "INSERT tr_b", "TRUNCATE tr_a,tr_b CASCADE", "INSERT tr_a",
		"INSERT tr_b", "TRUNCATE tr_a,tr_b RESTART IDENTITY",
		"INSERT tr_p", "INSERT tr_p", "TRUNCATE tr_p",
		"INSERT tr_a",
	}
	if !slices.Equal(got, want) {
		t.Fatalf("events\n%q\nwant\n%q", got, want)
	}
}

func describeEvent(ev *cdcv1.ChangeEvent, names map[uint32]string) string {
	if ev.GetOp() != cdcv1.Operation_OPERATION_TRUNCATE {
		return map[cdcv1.Operation]string{cdcv1.Operation_OPERATION_INSERT: "INSERT"}[ev.GetOp()] + " " + names[ev.GetRelationOid()]
	}
	tr := ev.GetTruncate()
	var tabs []string
	for _, oid := range tr.GetRelationOids() {
		tabs = append(tabs, names[oid])
	}
	out := "TRUNCATE " + strings.Join(tabs, ",")
	if tr.GetRestartIdentity() {
		out += " RESTART IDENTITY"
	}
	if tr.GetCascade() {
		out += " CASCADE"
	}
	return out
}

// An existing publication that leaves TRUNCATE out is made to publish it:
// otherwise the TRUNCATEs would vanish without a trace.
func TestEnsureMakesThePublicationPublishTruncate(t *testing.T) {
	pg := testenv.StartPostgres(t)
	conn := pg.Conn(t)
	testenv.Exec(t, conn, "CREATE TABLE public.tr_pub_t (id int8 PRIMARY KEY)")
	testenv.Exec(t, conn, "CREATE PUBLICATION tr_pub2 FOR TABLE public.tr_pub_t WITH (publish = 'insert, update, delete')")
	_, err := startServer(t).EnsureReplication(context.Background(), &capturev1.EnsureReplicationRequest{
		Source: pg.Source(), SlotName: "tr_slot2", PublicationName: "tr_pub2", Tables: []*taskv1.TableRef{table("public", "tr_pub_t")},
	})
	if err != nil {
		t.Fatalf("EnsureReplication: %v", err)
	}
	var truncate bool
	if err := conn.QueryRow(context.Background(), "SELECT pubtruncate FROM pg_publication WHERE pubname = 'tr_pub2'").Scan(&truncate); err != nil || !truncate {
		t.Fatalf("pubtruncate %v (%v), want true", truncate, err)
	}
}
