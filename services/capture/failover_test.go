package capture

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	capturev1 "github.com/ferry-cdc/ferry/gen/ferry/capture/v1"
	taskv1 "github.com/ferry-cdc/ferry/gen/ferry/task/v1"
	"github.com/ferry-cdc/ferry/services/testenv"
)

// On PostgreSQL 17 a task that asks for a failover slot gets one, from setup
// and from full sync alike; an older slot becomes one when its stream starts.
func TestFailoverSlotsOn17(t *testing.T) {
	pg := testenv.StartPostgresVersion(t, 17)
	c := startServer(t)
	conn := pg.Conn(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	exec := func(sql string) {
		t.Helper()
		if _, err := conn.Exec(ctx, sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	exec(`CREATE TABLE fo (id int PRIMARY KEY)`)
	failover := func(slot string) bool {
		t.Helper()
		info, err := lookupSlot(ctx, conn, slot)
		if err != nil {
			t.Fatal(err)
		}
		return info.failover
	}
	src := pg.Source()
	tables := []*taskv1.TableRef{table("public", "fo")}
	ensure := func(slot string, asked bool) {
		t.Helper()
		s := pg.Source()
		s.FailoverSlot = asked
		if _, err := c.EnsureReplication(ctx, &capturev1.EnsureReplicationRequest{
			Source: s, SlotName: slot, PublicationName: "fo_pub", Tables: tables,
		}); err != nil {
			t.Fatalf("EnsureReplication %s: %v", slot, err)
		}
	}
	ensure("fo_plain", false)
	ensure("fo_asked", true)
	if failover("fo_plain") || !failover("fo_asked") {
		t.Fatalf("failover: plain %v, asked %v; want only the asked slot", failover("fo_plain"), failover("fo_asked"))
	}

	src.FailoverSlot = true
	snap, err := c.ReadSnapshot(ctx, &capturev1.ReadSnapshotRequest{Source: src, SlotName: "fo_snap", PublicationName: "fo_pub", Tables: tables})
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := snap.Recv(); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("ReadSnapshot: %v", err)
		}
	}
	if !failover("fo_snap") {
		t.Error("the full sync's slot is not a failover slot")
	}

	s := openStream(t, c, &capturev1.StartStream{Source: src, SlotName: "fo_plain", PublicationName: "fo_pub"})
	exec(`INSERT INTO fo VALUES (1)`)
	s.untilEvents(t, 1)
	s.close()
	if !failover("fo_plain") {
		t.Error("streaming with failover_slot left the older slot without FAILOVER")
	}
}

// Below PostgreSQL 17 asking for a failover slot is a configuration error
// that says what to do, and no slot is created.
func TestFailoverSlotRefusedBefore17(t *testing.T) {
	c := startServer(t)
	name := testenv.UniqueName("ferry_fo")
	r := newReplication(t, name, table("public", name))
	conn := testenv.PG(t)
	if _, err := conn.Exec(context.Background(), "CREATE TABLE "+quoteIdent("public", name)+" (id int PRIMARY KEY)"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = conn.Exec(context.Background(), "DROP TABLE "+quoteIdent("public", name)) })
	src := testenv.Source(t)
	src.FailoverSlot = true
	_, err := c.EnsureReplication(context.Background(), &capturev1.EnsureReplicationRequest{
		Source: src, SlotName: r.slot, PublicationName: r.pub, Tables: r.tables,
	})
	if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "PostgreSQL 17") {
		t.Fatalf("EnsureReplication with failover_slot on PostgreSQL 15: %v, want FailedPrecondition naming PostgreSQL 17", err)
	}
	if _, err := lookupSlot(context.Background(), conn, r.slot); err == nil {
		t.Errorf("slot %s was created anyway", r.slot)
	}
}

// A stream resumes at the later of the checkpoint and the slot, except on a
// slot left by a promoted standby, whose timeline may have forked below the
// checkpoint: there it starts at the slot, sending changes again rather
// than skipping the new timeline's.
func TestResumeAtAPromotedSlotStartsAtTheSlot(t *testing.T) {
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	for _, c := range []struct {
		checkpoint, confirmed pglogrepl.LSN
		synced                bool
		want                  pglogrepl.LSN
	}{
		{checkpoint: 200, confirmed: 100, want: 200},
		{checkpoint: 100, confirmed: 200, want: 200},
		{checkpoint: 200, confirmed: 100, synced: true, want: 100},
		{checkpoint: 100, confirmed: 200, synced: true, want: 200},
	} {
		got := resumeAt(logger, "s", c.checkpoint, slotInfo{confirmed: c.confirmed, synced: c.synced})
		if got != c.want {
			t.Errorf("checkpoint %d, slot at %d, synced %v: resumed at %d, want %d", c.checkpoint, c.confirmed, c.synced, got, c.want)
		}
	}
}
