package delivery

import (
	"errors"
	"testing"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

func deliveryReport(topic string, part int32, off kafka.Offset, err error) *kafka.Message {
	return &kafka.Message{TopicPartition: kafka.TopicPartition{Topic: &topic, Partition: part, Offset: off, Error: err}}
}

// Reports are matched per partition in production order, whatever the
// interleaving of partitions; a refused message is taken back.
func TestInFlightMatchesByPartitionOrder(t *testing.T) {
	f := newInFlight()
	infos := make([]*msgInfo, 6)
	for i := range infos {
		infos[i] = &msgInfo{seq: uint64(i + 1)}
	}
	f.push("a", 0, infos[0])
	f.push("a", 1, infos[1])
	f.push("a", 0, infos[2])
	f.push("b", 0, infos[3])
	f.push("a", 1, infos[4])
	f.push("a", 1, infos[5])
	f.dropLast("a", 1) // infos[5] was refused by Produce
	got := f.match([]*kafka.Message{
		deliveryReport("a", 1, 10, nil), deliveryReport("b", 0, 3, nil), deliveryReport("a", 0, 7, nil),
		deliveryReport("a", 1, 11, nil), deliveryReport("a", 0, -1, errors.New("failed")),
	}, nil)
	want := []*msgInfo{infos[1], infos[3], infos[0], infos[4], infos[2]}
	for i, r := range got {
		if r.info != want[i] || r.outOfOrder {
			t.Fatalf("report %d matched seq %v (out of order %v), want seq %d", i, r.info, r.outOfOrder, want[i].seq)
		}
	}
	if r := f.match([]*kafka.Message{deliveryReport("a", 1, 12, nil)}, nil); r[0].info != nil {
		t.Fatalf("a report with nothing awaited on the partition matched seq %d", r[0].info.seq)
	}
}

// A successful report whose offset is not past the partition's previous
// one means the order was not kept: it is flagged, never trusted.
func TestInFlightFlagsReportsOutOfOrder(t *testing.T) {
	f := newInFlight()
	for i := range 3 {
		f.push("a", 0, &msgInfo{seq: uint64(i + 1)})
	}
	got := f.match([]*kafka.Message{deliveryReport("a", 0, 5, nil), deliveryReport("a", 0, 4, nil), deliveryReport("a", 0, 6, nil)}, nil)
	if got[0].outOfOrder || !got[1].outOfOrder {
		t.Fatalf("offsets 5 then 4: flags %v, %v; want only the second flagged", got[0].outOfOrder, got[1].outOfOrder)
	}
}

// A failure librdkafka reports itself may overtake an older message's
// success: matched in order, the failure lands on the older message and
// the success on the newer, so a success after a failure acknowledges
// nothing.
func TestInFlightDistrustsSuccessesAfterAFailure(t *testing.T) {
	f := newInFlight()
	for i := range 3 {
		f.push("a", 0, &msgInfo{seq: uint64(i + 1)})
	}
	f.push("a", 1, &msgInfo{seq: 4})
	got := f.match([]*kafka.Message{deliveryReport("a", 0, -1, errors.New("timed out in queue")), deliveryReport("a", 0, 8, nil),
		deliveryReport("a", 1, 2, nil)}, nil)
	if got[0].info.seq != 1 || !got[1].suspect || got[2].suspect {
		t.Fatalf("failure then success on partition 0, success on 1: matched seq %d, suspect %v, %v; want seq 1, then suspect, then not",
			got[0].info.seq, got[1].suspect, got[2].suspect)
	}
}

// The queues hold the messages in flight, not every message ever sent.
func TestInFlightMemoryFollowsMessagesInFlight(t *testing.T) {
	f := newInFlight()
	off := kafka.Offset(0)
	for round := range 200 {
		for range 100 {
			f.push("a", 0, &msgInfo{})
		}
		reports := make([]*kafka.Message, 0, 100)
		for range 100 {
			reports = append(reports, deliveryReport("a", 0, off, nil))
			off++
		}
		for i, r := range f.match(reports, nil) {
			if r.info == nil || r.outOfOrder {
				t.Fatalf("round %d report %d: %+v", round, i, r)
			}
		}
	}
	if q := f.parts[partKey{"a", 0}]; cap(q.infos) > 4096 {
		t.Fatalf("queue capacity %d after 20,000 messages with at most 100 in flight", cap(q.infos))
	}
}
