package delivery

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"

	cdcv1 "github.com/ferry-cdc/ferry/gen/ferry/cdc/v1"
	deliveryv1 "github.com/ferry-cdc/ferry/gen/ferry/delivery/v1"
	taskv1 "github.com/ferry-cdc/ferry/gen/ferry/task/v1"
)

// splitCluster is a fake Kafka with orders led by broker 0 and dlq by
// broker 1, so that holding one broker's produce requests holds the table's
// rows while dead letters go through.
func splitCluster(t *testing.T) (*kfake.Cluster, string) {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(2), kfake.SeedTopics(1, "orders", "dlq"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	for topic, node := range map[string]int32{"orders": 0, "dlq": 1} {
		if err := c.MoveTopicPartition(topic, 0, node); err != nil {
			t.Fatal(err)
		}
	}
	return c, strings.Join(c.ListenAddrs(), ",")
}

// holdOrders keeps broker 0's first produce request, and so every later
// one on its connection, unanswered until release is closed.
func holdOrders(c *kfake.Cluster, release <-chan struct{}) {
	var held atomic.Bool
	c.ControlKey(int16(kmsg.Produce), func(kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		if c.CurrentNode() == 0 && held.CompareAndSwap(false, true) {
			c.SleepControl(func() { <-release })
		}
		return nil, nil, false
	})
}

// TestDroppedRowsKeepTheLSNInvariant: a batch whose only row a filter left
// out, and one whose only row went to the dead-letter topic, become safe
// once the row before them is acked, never before; the dead letter's own
// acknowledgement does not move the safe LSN past the unacked row.
func TestDroppedRowsKeepTheLSNInvariant(t *testing.T) {
	c, bootstrap := splitCluster(t)
	release := make(chan struct{})
	holdOrders(c, release)
	defer func() {
		select {
		case <-release:
		default:
			close(release)
		}
	}()
	ts := []*taskv1.Transform{
		{Kind: &taskv1.Transform_Compute{Compute: &taskv1.ComputedColumn{Name: "r", Expression: "10 / (row.id - 4)"}}},
		{Kind: &taskv1.Transform_Filter{Filter: "row.id % 2 == 1"}},
	}
	st := transformStart(bootstrap, taskv1.DataFormat_DATA_FORMAT_CANAL_JSON, ts)
	st.Options.DeadLetterTopic = "dlq"
	client, _ := startServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	s := openSession(t, ctx, client, st)
	s.send(&cdcv1.ChangeBatch{Relations: []*cdcv1.Relation{ordersRelation()}, Events: []*cdcv1.ChangeEvent{insert(1, "kept", 90)}, WatermarkLsn: 100})
	s.send(&cdcv1.ChangeBatch{Events: []*cdcv1.ChangeEvent{insert(2, "filtered", 110)}, WatermarkLsn: 120})
	s.send(&cdcv1.ChangeBatch{Events: []*cdcv1.ChangeEvent{insert(4, "failed", 130)}, WatermarkLsn: 140})

	// The dead letter in Kafka: every batch was handled, and the only
	// message still unacked is row 1.
	consume(t, bootstrap, "dlq", 1, 20*time.Second)
	early := drainReady(s)
	for _, r := range early {
		if r.GetSafeLsn() >= 90 {
			t.Fatalf("safe LSN %d while row 1 (LSN 90) is unacked; seen %v", r.GetSafeLsn(), early)
		}
	}
	close(release)
	last, err := s.finish(20 * time.Second)
	if err != nil || last.GetSafeLsn() != 140 || last.GetDeadLettered() != 1 {
		t.Fatalf("final %v, %v; want safe LSN 140 with one row dead-lettered", last, err)
	}
	for _, r := range s.seen {
		if r.GetSafeLsn() >= 90 && r.GetAckedEvents() < last.GetAckedEvents() {
			t.Fatalf("safe LSN %d reported with %d of %d messages acked; seen %v", r.GetSafeLsn(), r.GetAckedEvents(), last.GetAckedEvents(), s.seen)
		}
	}
}

// drainReady takes the responses already received, without waiting.
func drainReady(s *session) []*deliveryv1.DeliverResponse {
	for {
		select {
		case r, ok := <-s.resps:
			if !ok {
				s.t.Fatalf("stream ended early; seen %v", s.seen)
			}
			s.seen = append(s.seen, r)
		default:
			return s.seen
		}
	}
}
