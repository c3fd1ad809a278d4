package delivery

import (
	"context"
	"testing"
	"time"

	cdcv1 "github.com/ferry-cdc/ferry/gen/ferry/cdc/v1"
	taskv1 "github.com/ferry-cdc/ferry/gen/ferry/task/v1"
)

// Rows from full sync carry the ferry.snapshot header in every format, and
// rows from the stream carry no header at all.
func TestSnapshotRowsCarryTheHeader(t *testing.T) {
	for name, format := range map[string]taskv1.DataFormat{"canal": taskv1.DataFormat_DATA_FORMAT_CANAL_JSON, "dts avro": taskv1.DataFormat_DATA_FORMAT_DTS_AVRO} {
		t.Run(name, func(t *testing.T) {
			bootstrap := fakeKafka(t, 1, "orders")
			client, _ := startServer(t)
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			s := openSession(t, ctx, client, start(bootstrap, "orders", &taskv1.KafkaOptions{Format: format}))
			snap := insert(1, "from the snapshot", 100)
			snap.Snapshot = true
			s.send(&cdcv1.ChangeBatch{Relations: []*cdcv1.Relation{ordersRelation()},
				Events: []*cdcv1.ChangeEvent{snap, insert(2, "from the stream", 110)}, WatermarkLsn: 120})
			if _, err := s.finish(20 * time.Second); err != nil {
				t.Fatalf("stream ended with %v", err)
			}
			msgs := consume(t, bootstrap, "orders", 2, 20*time.Second)
			if h := msgs[0].Headers; len(h) != 1 || h[0].Key != SnapshotHeader || string(h[0].Value) != "true" {
				t.Errorf("snapshot row headers %v, want only %s: true", h, SnapshotHeader)
			}
			if h := msgs[1].Headers; len(h) != 0 {
				t.Errorf("stream row headers %v, want none", h)
			}
		})
	}
}
