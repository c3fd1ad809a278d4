package delivery

// Reading delivery reports. librdkafka reports a whole produce request at
// once, and confluent-kafka-go forwards it message by message on the
// Events channel; the reader takes what is already queued as one burst and
// acknowledges it under one checkpointer lock, with the metrics counted
// per burst and one progress signal, instead of paying each per message.

import (
	"errors"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/ferry-cdc/ferry/services/internal/secret"
)

// maxReportBurst bounds a burst, so that the safe LSN keeps moving while
// reports pour in faster than they are read.
const maxReportBurst = 4096

// reportBurst collects one burst's reports: successes resolved to their
// messages (seqs, infos), and with an inFlight the raw reports still to be
// matched (msgs).
type reportBurst struct {
	seqs    []uint64
	infos   []*msgInfo
	msgs    []*kafka.Message
	matched []report
}

func (b *reportBurst) len() int { return len(b.seqs) + len(b.msgs) }

// readEvents turns delivery reports into acknowledgements; it ends when the
// producer is closed.
func (s *stream) readEvents() {
	defer s.bg.Done()
	events := s.p.Events()
	b := &reportBurst{}
	for ev := range events {
		s.handleEvent(ev, b)
	burst:
		for b.len() < maxReportBurst {
			select {
			case ev, ok := <-events:
				if !ok {
					break burst
				}
				s.handleEvent(ev, b)
			default:
				break burst
			}
		}
		s.ackBurst(b)
	}
	s.ackBurst(b)
}

// handleEvent adds a report to b and handles anything else at once.
func (s *stream) handleEvent(ev kafka.Event, b *reportBurst) {
	switch e := ev.(type) {
	case *kafka.Message:
		switch o := e.Opaque.(type) {
		case nil:
			if s.inFlight != nil {
				b.msgs = append(b.msgs, e)
			}
		case *msgInfo:
			s.resolved(e, o, b)
		case stateWrite:
			if e.TopicPartition.Error != nil {
				s.logger.Warn("storing a table definition failed; its DDL record may repeat after a restart", "error", e.TopicPartition.Error)
			}
		}
	case kafka.Error:
		s.ackBurst(b)
		s.clientError(e)
	}
}

// resolved adds the report e for info's message to b, or fails the stream
// with it.
func (s *stream) resolved(e *kafka.Message, info *msgInfo, b *reportBurst) {
	err := e.TopicPartition.Error
	if err == nil {
		b.seqs = append(b.seqs, info.seq)
		b.infos = append(b.infos, info)
		return
	}
	// What Kafka acknowledged before the failure still counts towards the
	// final safe LSN the client is told.
	s.ackSeqs(b)
	var ke kafka.Error
	if !errors.As(err, &ke) {
		s.fail(info.seq, status.Errorf(codes.Internal, "delivering to %q: %v", info.topic, err))
	} else {
		s.fail(info.seq, s.deliveryError(ke, info))
	}
	s.madeProgress()
}

// ackBurst matches b's raw reports, acknowledges its messages and empties
// it.
func (s *stream) ackBurst(b *reportBurst) {
	if len(b.msgs) > 0 {
		b.matched = s.inFlight.match(b.msgs, b.matched[:0])
		clear(b.msgs)
		b.msgs = b.msgs[:0]
		for _, r := range b.matched {
			tp := r.msg.TopicPartition
			switch {
			case r.info == nil:
				s.ackSeqs(b)
				s.fail(0, status.Errorf(codes.Internal, "a delivery report for topic %q partition %d matches no message sent there", topicName(tp), tp.Partition))
			case r.suspect:
				// After a failure of its partition (see inFlight): the
				// stream is failing, and this success may be another
				// message's.
			case r.outOfOrder:
				s.ackSeqs(b)
				s.fail(r.info.seq, status.Errorf(codes.Internal, "delivery reports of topic %q partition %d arrived out of production order (offset %d after a later one); the safe LSN stays before them",
					r.info.topic, tp.Partition, tp.Offset))
			default:
				s.resolved(r.msg, r.info, b)
			}
		}
		clear(b.matched)
	}
	s.ackSeqs(b)
}

// ackSeqs acknowledges b's resolved successes and forgets them.
func (s *stream) ackSeqs(b *reportBurst) {
	if len(b.seqs) == 0 {
		return
	}
	for _, info := range b.infos {
		// A DDL record's definition is stored once Kafka has the record,
		// before the checkpointer hears of it: a stream that sees nothing
		// in flight and ends must find the definition's write under way.
		if info.schema != nil {
			s.schemaAcked(*info.schema)
		}
	}
	if _, bad, err := s.ckpt.AckAll(b.seqs); err != nil {
		s.fail(bad, status.Error(codes.Internal, err.Error()))
	}
	s.srv.Metrics.ackedAll(s.start.GetTaskId(), b.infos, time.Now())
	clear(b.infos) // let the infos go
	b.seqs, b.infos = b.seqs[:0], b.infos[:0]
	s.madeProgress()
}

func topicName(tp kafka.TopicPartition) string {
	if tp.Topic == nil {
		return ""
	}
	return *tp.Topic
}

// madeProgress wakes a producer waiting for room in librdkafka's queue.
func (s *stream) madeProgress() {
	select {
	case s.progress <- struct{}{}:
	default:
	}
}

// clientError handles an error librdkafka raised outside any one message.
func (s *stream) clientError(e kafka.Error) {
	switch {
	case e.IsFatal():
		s.fail(0, s.fatalError(e))
	case securityCode(e.Code()):
		// librdkafka would retry until message.timeout.ms; a rejected
		// password or certificate will not heal by itself.
		pw, _ := secret.Resolve(s.start.GetKafka().GetSaslPassword())
		s.fail(0, securityStatus(s.start.GetKafka(), e, pw))
	case e.Code() == kafka.ErrAllBrokersDown:
		// librdkafka would hold the messages until message.timeout.ms (5
		// minutes) and an idle stream forever, so the task would look
		// healthy while Kafka is gone. Failing lets the workflow retry
		// within its connection window, from the safe LSN.
		s.fail(0, status.Errorf(codes.Unavailable, "every Kafka broker at %s is unreachable (%v); the safe LSN stays at %d until one answers again",
			s.start.GetKafka().GetBootstrapServers(), e, s.ckpt.State().SafeLSN))
	default:
		s.logger.Warn("kafka client error", "error", e.Error(), "code", e.Code().String())
	}
}
