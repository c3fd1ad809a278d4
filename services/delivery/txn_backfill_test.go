package delivery

import (
	"context"
	"encoding/json"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"google.golang.org/protobuf/proto"

	cdcv1 "github.com/ferry-cdc/ferry/gen/ferry/cdc/v1"
	deliveryv1 "github.com/ferry-cdc/ferry/gen/ferry/delivery/v1"
	taskv1 "github.com/ferry-cdc/ferry/gen/ferry/task/v1"
	"github.com/ferry-cdc/ferry/services/testenv"
)

// chunkOf is a backfill chunk as capture sends it: rows ids placed at the
// high watermark hw.
func chunkOf(hw uint64, ids ...int64) *cdcv1.ChangeBatch {
	b := &cdcv1.ChangeBatch{Relations: []*cdcv1.Relation{ordersRelation()}, WatermarkLsn: hw}
	for _, id := range ids {
		ev := insert(id, "chunk", hw)
		ev.Xid, ev.Snapshot = 0, true
		b.Events = append(b.Events, ev)
	}
	return b
}

func progressOf(hw uint64, last int64, rows uint64, done bool) *cdcv1.BackfillProgress {
	return &cdcv1.BackfillProgress{Schema: "public", Table: "orders", AfterKey: []string{strconv.FormatInt(last, 10)},
		Rows: rows, Done: done, Lsn: hw, EstimatedRows: 5}
}

func (s *session) sendProgress(p *cdcv1.BackfillProgress) {
	s.t.Helper()
	if err := s.stream.Send(&deliveryv1.DeliverRequest{Kind: &deliveryv1.DeliverRequest_Backfill{Backfill: p}}); err != nil {
		s.t.Fatal(err)
	}
}

// TestExactlyOnceBackfillProgressResumes runs a backfill through two
// exactly-once streams of one task on a private broker. The first commits
// two chunks with their progress and is cut while a third chunk waits for
// its progress; the second must resume from the second chunk's watermark
// with the second chunk's progress, so the client reads on after row 4 and
// a read_committed reader sees every row once.
func TestExactlyOnceBackfillProgressResumes(t *testing.T) {
	bootstrap := testenv.StartKafka(t).Bootstrap()
	client, _ := startServer(t)
	topic := testenv.UniqueName("ferry_eos_bf")
	ensure(t, client, bootstrap, &deliveryv1.TopicSpec{Name: topic, Partitions: 2})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	st := start(bootstrap, topic, &taskv1.KafkaOptions{ExactlyOnce: true,
		PartitionPolicy: taskv1.PartitionPolicy_PARTITION_POLICY_HASH_PRIMARY_KEY})

	first := openSession(t, ctx, client, st)
	if r := first.next(time.After(90 * time.Second)); r == nil || r.GetResumedFromLsn() != 0 || len(r.GetResumedBackfills()) != 0 {
		t.Fatalf("a new task's first response: %v (stream %v), want nothing resumed", r, first.result)
	}
	first.send(chunkOf(200, 1, 2))
	first.sendProgress(progressOf(200, 2, 2, false))
	first.waitSafe(200, 30*time.Second)
	first.send(chunkOf(300, 3, 4))
	// The chunk's transaction waits for its progress: it must not commit
	// at 300 alone, though the idle committer would commit it after 100ms.
	notSafe(first, 300, 600*time.Millisecond)
	first.sendProgress(progressOf(300, 4, 4, false))
	first.waitSafe(300, 30*time.Second)
	first.send(chunkOf(400, 5)) // cut before its progress: never committed

	// The client's own checkpoint trails Kafka's: it holds the first
	// chunk's progress, not the second's.
	st.CheckpointLsn = 200
	second := openSession(t, ctx, client, st)
	r := second.next(time.After(90 * time.Second))
	want := progressOf(300, 4, 4, false)
	if r == nil || r.GetResumedFromLsn() != 300 || len(r.GetResumedBackfills()) != 1 || !proto.Equal(r.GetResumedBackfills()[0], want) {
		t.Fatalf("resumed stream's first response: %v (stream %v), want resumed_from_lsn 300 with backfill %v", r, second.result, want)
	}
	if _, err := first.drain(60 * time.Second); err == nil {
		t.Fatal("the fenced first stream ended cleanly")
	}
	// The client resumes the backfill after row 4: the last chunk again, at
	// a new watermark.
	second.send(chunkOf(450, 5))
	second.sendProgress(progressOf(450, 5, 5, true))
	second.waitSafe(450, 30*time.Second)
	if _, err := second.finish(30 * time.Second); err != nil {
		t.Fatalf("second stream: %v", err)
	}

	counts := testenv.ReadCommittedKeys(t, bootstrap, topic, 5, 60*time.Second)
	for id := 1; id <= 5; id++ {
		if counts[strconv.Itoa(id)] != 1 {
			t.Errorf("row %d read %d times, want once (all: %v)", id, counts[strconv.Itoa(id)], counts)
		}
	}
	rec := storedRecord(t, bootstrap, st.GetTaskId())
	got, err := decodeBackfills(rec.Backfills)
	if err != nil {
		t.Fatal(err)
	}
	if rec.WatermarkLSN != 450 || len(got) != 1 || !proto.Equal(got["public.orders"], progressOf(450, 5, 5, true)) {
		t.Fatalf("checkpoint record %+v (backfills %v), want watermark 450 with the finished backfill", rec, got)
	}

	// A client whose checkpoint holds the finished backfill: delivery
	// forgets it, and its next record no longer carries it. The checkpoint
	// is past the chunk's 450, not at it: a client confirms a chunk only
	// once its safe LSN has passed the chunk's (forgetHeld), since a batch
	// before the chunk may carry the same watermark.
	st.CheckpointLsn = 451
	third := openSession(t, ctx, client, st)
	if r := third.next(time.After(90 * time.Second)); r == nil || r.GetResumedFromLsn() != 450 || len(r.GetResumedBackfills()) != 0 {
		t.Fatalf("third stream's first response: %v (stream %v), want resumed_from_lsn 450 (the record's) and no backfills", r, third.result)
	}
	third.send(&cdcv1.ChangeBatch{Relations: []*cdcv1.Relation{ordersRelation()}, Events: []*cdcv1.ChangeEvent{insert(6, "later", 470)}, WatermarkLsn: 480})
	third.waitSafe(480, 30*time.Second)
	if _, err := third.finish(30 * time.Second); err != nil {
		t.Fatalf("third stream: %v", err)
	}
	if rec := storedRecord(t, bootstrap, st.GetTaskId()); rec.WatermarkLSN != 480 || len(rec.Backfills) != 0 {
		t.Fatalf("checkpoint record %+v, want watermark 480 without backfills", rec)
	}
}

// notSafe fails when the stream reports safe LSN lsn within d.
func notSafe(s *session, lsn uint64, d time.Duration) {
	s.t.Helper()
	deadline := time.After(d)
	for {
		select {
		case r, ok := <-s.resps:
			if !ok {
				s.t.Fatalf("stream ended (%v) while waiting", <-s.done)
			}
			s.seen = append(s.seen, r)
			if r.GetSafeLsn() >= lsn {
				s.t.Fatalf("safe LSN reached %d before the chunk's progress arrived", r.GetSafeLsn())
			}
		case <-deadline:
			return
		}
	}
}

// storedRecord reads the task's checkpoint record as a stream does.
func storedRecord(t *testing.T, bootstrap, taskID string) checkpointRecord {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var got checkpointRecord
	err := readCompacted(ctx, kafka.ConfigMap{"bootstrap.servers": bootstrap}, DefaultCheckpointTopic, func(m *kafka.Message) error {
		if string(m.Key) == taskID {
			got = checkpointRecord{}
			return json.Unmarshal(m.Value, &got)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return got
}

func TestBackfillsRoundTrip(t *testing.T) {
	in := map[string]*cdcv1.BackfillProgress{
		"s.b": {Schema: "s", Table: "b", AfterKey: []string{"7", "x y"}, Rows: 9, Lsn: 1 << 40, EstimatedRows: 20},
		"s.a": {Schema: "s", Table: "a", Rows: 3, Done: true, Lsn: 12},
	}
	raw, err := encodeBackfills(in)
	if err != nil {
		t.Fatal(err)
	}
	// Ordered by table, so equal states write equal records.
	if len(raw) != 2 || !strings.Contains(string(raw[0]), `"table":"a"`) {
		t.Fatalf("encoded %s", raw)
	}
	rec, err := json.Marshal(checkpointRecord{WatermarkLSN: 5, Backfills: raw})
	if err != nil {
		t.Fatal(err)
	}
	var back checkpointRecord
	if err := json.Unmarshal(rec, &back); err != nil {
		t.Fatal(err)
	}
	out, err := decodeBackfills(back.Backfills)
	if err != nil {
		t.Fatal(err)
	}
	keys := make([]string, 0, len(out))
	for k, v := range out {
		keys = append(keys, k)
		if !proto.Equal(v, in[k]) {
			t.Errorf("%s came back as %v, want %v", k, v, in[k])
		}
	}
	if slices.Sort(keys); !slices.Equal(keys, []string{"s.a", "s.b"}) {
		t.Fatalf("decoded tables %v", keys)
	}
}

func TestChunkBatch(t *testing.T) {
	if !chunkBatch(chunkOf(10, 1)) {
		t.Error("a chunk's batch not recognised")
	}
	if chunkBatch(chunkOf(10)) || chunkBatch(&cdcv1.ChangeBatch{Events: []*cdcv1.ChangeEvent{insert(1, "a", 10)}, WatermarkLsn: 10}) {
		t.Error("a batch without snapshot rows taken for a chunk")
	}
}
