package delivery

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/timestamppb"

	cdcv1 "github.com/ferry-cdc/ferry/gen/ferry/cdc/v1"
	deliveryv1 "github.com/ferry-cdc/ferry/gen/ferry/delivery/v1"
	taskv1 "github.com/ferry-cdc/ferry/gen/ferry/task/v1"
	"github.com/ferry-cdc/ferry/services/testenv"
	"github.com/ferry-cdc/ferry/services/tuple"
)

// startServer serves a DeliveryService on a loopback port and returns a
// client for it.
func startServer(t *testing.T) (deliveryv1.DeliveryServiceClient, *Server) {
	t.Helper()
	return startServerLogging(t, slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
}

// startServerLogging is startServer with the service logging to logger.
func startServerLogging(t *testing.T, logger *slog.Logger) (deliveryv1.DeliveryServiceClient, *Server) {
	t.Helper()
	impl := NewServer(logger)
	t.Cleanup(impl.Wait) // runs after the server stops
	cc, _ := testenv.ServeGRPC(t, func(gs *grpc.Server) { deliveryv1.RegisterDeliveryServiceServer(gs, impl) })
	return deliveryv1.NewDeliveryServiceClient(cc), impl
}

// session is a client side of a Deliver stream whose responses are read by
// a goroutine.
type session struct {
	t      *testing.T
	stream deliveryv1.DeliveryService_DeliverClient
	resps  chan *deliveryv1.DeliverResponse
	done   chan error // the stream's final status (nil on a clean end)
	seen   []*deliveryv1.DeliverResponse
	result error
	ended  bool
}

func openSession(t *testing.T, ctx context.Context, c deliveryv1.DeliveryServiceClient, start *deliveryv1.StartDelivery) *session {
	t.Helper()
	st, err := c.Deliver(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Send(&deliveryv1.DeliverRequest{Kind: &deliveryv1.DeliverRequest_Start{Start: start}}); err != nil {
		t.Fatal(err)
	}
	s := &session{t: t, stream: st, resps: make(chan *deliveryv1.DeliverResponse, 1024), done: make(chan error, 1)}
	go func() {
		for {
			r, err := st.Recv()
			if err != nil {
				close(s.resps)
				if errors.Is(err, io.EOF) {
					err = nil
				}
				s.done <- err
				return
			}
			s.resps <- r
		}
	}()
	return s
}

func (s *session) send(b *cdcv1.ChangeBatch) {
	s.t.Helper()
	if err := s.stream.Send(&deliveryv1.DeliverRequest{Kind: &deliveryv1.DeliverRequest_Batch{Batch: b}}); err != nil && !errors.Is(err, io.EOF) {
		s.t.Fatal(err)
	}
}

// next returns the next response, or nil once the stream has ended.
func (s *session) next(deadline <-chan time.Time) *deliveryv1.DeliverResponse {
	s.t.Helper()
	select {
	case r, ok := <-s.resps:
		if !ok {
			if !s.ended {
				s.result = <-s.done
				s.ended = true
			}
			return nil
		}
		if n := len(s.seen); n > 0 && r.GetSafeLsn() < s.seen[n-1].GetSafeLsn() {
			s.t.Fatalf("safe LSN went backwards: %d after %d", r.GetSafeLsn(), s.seen[n-1].GetSafeLsn())
		}
		s.seen = append(s.seen, r)
		return r
	case <-deadline:
		s.t.Fatalf("no response in time; seen %v", s.seen)
		return nil
	}
}

// waitSafe reads responses until the safe LSN reaches want.
func (s *session) waitSafe(want uint64, within time.Duration) *deliveryv1.DeliverResponse {
	s.t.Helper()
	deadline := time.After(within)
	for {
		r := s.next(deadline)
		if r == nil {
			s.t.Fatalf("stream ended (%v) before safe LSN %d; seen %v", s.result, want, s.seen)
		}
		if r.GetSafeLsn() > want {
			s.t.Fatalf("safe LSN %d passed the expected %d", r.GetSafeLsn(), want)
		}
		if r.GetSafeLsn() == want {
			return r
		}
	}
}

// finish half-closes and reads until the stream ends; it returns the last
// response and the stream's status.
func (s *session) finish(within time.Duration) (*deliveryv1.DeliverResponse, error) {
	s.t.Helper()
	if err := s.stream.CloseSend(); err != nil {
		s.t.Fatal(err)
	}
	return s.drain(within)
}

func (s *session) drain(within time.Duration) (*deliveryv1.DeliverResponse, error) {
	s.t.Helper()
	deadline := time.After(within)
	for s.next(deadline) != nil {
	}
	var last *deliveryv1.DeliverResponse
	if n := len(s.seen); n > 0 {
		last = s.seen[n-1]
	}
	return last, s.result
}

// The test table: public.orders (id int8 PK, note text, amount numeric,
// at timestamptz).
const ordersOID = 16400

func ordersRelation() *cdcv1.Relation {
	return &cdcv1.Relation{
		Oid: ordersOID, Schema: "public", Table: "orders", KeyColumns: []string{"id"},
		ReplicaIdentity: cdcv1.ReplicaIdentity_REPLICA_IDENTITY_DEFAULT,
		Columns: []*cdcv1.Column{
			{Name: "id", TypeOid: 20, TypeName: "bigint", Key: true},
			{Name: "note", TypeOid: 25, TypeName: "text"},
			{Name: "amount", TypeOid: 1700, TypeName: "numeric(10,2)"},
			{Name: "at", TypeOid: 1184, TypeName: "timestamp with time zone"},
		},
	}
}

var commitTime = time.Date(2024, 5, 6, 7, 8, 9, 123_000_000, time.UTC)

func insert(id int64, note string, lsn uint64) *cdcv1.ChangeEvent {
	return &cdcv1.ChangeEvent{
		Op: cdcv1.Operation_OPERATION_INSERT, RelationOid: ordersOID, Lsn: lsn, CommitLsn: lsn, Xid: 7,
		CommitTime: timestamppb.New(commitTime),
		// PostgreSQL's text output, as capture sends it.
		NewTuple: tuple.Of(strconv.FormatInt(id, 10), note, "12.50", "2024-05-06 07:08:09.123+00"),
	}
}

func start(bootstrap, topic string, opts *taskv1.KafkaOptions) *deliveryv1.StartDelivery {
	return &deliveryv1.StartDelivery{
		// Unique: delivery remembers each task's table definitions in Kafka.
		TaskId:         testenv.UniqueName("task-test"),
		Kafka:          &taskv1.KafkaEndpoint{BootstrapServers: bootstrap, Topic: topic},
		Options:        opts,
		Objects:        &taskv1.ObjectSelection{Schemas: []*taskv1.SchemaSelection{{Schema: "public"}}},
		SourceDatabase: "shop",
	}
}

// consume reads n messages from every partition of topic, from the start.
func consume(t *testing.T, bootstrap, topic string, n int, within time.Duration) []*kafka.Message {
	t.Helper()
	c, err := kafka.NewConsumer(&kafka.ConfigMap{
		"bootstrap.servers":  bootstrap,
		"group.id":           "ferry-test-" + topic,
		"enable.auto.commit": false,
		"auto.offset.reset":  "earliest",
		"log_level":          3,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.Close() }()
	md, err := c.GetMetadata(&topic, false, 10_000)
	if err != nil {
		t.Fatal(err)
	}
	var tps []kafka.TopicPartition
	for _, p := range md.Topics[topic].Partitions {
		tps = append(tps, kafka.TopicPartition{Topic: &topic, Partition: p.ID, Offset: kafka.OffsetBeginning})
	}
	if err := c.Assign(tps); err != nil {
		t.Fatal(err)
	}
	var out []*kafka.Message
	deadline := time.Now().Add(within)
	for len(out) < n {
		if time.Now().After(deadline) {
			t.Fatalf("consumed %d of %d messages from %s in %s", len(out), n, topic, within)
		}
		m, err := c.ReadMessage(200 * time.Millisecond)
		if err != nil {
			var ke kafka.Error
			if errors.As(err, &ke) && ke.Code() == kafka.ErrTimedOut {
				continue
			}
			t.Fatal(err)
		}
		out = append(out, m)
	}
	// Anything more within a short window would be a duplicate.
	if m, err := c.ReadMessage(300 * time.Millisecond); err == nil {
		t.Fatalf("unexpected extra message %s", m.Value)
	}
	return out
}

// rowID is column 0 of ev's new row image, an integer.
func rowID(ev *cdcv1.ChangeEvent) int64 {
	text, _ := tuple.Field(ev.GetNewTuple(), 0)
	id, err := strconv.ParseInt(string(text), 10, 64)
	if err != nil {
		panic(fmt.Sprintf("column 0 is not an integer: %v", err))
	}
	return id
}
