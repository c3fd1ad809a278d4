package delivery

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	cdcv1 "github.com/ferry-cdc/ferry/gen/ferry/cdc/v1"
	deliveryv1 "github.com/ferry-cdc/ferry/gen/ferry/delivery/v1"
	taskv1 "github.com/ferry-cdc/ferry/gen/ferry/task/v1"
	"github.com/ferry-cdc/ferry/services/delivery/canal"
	"github.com/ferry-cdc/ferry/services/delivery/checkpoint"
	"github.com/ferry-cdc/ferry/services/delivery/dtsavro"
	"github.com/ferry-cdc/ferry/services/delivery/pgtext"
	"github.com/ferry-cdc/ferry/services/internal/secret"
)

// msgInfo travels with each message as its Opaque.
type msgInfo struct {
	seq   uint64
	tab   *canal.Table
	key   string
	topic string
	// schema is the definition a DDL record describes, stored once Kafka
	// acknowledges the record.
	schema *schemaRecord
}

// topicInfo is cached per topic.
type topicInfo struct {
	name       string
	partitions int32
	maxBytes   int
}

// route is cached per relation.
type route struct {
	topic     *topicInfo
	ops       opMask // operations shipped
	tablePart int32  // HASH_TABLE partition
	full      string
}

type stream struct {
	srv    *Server
	ctx    context.Context
	logger *slog.Logger
	start  *deliveryv1.StartDelivery

	p      *kafka.Producer
	enc    encoder
	ckpt   *checkpoint.Checkpointer
	topics map[string]*topicInfo
	routes map[uint32]*route
	tsel   map[[2]string]*taskv1.TableSelection
	buf    []byte
	keyBuf []byte

	progress chan struct{} // a delivery report arrived (for queue-full waits)
	failed   chan struct{} // closed when a delivery failure is recorded
	failOnce sync.Once
	bg       sync.WaitGroup
	txn      *txnState // exactly-once streams only (txn.go)

	deadLettered atomic.Uint64 // rows sent to the dead-letter topic
	schemas      *schemaLog
}

func newStream(ctx context.Context, srv *Server, start *deliveryv1.StartDelivery) (*stream, error) {
	opts := start.GetOptions()
	switch opts.GetFormat() {
	case taskv1.DataFormat_DATA_FORMAT_UNSPECIFIED, taskv1.DataFormat_DATA_FORMAT_CANAL_JSON, taskv1.DataFormat_DATA_FORMAT_DTS_AVRO:
	default:
		return nil, status.Errorf(codes.InvalidArgument, "options.format %v is not a known format", opts.GetFormat())
	}
	if err := checkExactlyOnce(opts); err != nil {
		return nil, err
	}
	ep := start.GetKafka()
	cc, err := clientConfig(ep)
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	// A rejected password or certificate fails the start with its cause,
	// rather than as a timeout of whatever touches Kafka first.
	conn, err := dialKafka(ctx, srv.logger.With("task_id", start.GetTaskId()), ep)
	if err != nil {
		return nil, err
	}
	conn.Close()
	schemas, err := loadSchemas(ctx, cc, start.GetTaskId())
	if err != nil {
		return nil, err
	}
	s := &stream{
		schemas:  schemas,
		srv:      srv,
		ctx:      ctx,
		logger:   srv.logger.With("task_id", start.GetTaskId()),
		start:    start,
		ckpt:     checkpoint.New(),
		topics:   map[string]*topicInfo{},
		routes:   map[uint32]*route{},
		tsel:     map[[2]string]*taskv1.TableSelection{},
		progress: make(chan struct{}, 1),
		failed:   make(chan struct{}),
	}
	names := []string{}
	if t := ep.GetTopic(); t != "" {
		names = append(names, t)
	}
	for _, t := range start.GetObjects().GetTables() {
		s.tsel[[2]string{t.GetSchema(), t.GetTable()}] = t
		if t.GetTopic() != "" && !slices.Contains(names, t.GetTopic()) {
			names = append(names, t.GetTopic())
		}
	}
	for _, t := range []string{opts.GetDdlTopic(), opts.GetDeadLetterTopic()} {
		if t != "" && !slices.Contains(names, t) {
			names = append(names, t)
		}
	}
	s.enc = newEncoder(start)
	if err := s.useRegistry(names); err != nil {
		return nil, err
	}
	limits := s.topicLimits(names)
	minB, maxB := 0, 0
	for _, b := range limits {
		if minB == 0 || b < minB {
			minB = b
		}
		maxB = max(maxB, b)
	}
	conf, err := producerConfig(ep, opts, minB, maxB)
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	if opts.GetExactlyOnce() {
		setTransactional(conf, start.GetTaskId())
	}
	p, err := kafka.NewProducer(&conf)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "creating the Kafka producer: %v", err)
	}
	s.p = p
	srv.streams.Add(1)
	for name, b := range limits {
		s.topics[name] = &topicInfo{name: name, maxBytes: b}
	}
	s.bg.Add(2)
	go s.readEvents()
	go s.readLogs()
	if opts.GetExactlyOnce() {
		if err := s.startTxns(); err != nil {
			s.close()
			return nil, err
		}
	}
	s.logger.InfoContext(ctx, "delivery started", "topics", names, "compression", conf["compression.type"],
		"acks", conf["acks"], "partition_policy", opts.GetPartitionPolicy().String(), "format", opts.GetFormat().String(), "first_id", s.enc.NextID())
	return s, nil
}

// encoder turns change events into messages of one format. Every format
// names tables and columns through canal.Table, so that keys, routing, the
// size check and checkpoints are the same whatever the format.
type encoder interface {
	SetRelation(r *cdcv1.Relation) *canal.Table
	Table(oid uint32) (*canal.Table, bool)
	Encode(dst []byte, t *canal.Table, ev *cdcv1.ChangeEvent) ([]byte, error)
	// EncodeDDL encodes a DDL record (see ddl.go).
	EncodeDDL(dst []byte, t *canal.Table, d canal.DDL) ([]byte, error)
	// NextID is the id the next message will carry.
	NextID() int64
	// UnchangedToastNulls counts unchanged TOAST values the format could not
	// carry (null in Canal JSON, EmptyObject NONE in DTS Avro).
	UnchangedToastNulls() uint64
}

// newEncoder picks the encoder for options.format; Canal JSON is the default.
func newEncoder(start *deliveryv1.StartDelivery) encoder {
	opts := start.GetOptions()
	if opts.GetFormat() == taskv1.DataFormat_DATA_FORMAT_DTS_AVRO {
		// Plain Avro binary; with a schema registry, useRegistry wraps it
		// in the Confluent framing (formats.md).
		return dtsavro.New(dtsavro.Options{
			SourceDatabase: start.GetSourceDatabase(),
			Objects:        start.GetObjects(),
		})
	}
	return canal.New(canal.Options{
		SourceDatabase:   start.GetSourceDatabase(),
		DatabaseIsDBName: opts.GetCanalDatabaseIsDbName(),
		Objects:          start.GetObjects(),
	})
}

// topicLimits reads max.message.bytes of the named topics. Topics that do
// not exist yet or cannot be described are left out; their limit is looked
// up again on first use.
func (s *stream) topicLimits(names []string) map[string]int {
	out := map[string]int{}
	if len(names) == 0 {
		return out
	}
	conf, err := clientConfig(s.start.GetKafka())
	if err != nil {
		return out
	}
	admin, err := kafka.NewAdminClient(&conf)
	if err != nil {
		s.logger.Warn("cannot create an admin client to read topic limits", "error", err)
		return out
	}
	defer admin.Close()
	var res []kafka.ConfigResource
	for _, n := range names {
		res = append(res, kafka.ConfigResource{Type: kafka.ResourceTopic, Name: n})
	}
	ctx, cancel := context.WithTimeout(s.ctx, 15*time.Second)
	defer cancel()
	results, err := admin.DescribeConfigs(ctx, res)
	if err != nil {
		s.logger.Warn("cannot read topic limits; using Kafka's default", "error", err)
		return out
	}
	for _, r := range results {
		if r.Error.Code() != kafka.ErrNoError {
			continue
		}
		if e, ok := r.Config["max.message.bytes"]; ok {
			if v, err := strconv.Atoi(e.Value); err == nil && v > 0 {
				out[r.Name] = v
			}
		}
	}
	return out
}

// run drives the stream until the client half-closes or delivery fails.
func (s *stream) run(srv deliveryv1.DeliveryService_DeliverServer) error {
	if s.txn != nil {
		if err := s.txn.sendResumed(srv); err != nil {
			s.close()
			return err
		}
	}
	recvDone := make(chan error, 1)
	go func() { recvDone <- s.receive(srv) }()

	stopSender := make(chan struct{})
	senderDone := make(chan error, 1)
	go func() { senderDone <- s.sendLoop(srv, stopSender) }()

	var result error
	received := false // the receiver has stopped
	select {
	case err := <-recvDone:
		received = true
		if err != nil {
			result = err
			break
		}
		if result = s.drain(); result == nil {
			s.finishSchemaState()
		}
	case <-s.failed:
		result = s.ckpt.Err()
	case err := <-senderDone:
		senderDone <- err
		result = err
	}
	close(stopSender)
	if err := <-senderDone; err != nil && result == nil {
		result = err
	}
	// The last word: the final safe LSN, also when failing, so the client
	// can confirm everything that did reach Kafka.
	stt := s.ckpt.State()
	if err := srv.Send(&deliveryv1.DeliverResponse{SafeLsn: stt.SafeLSN, AckedEvents: stt.Acked, DeadLettered: s.deadLettered.Load()}); err != nil && result == nil {
		result = err
	}
	if n := s.enc.UnchangedToastNulls(); n > 0 {
		s.logger.Warn("unchanged TOAST values not carried, written as null (Canal JSON) or EmptyObject NONE (DTS Avro); set REPLICA IDENTITY FULL to carry them", "count", n)
	}
	s.logger.Info("delivery stream ended", "safe_lsn", stt.SafeLSN, "acked", stt.Acked, "in_flight", stt.InFlight, "error", result)
	if received {
		s.close()
	} else {
		// The receiver may still be inside Recv until the handler returns
		// and gRPC cancels the stream; close the producer after it stops.
		go func() {
			// The stream already failed; the receiver's own ending adds nothing.
			if err := <-recvDone; err != nil {
				s.logger.Debug("receiver ended after the stream failed", "error", err)
			}
			s.close()
		}()
	}
	return result
}

func (s *stream) close() {
	if s.txn != nil {
		s.txn.close()
	}
	s.p.Close()
	s.bg.Wait()
	s.srv.streams.Done()
}

// receive reads batches until the client half-closes (nil) or an error.
func (s *stream) receive(srv deliveryv1.DeliveryService_DeliverServer) error {
	for {
		req, err := srv.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		b := req.GetBatch()
		if b == nil {
			return status.Error(codes.InvalidArgument, "only the first DeliverRequest may be start; later ones must be batch")
		}
		if err := s.handleBatch(b); err != nil {
			return err
		}
	}
}

func (s *stream) handleBatch(b *cdcv1.ChangeBatch) error {
	if s.txn != nil {
		return s.txn.handleBatch(b)
	}
	if err := s.produceBatch(b); err != nil {
		return err
	}
	s.ckpt.Watermark(b.GetWatermarkLsn())
	return nil
}

// produceBatch applies b's relations and enqueues its events.
func (s *stream) produceBatch(b *cdcv1.ChangeBatch) error {
	s.flushSchemaState()
	for _, r := range b.GetRelations() {
		t := s.enc.SetRelation(r)
		delete(s.routes, r.GetOid())
		if err := s.observeSchema(t, b); err != nil {
			return err
		}
	}
	for _, ev := range b.GetEvents() {
		if err := s.ckpt.Err(); err != nil {
			return err
		}
		if err := s.produce(ev); err != nil {
			return err
		}
	}
	return nil
}

func (s *stream) routeFor(tab *canal.Table) (*route, error) {
	oid := tab.Rel.GetOid()
	if r, ok := s.routes[oid]; ok {
		return r, nil
	}
	rel := tab.Rel
	name := s.start.GetKafka().GetTopic()
	if sel := s.tsel[[2]string{rel.GetSchema(), rel.GetTable()}]; sel.GetTopic() != "" {
		name = sel.GetTopic()
	}
	if name == "" {
		return nil, status.Errorf(codes.FailedPrecondition, "no topic for table %s.%s: set kafka.topic or the table's topic", rel.GetSchema(), rel.GetTable())
	}
	ti, err := s.topic(name)
	if err != nil {
		return nil, status.Errorf(status.Code(err), "table %s.%s: %s", rel.GetSchema(), rel.GetTable(), status.Convert(err).Message())
	}
	full := rel.GetSchema() + "." + rel.GetTable()
	r := &route{topic: ti, full: full, tablePart: JavaPartition(full, ti.partitions),
		ops: operationsFor(s.start.GetObjects(), rel.GetSchema(), rel.GetTable())}
	s.routes[oid] = r
	return r, nil
}

// topic returns the cached partition count and size limit of a topic.
func (s *stream) topic(name string) (*topicInfo, error) {
	ti := s.topics[name]
	if ti != nil && ti.partitions > 0 {
		return ti, nil
	}
	md, err := s.p.GetMetadata(&name, false, 10_000)
	if err != nil {
		return nil, kafkaStatus(err, fmt.Sprintf("reading metadata of topic %q", name))
	}
	tm, ok := md.Topics[name]
	if !ok || tm.Error.Code() == kafka.ErrUnknownTopicOrPart || tm.Error.Code() == kafka.ErrUnknownTopic {
		return nil, status.Errorf(codes.FailedPrecondition, "topic %q does not exist in Kafka: enable schema sync or create it", name)
	}
	if tm.Error.Code() != kafka.ErrNoError {
		return nil, kafkaStatus(tm.Error, fmt.Sprintf("reading metadata of topic %q", name))
	}
	if len(tm.Partitions) == 0 {
		return nil, status.Errorf(codes.Unavailable, "topic %q has no partitions in the metadata yet", name)
	}
	if ti == nil {
		lim := s.topicLimits([]string{name})
		ti = &topicInfo{name: name, maxBytes: lim[name]}
		s.topics[name] = ti
	}
	if ti.maxBytes == 0 {
		ti.maxBytes = defaultTopicMaxBytes
	}
	ti.partitions = int32(len(tm.Partitions))
	return ti, nil
}

// appendKey appends the key text of ev (see the package documentation) and
// reports whether the table has a key.
func (s *stream) appendKey(dst []byte, tab *canal.Table, ev *cdcv1.ChangeEvent) ([]byte, bool) {
	if len(tab.KeyIdx) == 0 {
		return dst, false
	}
	row, other := ev.GetNewValues(), ev.GetOldValues()
	if len(other) > 0 || len(row) == 0 {
		row, other = other, row
	}
	cols := tab.Rel.GetColumns()
	for _, i := range tab.KeyIdx {
		if i >= len(row) {
			continue
		}
		var k pgtext.Kind
		before := len(dst)
		dst, k = pgtext.Append(dst, cols[i].GetTypeOid(), row[i])
		if k != pgtext.KindValue && i < len(other) {
			dst, _ = pgtext.Append(dst[:before], cols[i].GetTypeOid(), other[i])
		}
	}
	return dst, true
}

func (s *stream) produce(ev *cdcv1.ChangeEvent) error {
	tab, ok := s.enc.Table(ev.GetRelationOid())
	if !ok {
		return status.Errorf(codes.InvalidArgument, "event at LSN %d refers to relation %d, which this stream was never sent", ev.GetLsn(), ev.GetRelationOid())
	}
	r, err := s.routeFor(tab)
	if err != nil {
		return err
	}
	if !r.ops.allows(ev.GetOp()) {
		return nil
	}
	s.buf, err = s.enc.Encode(s.buf[:0], tab, ev)
	if err != nil {
		return encodeError(err)
	}
	var hasKey bool
	s.keyBuf, hasKey = s.appendKey(s.keyBuf[:0], tab, ev)
	var key []byte
	if hasKey {
		key = s.keyBuf
	}
	if size := len(s.buf) + len(key) + recordOverhead; size > r.topic.maxBytes {
		if s.start.GetOptions().GetDeadLetterTopic() != "" {
			return s.deadLetter(tab, ev, r.topic, key, s.buf, size)
		}
		return s.tooLarge(tab, ev, r.topic, string(key), size)
	}
	part := int32(0)
	switch s.start.GetOptions().GetPartitionPolicy() {
	case taskv1.PartitionPolicy_PARTITION_POLICY_HASH_TABLE:
		part = r.tablePart
	case taskv1.PartitionPolicy_PARTITION_POLICY_HASH_PRIMARY_KEY:
		part = partitionFor(taskv1.PartitionPolicy_PARTITION_POLICY_HASH_PRIMARY_KEY, r.full, key, r.topic.partitions)
		if !hasKey {
			part = 0
		}
	}
	return s.send(&kafka.Message{
		TopicPartition: kafka.TopicPartition{Topic: &r.topic.name, Partition: part},
		Value:          s.buf,
		Key:            key,
		Headers:        headersFor(ev),
	}, &msgInfo{tab: tab, key: string(key), topic: r.topic.name})
}

// snapshotHeaders mark rows read by full sync, in every format: Canal JSON's
// key set is fixed and strict consumers reject any other key, so the mark
// cannot go into the message itself. librdkafka copies headers on Produce,
// so one shared slice serves every message.
var snapshotHeaders = []kafka.Header{{Key: SnapshotHeader, Value: []byte("true")}}

// SnapshotHeader is the Kafka header, valued "true", on rows from full sync.
const SnapshotHeader = "ferry.snapshot"

func headersFor(ev *cdcv1.ChangeEvent) []kafka.Header {
	if ev.GetSnapshot() {
		return snapshotHeaders
	}
	return nil
}

// send enqueues msg under a new sequence number, waiting while the
// producer's queue is full. librdkafka copies key and value, so the caller
// may reuse their buffers at once.
func (s *stream) send(msg *kafka.Message, info *msgInfo) error {
	info.seq = s.ckpt.Enqueue()
	msg.Opaque = info
	for {
		err := s.p.Produce(msg, nil)
		if err == nil {
			return nil
		}
		var ke kafka.Error
		if errors.As(err, &ke) && ke.Code() == kafka.ErrQueueFull {
			// Wait for delivery reports to make room.
			select {
			case <-s.progress:
			case <-time.After(100 * time.Millisecond):
			case <-s.failed:
				return s.ckpt.Err()
			case <-s.ctx.Done():
				return status.FromContextError(s.ctx.Err()).Err()
			}
			continue
		}
		derr := s.deliveryError(ke, info)
		if !errors.As(err, &ke) {
			derr = status.Errorf(codes.Internal, "producing to %q: %v", info.topic, err)
		}
		s.fail(info.seq, derr)
		return derr
	}
}

// encodeError keeps an error the encoder already classified (the schema
// registry's, say) and calls any other a bad event.
func encodeError(err error) error {
	if _, ok := status.FromError(err); ok {
		return err
	}
	return status.Error(codes.InvalidArgument, err.Error())
}

// tooLarge explains a row over its topic's limit.
func (s *stream) tooLarge(tab *canal.Table, ev *cdcv1.ChangeEvent, ti *topicInfo, key string, size int) error {
	rel := tab.Rel
	row := ev.GetNewValues()
	if len(row) == 0 {
		row = ev.GetOldValues()
	}
	type colSize struct {
		name string
		n    int
	}
	var sizes []colSize
	var b []byte
	for i, c := range rel.GetColumns() {
		if i < len(row) {
			b, _ = pgtext.Append(b[:0], c.GetTypeOid(), row[i])
			sizes = append(sizes, colSize{c.GetName(), len(b)})
		}
	}
	slices.SortFunc(sizes, func(a, b colSize) int { return b.n - a.n })
	var top []string
	for _, c := range sizes[:min(3, len(sizes))] {
		top = append(top, fmt.Sprintf("%s (%d bytes)", c.name, c.n))
	}
	return status.Errorf(codes.InvalidArgument,
		"row of table %s.%s with key %q at LSN %d encodes to %d bytes, over the max.message.bytes of topic %q (%d): "+
			"largest columns %s; drop them in the table's column mapping, or raise the topic's max.message.bytes",
		rel.GetSchema(), rel.GetTable(), key, ev.GetLsn(), size, ti.name, ti.maxBytes, strings.Join(top, ", "))
}

// deliveryError explains a failed message.
func (s *stream) deliveryError(ke kafka.Error, info *msgInfo) error {
	rel := info.tab.Rel
	code := kafkaCode(ke)
	switch {
	case code == codes.InvalidArgument:
		return status.Errorf(code, "Kafka rejected a row of table %s.%s with key %q on topic %q as too large (%v): "+
			"drop its largest columns in the table's column mapping, or raise the topic's max.message.bytes",
			rel.GetSchema(), rel.GetTable(), info.key, info.topic, ke)
	case missingTopic(ke.Code()):
		// librdkafka reports it once the topic has been gone from metadata
		// for topic.metadata.propagation.max.ms (30 s). Not a connection
		// failure: the workflow retries it only within the task's window
		// for other failures, in which recreating the topic heals the task.
		return status.Errorf(codes.FailedPrecondition, "topic %q for table %s.%s is missing in Kafka (%v): it was deleted while the task ran, "+
			"or never created; create it (schema sync creates topics only when a task starts) and the task resumes from its checkpoint "+
			"if that happens within advanced.other_retry_minutes", info.topic, rel.GetSchema(), rel.GetTable(), ke)
	default:
		return status.Errorf(code, "delivering a row of table %s.%s to topic %q failed: %v", rel.GetSchema(), rel.GetTable(), info.topic, ke)
	}
}

func (s *stream) fail(seq uint64, err error) {
	s.ckpt.Fail(seq, err)
	s.failOnce.Do(func() { close(s.failed) })
}

// readEvents turns delivery reports into acknowledgements; it ends when the
// producer is closed.
func (s *stream) readEvents() {
	defer s.bg.Done()
	for ev := range s.p.Events() {
		switch e := ev.(type) {
		case *kafka.Message:
			info, ok := e.Opaque.(*msgInfo)
			if !ok {
				if _, state := e.Opaque.(stateWrite); state && e.TopicPartition.Error != nil {
					s.logger.Warn("storing a table definition failed; its DDL record may repeat after a restart", "error", e.TopicPartition.Error)
				}
				continue
			}
			if err := e.TopicPartition.Error; err != nil {
				var ke kafka.Error
				if !errors.As(err, &ke) {
					s.fail(info.seq, status.Errorf(codes.Internal, "delivering to %q: %v", info.topic, err))
				} else {
					s.fail(info.seq, s.deliveryError(ke, info))
				}
			} else if _, err := s.ckpt.Ack(info.seq); err != nil {
				s.fail(info.seq, status.Error(codes.Internal, err.Error()))
			} else if info.schema != nil {
				s.schemaAcked(*info.schema)
			}
			select {
			case s.progress <- struct{}{}:
			default:
			}
		case kafka.Error:
			if e.IsFatal() {
				s.fail(0, s.fatalError(e))
			} else if securityCode(e.Code()) {
				// librdkafka would retry until message.timeout.ms; a
				// rejected password or certificate will not heal by itself.
				pw, _ := secret.Resolve(s.start.GetKafka().GetSaslPassword())
				s.fail(0, securityStatus(s.start.GetKafka(), e, pw))
			} else {
				s.logger.Warn("kafka client error", "error", e.Error(), "code", e.Code().String())
			}
		}
	}
}

func (s *stream) readLogs() {
	defer s.bg.Done()
	for l := range s.p.Logs() {
		lvl := slog.LevelDebug
		switch {
		case l.Level <= 3:
			lvl = slog.LevelError
		case l.Level == 4:
			lvl = slog.LevelWarn
		case l.Level <= 6:
			lvl = slog.LevelInfo
		}
		s.logger.Log(context.Background(), lvl, "librdkafka", "tag", l.Tag, "message", l.Message)
	}
}

// sendLoop sends progress whenever the safe LSN advances, at most every
// CoalesceInterval. It returns when stop closes (leaving the final response
// to run) or on a send error.
func (s *stream) sendLoop(srv deliveryv1.DeliveryService_DeliverServer, stop <-chan struct{}) error {
	interval := s.srv.CoalesceInterval
	if interval == 0 {
		interval = 20 * time.Millisecond
	}
	var lastSent uint64
	var lastAt time.Time
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	pending := false
	send := func() error {
		st := s.ckpt.State()
		if st.SafeLSN <= lastSent {
			return nil
		}
		lastSent, lastAt = st.SafeLSN, time.Now()
		return srv.Send(&deliveryv1.DeliverResponse{SafeLsn: st.SafeLSN, AckedEvents: st.Acked, DeadLettered: s.deadLettered.Load()})
	}
	for {
		select {
		case <-stop:
			timer.Stop()
			return nil
		case <-s.ckpt.Changed():
			if err := s.ckpt.Err(); err != nil {
				s.failOnce.Do(func() { close(s.failed) })
			}
			if pending {
				continue
			}
			if wait := interval - time.Since(lastAt); wait > 0 {
				timer.Reset(wait)
				pending = true
				continue
			}
			if err := send(); err != nil {
				return err
			}
		case <-timer.C:
			pending = false
			if err := send(); err != nil {
				return err
			}
		}
	}
}

// drain waits, bounded, for every enqueued message to be acknowledged.
func (s *stream) drain() error {
	if s.txn != nil {
		if err := s.txn.finish(); err != nil {
			return err
		}
	}
	timeout := s.srv.FlushTimeout
	if timeout == 0 {
		timeout = 60 * time.Second
	}
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		st := s.ckpt.State()
		if st.InFlight == 0 {
			return nil
		}
		select {
		case <-s.progress:
		case <-time.After(50 * time.Millisecond):
		case <-s.failed:
			return s.ckpt.Err()
		case <-s.ctx.Done():
			return status.FromContextError(s.ctx.Err()).Err()
		case <-deadline.C:
			return status.Errorf(codes.Unavailable, "%d messages still unacknowledged by Kafka %s after the client finished; the safe LSN stays at %d",
				st.InFlight, timeout, st.SafeLSN)
		}
	}
}
