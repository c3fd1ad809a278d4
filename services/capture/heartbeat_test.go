package capture

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"

	capturev1 "github.com/ferry-cdc/ferry/gen/ferry/capture/v1"
	cdcv1 "github.com/ferry-cdc/ferry/gen/ferry/cdc/v1"
	"github.com/ferry-cdc/ferry/services/testenv"
)

// autoAck acks every new watermark, as delivery does once Kafka holds
// everything before it (these streams carry no events, so at once).
func (s *testStream) autoAck(stop <-chan struct{}) {
	var acked uint64
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-stop:
			return
		case <-s.done:
			return
		case <-tick.C:
		}
		s.mu.Lock()
		w := lastWatermark(s.batches)
		s.mu.Unlock()
		if w > acked {
			if err := s.stream.Send(&capturev1.StreamChangesRequest{Kind: &capturev1.StreamChangesRequest_Ack{Ack: &capturev1.Ack{FlushedLsn: w}}}); err != nil {
				return
			}
			acked = w
		}
	}
}

// slotLag is how far a slot trails the WAL, in bytes.
type slotLag struct {
	current, confirmed, restart pglogrepl.LSN
}

func (l slotLag) unconfirmed() int64 { return int64(l.current) - int64(l.confirmed) }
func (l slotLag) retained() int64    { return int64(l.current) - int64(l.restart) }

func readLag(t *testing.T, conn *pgx.Conn, slot string) slotLag {
	t.Helper()
	var cur, conf, rest string
	err := conn.QueryRow(context.Background(), `
		SELECT pg_current_wal_lsn()::text, confirmed_flush_lsn::text, restart_lsn::text
		FROM pg_replication_slots WHERE slot_name = $1`, slot).Scan(&cur, &conf, &rest)
	if err != nil {
		t.Fatalf("reading slot %s: %v", slot, err)
	}
	return slotLag{mustLSN(t, &cur), mustLSN(t, &conf), mustLSN(t, &rest)}
}

// messageWatcher is a temporary test_decoding slot: peeking it lists the
// logical messages written since it was created, with their LSNs, without
// consuming anything.
type messageWatcher struct {
	conn *pgx.Conn
	slot string
}

func watchMessages(t *testing.T) messageWatcher {
	t.Helper()
	w := messageWatcher{conn: testenv.PG(t), slot: testenv.UniqueName("ferry_watch")}
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	// Temporary: it goes away with the session, whatever happens to the test.
	if _, err := w.conn.Exec(ctx, "SELECT pg_create_logical_replication_slot($1, 'test_decoding', true)", w.slot); err != nil {
		t.Fatalf("creating the test_decoding slot: %v", err)
	}
	return w
}

// heartbeats returns the LSNs of the heartbeats whose payload is slot.
func (w messageWatcher) heartbeats(t *testing.T, slot string) []uint64 {
	t.Helper()
	rows, err := w.conn.Query(context.Background(),
		"SELECT lsn::text, data FROM pg_logical_slot_peek_changes($1, NULL, NULL) WHERE data LIKE 'message:%'", w.slot)
	if err != nil {
		t.Fatalf("peeking %s: %v", w.slot, err)
	}
	var out []uint64
	for rows.Next() {
		var lsn, data string
		if err := rows.Scan(&lsn, &data); err != nil {
			t.Fatal(err)
		}
		if strings.Contains(data, "transactional: 0 prefix: "+heartbeatPrefix+",") && strings.HasSuffix(data, "content:"+slot) {
			out = append(out, uint64(mustLSN(t, &lsn)))
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// idleSlotResult is what one run of the idle-slot scenario measured.
type idleSlotResult struct {
	walWritten     int64         // WAL the other table's writes produced
	maxUnconfirmed int64         // the largest current - confirmed_flush_lsn seen while writing
	caughtUp       time.Duration // from the last write until confirmed passed it
	released       time.Duration // from the last write until restart_lsn passed it
	final          slotLag
	batches        []*cdcv1.ChangeBatch
	slot           string
}

// runIdleSlot streams a publication of one table that stays idle while
// another table takes steady writes, acking every watermark, and measures
// how far the slot trails the WAL.
func runIdleSlot(t *testing.T, heartbeatSeconds uint32, watch messageWatcher) idleSlotResult {
	t.Helper()
	client := startServer(t)
	conn, super := testenv.PG(t), superPG(t)
	idle, busy := testenv.UniqueName("hb_idle"), testenv.UniqueName("hb_busy")
	createItems(t, idle)
	createItems(t, busy)
	r := newReplication(t, testenv.UniqueName("ferry_pub"), table("public", idle))
	r.ensure(t, client)
	start := r.start()
	start.HeartbeatSeconds = heartbeatSeconds
	s := openStream(t, client, start)
	stop := make(chan struct{})
	defer close(stop)
	go s.autoAck(stop)

	res := idleSlotResult{slot: r.slot}
	begin := readLag(t, super, r.slot)
	insert := `INSERT INTO ` + quoteIdent("public", busy) + ` (id, amount, note)
		SELECT g, g, repeat(md5(g::text), 30) FROM generate_series($1::int8, $1::int8 + 499) g`
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for i := range 20 { // 20 transactions of 500 rows of about 1 kB: several MB of WAL over 4 s
		if _, err := conn.Exec(context.Background(), insert, i*500); err != nil {
			t.Fatalf("writing the busy table: %v", err)
		}
		<-tick.C
		res.maxUnconfirmed = max(res.maxUnconfirmed, readLag(t, super, r.slot).unconfirmed())
	}
	end := readLag(t, super, r.slot).current
	res.walWritten = int64(end) - int64(begin.current)
	wrote := time.Now()
	deadline := wrote.Add(waitLimit)
	for {
		l := readLag(t, super, r.slot)
		if l.confirmed >= end {
			res.caughtUp = time.Since(wrote)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("heartbeat %d s: confirmed_flush_lsn %s did not pass the end of the busy table's writes %s within %s (current %s)",
				heartbeatSeconds, l.confirmed, end, waitLimit, l.current)
		}
		<-tick.C
	}
	// restart_lsn, which is what actually pins WAL, moves at the next
	// running-transactions record once confirmed_flush_lsn has passed it;
	// a checkpoint writes one instead of waiting up to 15 s for bgwriter.
	testenv.Exec(t, super, "CHECKPOINT")
	for {
		l := readLag(t, super, r.slot)
		if l.restart >= end {
			res.released, res.final = time.Since(wrote), l
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("heartbeat %d s: restart_lsn %s did not pass the end of the busy table's writes %s within %s (confirmed %s)",
				heartbeatSeconds, l.restart, end, waitLimit, l.confirmed)
		}
		<-tick.C
	}
	s.close()
	res.batches = append(res.batches, s.batches...)
	if evs := events(res.batches); len(evs) != 0 {
		t.Fatalf("changes of the unpublished table or heartbeats were shipped as rows: %v", evs)
	}
	checkWatermarks(t, res.batches)
	return res
}

func (r idleSlotResult) String() string {
	return fmt.Sprintf("%.1f MB of WAL written; while writing, the slot trailed the WAL by at most %.2f MB; "+
		"confirmed_flush_lsn passed the last write %s after it, restart_lsn %s after it (with a CHECKPOINT); "+
		"then current - confirmed = %d bytes, current - restart_lsn = %d bytes",
		float64(r.walWritten)/1e6, float64(r.maxUnconfirmed)/1e6, r.caughtUp.Round(time.Millisecond),
		r.released.Round(time.Millisecond), r.final.unconfirmed(), r.final.retained())
}

// A task's idle table must not pin the WAL that other tables write. With
// the heartbeat on, capture's logical messages come back through pgoutput
// and become watermarks at exactly their LSNs, and the acked watermarks
// carry confirmed_flush_lsn past everything written. With it off, the
// server's keepalives do the same on PostgreSQL 15 (see the report in the
// log): the heartbeat is what still works when no keepalive carries a newer
// WAL end, as while the walsender is busy catching up.
func TestHeartbeatKeepsIdleSlotNearTheWAL(t *testing.T) {
	watch := watchMessages(t)
	on := runIdleSlot(t, 1, watch)
	t.Logf("heartbeat 1 s: %v", on)
	beats := watch.heartbeats(t, on.slot)
	if len(beats) < 2 {
		t.Fatalf("heartbeat 1 s: found %d heartbeats of slot %s in the WAL; want one a second", len(beats), on.slot)
	}
	marks := map[uint64]bool{}
	for _, b := range on.batches {
		marks[b.GetWatermarkLsn()] = true
	}
	matched := 0
	for _, lsn := range beats {
		if marks[lsn] {
			matched++
		}
	}
	// The last heartbeat may still be on its way.
	if matched < len(beats)-1 {
		t.Fatalf("only %d of %d heartbeats came back as watermarks at their LSNs %v", matched, len(beats), beats)
	}

	off := runIdleSlot(t, 0, watch)
	t.Logf("heartbeat off (keepalives only): %v", off)
	if n := len(watch.heartbeats(t, off.slot)); n != 0 {
		t.Fatalf("heartbeat_seconds 0 still wrote %d heartbeats", n)
	}
}
