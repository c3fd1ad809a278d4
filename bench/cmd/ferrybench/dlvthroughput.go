package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"

	deliveryv1 "github.com/ferry-cdc/ferry/gen/ferry/delivery/v1"
	taskv1 "github.com/ferry-cdc/ferry/gen/ferry/task/v1"
)

type dlvThroughput struct {
	Format   string `json:"format"`
	Codec    string `json:"codec"`
	Delivery rate   `json:"delivery"`
	Baseline rate   `json:"baseline"`
	// Share is delivery's messages/s over the baseline's, the same run's.
	Share                float64 `json:"share"`
	CPUSecondsPerMillion float64 `json:"delivery_cpu_seconds_per_million"`
	AvgMessageBytes      float64 `json:"avg_message_bytes"` // key plus value, uncompressed
}

// throughput times delivery on the prepared stream, then the baseline on
// the same messages pre-encoded, each into a fresh topic. Delivery's clock
// runs from the first batch sent to the DeliverResponse whose safe LSN
// covers the last: every message acknowledged by Kafka, as the baseline's
// last delivery report says for its own.
func (m *dlvMeasure) throughput(ctx context.Context, format taskv1.DataFormat, codecName string) (dlvThroughput, error) {
	t := dlvThroughput{Format: formatName(format), Codec: codecName}
	taskID, topic := m.names("tput", format, codecName)
	baseTopic := topic + "_base"
	msgs := m.data.encoded[format]
	start := startFor(taskID, topic, m.e.c.kafkaBootstrap, format, codecs[codecName])
	err := m.withTopics(ctx, func() error {
		d, cpu, err := m.timeDelivery(ctx, topic, start)
		if err != nil {
			return err
		}
		t.Delivery = newRate(m.data.rows, msgs.bytes(1), d)
		t.CPUSecondsPerMillion = cpu * 1e6 / float64(m.data.rows)
		if err := sameMessages(ctx, m.e.c.kafkaBootstrap, topic, msgs, sameMessagesSample); err != nil {
			return err
		}
		if t.Baseline, err = measureBaseline(ctx, m.e.admin, m.e.c.kafkaBootstrap, baseTopic, start.GetOptions(), msgs); err != nil {
			return fmt.Errorf("baseline: %w", err)
		}
		return m.checkEnd(baseTopic, msgs.len())
	}, topic, baseTopic)
	if err != nil {
		return t, err
	}
	t.Share = t.Delivery.MessagesPerSecond / t.Baseline.MessagesPerSecond
	t.AvgMessageBytes = float64(msgs.bytes(1)) / float64(m.data.rows)
	return t, nil
}

// timeDelivery sends the warm-up batch (the stream's start, the relation,
// the producer's connection) and waits for its acknowledgement, then times
// the stream. It returns the time and delivery's CPU seconds over it.
func (m *dlvMeasure) timeDelivery(ctx context.Context, topic string, start *deliveryv1.StartDelivery) (time.Duration, float64, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	timeout := m.e.c.ferryTimeout
	s, err := openDeliver(ctx, m.conn, start)
	if err != nil {
		return 0, 0, err
	}
	if err := s.send(m.data.warm); err != nil {
		return 0, 0, err
	}
	if _, err := s.waitSafe(ctx, rowLSN(1), timeout); err != nil {
		return 0, 0, fmt.Errorf("warm-up: %w", err)
	}
	before, err := m.f.sample()
	if err != nil {
		return 0, 0, err
	}
	t0 := time.Now()
	for _, f := range m.data.frames {
		if err := s.send(f); err != nil {
			return 0, 0, err
		}
	}
	end, err := s.waitSafe(ctx, m.data.lastLSN, timeout)
	if err != nil {
		return 0, 0, err
	}
	after, err := m.f.sample()
	if err != nil {
		return 0, 0, err
	}
	final, err := s.finish()
	if err != nil {
		return 0, 0, err
	}
	if want := uint64(m.data.rows + 1); final.acked != want {
		return 0, 0, fmt.Errorf("delivery acknowledged %d messages, want %d", final.acked, want)
	}
	if err := m.checkEnd(topic, m.data.rows+1); err != nil {
		return 0, 0, err
	}
	return end.Sub(t0), after["delivery"].CPUSeconds - before["delivery"].CPUSeconds, nil
}

// checkEnd checks that a topic holds exactly n messages: none lost, none
// written twice.
func (m *dlvMeasure) checkEnd(topic string, n int) error {
	end, err := topicEnd(m.e.admin, topic)
	if err != nil {
		return err
	}
	if end != int64(n) {
		return fmt.Errorf("topic %s holds %d messages, want %d", topic, end, n)
	}
	return nil
}

// sameMessagesSample is how many of delivery's messages are compared with
// the baseline's.
const sameMessagesSample = 1000

// sameMessages reads the first messages delivery wrote and checks they are
// the baseline's: the same keys, and values of the same length (they differ
// only in clock readings of fixed width). A baseline sending other payloads
// would measure something else.
func sameMessages(ctx context.Context, bootstrap, topic string, msgs *encoded, n int) error {
	n = min(n, msgs.len())
	c, err := kafka.NewConsumer(&kafka.ConfigMap{"bootstrap.servers": bootstrap, "group.id": "ferrybench-audit",
		"enable.auto.commit": false, "auto.offset.reset": "earliest"})
	if err != nil {
		return fmt.Errorf("creating the audit consumer: %w", err)
	}
	defer func() { _ = c.Close() }()
	if err := assignAll(c, topic, 0); err != nil {
		return err
	}
	deadline := time.Now().Add(time.Minute)
	for i := 0; i < n; {
		if err := ctx.Err(); err != nil {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("reading %s: %d of %d messages in a minute", topic, i, n)
		}
		msg, err := c.ReadMessage(500 * time.Millisecond)
		var kerr kafka.Error
		if errors.As(err, &kerr) && kerr.IsTimeout() {
			continue
		}
		if err != nil {
			return fmt.Errorf("reading %s: %w", topic, err)
		}
		k, v := msgs.msg(i)
		if !bytes.Equal(msg.Key, k) || len(msg.Value) != len(v) {
			return fmt.Errorf("message %d of %s (key %q, %d bytes) is not the baseline's (key %q, %d bytes)", i, topic, msg.Key, len(msg.Value), k, len(v))
		}
		i++
	}
	return nil
}
