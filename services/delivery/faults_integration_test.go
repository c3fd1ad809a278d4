package delivery

import (
	"context"
	"errors"
	"io"
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

// Fault tests: a steady flow of inserts into public.orders, rowsPerBatch
// rows per batch, each batch ending with a watermark (its last row's LSN).
const rowsPerBatch = 100

func rowLSN(i int) uint64 { return 1000 + 10*uint64(i) }

// rowBatch is batch k: rows k*rowsPerBatch and on, keyed by their index.
func rowBatch(k int, withRelation bool) *cdcv1.ChangeBatch {
	b := &cdcv1.ChangeBatch{WatermarkLsn: rowLSN((k+1)*rowsPerBatch - 1)}
	if withRelation {
		b.Relations = []*cdcv1.Relation{ordersRelation()}
	}
	for i := k * rowsPerBatch; i < (k+1)*rowsPerBatch; i++ {
		b.Events = append(b.Events, insert(int64(i), "fault test row "+strconv.Itoa(i), rowLSN(i)))
	}
	return b
}

// latestSafe reads the responses that have already arrived, without
// waiting, and returns the highest safe LSN seen so far.
func (s *session) latestSafe() uint64 {
	s.t.Helper()
	for {
		select {
		case r, ok := <-s.resps:
			if !ok {
				// Put the end back for drain: next sees a closed channel again.
				s.resps = closedResps()
				return s.lastSafe()
			}
			if r.GetSafeLsn() < s.lastSafe() {
				s.t.Fatalf("safe LSN went backwards: %d after %d", r.GetSafeLsn(), s.lastSafe())
			}
			s.seen = append(s.seen, r)
		default:
			return s.lastSafe()
		}
	}
}

func closedResps() chan *deliveryv1.DeliverResponse {
	c := make(chan *deliveryv1.DeliverResponse)
	close(c)
	return c
}

func (s *session) lastSafe() uint64 {
	if n := len(s.seen); n > 0 {
		return s.seen[n-1].GetSafeLsn()
	}
	return 0
}

// keyCounts reads topic up to its current end and counts the messages of
// each key.
func keyCounts(t *testing.T, bootstrap, topic string, within time.Duration) map[string]int {
	t.Helper()
	c, err := kafka.NewConsumer(&kafka.ConfigMap{"bootstrap.servers": bootstrap, "group.id": "ferry-test-" + topic,
		"enable.auto.commit": false, "auto.offset.reset": "earliest", "log_level": 3})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.Close() }()
	md, err := c.GetMetadata(&topic, false, 10_000)
	if err != nil {
		t.Fatalf("metadata of %s: %v", topic, err)
	}
	var tps []kafka.TopicPartition
	ends := map[int32]int64{}
	deadline := time.Now().Add(within)
	for _, p := range md.Topics[topic].Partitions {
		high := endOffset(t, c, topic, p.ID, deadline)
		if high > 0 {
			ends[p.ID] = high
			tps = append(tps, kafka.TopicPartition{Topic: &topic, Partition: p.ID, Offset: kafka.OffsetBeginning})
		}
	}
	counts := map[string]int{}
	if len(tps) == 0 {
		return counts
	}
	if err := c.Assign(tps); err != nil {
		t.Fatal(err)
	}
	for len(ends) > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("reading %s: partitions %v not read to their end in %s", topic, ends, within)
		}
		m, err := c.ReadMessage(200 * time.Millisecond)
		if err != nil {
			var ke kafka.Error
			if errors.As(err, &ke) && ke.Code() == kafka.ErrTimedOut {
				continue
			}
			t.Fatalf("reading %s: %v", topic, err)
		}
		counts[string(m.Key)]++
		if p := m.TopicPartition; int64(p.Offset)+1 >= ends[p.Partition] {
			delete(ends, p.Partition)
		}
	}
	return counts
}

// endOffset is the partition's high watermark. Just after a restart the
// broker may not lead its partitions yet; that passes.
func endOffset(t *testing.T, c *kafka.Consumer, topic string, part int32, deadline time.Time) int64 {
	t.Helper()
	for {
		_, high, err := c.QueryWatermarkOffsets(topic, part, 10_000)
		if err == nil {
			return high
		}
		var ke kafka.Error
		leaderless := errors.As(err, &ke) && (ke.Code() == kafka.ErrNotLeaderForPartition || ke.Code() == kafka.ErrLeaderNotAvailable)
		if !leaderless || time.Now().After(deadline) {
			t.Fatalf("end offset of %s[%d]: %v", topic, part, err)
		}
		<-time.After(100 * time.Millisecond) // poll interval
	}
}

// missingAtOrBelow lists the rows at or below lsn (of the first n) that
// counts lacks.
func missingAtOrBelow(counts map[string]int, n int, lsn uint64) []int {
	var out []int
	for i := 0; i < n && rowLSN(i) <= lsn; i++ {
		if counts[strconv.Itoa(i)] == 0 {
			out = append(out, i)
		}
	}
	return out
}

// sendBatches sends batches [from, to) on the session's stream from a
// goroutine, one every gap, and reports the first error (io.EOF: the server
// ended the stream).
func sendBatches(s *session, from, to int, gap time.Duration) <-chan error {
	done := make(chan error, 1)
	go func() {
		tick := time.NewTicker(gap)
		defer tick.Stop()
		for k := from; k < to; k++ {
			err := s.stream.Send(&deliveryv1.DeliverRequest{Kind: &deliveryv1.DeliverRequest_Batch{Batch: rowBatch(k, k == from)}})
			if err != nil {
				done <- err
				return
			}
			<-tick.C
		}
		done <- nil
	}()
	return done
}

// TestDeliverBrokerRestart stops the private broker in the middle of a
// steady flow and starts it again: nothing at or below a reported safe LSN
// may be lost, and after a resume from the last safe LSN (if the stream
// failed) every row is in Kafka, duplicates bounded by what was unconfirmed.
func TestDeliverBrokerRestart(t *testing.T) {
	const batches = 200 // 20,000 rows
	b := testenv.StartKafka(t)
	t.Logf("private broker started in %s", b.StartTime)
	bootstrap := b.Bootstrap()
	client, _ := startServer(t)
	topic := testenv.UniqueName("ferry_restart")
	ensure(t, client, bootstrap, &deliveryv1.TopicSpec{Name: topic, Partitions: 3})
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	st := start(bootstrap, topic, &taskv1.KafkaOptions{PartitionPolicy: taskv1.PartitionPolicy_PARTITION_POLICY_HASH_PRIMARY_KEY})
	s := openSession(t, ctx, client, st)

	// A quarter of the rows reach Kafka before the fault.
	if err := <-sendBatches(s, 0, batches/4, time.Millisecond); err != nil {
		t.Fatal(err)
	}
	s.waitSafe(rowBatch(batches/4-1, false).GetWatermarkLsn(), time.Minute)

	// The rest flows while the broker shuts down, is down, and restarts.
	sent := sendBatches(s, batches/4, batches, 15*time.Millisecond)
	began := time.Now()
	b.Stop()
	safeAtStop := s.latestSafe()
	t.Logf("broker stopped in %s; safe LSN when down %d", time.Since(began), safeAtStop)
	b.Start()
	t.Logf("broker restarted in %s (down for %s)", b.StartTime, time.Since(began))
	if miss := missingAtOrBelow(keyCounts(t, bootstrap, topic, time.Minute), batches*rowsPerBatch, safeAtStop); len(miss) > 0 {
		t.Fatalf("after the restart %d rows at or below safe LSN %d are not in Kafka, first %d", len(miss), safeAtStop, miss[0])
	}
	sendErr := <-sent
	if sendErr != nil && !errors.Is(sendErr, io.EOF) {
		t.Fatalf("sending: %v", sendErr)
	}
	last, err := s.finish(2 * time.Minute)
	safe := last.GetSafeLsn()
	if err != nil {
		// The stream may fail instead of riding the outage out; then it must
		// be retryable and nothing it confirmed may be missing.
		if status.Code(err) != codes.Unavailable {
			t.Fatalf("the stream failed with %v, want Unavailable (a connection failure the workflow retries)", err)
		}
		t.Logf("the stream failed: %v; safe LSN %d", err, safe)
		if miss := missingAtOrBelow(keyCounts(t, bootstrap, topic, time.Minute), batches*rowsPerBatch, safe); len(miss) > 0 {
			t.Fatalf("%d rows at or below the failed stream's safe LSN %d are not in Kafka, first %d", len(miss), safe, miss[0])
		}
		safe = resumeFrom(t, ctx, client, st, safe, batches)
	} else {
		t.Logf("the stream rode the outage out")
	}
	if want := rowBatch(batches-1, false).GetWatermarkLsn(); safe != want {
		t.Fatalf("final safe LSN %d, want the last watermark %d", safe, want)
	}
	counts := keyCounts(t, bootstrap, topic, time.Minute)
	if miss := missingAtOrBelow(counts, batches*rowsPerBatch, safe); len(miss) > 0 {
		t.Fatalf("%d rows missing from Kafka, first %d", len(miss), miss[0])
	}
	total := 0
	for _, n := range counts {
		total += n
	}
	t.Logf("%d distinct rows in Kafka, %d messages, %d duplicates", len(counts), total, total-len(counts))
	if len(counts) != batches*rowsPerBatch {
		t.Fatalf("%d distinct keys in Kafka, want %d", len(counts), batches*rowsPerBatch)
	}
}

// resumeFrom opens a new stream, as the workflow would after a failure,
// and sends every batch above the safe LSN again; it returns the final
// safe LSN.
func resumeFrom(t *testing.T, ctx context.Context, client deliveryv1.DeliveryServiceClient, st *deliveryv1.StartDelivery, safe uint64, batches int) uint64 {
	t.Helper()
	k := 0
	for k < batches && rowBatch(k, false).GetWatermarkLsn() <= safe {
		k++
	}
	if k > 0 && rowBatch(k-1, false).GetWatermarkLsn() != safe {
		t.Fatalf("safe LSN %d is no batch's watermark", safe)
	}
	s := openSession(t, ctx, client, st)
	if err := <-sendBatches(s, k, batches, time.Millisecond); err != nil {
		t.Fatalf("resending from batch %d: %v", k, err)
	}
	last, err := s.finish(2 * time.Minute)
	if err != nil {
		t.Fatalf("the resumed stream failed: %v", err)
	}
	t.Logf("resumed from batch %d (safe LSN %d)", k, safe)
	return last.GetSafeLsn()
}

// TestDeliverTopicDeleted deletes the topic in the middle of a stream: the
// stream must fail with an error naming the topic, the table and the fix,
// and the safe LSN must stay below every row written after the deletion.
func TestDeliverTopicDeleted(t *testing.T) {
	bootstrap := realKafka(t)
	client, _ := startServer(t)
	topic := testenv.UniqueName("ferry_deleted")
	ensure(t, client, bootstrap, &deliveryv1.TopicSpec{Name: topic, Partitions: 2})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	s := openSession(t, ctx, client, start(bootstrap, topic, &taskv1.KafkaOptions{
		PartitionPolicy: taskv1.PartitionPolicy_PARTITION_POLICY_HASH_PRIMARY_KEY}))
	if err := <-sendBatches(s, 0, 20, time.Millisecond); err != nil {
		t.Fatal(err)
	}
	before := rowBatch(19, false).GetWatermarkLsn()
	s.waitSafe(before, time.Minute)

	deleteTopic(t, bootstrap, topic)
	began := time.Now()
	// Rows keep coming until the stream gives up on them.
	if err := <-sendBatches(s, 20, 200, 10*time.Millisecond); err != nil && !errors.Is(err, io.EOF) {
		t.Fatalf("sending: %v", err)
	}
	last, err := s.finish(2 * time.Minute)
	t.Logf("the stream ended %s after the deletion: %v", time.Since(began), err)
	if status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("the stream ended with %v, want FailedPrecondition", err)
	}
	msg := status.Convert(err).Message()
	for _, want := range []string{strconv.Quote(topic), "public.orders", "create it"} {
		if !strings.Contains(msg, want) {
			t.Fatalf("error %q does not name %s", msg, want)
		}
	}
	if safe := last.GetSafeLsn(); safe != before {
		t.Fatalf("safe LSN %d after the deletion, want it to stay at %d, the last row written before", safe, before)
	}

	// The workflow's retry opens a new stream from the safe LSN: it fails
	// at once with the same cause while the topic is missing, and carries
	// on once someone recreates it.
	st := start(bootstrap, topic, &taskv1.KafkaOptions{PartitionPolicy: taskv1.PartitionPolicy_PARTITION_POLICY_HASH_PRIMARY_KEY})
	retry := openSession(t, ctx, client, st)
	if err := <-sendBatches(retry, 20, 21, time.Millisecond); err != nil && !errors.Is(err, io.EOF) {
		t.Fatalf("sending: %v", err)
	}
	_, err = retry.finish(time.Minute)
	t.Logf("a retry while the topic is missing: %v", err)
	if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "public.orders") || !strings.Contains(err.Error(), topic) {
		t.Fatalf("a retry while the topic is missing ended with %v, want FailedPrecondition naming the table and topic", err)
	}
	ensure(t, client, bootstrap, &deliveryv1.TopicSpec{Name: topic, Partitions: 2})
	if safe := resumeFrom(t, ctx, client, st, before, 200); safe != rowBatch(199, false).GetWatermarkLsn() {
		t.Fatalf("after recreating the topic the safe LSN reached %d, want %d", safe, rowBatch(199, false).GetWatermarkLsn())
	}
	// The recreated topic holds exactly the rows above the safe LSN.
	counts := keyCounts(t, bootstrap, topic, time.Minute)
	for i := 20 * rowsPerBatch; i < 200*rowsPerBatch; i++ {
		if n := counts[strconv.Itoa(i)]; n != 1 {
			t.Fatalf("row %d is in the recreated topic %d times, want once", i, n)
		}
	}
	if len(counts) != 180*rowsPerBatch {
		t.Fatalf("the recreated topic holds %d distinct rows, want %d", len(counts), 180*rowsPerBatch)
	}
}

func deleteTopic(t *testing.T, bootstrap, topic string) {
	t.Helper()
	admin, err := kafka.NewAdminClient(&kafka.ConfigMap{"bootstrap.servers": bootstrap, "log_level": 3})
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := admin.DeleteTopics(ctx, []string{topic}, kafka.SetAdminOperationTimeout(20*time.Second))
	if err != nil {
		t.Fatalf("deleting %s: %v", topic, err)
	}
	if e := res[0].Error; e.Code() != kafka.ErrNoError {
		t.Fatalf("deleting %s: %v", topic, e)
	}
}

// TestDeliverBrokerUnreachable starts a stream against a stopped broker:
// it must fail promptly with Unavailable, which the workflow retries within
// its connection window, naming the bootstrap servers.
func TestDeliverBrokerUnreachable(t *testing.T) {
	b := testenv.StartKafka(t)
	client, _ := startServer(t)
	topic := testenv.UniqueName("ferry_unreachable")
	ensure(t, client, b.Bootstrap(), &deliveryv1.TopicSpec{Name: topic})
	b.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	began := time.Now()
	s := openSession(t, ctx, client, start(b.Bootstrap(), topic, nil))
	_, err := s.drain(connectTimeout + 15*time.Second)
	took := time.Since(began)
	t.Logf("the stream failed after %s: %v", took, err)
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("a stream to a stopped broker ended with %v, want Unavailable", err)
	}
	if msg := status.Convert(err).Message(); !strings.Contains(msg, b.Bootstrap()) {
		t.Fatalf("error %q does not name the bootstrap servers %s", msg, b.Bootstrap())
	}
	if took > connectTimeout+5*time.Second {
		t.Fatalf("the failure took %s, more than the connect timeout %s allows", took, connectTimeout)
	}
}
