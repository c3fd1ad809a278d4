package delivery

// Row transforms (package transform) sit between receiving an event and
// encoding it: the encoder is given the relation as the transforms leave
// it, and each event is transformed before routing, keying and encoding,
// for snapshot rows and streamed changes alike.

import (
	"errors"
	"strconv"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	cdcv1 "github.com/ferry-cdc/ferry/gen/ferry/cdc/v1"
	"github.com/ferry-cdc/ferry/services/delivery/relation"
	"github.com/ferry-cdc/ferry/services/delivery/transform"
)

const (
	hdrTransform          = "ferry.transform"
	hdrError              = "ferry.error"
	reasonTransformFailed = "transform_failed"
)

// prepareRelation compiles r's transforms and gives the encoder the
// relation as they leave it; the table it returns carries the transforms.
// A transform that no longer compiles (a column it reads was dropped, say)
// stops the stream with its table, position and CEL's message.
func (s *stream) prepareRelation(r *cdcv1.Relation) (*relation.Table, error) {
	s.srcRels[r.GetOid()] = r
	p, err := transform.Compile(r, transform.For(s.start.GetObjects(), r.GetSchema(), r.GetTable()))
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	if p == nil {
		return s.enc.SetRelation(r), nil
	}
	t := s.enc.SetRelation(p.Relation())
	t.Transforms = p
	return t, nil
}

// pipeline is tab's transforms, nil when the task has none for it. Checking
// the interface's type costs no more than a nil check.
func pipeline(tab *relation.Table) *transform.Pipeline {
	p, _ := tab.Transforms.(*transform.Pipeline)
	return p
}

// sameRelation reports whether r is the definition already prepared.
func (s *stream) sameRelation(r *cdcv1.Relation) bool {
	prev, ok := s.srcRels[r.GetOid()]
	return ok && proto.Equal(prev, r)
}

// applyTransforms runs ev's table's transforms; a nil event means the row
// is left out, or was dead-lettered.
func (s *stream) applyTransforms(tab *relation.Table, ev *cdcv1.ChangeEvent) (transform.Result, error) {
	p := pipeline(tab)
	if p == nil {
		return transform.Result{Event: ev}, nil
	}
	res, err := p.Apply(ev)
	var re *transform.RowError
	if errors.As(err, &re) {
		return transform.Result{}, s.transformFailed(tab, p, ev, re)
	}
	return res, err
}

// transformFailed follows the task's error policy for a row a transform
// failed on: the dead-letter topic when there is one, else the stream
// stops naming the table, key columns and LSN: never values, which the
// dead letter's key alone carries.
func (s *stream) transformFailed(tab *relation.Table, p *transform.Pipeline, ev *cdcv1.ChangeEvent, re *transform.RowError) error {
	rel := tab.Rel
	if s.start.GetOptions().GetDeadLetterTopic() == "" {
		return status.Errorf(codes.InvalidArgument,
			"row of table %s.%s (key columns %s) at LSN %d: %v; fix the transform (modify-objects) or set kafka.dead_letter_topic",
			rel.GetSchema(), rel.GetTable(), keyColumns(rel), ev.GetLsn(), re)
	}
	dlq, err := s.topic(s.start.GetOptions().GetDeadLetterTopic())
	if err != nil {
		return err
	}
	key := p.SourceKey(nil, ev)
	s.deadLettered.Add(1)
	s.logger.Warn("row a transform failed on sent to the dead-letter topic", "schema", rel.GetSchema(), "table", rel.GetTable(),
		"key_columns", keyColumns(rel), "lsn", ev.GetLsn(), "transform", re.Position, "error", re.Msg, "dead_letter_topic", dlq.name)
	return s.send(&kafka.Message{
		TopicPartition: kafka.TopicPartition{Topic: &dlq.name, Partition: 0},
		Key:            key,
		Headers: []kafka.Header{
			{Key: hdrReason, Value: []byte(reasonTransformFailed)},
			{Key: hdrSchema, Value: []byte(rel.GetSchema())},
			{Key: hdrTable, Value: []byte(rel.GetTable())},
			{Key: hdrLSN, Value: strconv.AppendUint(nil, ev.GetLsn(), 10)},
			{Key: hdrTransform, Value: strconv.AppendInt(nil, int64(re.Position), 10)},
			{Key: hdrError, Value: []byte(re.Msg)},
		},
	}, &msgInfo{tab: tab, topic: dlq.name})
}

// target is where a transformed row goes: the route's topic, or the
// table's when no route transform chose one. A chosen topic must exist.
func (s *stream) target(r *route, res transform.Result) (*topicInfo, int32, error) {
	if res.Topic == "" || res.Topic == r.topic.name {
		return r.topic, r.tablePart, nil
	}
	ti, err := s.topic(res.Topic)
	if err != nil {
		// The topic's name and the lookup's message, which quotes it, may
		// be made of row values.
		return nil, 0, status.Errorf(status.Code(err), "table %s: a route transform chose a topic Kafka cannot take (%s): create it or fix the route", r.full, status.Code(err))
	}
	return ti, JavaPartition(r.full, ti.partitions), nil
}
