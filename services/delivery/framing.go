package delivery

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	cdcv1 "github.com/ferry-cdc/ferry/gen/ferry/cdc/v1"
	taskv1 "github.com/ferry-cdc/ferry/gen/ferry/task/v1"
	"github.com/ferry-cdc/ferry/services/delivery/dtsavro"
	"github.com/ferry-cdc/ferry/services/delivery/registry"
	"github.com/ferry-cdc/ferry/services/delivery/relation"
)

// framedEncoder writes DTS Avro in the Confluent wire format: the magic byte
// and the schema id of the row's topic (TopicNameStrategy, subject
// "<topic>-value"), then the Record exactly as the plain encoder writes it.
// The header is prepared once per relation, so a row costs a 5-byte append.
type framedEncoder struct {
	encoder
	ctx      context.Context
	reg      *registry.Client
	topicOf  func(oid uint32) string // the topic routeFor chose for a relation
	ddlTopic string                  // options.ddl_topic; empty: the table's topic
	headers  map[uint32][]byte
}

func newFramedEncoder(ctx context.Context, inner encoder, reg *registry.Client, topicOf func(uint32) string, ddlTopic string) *framedEncoder {
	return &framedEncoder{encoder: inner, ctx: ctx, reg: reg, topicOf: topicOf, ddlTopic: ddlTopic, headers: map[uint32][]byte{}}
}

// registerTopics registers the schema for every topic the stream may write
// to, so that an unreachable registry stops the stream before any row.
func (f *framedEncoder) registerTopics(topics []string) error {
	for _, t := range topics {
		if _, err := f.register(t); err != nil {
			return err
		}
	}
	return nil
}

func (f *framedEncoder) register(topic string) (uint32, error) {
	subject := registry.Subject(topic)
	id, err := f.reg.Register(f.ctx, subject, dtsavro.SchemaJSON)
	if err == nil {
		return id, nil
	}
	// Unreachable or failing registries are retried in the connection
	// window; an answer that refuses the schema needs an operator.
	var unreachable *registry.UnreachableError
	var refused *registry.Error
	switch {
	case errors.As(err, &unreachable), errors.As(err, &refused) && refused.Status >= 500:
		return 0, status.Errorf(codes.Unavailable, "registering the DTS Avro schema for topic %q: %v", topic, err)
	case errors.As(err, &refused) && refused.Incompatible():
		return 0, status.Errorf(codes.FailedPrecondition,
			"registering the DTS Avro schema for topic %q: %v; subject %s holds a schema the DTS Avro Record is not compatible with: "+
				"delete the subject or set its compatibility to NONE", topic, err, subject)
	default:
		return 0, status.Errorf(codes.FailedPrecondition, "registering the DTS Avro schema for topic %q: %v; check destination.schema_registry_url and the registry's permissions", topic, err)
	}
}

func (f *framedEncoder) SetRelation(r *cdcv1.Relation) *relation.Table {
	delete(f.headers, r.GetOid())
	return f.encoder.SetRelation(r)
}

func (f *framedEncoder) Encode(dst []byte, t *relation.Table, ev *cdcv1.ChangeEvent) ([]byte, error) {
	oid := t.Rel.GetOid()
	h, ok := f.headers[oid]
	if !ok {
		topic := f.topicOf(oid)
		if topic == "" {
			return dst, fmt.Errorf("no topic routed for relation %d (%s.%s) before encoding", oid, t.Rel.GetSchema(), t.Rel.GetTable())
		}
		// Normally answered from the client's cache: every topic known at
		// the stream's start is registered then.
		id, err := f.register(topic)
		if err != nil {
			return dst, err
		}
		h = registry.AppendHeader(nil, id)
		f.headers[oid] = h
	}
	return f.encoder.Encode(append(dst, h...), t, ev)
}

// EncodeDDL frames a DDL Record for the topic it goes to: the DDL topic, or
// the table's own. DDL is rare, so the id comes from the client's cache.
func (f *framedEncoder) EncodeDDL(dst []byte, t *relation.Table, d relation.DDL) ([]byte, error) {
	topic := f.ddlTopic
	if topic == "" {
		topic = f.topicOf(t.Rel.GetOid())
	}
	if topic == "" {
		return dst, fmt.Errorf("no topic routed for relation %d (%s.%s) before encoding its DDL", t.Rel.GetOid(), t.Rel.GetSchema(), t.Rel.GetTable())
	}
	id, err := f.register(topic)
	if err != nil {
		return dst, err
	}
	return f.encoder.EncodeDDL(registry.AppendHeader(dst, id), t, d)
}

// useRegistry switches the stream to the Confluent wire format when
// destination.schema_registry_url is set, after registering the schema for
// every topic known at the start. The registry is refused for Canal JSON:
// Canal JSON has no schema to register, and its consumers read plain JSON
// that a binary header would break (Normalize refuses it first).
func (s *stream) useRegistry(topics []string) error {
	url := s.start.GetKafka().GetSchemaRegistryUrl()
	if url == "" {
		return nil
	}
	if f := s.start.GetOptions().GetFormat(); f != taskv1.DataFormat_DATA_FORMAT_DTS_AVRO {
		return status.Errorf(codes.InvalidArgument, "destination.schema_registry_url is set but options.format is %v: a schema registry applies to DTS Avro only; unset it or use DTS Avro", f)
	}
	reg, err := registry.New(url, registry.Options{})
	if err != nil {
		return status.Errorf(codes.InvalidArgument, "destination.schema_registry_url: %v", err)
	}
	fe := newFramedEncoder(s.ctx, s.enc, reg, func(oid uint32) string {
		if r := s.routes[oid]; r != nil && r.topic != nil {
			return r.topic.name
		}
		return ""
	}, s.start.GetOptions().GetDdlTopic())
	if err := fe.registerTopics(topics); err != nil {
		return err
	}
	s.enc = fe
	s.logger.InfoContext(s.ctx, "DTS Avro in the Confluent wire format", "schema_registry", reg.URL(), "subjects_registered", len(topics))
	return nil
}
