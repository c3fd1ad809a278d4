package delivery

import (
	"sync"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

// inFlight matches delivery reports to messages without an Opaque: with an
// idempotent producer librdkafka reports a partition's messages in the
// order they were produced (the broker takes a producer's messages of a
// partition only in sequence, and librdkafka retries a failed request, and
// everything after it, in order), so a report is for the oldest message of
// its partition that has none yet. confluent-kafka-go keeps every Opaque in
// a map under a lock until its report returns, which cost about a tenth of
// delivery's CPU at full rate.
//
// The order is checked, not trusted: a partition's successful reports must
// carry rising offsets (readEvents fails the stream otherwise). A report
// librdkafka makes itself (a purge, a timeout) may still overtake an older
// message's; so once a partition has a failed report, its later successes
// acknowledge nothing: the stream fails at the failure, whose message is
// the older one, and the safe LSN stays before it.
type inFlight struct {
	mu    sync.Mutex
	parts map[partKey]*partQueue
}

type partKey struct {
	topic string
	part  int32
}

// partQueue is one partition's messages awaiting reports, oldest first.
type partQueue struct {
	infos []*msgInfo
	head  int
	// last is the offset of the newest successful report; -1 before any.
	last kafka.Offset
	// failed: a report of the partition failed; later ones are suspect.
	failed bool
}

func newInFlight() *inFlight { return &inFlight{parts: map[partKey]*partQueue{}} }

// push records that info's message is about to be produced to topic and
// partition; it must happen before Produce, whose report may come at once.
func (f *inFlight) push(topic string, part int32, info *msgInfo) {
	f.mu.Lock()
	q := f.parts[partKey{topic, part}]
	if q == nil {
		q = &partQueue{last: -1}
		f.parts[partKey{topic, part}] = q
	}
	q.infos = append(q.infos, info)
	f.mu.Unlock()
}

// dropLast undoes the last push to topic and partition, for a message
// Produce refused: it gets no report.
func (f *inFlight) dropLast(topic string, part int32) {
	f.mu.Lock()
	defer f.mu.Unlock()
	q := f.parts[partKey{topic, part}]
	if q == nil || len(q.infos) == q.head {
		return
	}
	q.infos[len(q.infos)-1] = nil
	q.infos = q.infos[:len(q.infos)-1]
}

// report is a delivery report matched to its message. outOfOrder is set
// when a successful report's offset is not past the partition's previous
// one, suspect when it follows a failed one; info is nil when no message
// awaited a report on the partition.
type report struct {
	msg        *kafka.Message
	info       *msgInfo
	outOfOrder bool
	suspect    bool
}

// match pairs each report of msgs with its message, under one lock.
func (f *inFlight) match(msgs []*kafka.Message, out []report) []report {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, m := range msgs {
		r := report{msg: m}
		tp := m.TopicPartition
		var q *partQueue
		if tp.Topic != nil {
			q = f.parts[partKey{*tp.Topic, tp.Partition}]
		}
		if q != nil && q.head < len(q.infos) {
			r.info = q.infos[q.head]
			q.infos[q.head] = nil
			q.head++
			q.compact()
			if tp.Error == nil {
				r.outOfOrder = tp.Offset <= q.last
				r.suspect = q.failed
				q.last = tp.Offset
			}
			q.failed = q.failed || tp.Error != nil
		}
		out = append(out, r)
	}
	return out
}

// compact drops the consumed head once it dominates the queue, so that
// memory follows the messages in flight, not the stream's length.
func (q *partQueue) compact() {
	if q.head == len(q.infos) {
		q.infos, q.head = q.infos[:0], 0
		return
	}
	if q.head >= 1024 && q.head*2 >= len(q.infos) {
		n := copy(q.infos, q.infos[q.head:])
		clear(q.infos[n:])
		q.infos, q.head = q.infos[:n], 0
	}
}
