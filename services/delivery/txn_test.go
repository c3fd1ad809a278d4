package delivery

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	cdcv1 "github.com/ferry-cdc/ferry/gen/ferry/cdc/v1"
	deliveryv1 "github.com/ferry-cdc/ferry/gen/ferry/delivery/v1"
	taskv1 "github.com/ferry-cdc/ferry/gen/ferry/task/v1"
	"github.com/ferry-cdc/ferry/services/testenv"
)

// inTxn is a change of the source transaction that commits at commitLSN.
func inTxn(id int64, lsn, commitLSN uint64) *cdcv1.ChangeEvent {
	ev := insert(id, "eos", lsn)
	ev.CommitLsn = commitLSN
	return ev
}

// TestExactlyOnceResumeReal runs two streams of one task on the real broker.
// The first commits two source transactions (checkpoint 130) and leaves a
// third open; the second, started while the first still runs, fences it,
// resumes from 130 and is sent everything again, as PostgreSQL replays from
// a slot that lags the checkpoint. A read_committed reader must see every
// row exactly once, including the transaction that began below 130 but
// committed after it.
func TestExactlyOnceResumeReal(t *testing.T) {
	bootstrap := realKafka(t)
	client, _ := startServer(t)
	topic := testenv.UniqueName("ferry_eos")
	ensure(t, client, bootstrap, &deliveryv1.TopicSpec{Name: topic, Partitions: 3})
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	st := start(bootstrap, topic, &taskv1.KafkaOptions{ExactlyOnce: true,
		PartitionPolicy: taskv1.PartitionPolicy_PARTITION_POLICY_HASH_PRIMARY_KEY})
	st.TaskId = strings.ReplaceAll(topic, "_", "-")

	// Transactions A (rows 1-3, commit 100, ends 110) and B (rows 4-5,
	// commit 120, ends 130); C (rows 6-7, commit 140, ends 150) began at 125,
	// before B ended, so its first row is below the checkpoint.
	a := &cdcv1.ChangeBatch{Relations: []*cdcv1.Relation{ordersRelation()},
		Events: []*cdcv1.ChangeEvent{inTxn(1, 95, 100), inTxn(2, 96, 100), inTxn(3, 97, 100)}, WatermarkLsn: 110}
	b := &cdcv1.ChangeBatch{Events: []*cdcv1.ChangeEvent{inTxn(4, 115, 120), inTxn(5, 116, 120)}, WatermarkLsn: 130}
	c1 := &cdcv1.ChangeBatch{Events: []*cdcv1.ChangeEvent{inTxn(6, 125, 140)}}
	c2 := &cdcv1.ChangeBatch{Events: []*cdcv1.ChangeEvent{inTxn(7, 138, 140)}, WatermarkLsn: 150}

	began := time.Now()
	first := openSession(t, ctx, client, st)
	if r := first.next(time.After(60 * time.Second)); r == nil || r.GetResumedFromLsn() != 0 {
		t.Fatalf("a new task's first response: %v (stream %v), want resumed_from_lsn 0", r, first.result)
	}
	first.send(a)
	first.send(b)
	first.waitSafe(130, 30*time.Second)
	first.send(c1) // C stays open in the first stream's transaction

	second := openSession(t, ctx, client, st)
	r := second.next(time.After(60 * time.Second))
	if r == nil || r.GetResumedFromLsn() != 130 || r.GetSafeLsn() != 130 {
		t.Fatalf("restarted stream's first response: %v (stream %v), want resumed_from_lsn and safe_lsn 130", r, second.result)
	}
	// The zombie is fenced: its next commit fails and confirms nothing.
	first.send(c2)
	last, err := first.drain(60 * time.Second)
	if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "fenced") {
		t.Fatalf("fenced stream ended with %v, want FailedPrecondition naming the fencing", err)
	}
	if last.GetSafeLsn() != 130 {
		t.Fatalf("fenced stream's final safe LSN %d, want 130", last.GetSafeLsn())
	}

	relations := &cdcv1.ChangeBatch{Relations: []*cdcv1.Relation{ordersRelation()}, Events: a.Events, WatermarkLsn: 110}
	for _, batch := range []*cdcv1.ChangeBatch{relations, b, c1, c2} {
		second.send(batch)
	}
	second.waitSafe(150, 30*time.Second)
	if _, err := second.finish(30 * time.Second); err != nil {
		t.Fatalf("second stream: %v", err)
	}
	// Committed transactions report their changes' commit and ack times.
	checkLatencyTimes(t, first.seen, began, time.Now(), 130)
	checkLatencyTimes(t, second.seen, began, time.Now(), 150)

	counts := testenv.ReadCommittedKeys(t, bootstrap, topic, 7, 30*time.Second)
	for id := 1; id <= 7; id++ {
		if counts[strconv.Itoa(id)] != 1 {
			t.Errorf("row %d read %d times, want once (all: %v)", id, counts[strconv.Itoa(id)], counts)
		}
	}
	if got := storedCheckpoint(t, bootstrap, st.TaskId); got != 150 {
		t.Fatalf("checkpoint topic holds %d for the task, want 150", got)
	}
}

func TestExactlyOnceNeedsAcksAll(t *testing.T) {
	bootstrap := realKafka(t)
	client, _ := startServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s := openSession(t, ctx, client, start(bootstrap, "unused", &taskv1.KafkaOptions{ExactlyOnce: true, Acks: taskv1.Acks_ACKS_LEADER}))
	if _, err := s.drain(20 * time.Second); status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "acks") {
		t.Fatalf("got %v, want InvalidArgument naming acks", err)
	}
}

func TestDropCoveredKeepsLaterCommits(t *testing.T) {
	evs := []*cdcv1.ChangeEvent{inTxn(1, 90, 100), inTxn(2, 125, 140), inTxn(3, 99, 129), inTxn(4, 131, 130)}
	kept := dropCovered(evs, 130)
	var ids []int64
	for _, ev := range kept {
		ids = append(ids, rowID(ev))
	}
	// Commit records starting at or after 130 are not covered, whatever
	// the change's own LSN.
	if len(ids) != 2 || ids[0] != 2 || ids[1] != 4 {
		t.Fatalf("kept %v, want rows 2 and 4", ids)
	}
}

// storedCheckpoint reads the task's checkpoint the way a stream does.
func storedCheckpoint(t *testing.T, bootstrap, taskID string) uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	lsn, _, err := StoredCheckpoint(ctx, kafka.ConfigMap{"bootstrap.servers": bootstrap}, taskID)
	if err != nil {
		t.Fatal(err)
	}
	return lsn
}
