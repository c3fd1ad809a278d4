package delivery

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"

	cdcv1 "github.com/ferry-cdc/ferry/gen/ferry/cdc/v1"
)

// StoredCheckpoint is what an exactly-once task's last committed record in
// the checkpoint topic (DefaultCheckpointTopic) holds: its watermark LSN and
// backfill progress by table, as read_committed consumers see it; 0 and
// none without a record. It is for operators' tools and tests: a stream
// reads its own partition only (readCheckpoint).
func StoredCheckpoint(ctx context.Context, conf kafka.ConfigMap, taskID string) (uint64, map[string]*cdcv1.BackfillProgress, error) {
	var r checkpointRecord
	err := readCompacted(ctx, conf, DefaultCheckpointTopic, func(m *kafka.Message) error {
		if string(m.Key) != taskID {
			return nil
		}
		r = checkpointRecord{}
		if m.Value == nil {
			return nil // a tombstone: the checkpoint was deleted
		}
		return json.Unmarshal(m.Value, &r)
	})
	if err != nil {
		return 0, nil, fmt.Errorf("reading the checkpoint of task %s from topic %s: %w", taskID, DefaultCheckpointTopic, err)
	}
	bfs, err := decodeBackfills(r.Backfills)
	if err != nil {
		return 0, nil, fmt.Errorf("the checkpoint of task %s in topic %s: %w", taskID, DefaultCheckpointTopic, err)
	}
	return r.WatermarkLSN, bfs, nil
}
