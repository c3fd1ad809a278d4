package delivery

import (
	"strconv"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"

	cdcv1 "github.com/ferry-cdc/ferry/gen/ferry/cdc/v1"
	"github.com/ferry-cdc/ferry/services/delivery/relation"
)

// Dead-letter messages (KafkaOptions.dead_letter_topic) carry a row that is
// over its topic's max.message.bytes. The headers say what the row is and why
// it is there, so that an operator can find it in the source; the value is the
// row's message exactly as the data topic would have received it when it fits
// the dead-letter topic's own limit, and empty otherwise (header
// ferry.value_dropped says so). The message is keyed like the row and, like
// every other message, moves the safe LSN only once Kafka acknowledges it: a
// dead-lettered row is shipped, to another place, never skipped.
const (
	hdrReason       = "ferry.reason"
	hdrSchema       = "ferry.schema"
	hdrTable        = "ferry.table"
	hdrTopic        = "ferry.topic"
	hdrLSN          = "ferry.lsn"
	hdrSize         = "ferry.size"
	hdrTopicLimit   = "ferry.topic_max_message_bytes"
	hdrValueDropped = "ferry.value_dropped"

	reasonTooLarge = "message_too_large"
)

// deadLetter routes an oversized row to the dead-letter topic. value is the
// encoded row, size its size on the wire to the data topic.
func (s *stream) deadLetter(tab *relation.Table, ev *cdcv1.ChangeEvent, data *topicInfo, key, value []byte, size int) error {
	dlq, err := s.topic(s.start.GetOptions().GetDeadLetterTopic())
	if err != nil {
		return err
	}
	rel := tab.Rel
	headers := []kafka.Header{
		{Key: hdrReason, Value: []byte(reasonTooLarge)},
		{Key: hdrSchema, Value: []byte(rel.GetSchema())},
		{Key: hdrTable, Value: []byte(rel.GetTable())},
		{Key: hdrTopic, Value: []byte(data.name)},
		{Key: hdrLSN, Value: strconv.AppendUint(nil, ev.GetLsn(), 10)},
		{Key: hdrSize, Value: strconv.AppendInt(nil, int64(size), 10)},
		{Key: hdrTopicLimit, Value: strconv.AppendInt(nil, int64(data.maxBytes), 10)},
	}
	if size > dlq.maxBytes {
		value = nil
		headers = append(headers, kafka.Header{Key: hdrValueDropped, Value: []byte("true")})
	}
	s.deadLettered.Add(1)
	s.logger.Warn("row over the topic's message size limit sent to the dead-letter topic",
		"schema", rel.GetSchema(), "table", rel.GetTable(), "key", string(key), "lsn", ev.GetLsn(),
		"size", size, "topic", data.name, "topic_max_message_bytes", data.maxBytes, "dead_letter_topic", dlq.name,
		"value_dropped", value == nil)
	// The dead-letter topic has one partition worth reading in order, and
	// its consumers are people, not partition-aware applications.
	return s.send(&kafka.Message{
		TopicPartition: kafka.TopicPartition{Topic: &dlq.name, Partition: 0},
		Key:            key,
		Value:          value,
		Headers:        headers,
	}, &msgInfo{tab: tab, topic: dlq.name})
}
