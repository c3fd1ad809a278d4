package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

// producerConfig mirrors services/delivery/kafkaconf.go for a PLAINTEXT
// cluster and a topic with the broker's default max.message.bytes, so that
// the Kafka limit is measured under the settings Ferry itself runs with
// (codec: the task's compression, "lz4" by default). Keep the two in step
// when Ferry's settings change.
func producerConfig(bootstrap, codec string) *kafka.ConfigMap {
	return &kafka.ConfigMap{
		"bootstrap.servers":            bootstrap,
		"client.id":                    "ferrybench-baseline",
		"security.protocol":            "PLAINTEXT",
		"compression.type":             codec,
		"acks":                         "all",
		"enable.idempotence":           true,
		"linger.ms":                    5,
		"batch.size":                   1_000_000,
		"batch.num.messages":           100_000,
		"queue.buffering.max.messages": 1_000_000,
		"message.max.bytes":            1_048_688,
		"go.delivery.report.fields":    "none",
	}
}

// topicEnd sums the high watermarks of a topic's partitions: with one
// producer and no transactions it is the number of messages in the topic.
// A topic that does not exist yet counts as empty. A topic Ferry has just
// created may not have elected its partitions' leaders yet; that answer is
// asked again for up to leaderWait rather than failing the run, and never
// read as zero, which a caller taking a base offset would get wrong.
func topicEnd(admin *kafka.AdminClient, topic string) (int64, error) {
	deadline := time.Now().Add(leaderWait)
	for {
		n, err := topicEndOnce(admin, topic)
		var kerr kafka.Error
		if err == nil || !errors.As(err, &kerr) || !leaderPending(kerr.Code()) || time.Now().After(deadline) {
			return n, err
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// leaderWait bounds how long a partition may stay without a leader: KRaft
// elects one within a second on an idle broker, and a loaded 2-core CI
// machine has been seen to answer NOT_LEADER right after creation.
const leaderWait = 15 * time.Second

func leaderPending(c kafka.ErrorCode) bool {
	switch c {
	case kafka.ErrNotLeaderForPartition, kafka.ErrLeaderNotAvailable, kafka.ErrUnknownTopicOrPart:
		return true
	}
	return false
}

func topicEndOnce(admin *kafka.AdminClient, topic string) (int64, error) {
	md, err := admin.GetMetadata(&topic, false, 5000)
	if err != nil {
		return 0, fmt.Errorf("metadata of %s: %w", topic, err)
	}
	tm, ok := md.Topics[topic]
	if !ok || tm.Error.Code() == kafka.ErrUnknownTopicOrPart || len(tm.Partitions) == 0 {
		return 0, nil
	}
	parts := map[kafka.TopicPartition]kafka.OffsetSpec{}
	for _, p := range tm.Partitions {
		parts[kafka.TopicPartition{Topic: &topic, Partition: p.ID}] = kafka.LatestOffsetSpec
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	res, err := admin.ListOffsets(ctx, parts)
	if err != nil {
		return 0, fmt.Errorf("listing offsets of %s: %w", topic, err)
	}
	var total int64
	for tp, r := range res.ResultInfos {
		if r.Error.Code() != kafka.ErrNoError {
			return 0, fmt.Errorf("offset of %s[%d]: %w", topic, tp.Partition, r.Error)
		}
		total += int64(r.Offset)
	}
	return total, nil
}

func deleteTopics(ctx context.Context, admin *kafka.AdminClient, topics ...string) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	res, err := admin.DeleteTopics(ctx, topics, kafka.SetAdminOperationTimeout(20*time.Second))
	if err != nil {
		return fmt.Errorf("deleting topics %v: %w", topics, err)
	}
	for _, r := range res {
		if c := r.Error.Code(); c != kafka.ErrNoError && c != kafka.ErrUnknownTopicOrPart {
			return fmt.Errorf("deleting topic %s: %w", r.Topic, r.Error)
		}
	}
	return nil
}

func createTopic(ctx context.Context, admin *kafka.AdminClient, topic string) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	// One partition: what Ferry creates for a task's topic by default.
	res, err := admin.CreateTopics(ctx, []kafka.TopicSpecification{{Topic: topic, NumPartitions: 1}},
		kafka.SetAdminOperationTimeout(20*time.Second))
	if err != nil {
		return fmt.Errorf("creating topic %s: %w", topic, err)
	}
	if c := res[0].Error.Code(); c != kafka.ErrNoError {
		return fmt.Errorf("creating topic %s: %w", topic, res[0].Error)
	}
	return nil
}

// topicAudit is what reading a whole topic back tells: whether every row
// arrived, and how big Ferry's messages are.
type topicAudit struct {
	Messages   int     `json:"messages"`
	Distinct   int     `json:"distinct_rows"`
	Missing    int     `json:"missing_rows"`
	Bytes      int64   `json:"bytes"` // keys plus values, uncompressed
	AvgKey     float64 `json:"avg_key_bytes"`
	AvgValue   float64 `json:"avg_value_bytes"`
	sampleKeys [][]byte
	sampleVals [][]byte
}

// sampleSize is how many of Ferry's messages the Kafka baseline replays.
// Distinct real messages keep lz4's compression ratio honest: one repeated
// payload would compress far better than a real stream does.
const sampleSize = 10_000

// rowIDs extracts the ids of the rows a message carries; a message format
// (Ferry's Canal JSON, Debezium's JSON) has one.
type rowIDs func(value []byte) ([]int, error)

// newAuditConsumer is the consumer every audit reads with: manual
// assignment, nothing committed.
func newAuditConsumer(bootstrap string) (*kafka.Consumer, error) {
	c, err := kafka.NewConsumer(&kafka.ConfigMap{
		"bootstrap.servers":  bootstrap,
		"group.id":           "ferrybench-audit",
		"enable.auto.commit": false,
		"auto.offset.reset":  "earliest",
	})
	if err != nil {
		return nil, fmt.Errorf("creating the audit consumer: %w", err)
	}
	return c, nil
}

// auditTopic reads the topic from offset skip (0: the start; more only for
// a one-partition topic) up to its end offset and checks that rows 1..n
// each arrived at least once.
func auditTopic(ctx context.Context, bootstrap, topic string, n int, skip, end int64, ids rowIDs) (topicAudit, error) {
	var a topicAudit
	c, err := newAuditConsumer(bootstrap)
	if err != nil {
		return a, err
	}
	defer func() { _ = c.Close() }()
	if err := assignAll(c, topic, skip); err != nil {
		return a, err
	}
	seen := make([]bool, n+1)
	deadline := time.Now().Add(5 * time.Minute)
	for int64(a.Messages) < end-skip {
		if err := ctx.Err(); err != nil {
			return a, fmt.Errorf("auditing %s: %w", topic, err)
		}
		if time.Now().After(deadline) {
			return a, fmt.Errorf("auditing %s: read %d of %d messages in 5 minutes", topic, a.Messages, end-skip)
		}
		msg, err := c.ReadMessage(500 * time.Millisecond)
		if err != nil {
			var kerr kafka.Error
			if errors.As(err, &kerr) && kerr.IsTimeout() {
				continue
			}
			return a, fmt.Errorf("reading %s: %w", topic, err)
		}
		if err := a.add(msg, seen, ids); err != nil {
			return a, err
		}
	}
	a.finish(seen)
	return a, nil
}

// assignAll reads every partition of topic from the beginning, or a
// one-partition topic from offset skip. Assign, not Subscribe: there is no
// group rebalance to wait for.
func assignAll(c *kafka.Consumer, topic string, skip int64) error {
	md, err := c.GetMetadata(&topic, false, 5000)
	if err != nil {
		return fmt.Errorf("metadata of %s: %w", topic, err)
	}
	var parts []kafka.TopicPartition
	for _, p := range md.Topics[topic].Partitions {
		parts = append(parts, kafka.TopicPartition{Topic: &topic, Partition: p.ID, Offset: kafka.OffsetBeginning})
	}
	if len(parts) == 0 {
		return fmt.Errorf("topic %s has no partitions", topic)
	}
	if skip > 0 {
		if len(parts) > 1 {
			return fmt.Errorf("topic %s has %d partitions: cannot skip its first %d messages", topic, len(parts), skip)
		}
		parts[0].Offset = kafka.Offset(skip)
	}
	if err := c.Assign(parts); err != nil {
		return fmt.Errorf("assigning %s: %w", topic, err)
	}
	return nil
}

// canalIDs reads the ids of a Canal JSON message's rows ("data", text).
func canalIDs(value []byte) ([]int, error) {
	var row struct {
		Data []struct {
			ID string `json:"id"`
		} `json:"data"`
	}
	if err := json.Unmarshal(value, &row); err != nil {
		return nil, err
	}
	ids := make([]int, 0, len(row.Data))
	for _, d := range row.Data {
		var id int
		if _, err := fmt.Sscan(d.ID, &id); err == nil {
			ids = append(ids, id)
		}
	}
	return ids, nil
}

func (a *topicAudit) add(msg *kafka.Message, seen []bool, ids rowIDs) error {
	a.Messages++
	a.Bytes += int64(len(msg.Key) + len(msg.Value))
	a.AvgKey += float64(len(msg.Key))
	a.AvgValue += float64(len(msg.Value))
	if len(a.sampleVals) < sampleSize {
		a.sampleKeys = append(a.sampleKeys, msg.Key)
		a.sampleVals = append(a.sampleVals, msg.Value)
	}
	got, err := ids(msg.Value)
	if err != nil {
		return fmt.Errorf("decoding message at offset %v: %w", msg.TopicPartition.Offset, err)
	}
	for _, id := range got {
		if id >= 1 && id < len(seen) {
			seen[id] = true
		}
	}
	return nil
}

// finish counts the rows seen and missed, each part's index 0 unused, and
// turns the sizes into averages.
func (a *topicAudit) finish(parts ...[]bool) {
	for _, seen := range parts {
		for _, ok := range seen[1:] {
			if ok {
				a.Distinct++
			} else {
				a.Missing++
			}
		}
	}
	if a.Messages > 0 {
		a.AvgKey /= float64(a.Messages)
		a.AvgValue /= float64(a.Messages)
	}
}

// kafkaResult is the Kafka limit: a bare librdkafka producer with Ferry's
// settings sending Ferry's own messages.
type kafkaResult struct {
	Seconds           float64 `json:"seconds"`
	MessagesPerSecond float64 `json:"messages_per_second"`
	MBPerSecond       float64 `json:"mb_per_second"`
}

// measureKafka produces n messages, cycling through the sample of Ferry's
// messages, and stops the clock when the last delivery report arrives.
func measureKafka(ctx context.Context, bootstrap, topic, codec string, n int, keys, vals [][]byte) (kafkaResult, error) {
	var res kafkaResult
	if len(vals) == 0 {
		return res, fmt.Errorf("no sample messages to replay")
	}
	p, err := kafka.NewProducer(producerConfig(bootstrap, codec))
	if err != nil {
		return res, fmt.Errorf("creating the baseline producer: %w", err)
	}
	defer p.Close()
	reports := make(chan error, 1)
	go func() { reports <- countReports(p, n) }()
	start := time.Now()
	var bytes int64
	for i := 0; i < n; i++ {
		k, v := keys[i%len(keys)], vals[i%len(vals)]
		bytes += int64(len(k) + len(v))
		if err := produce(ctx, p, &kafka.Message{TopicPartition: kafka.TopicPartition{Topic: &topic, Partition: 0}, Key: k, Value: v}); err != nil {
			return res, err
		}
	}
	select {
	case err := <-reports:
		if err != nil {
			return res, err
		}
	case <-ctx.Done():
		return res, fmt.Errorf("waiting for delivery reports: %w", ctx.Err())
	}
	res.Seconds = time.Since(start).Seconds()
	res.MessagesPerSecond = float64(n) / res.Seconds
	res.MBPerSecond = float64(bytes) / 1e6 / res.Seconds
	return res, nil
}

// produce enqueues one message, waiting for room when librdkafka's local
// queue is full, as Ferry's delivery must too.
func produce(ctx context.Context, p *kafka.Producer, msg *kafka.Message) error {
	for {
		err := p.Produce(msg, nil)
		var kerr kafka.Error
		if err == nil || !errors.As(err, &kerr) || kerr.Code() != kafka.ErrQueueFull {
			if err != nil {
				return fmt.Errorf("producing: %w", err)
			}
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("producing: %w", ctx.Err())
		}
		p.Flush(10)
	}
}

// countReports reads delivery reports until n arrived, failing on the first
// error: the baseline only counts acknowledged messages.
func countReports(p *kafka.Producer, n int) error {
	got := 0
	for ev := range p.Events() {
		switch e := ev.(type) {
		case *kafka.Message:
			if e.TopicPartition.Error != nil {
				return fmt.Errorf("delivery failed: %w", e.TopicPartition.Error)
			}
			got++
			if got == n {
				return nil
			}
		case kafka.Error:
			if e.IsFatal() {
				return fmt.Errorf("fatal producer error: %w", e)
			}
		}
	}
	return fmt.Errorf("producer closed after %d of %d delivery reports", got, n)
}
