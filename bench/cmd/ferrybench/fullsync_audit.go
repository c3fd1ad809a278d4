package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

// rowRef tells which table's row a message carries; the full sync scenario
// reads tables whose ids overlap, so an id alone is not enough. Id 0 is a
// message that carries no row (a DDL record).
type rowRef func(topic string, value []byte) (table string, id int, err error)

// canalRow reads the table and first row id of one of Ferry's Canal JSON
// snapshot messages. Full sync writes millions of them, so the two fields
// are cut out of the bytes where the encoder puts them ("table" in the
// header, the id column first in "data") and JSON is decoded only when
// they are not there.
func canalRow(_ string, v []byte) (string, int, error) {
	table, ok1 := stringAfter(v, `"table":"`)
	if ok1 && bytes.Contains(v, []byte(`"isDdl":true`)) {
		return table, 0, nil
	}
	id, ok2 := digitsAfter(v, `"data":[{"id":"`)
	if ok1 && ok2 {
		return table, id, nil
	}
	var m struct {
		Table string `json:"table"`
		Data  []struct {
			ID string `json:"id"`
		} `json:"data"`
	}
	if err := json.Unmarshal(v, &m); err != nil {
		return "", 0, err
	}
	if len(m.Data) != 1 {
		return "", 0, fmt.Errorf("a Canal JSON message with %d rows, want 1", len(m.Data))
	}
	id, err := strconv.Atoi(m.Data[0].ID)
	return m.Table, id, err
}

// debeziumRow reads after.id of a Debezium JSON event (schemas off); the
// table is the topic's last segment (<prefix>.<schema>.<table>).
func debeziumRow(topic string, v []byte) (string, int, error) {
	table := topic[strings.LastIndexByte(topic, '.')+1:]
	if id, ok := digitsAfter(v, `"after":{"id":`); ok {
		return table, id, nil
	}
	ids, err := debeziumIDs(v)
	if err != nil {
		return "", 0, err
	}
	return table, ids[0], nil
}

func stringAfter(v []byte, marker string) (string, bool) {
	i := bytes.Index(v, []byte(marker))
	if i < 0 {
		return "", false
	}
	rest := v[i+len(marker):]
	j := bytes.IndexByte(rest, '"')
	if j < 0 {
		return "", false
	}
	return string(rest[:j]), true
}

func digitsAfter(v []byte, marker string) (int, bool) {
	i := bytes.Index(v, []byte(marker))
	if i < 0 {
		return 0, false
	}
	rest := v[i+len(marker):]
	n, j := 0, 0
	for ; j < len(rest) && rest[j] >= '0' && rest[j] <= '9'; j++ {
		n = n*10 + int(rest[j]-'0')
	}
	return n, j > 0
}

// auditFullSync reads topics to their end offsets (end in total) and checks
// that rows 1..rows of every table arrived at least once. It counts the
// messages that carry no row apart (ddl); the audit's sizes and sample are
// of row messages only.
func auditFullSync(ctx context.Context, bootstrap string, topics []string, end int64, tables []string, rows int, ref rowRef) (a topicAudit, ddl int, err error) {
	c, err := newAuditConsumer(bootstrap)
	if err != nil {
		return a, ddl, err
	}
	defer func() { _ = c.Close() }()
	if err := assignTopics(c, topics); err != nil {
		return a, ddl, err
	}
	index := make(map[string]int, len(tables))
	for i, t := range tables {
		index[t] = i
	}
	seen := make([]bool, len(tables)*(rows+1))
	deadline := time.Now().Add(10 * time.Minute)
	read := int64(0)
	for read < end {
		if err := ctx.Err(); err != nil {
			return a, ddl, fmt.Errorf("auditing %v: %w", topics, err)
		}
		if time.Now().After(deadline) {
			return a, ddl, fmt.Errorf("auditing %d topics: read %d of %d messages in 10 minutes", len(topics), read, end)
		}
		msg, err := c.ReadMessage(500 * time.Millisecond)
		if err != nil {
			var kerr kafka.Error
			if errors.As(err, &kerr) && kerr.IsTimeout() {
				continue
			}
			return a, ddl, fmt.Errorf("reading the full sync topics: %w", err)
		}
		read++
		table, id, err := ref(*msg.TopicPartition.Topic, msg.Value)
		if err != nil {
			return a, ddl, fmt.Errorf("decoding the message at %s: %w", msg.TopicPartition, err)
		}
		if id == 0 {
			ddl++
			continue
		}
		a.Messages++
		a.Bytes += int64(len(msg.Key) + len(msg.Value))
		a.AvgKey += float64(len(msg.Key))
		a.AvgValue += float64(len(msg.Value))
		if len(a.sampleVals) < sampleSize {
			a.sampleKeys = append(a.sampleKeys, msg.Key)
			a.sampleVals = append(a.sampleVals, msg.Value)
		}
		if i, ok := index[table]; ok && id >= 1 && id <= rows {
			seen[i*(rows+1)+id] = true
		}
	}
	parts := make([][]bool, len(tables))
	for i := range tables {
		parts[i] = seen[i*(rows+1) : (i+1)*(rows+1)]
	}
	a.finish(parts...)
	return a, ddl, nil
}

// assignTopics reads every partition of every topic from the beginning.
func assignTopics(c *kafka.Consumer, topics []string) error {
	var parts []kafka.TopicPartition
	for _, topic := range topics {
		md, err := c.GetMetadata(&topic, false, 5000)
		if err != nil {
			return fmt.Errorf("metadata of %s: %w", topic, err)
		}
		for _, p := range md.Topics[topic].Partitions {
			parts = append(parts, kafka.TopicPartition{Topic: &topic, Partition: p.ID, Offset: kafka.OffsetBeginning})
		}
	}
	if err := c.Assign(parts); err != nil {
		return fmt.Errorf("assigning %d topics: %w", len(topics), err)
	}
	return nil
}

// topicsEnd sums topicEnd over topics.
func topicsEnd(admin *kafka.AdminClient, topics []string) (int64, error) {
	var total int64
	for _, t := range topics {
		n, err := topicEnd(admin, t)
		if err != nil {
			return 0, err
		}
		total += n
	}
	return total, nil
}
