package capture

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	capturev1 "github.com/ferry-cdc/ferry/gen/ferry/capture/v1"
	"github.com/ferry-cdc/ferry/services/testenv"
)

func TestClaimTextRoundTrips(t *testing.T) {
	for _, c := range []claim{{owner: "0f8e2c1a-5d3b-4c7e-9a10-2b3c4d5e6f70"}, {owner: "run-1", slot: true}} {
		if got := parseClaim(c.text()); got != c {
			t.Errorf("parseClaim(%q) = %+v, want %+v", c.text(), got, c)
		}
	}
	for _, comment := range []string{"", "replication for reports", "Ferry replication of owner x'; DROP TABLE t (slot claimed)"} {
		if got := parseClaim(comment); got != (claim{}) {
			t.Errorf("parseClaim(%q) = %+v, want no claim", comment, got)
		}
	}
}

// A task takes over neither a publication nor a slot it did not create, and
// its release leaves another owner's alone; its own it adopts on a retry and
// drops on release.
func TestOwnershipGuardsAdoptionAndRelease(t *testing.T) {
	ctx := context.Background()
	c := startServer(t)
	conn := testenv.PG(t)
	name := testenv.UniqueName("e2eown")
	testenv.Exec(t, conn, fmt.Sprintf("CREATE TABLE public.%s (id int PRIMARY KEY)", name))
	t.Cleanup(func() { _, _ = conn.Exec(context.Background(), "DROP TABLE IF EXISTS public."+name) })
	r := newReplication(t, testenv.UniqueName("ferry_own"), table("public", name))
	ensure := func(owner string, pubOnly bool) error {
		_, err := c.EnsureReplication(ctx, &capturev1.EnsureReplicationRequest{Source: testenv.Source(t), SlotName: r.slot,
			PublicationName: r.pub, Tables: r.tables, Owner: owner, PublicationOnly: pubOnly})
		return err
	}
	release := func(owner string) *capturev1.ReleaseReplicationResponse {
		res, err := c.ReleaseReplication(ctx, &capturev1.ReleaseReplicationRequest{Source: testenv.Source(t), SlotName: r.slot, PublicationName: r.pub, Owner: owner})
		if err != nil {
			t.Fatalf("ReleaseReplication as %s: %v", owner, err)
		}
		return res
	}
	refused := func(what string, err error, want string) {
		t.Helper()
		if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), want) {
			t.Fatalf("%s: %v; want FailedPrecondition saying %q", what, err, want)
		}
	}

	// A publication someone else made under the task's name.
	testenv.Exec(t, conn, fmt.Sprintf("CREATE PUBLICATION %s FOR TABLE public.%s", quoteIdent(r.pub), name))
	refused("a publication Ferry did not create", ensure("owner-a", false), "was not created by this task")
	testenv.Exec(t, conn, "DROP PUBLICATION "+quoteIdent(r.pub))

	// A slot someone else made under the task's name, beside this task's
	// publication.
	if err := ensure("owner-a", true); err != nil {
		t.Fatal(err)
	}
	testenv.Exec(t, conn, fmt.Sprintf("SELECT pg_create_logical_replication_slot('%s', 'pgoutput')", r.slot))
	refused("a slot Ferry did not create", ensure("owner-a", false), "pg_drop_replication_slot")
	if res := release("owner-a"); res.GetLeftBecause() == "" || res.GetSlotDropped() || slotExists(t, r.slot) == false {
		t.Fatalf("release dropped a slot this task did not create: %+v", res)
	}
	testenv.Exec(t, conn, fmt.Sprintf("SELECT pg_drop_replication_slot('%s')", r.slot))

	// The task's own: created, adopted again on a retry, refused to another
	// owner, left alone by the other's release, dropped by its own.
	if err := ensure("owner-a", false); err != nil {
		t.Fatal(err)
	}
	if err := ensure("owner-a", false); err != nil {
		t.Fatalf("a retried setup must adopt its own slot: %v", err)
	}
	refused("another task's publication", ensure("owner-b", false), "was not created by this task")
	if res := release("owner-b"); res.GetLeftBecause() == "" || !slotExists(t, r.slot) {
		t.Fatalf("another owner's release dropped the slot: %+v", res)
	}
	if res := release("owner-a"); res.GetLeftBecause() != "" || !res.GetSlotDropped() || !res.GetPublicationDropped() {
		t.Fatalf("the owner's release: %+v, want slot and publication dropped", res)
	}
	if res := release("owner-a"); res.GetLeftBecause() != "" {
		t.Fatalf("releasing again must succeed with nothing left: %+v", res)
	}
}

func slotExists(t *testing.T, slot string) bool {
	t.Helper()
	var n int
	if err := testenv.PG(t).QueryRow(context.Background(), "SELECT count(*) FROM pg_replication_slots WHERE slot_name = $1", slot).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n == 1
}
