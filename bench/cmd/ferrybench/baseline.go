package main

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"

	cdcv1 "github.com/ferry-cdc/ferry/gen/ferry/cdc/v1"
	deliveryv1 "github.com/ferry-cdc/ferry/gen/ferry/delivery/v1"
	taskv1 "github.com/ferry-cdc/ferry/gen/ferry/task/v1"
	"github.com/ferry-cdc/ferry/services/delivery"
	"github.com/ferry-cdc/ferry/services/delivery/canal"
	"github.com/ferry-cdc/ferry/services/delivery/debezium"
	"github.com/ferry-cdc/ferry/services/delivery/dtsavro"
	"github.com/ferry-cdc/ferry/services/delivery/relation"
	"github.com/ferry-cdc/ferry/services/tuple"
)

// encoded holds a format's messages for the baseline, keys and values back
// to back in one buffer: message i is data[end[i-1]:keyEnd[i]] (key) and
// data[keyEnd[i]:end[i]] (value).
type encoded struct {
	data        []byte
	keyEnd, end []int
}

func (m *encoded) len() int { return len(m.end) }

func (m *encoded) msg(i int) (key, value []byte) {
	start := 0
	if i > 0 {
		start = m.end[i-1]
	}
	return m.data[start:m.keyEnd[i]], m.data[m.keyEnd[i]:m.end[i]]
}

// bytes is keys plus values, uncompressed, of messages from..len-1.
func (m *encoded) bytes(from int) int64 {
	start := 0
	if from > 0 {
		start = m.end[from-1]
	}
	return int64(len(m.data) - start)
}

// baselineEncoder encodes rows exactly as a Deliver stream with the same
// StartDelivery does: the same encoder package, options and relation, and
// the same key (the key columns' text, concatenated). Only the per-message
// id and "ts" (Canal JSON) differ, being clock readings of the same width.
type baselineEncoder struct {
	enc interface {
		SetRelation(r *cdcv1.Relation) *relation.Table
		Encode(dst []byte, t *relation.Table, ev *cdcv1.ChangeEvent) ([]byte, error)
	}
	// dbz is the Debezium JSON encoder, whose key is its own JSON.
	dbz *debezium.Encoder
	tab *relation.Table
	out encoded
}

func newBaselineEncoder(start *deliveryv1.StartDelivery) *baselineEncoder {
	b := &baselineEncoder{}
	o := start.GetOptions()
	switch o.GetFormat() {
	case taskv1.DataFormat_DATA_FORMAT_DTS_AVRO:
		b.enc = dtsavro.New(dtsavro.Options{SourceDatabase: start.GetSourceDatabase(), Objects: start.GetObjects()})
	case taskv1.DataFormat_DATA_FORMAT_DEBEZIUM_JSON:
		b.dbz = debezium.New(debezium.Options{SourceDatabase: start.GetSourceDatabase(), ServerName: o.GetDebeziumServerName(),
			Objects: start.GetObjects(), Schemas: o.GetDebeziumSchemas(), Tombstones: !o.GetDebeziumNoTombstones(), Decimal: o.GetDebeziumDecimalHandling()})
		b.enc = b.dbz
	default:
		b.enc = canal.New(canal.Options{SourceDatabase: start.GetSourceDatabase(),
			DatabaseIsDBName: start.GetOptions().GetCanalDatabaseIsDbName(), Objects: start.GetObjects(),
			ValueStyle: start.GetOptions().GetCanalValueStyle(), MySQLTypeNames: start.GetOptions().GetCanalMysqlTypeNames()})
	}
	b.tab = b.enc.SetRelation(dlvRelation())
	return b
}

func (b *baselineEncoder) add(ev *cdcv1.ChangeEvent) error {
	row := ev.GetNewTuple()
	if b.dbz != nil {
		var err error
		if b.out.data, _, err = b.dbz.EncodeKey(b.out.data, b.tab, ev); err != nil {
			return fmt.Errorf("encoding the key at LSN %d for the baseline: %w", ev.GetLsn(), err)
		}
	} else {
		for _, i := range b.tab.KeyIdx {
			text, _ := tuple.Field(row, i)
			b.out.data = append(b.out.data, text...)
		}
	}
	b.out.keyEnd = append(b.out.keyEnd, len(b.out.data))
	var err error
	if b.out.data, err = b.enc.Encode(b.out.data, b.tab, ev); err != nil {
		return fmt.Errorf("encoding row at LSN %d for the baseline: %w", ev.GetLsn(), err)
	}
	b.out.end = append(b.out.end, len(b.out.data))
	return nil
}

// topicMaxBytes reads a topic's max.message.bytes, as a Deliver stream does
// to size its producer's batches.
func topicMaxBytes(ctx context.Context, admin *kafka.AdminClient, topic string) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	res, err := admin.DescribeConfigs(ctx, []kafka.ConfigResource{{Type: kafka.ResourceTopic, Name: topic}})
	if err != nil {
		return 0, fmt.Errorf("describing topic %s: %w", topic, err)
	}
	if len(res) != 1 || res[0].Error.Code() != kafka.ErrNoError {
		return 0, fmt.Errorf("describing topic %s: %v", topic, res)
	}
	v, err := strconv.Atoi(res[0].Config["max.message.bytes"].Value)
	if err != nil {
		return 0, fmt.Errorf("max.message.bytes of topic %s: %w", topic, err)
	}
	return v, nil
}

// rate is one timed delivery of n messages.
type rate struct {
	Seconds           float64 `json:"seconds"`
	MessagesPerSecond float64 `json:"messages_per_second"`
	MBPerSecond       float64 `json:"mb_per_second"` // keys plus values, uncompressed
}

func newRate(n int, bytes int64, d time.Duration) rate {
	s := d.Seconds()
	return rate{Seconds: s, MessagesPerSecond: float64(n) / s, MBPerSecond: float64(bytes) / 1e6 / s}
}

// measureBaseline is the Kafka limit for delivery: a plain librdkafka
// producer loop with the configuration delivery itself builds for these
// options (services/delivery ProducerConfig), sending the pre-encoded
// messages to partition 0 as delivery does. Message 0 warms the producer up
// (connection, metadata, producer id), as delivery's warm-up batch does;
// the clock runs from the first of the rest to the last delivery report.
func measureBaseline(ctx context.Context, admin *kafka.AdminClient, bootstrap, topic string, opts *taskv1.KafkaOptions, msgs *encoded) (rate, error) {
	maxBytes, err := topicMaxBytes(ctx, admin, topic)
	if err != nil {
		return rate{}, err
	}
	conf, err := delivery.ProducerConfig(&taskv1.KafkaEndpoint{BootstrapServers: bootstrap, Topic: topic}, opts, maxBytes)
	if err != nil {
		return rate{}, fmt.Errorf("building delivery's producer configuration: %w", err)
	}
	p, err := kafka.NewProducer(&conf)
	if err != nil {
		return rate{}, fmt.Errorf("creating the baseline producer: %w", err)
	}
	defer p.Close()
	go func() { // delivery reads librdkafka's logs too; an unread channel fills up
		for range p.Logs() {
		}
	}()
	send := func(i int) error {
		k, v := msgs.msg(i)
		return produce(ctx, p, &kafka.Message{TopicPartition: kafka.TopicPartition{Topic: &topic, Partition: 0}, Key: k, Value: v})
	}
	if err := send(0); err != nil {
		return rate{}, err
	}
	if err := countReports(p, 1); err != nil {
		return rate{}, fmt.Errorf("warming the baseline producer up: %w", err)
	}
	n := msgs.len() - 1
	reports := make(chan error, 1)
	start := time.Now()
	go func() { reports <- countReports(p, n) }()
	for i := 1; i <= n; i++ {
		if err := send(i); err != nil {
			return rate{}, err
		}
	}
	select {
	case err := <-reports:
		if err != nil {
			return rate{}, err
		}
	case <-ctx.Done():
		return rate{}, fmt.Errorf("waiting for delivery reports: %w", ctx.Err())
	}
	return newRate(n, msgs.bytes(1), time.Since(start)), nil
}
