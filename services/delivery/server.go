// Package delivery serves DeliveryService: it writes change events to Kafka
// and reports which LSNs Kafka has durably acknowledged.
//
// # Safe LSN
//
// Each produced message gets a sequence number; a batch whose watermark_lsn
// is not zero registers (last sequence so far, watermark) once every event of
// the batch is enqueued. Delivery reports arrive out of order across
// partitions; the checkpoint package keeps the contiguous acknowledged prefix
// and the safe LSN is the latest watermark that prefix covers (see package
// checkpoint). A DeliverResponse is sent whenever the safe LSN advances, at
// most every 20 ms, and a final one before the stream ends. A failed
// delivery is never acknowledged, so the safe LSN never passes it, and it
// ends the stream with:
//
//   - Unavailable: broker transport failures, all brokers down, timeouts
//     (after librdkafka's own retries within message.timeout.ms);
//   - FailedPrecondition: the topic does not exist (auto-creation is not
//     relied on; enable schema sync or create it), or was deleted while the
//     stream ran (reported after librdkafka's
//     topic.metadata.propagation.max.ms, 30 s); the workflow retries it
//     within the window for other failures, not the connection window;
//   - InvalidArgument: a row larger than its topic's max.message.bytes,
//     naming the schema, table, key and the largest columns to filter out;
//   - PermissionDenied: authorization failures;
//   - Unauthenticated: the brokers rejected the SASL user or password;
//   - FailedPrecondition also: the TLS handshake failed (an untrusted or
//     misnamed broker certificate).
//
// Stream start and EnsureTopics first wait (up to 15 s) for a broker to
// answer, so these security failures surface at once, naming the brokers,
// the user and the field to fix, and never the password.
//
// With KafkaOptions.exactly_once the producer is transactional and the safe
// LSN advances only when a Kafka transaction, which also stores the task's
// checkpoint, commits; a restarted stream resumes from that checkpoint and
// drops what it covers (see txn.go).
//
// # Messages
//
// The value is one row change in the task's format (KafkaOptions.format):
// Canal JSON (package canal) by default, or DTS Avro (package dtsavro) as
// plain Avro binary.
//
// The topic is the table's topic from ObjectSelection.tables[] or else
// KafkaEndpoint.topic. The Kafka key is the text of the key columns
// (Relation.key_columns) concatenated in key order with no separator, nil
// for tables without a key; an UPDATE or DELETE is keyed and routed by its
// before-image's key when the source sent one (so a key change goes where the
// old key's history is), else by the new row. The partition follows the
// policy: ALL_TO_ZERO (default) 0; HASH_TABLE JavaPartition("schema.table")
// with the source's names; HASH_PRIMARY_KEY JavaPartition(key), 0 without a
// key.
package delivery

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strings"
	"sync"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	capturev1 "github.com/ferry-cdc/ferry/gen/ferry/capture/v1"
	deliveryv1 "github.com/ferry-cdc/ferry/gen/ferry/delivery/v1"
)

// MaxChangeMessageBytes is the largest message delivery takes from
// capture's streams: none. A keyed full sync sends each chunk (10,000 rows)
// as one batch, and a row may hold a value of up to 1 GB, so gRPC's default
// of 4 MB stalled the full sync of any table whose rows average more than
// about 400 bytes (TestChunkedFullSyncReadsTablesAtOnce, with 450-byte
// rows). A row too large for its topic is refused where it is produced,
// with an error that names it.
const MaxChangeMessageBytes = math.MaxInt32

// Server implements DeliveryService.
type Server struct {
	deliveryv1.UnimplementedDeliveryServiceServer
	logger *slog.Logger

	// Capture is the capture service Replicate reads from; nil: Replicate
	// is refused, and only Deliver serves.
	Capture capturev1.CaptureServiceClient

	// FlushTimeout bounds the wait for outstanding acknowledgements after
	// the client half-closes. Zero: 60 s.
	FlushTimeout time.Duration
	// CoalesceInterval is the minimum time between two progress responses.
	// Zero: 20 ms.
	CoalesceInterval time.Duration
	// CheckpointTopic is where exactly-once streams keep their checkpoints
	// (see txn.go). Empty: DefaultCheckpointTopic.
	CheckpointTopic string

	// Metrics records per-task metrics (metrics.go); nil records none.
	Metrics *Metrics

	streams sync.WaitGroup // one per stream whose producer is not closed yet
}

// Wait blocks until the producer of every stream that has ended is closed.
// A failed stream's handler returns before its producer closes (the
// receiving goroutine must notice the cancellation first).
func (s *Server) Wait() { s.streams.Wait() }

// NewServer returns a server that logs to logger.
func NewServer(logger *slog.Logger) *Server {
	return &Server{logger: logger}
}

// EnsureTopics creates the missing topics with their partition counts and
// the broker's default replication factor, or with verify_only checks that
// they all exist.
func (s *Server) EnsureTopics(ctx context.Context, req *deliveryv1.EnsureTopicsRequest) (*deliveryv1.EnsureTopicsResponse, error) {
	if _, err := clientConfig(req.GetKafka()); err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	if req.GetVerifyOnly() {
		return s.verifyTopics(ctx, req)
	}
	var specs []kafka.TopicSpecification
	seen := map[string]bool{}
	for _, t := range req.GetTopics() {
		name := t.GetName()
		if name == "" {
			return nil, status.Error(codes.InvalidArgument, "topics[].name is empty")
		}
		if seen[name] {
			continue
		}
		seen[name] = true
		parts := int(t.GetPartitions())
		if parts == 0 {
			parts = 1
		}
		// ReplicationFactor 0 is sent as -1: the broker's
		// default.replication.factor.
		specs = append(specs, kafka.TopicSpecification{Topic: name, NumPartitions: parts})
	}
	resp := &deliveryv1.EnsureTopicsResponse{}
	if len(specs) == 0 {
		return resp, nil
	}
	conn, err := dialKafka(ctx, s.logger, req.GetKafka())
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	admin := conn.admin
	results, err := admin.CreateTopics(ctx, specs, kafka.SetAdminOperationTimeout(30*time.Second))
	if err != nil {
		return nil, kafkaStatus(err, "creating topics")
	}
	var failed []string
	for _, r := range results {
		switch r.Error.Code() {
		case kafka.ErrNoError:
			resp.Created = append(resp.Created, r.Topic)
		case kafka.ErrTopicAlreadyExists:
			resp.Existing = append(resp.Existing, r.Topic)
		default:
			failed = append(failed, fmt.Sprintf("%s: %v", r.Topic, r.Error))
		}
	}
	if len(failed) > 0 {
		return nil, status.Errorf(codes.FailedPrecondition, "creating topics failed for %s (created %v, existing %v)",
			strings.Join(failed, "; "), resp.Created, resp.Existing)
	}
	if err := waitVisible(ctx, admin, append(append([]string{}, resp.Created...), resp.Existing...)); err != nil {
		return nil, err
	}
	s.logger.InfoContext(ctx, "topics ensured", "created", resp.Created, "existing", resp.Existing)
	return resp, nil
}

// topicsVisibleTimeout bounds the wait for new topics to reach metadata.
const topicsVisibleTimeout = 30 * time.Second

// waitVisible polls metadata until every topic has a leader for each of its
// partitions. CreateTopics returns before a new topic is in every broker's
// metadata, and a Deliver stream started at once would be told the topic
// does not exist.
func waitVisible(ctx context.Context, admin *kafka.AdminClient, names []string) error {
	ctx, cancel := context.WithTimeout(ctx, topicsVisibleTimeout)
	defer cancel()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		missing := notLed(admin, names)
		if len(missing) == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return status.Errorf(codes.Unavailable, "topics %s exist but have no partition leaders in Kafka's metadata after %s; check the brokers",
				strings.Join(missing, ", "), topicsVisibleTimeout)
		case <-tick.C:
		}
	}
}

func notLed(admin *kafka.AdminClient, names []string) []string {
	var out []string
	for _, name := range names {
		md, err := admin.GetMetadata(&name, false, 5000)
		if err != nil {
			out = append(out, name)
			continue
		}
		t, ok := md.Topics[name]
		if !ok || t.Error.Code() != kafka.ErrNoError || len(t.Partitions) == 0 {
			out = append(out, name)
			continue
		}
		for _, p := range t.Partitions {
			if p.Leader < 0 || p.Error.Code() != kafka.ErrNoError {
				out = append(out, name)
				break
			}
		}
	}
	return out
}

// Deliver runs one delivery stream; see the package documentation.
func (s *Server) Deliver(srv deliveryv1.DeliveryService_DeliverServer) error {
	first, err := srv.Recv()
	if err != nil {
		return err
	}
	start := first.GetStart()
	if start == nil {
		return status.Error(codes.InvalidArgument, "the first DeliverRequest must be start (StartDelivery)")
	}
	st, err := newStream(srv.Context(), s, start)
	if err != nil {
		return s.Metrics.countError(start.GetTaskId(), err)
	}
	return s.Metrics.countError(start.GetTaskId(), st.run(srv))
}

// kafkaStatus maps a librdkafka error to a gRPC status, prefixed with what
// was being done.
func kafkaStatus(err error, what string) error {
	var ke kafka.Error
	if !errors.As(err, &ke) {
		if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
			return status.Errorf(codes.Unavailable, "%s: %v", what, err)
		}
		return status.Errorf(codes.Internal, "%s: %v", what, err)
	}
	return status.Errorf(kafkaCode(ke), "%s: %v", what, ke)
}

func kafkaCode(ke kafka.Error) codes.Code {
	if missingTopic(ke.Code()) {
		return codes.FailedPrecondition
	}
	switch ke.Code() {
	case kafka.ErrMsgSizeTooLarge, kafka.ErrInvalidMsgSize, kafka.ErrRecordListTooLarge:
		return codes.InvalidArgument
	case kafka.ErrTopicAuthorizationFailed:
		return codes.PermissionDenied
	case kafka.ErrSaslAuthenticationFailed, kafka.ErrAuthentication:
		return codes.Unauthenticated
	case kafka.ErrSsl:
		return codes.FailedPrecondition
	case kafka.ErrTransport, kafka.ErrAllBrokersDown, kafka.ErrMsgTimedOut, kafka.ErrTimedOut,
		kafka.ErrRequestTimedOut, kafka.ErrNotEnoughReplicas, kafka.ErrLeaderNotAvailable, kafka.ErrNotLeaderForPartition:
		return codes.Unavailable
	}
	if ke.IsRetriable() || ke.IsTimeout() {
		return codes.Unavailable
	}
	return codes.Internal
}

// missingTopic reports the errors of a topic or partition Kafka does not
// have: never created, or deleted while a stream ran.
func missingTopic(code kafka.ErrorCode) bool {
	switch code {
	case kafka.ErrUnknownTopicOrPart, kafka.ErrUnknownTopic, kafka.ErrUnknownPartition:
		return true
	}
	return false
}
