package delivery

// # Exactly-once delivery (KafkaOptions.exactly_once)
//
// The producer is transactional, with transactional.id "ferry-<task id>":
// the same for every stream of the task, so that a new stream's
// InitTransactions fences a stream still running elsewhere (a zombie) and
// aborts whatever transaction it left open. Messages go into Kafka
// transactions that end only where a batch's watermark_lsn is set, that is
// at a source transaction's end, so a source transaction is never split
// between two Kafka transactions. A transaction closes at the first
// watermark after it has lasted txnMaxAge or holds txnMaxMessages messages,
// or, when the stream goes quiet at a watermark, txnMaxAge after it opened.
//
// Each transaction also writes the task's checkpoint, the watermark it
// completes, to the compacted topic CheckpointTopic (key: the task id).
// Only after CommitTransaction succeeds is that watermark registered with
// the checkpointer, so the safe LSN never passes an uncommitted transaction.
//
// A new stream reads the last committed checkpoint C (read_committed, after
// InitTransactions so that its own zombie transaction is gone) and drops
// every event whose commit_lsn is below C. That rule is exact: C is the end
// LSN of a commit record (or an idle position past every sent commit), a
// transaction is in Kafka exactly when its commit record starts before C,
// and commit_lsn is where its commit record starts. An event's own lsn
// would not do: a transaction interleaved with the one that ended at C has
// changes below C but commits after it. PostgreSQL's own rule for where a
// slot resumes is the same (a transaction is skipped when its commit record
// starts before the start point). C is also the stream's first safe LSN,
// reported in the first response as resumed_from_lsn.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"github.com/jackc/pglogrepl"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	cdcv1 "github.com/ferry-cdc/ferry/gen/ferry/cdc/v1"
	deliveryv1 "github.com/ferry-cdc/ferry/gen/ferry/delivery/v1"
	taskv1 "github.com/ferry-cdc/ferry/gen/ferry/task/v1"
)

const (
	// DefaultCheckpointTopic is where exactly-once streams keep their
	// checkpoints, one compacted record per task.
	DefaultCheckpointTopic = "__ferry_checkpoints"
	// txnMaxAge and txnMaxMessages bound a transaction (at the next
	// watermark): short enough that read_committed consumers see rows
	// within about a tenth of a second, long enough that the commit's round
	// trips are amortized over many messages.
	txnMaxAge      = 100 * time.Millisecond
	txnMaxMessages = 20_000
	// txnTimeoutMs is the broker-side limit on one transaction. A source
	// transaction is never split, so one larger than what can be written
	// in this time cannot be delivered exactly once; two minutes covers
	// millions of rows. It must stay below the broker's
	// transaction.max.timeout.ms (15 minutes by default).
	txnTimeoutMs = 120_000
	// txnOpTimeout bounds InitTransactions, CommitTransaction and
	// AbortTransaction.
	txnOpTimeout = 60 * time.Second
)

// checkExactlyOnce refuses exactly-once with acks other than all: a
// transactional producer is idempotent and idempotence needs acks=all.
func checkExactlyOnce(opts *taskv1.KafkaOptions) error {
	if !opts.GetExactlyOnce() {
		return nil
	}
	if a := opts.GetAcks(); a != taskv1.Acks_ACKS_UNSPECIFIED && a != taskv1.Acks_ACKS_ALL {
		return status.Errorf(codes.InvalidArgument, "options.exactly_once needs options.acks ALL, not %v", a)
	}
	return nil
}

// transactionalID is stable for a task across streams and restarts.
func transactionalID(taskID string) string { return "ferry-" + taskID }

// setTransactional turns producer configuration c into an exactly-once one.
func setTransactional(c kafka.ConfigMap, taskID string) {
	c["transactional.id"] = transactionalID(taskID)
	c["enable.idempotence"] = true
	c["acks"] = "all"
	c["transaction.timeout.ms"] = txnTimeoutMs
}

// txnState runs the transactions of one exactly-once stream. mu serializes
// the stream goroutine (a whole batch at a time, never per row) with the
// idle committer, because librdkafka forbids producing while a commit runs.
type txnState struct {
	s     *stream
	topic string // the checkpoint topic
	part  int32  // the task's partition in it

	mu        sync.Mutex
	resumed   uint64    // checkpoint recovered at the start; events before it are dropped
	committed uint64    // checkpoint of the last committed transaction
	mark      uint64    // latest watermark enqueued (the next checkpoint)
	atMark    bool      // nothing enqueued since mark: the open transaction may end
	open      bool      // a Kafka transaction is in progress
	openedAt  time.Time // when it began
	msgs      int       // events in it
	err       error     // the stream is failed; no more transactional calls
	// Backfill progress (txn_backfill.go): per table the latest committed
	// or about to be, the progress received since the last commit, and the
	// watermark of a chunk whose progress the open transaction waits for.
	backfills map[string]*cdcv1.BackfillProgress
	queued    []*cdcv1.BackfillProgress
	held      uint64
	heldAt    time.Time

	stop chan struct{}
	done chan struct{}
}

// startTxns fences earlier producers of the task, recovers its checkpoint
// and starts the idle committer. The stream's checkpointer starts at the
// recovered checkpoint.
func (s *stream) startTxns() error {
	taskID := s.start.GetTaskId()
	if taskID == "" {
		return status.Error(codes.InvalidArgument, "options.exactly_once needs start.task_id: it names the transactional producer and the checkpoint")
	}
	topic := s.srv.CheckpointTopic
	if topic == "" {
		topic = DefaultCheckpointTopic
	}
	ctx, cancel := context.WithTimeout(s.ctx, txnOpTimeout)
	defer cancel()
	if err := s.p.InitTransactions(ctx); err != nil {
		return txnStatus(err, fmt.Sprintf("initializing transactions for transactional.id %s", transactionalID(taskID)))
	}
	conf, err := clientConfig(s.start.GetKafka())
	if err != nil {
		return status.Error(codes.InvalidArgument, err.Error())
	}
	if err := ensureStateTopic(ctx, conf, topic); err != nil {
		return err
	}
	t := &txnState{s: s, topic: topic, stop: make(chan struct{}), done: make(chan struct{})}
	if t.part, err = s.checkpointPartition(topic); err != nil {
		return err
	}
	rctx, rcancel := context.WithTimeout(s.ctx, 2*time.Minute)
	defer rcancel()
	if t.resumed, t.backfills, err = readCheckpoint(rctx, conf, topic, t.part, taskID); err != nil {
		return err
	}
	forgetHeld(t.backfills, s.start.GetCheckpointLsn())
	t.committed, t.mark = t.resumed, t.resumed
	s.ckpt.Watermark(t.resumed) // nothing is enqueued: safe at once
	s.txn = t
	go t.idleCommitter()
	s.logger.InfoContext(s.ctx, "exactly-once delivery resumed", "transactional_id", transactionalID(taskID),
		"checkpoint_topic", topic, "resumed_from_lsn", pglogrepl.LSN(t.resumed).String(), "backfills", len(t.backfills))
	return nil
}

// checkpointPartition picks the task's partition of the checkpoint topic
// the way Java clients key it, so the record is found again.
func (s *stream) checkpointPartition(topic string) (int32, error) {
	ti, err := s.topic(topic)
	if err != nil {
		return 0, err
	}
	return JavaPartition(s.start.GetTaskId(), ti.partitions), nil
}

// checkpointRecord is the value of a checkpoint topic record.
type checkpointRecord struct {
	// WatermarkLSN: every source transaction whose commit record starts
	// before it is in Kafka, in this or an earlier committed transaction.
	WatermarkLSN uint64 `json:"watermark_lsn"`
	// LSN is WatermarkLSN in PostgreSQL's notation, for people.
	LSN string `json:"lsn"`
	// Backfills: per table, the latest backfill progress whose chunk is in
	// Kafka, as cdc.v1.BackfillProgress in protobuf's JSON form.
	Backfills []json.RawMessage `json:"backfills,omitempty"`
}

// readCheckpoint returns the task's last committed checkpoint, 0 and no
// backfills if none.
func readCheckpoint(ctx context.Context, conf kafka.ConfigMap, topic string, part int32, taskID string) (uint64, map[string]*cdcv1.BackfillProgress, error) {
	var r checkpointRecord
	err := readCompacted(ctx, conf, topic, func(m *kafka.Message) error {
		if m.TopicPartition.Partition != part || string(m.Key) != taskID {
			return nil
		}
		r = checkpointRecord{}
		if m.Value == nil {
			return nil // a tombstone: the task's checkpoint was deleted
		}
		if err := json.Unmarshal(m.Value, &r); err != nil {
			return fmt.Errorf("decoding the checkpoint of task %s at offset %d: %w", taskID, m.TopicPartition.Offset, err)
		}
		return nil
	})
	if err != nil {
		return 0, nil, status.Errorf(codes.Unavailable, "reading the checkpoint of task %s from topic %s: %v", taskID, topic, err)
	}
	bfs, err := decodeBackfills(r.Backfills)
	if err != nil {
		return 0, nil, status.Errorf(codes.DataLoss, "the checkpoint of task %s in topic %s: %v; delete the task's record from the topic to start it over", taskID, topic, err)
	}
	return r.WatermarkLSN, bfs, nil
}

// sendResumed is the stream's first response.
func (t *txnState) sendResumed(srv deliverConn) error {
	return srv.Send(&deliveryv1.DeliverResponse{SafeLsn: t.resumed, ResumedFromLsn: t.resumed, ResumedBackfills: t.resumedBackfills()})
}

// handleBatch enqueues a batch inside the current transaction and commits
// at its watermark when the transaction is due.
func (t *txnState) handleBatch(b *cdcv1.ChangeBatch) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.err != nil {
		return t.err
	}
	if err := t.releaseHeldLocked(); err != nil {
		return err
	}
	if t.resumed > 0 {
		b.Events = dropCovered(b.Events, t.resumed)
	}
	w := b.GetWatermarkLsn()
	if w <= t.mark {
		w = 0 // a watermark the checkpoint already covers
	}
	if !t.open && (len(b.Events) > 0 || w > 0) {
		if err := t.s.p.BeginTransaction(); err != nil {
			return t.failLocked(txnStatus(err, "beginning a transaction"))
		}
		t.open, t.openedAt, t.msgs = true, time.Now(), 0
	}
	if err := t.s.produceBatch(b); err != nil {
		return err
	}
	if n := len(b.Events); n > 0 {
		t.msgs += n
		t.atMark = false
	}
	if w > 0 {
		t.mark, t.atMark = w, true
		if chunkBatch(b) {
			t.held, t.heldAt = w, time.Now() // commit with the chunk's progress
			return nil
		}
		return t.commitIfDueLocked()
	}
	return nil
}

// dropCovered removes, in place, the events of source transactions that
// committed before checkpoint c (see the file comment).
func dropCovered(evs []*cdcv1.ChangeEvent, c uint64) []*cdcv1.ChangeEvent {
	kept := evs[:0]
	for _, ev := range evs {
		if ev.GetCommitLsn() >= c {
			kept = append(kept, ev)
		}
	}
	clear(evs[len(kept):])
	return kept
}

// idleCommitter ends a transaction left open at a watermark when no batch
// comes to end it.
func (t *txnState) idleCommitter() {
	defer close(t.done)
	tick := time.NewTicker(txnMaxAge / 2)
	defer tick.Stop()
	for {
		select {
		case <-t.stop:
			return
		case <-tick.C:
		}
		t.mu.Lock()
		if t.err == nil && t.open && t.atMark && !t.holding() && time.Since(t.openedAt) >= txnMaxAge {
			_ = t.commitLocked() // a failure fails the stream
		}
		t.mu.Unlock()
	}
}

// commitLocked writes the checkpoint and commits; only then does the
// watermark reach the checkpointer.
func (t *txnState) commitLocked() error {
	bfs, err := t.takeBackfillsLocked()
	if err != nil {
		return t.failLocked(status.Errorf(codes.Internal, "encoding the checkpoint: %v", err))
	}
	rec, err := json.Marshal(checkpointRecord{WatermarkLSN: t.mark, LSN: pglogrepl.LSN(t.mark).String(), Backfills: bfs})
	if err != nil {
		return t.failLocked(status.Errorf(codes.Internal, "encoding the checkpoint: %v", err))
	}
	key := t.s.start.GetTaskId()
	err = t.s.p.Produce(&kafka.Message{
		TopicPartition: kafka.TopicPartition{Topic: &t.topic, Partition: t.part},
		Key:            []byte(key), Value: rec, Opaque: txnMark{},
	}, nil)
	if err != nil {
		return t.failLocked(t.abortIfNeeded(err, "writing the checkpoint to topic "+t.topic))
	}
	if err := t.commitWithRetry(); err != nil {
		return t.failLocked(t.abortIfNeeded(err, "committing a transaction"))
	}
	t.open, t.atMark, t.committed, t.held = false, false, t.mark, 0
	t.s.ckpt.WatermarkAt(t.mark, t.s.takeCommit())
	return nil
}

// txnMark marks the delivery report of a checkpoint record, which the
// transaction's commit, not the report, confirms.
type txnMark struct{}

// commitWithRetry retries a commit that failed with a retriable error, as
// librdkafka allows, within txnOpTimeout.
func (t *txnState) commitWithRetry() error {
	ctx, cancel := context.WithTimeout(t.s.ctx, txnOpTimeout)
	defer cancel()
	for {
		err := t.s.p.CommitTransaction(ctx)
		var ke kafka.Error
		if err == nil || !errors.As(err, &ke) || !ke.IsRetriable() || ctx.Err() != nil {
			return err
		}
	}
}

// abortIfNeeded aborts the open transaction after an error that requires
// it and explains err. Nothing of the aborted transaction was confirmed, so
// the retried stream delivers it again, once.
func (t *txnState) abortIfNeeded(err error, what string) error {
	var ke kafka.Error
	if errors.As(err, &ke) && ke.TxnRequiresAbort() {
		if aerr := t.abort(); aerr != nil {
			return txnStatus(aerr, what+" failed ("+err.Error()+"), then aborting it")
		}
		t.open = false
		return status.Errorf(codes.Aborted, "%s: %v; the transaction was aborted and nothing of it was confirmed, retry the stream", what, err)
	}
	return txnStatus(err, what)
}

func (t *txnState) abort() error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(t.s.ctx), txnOpTimeout)
	defer cancel()
	return t.s.p.AbortTransaction(ctx)
}

// failLocked records err as the stream's failure.
func (t *txnState) failLocked(err error) error {
	t.err = err
	t.s.fail(0, err)
	return err
}

// finish ends the stream's last transaction after the client half-closed:
// committed when it ends at a watermark, aborted otherwise (its partial
// source transaction is sent again by the next stream).
func (t *txnState) finish() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.err != nil || !t.open {
		return t.err
	}
	if t.atMark {
		return t.commitLocked()
	}
	if err := t.abort(); err != nil {
		return t.failLocked(txnStatus(err, "aborting the unfinished transaction"))
	}
	t.open = false
	return nil
}

// close stops the idle committer and aborts a transaction left open, so
// that read_committed consumers need not wait for its timeout. A later
// stream's InitTransactions would abort it too.
func (t *txnState) close() {
	close(t.stop)
	<-t.done
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.open {
		if err := t.abort(); err != nil {
			t.s.logger.Warn("aborting the open transaction failed; the next stream of the task aborts it", "error", err)
		}
		t.open = false
	}
}

// txnStatus maps a transactional error to a gRPC status. A fatal error
// (typically fencing: another stream of the task initialized the same
// transactional.id) is FailedPrecondition; the rest as kafkaStatus.
func txnStatus(err error, what string) error {
	var ke kafka.Error
	if errors.As(err, &ke) && ke.IsFatal() {
		return status.Errorf(codes.FailedPrecondition,
			"%s: the transactional producer hit a fatal error (%v); if it was fenced, another delivery stream of this task took over and this one stops. Nothing this stream did not commit is confirmed", what, ke)
	}
	if errors.As(err, &ke) && ke.Code() == kafka.ErrState {
		return status.Errorf(codes.Aborted, "%s: %v", what, ke)
	}
	return kafkaStatus(err, what)
}

// fatalError explains a fatal producer error; for a transactional producer
// that is typically fencing.
func (s *stream) fatalError(e kafka.Error) error {
	if s.txn != nil || s.start.GetOptions().GetExactlyOnce() {
		return txnStatus(e, "exactly-once delivery")
	}
	return status.Errorf(codes.Internal, "the Kafka producer hit a fatal error: %v", e)
}
