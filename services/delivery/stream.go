package delivery

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"slices"
	"strconv"
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
	"github.com/ferry-cdc/ferry/services/delivery/debezium"
	"github.com/ferry-cdc/ferry/services/delivery/dtsavro"
	"github.com/ferry-cdc/ferry/services/delivery/relation"
)

// msgInfo travels with each message as its Opaque.
type msgInfo struct {
	seq   uint64
	tab   *relation.Table
	topic string
	// schema is the definition a DDL record describes, stored once Kafka
	// acknowledges the record.
	schema *schemaRecord
	// size (key and value bytes) and commitMicros (commitMicros of the
	// row, zero for others) feed the metrics (metrics.go).
	size         int
	commitMicros int64
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
	// srcRels are the relations as the source defined them, before any
	// transform (transforms.go).
	srcRels map[uint32]*cdcv1.Relation
	buf     []byte
	keyBuf  []byte
	// msgKeyBuf holds a format's own key message (keyedEncoder).
	msgKeyBuf []byte
	msg       kafka.Message // reused for every row (produce)
	infos     infoSlab
	// inFlight matches delivery reports to messages by order when the
	// producer is idempotent (inflight.go); nil otherwise, and each
	// message carries its msgInfo as its Opaque.
	inFlight *inFlight

	progress chan struct{} // a delivery report arrived (for queue-full waits)
	failed   chan struct{} // closed when a delivery failure is recorded
	failOnce sync.Once
	bg       sync.WaitGroup
	txn      *txnState // exactly-once streams only (txn.go)

	deadLettered atomic.Uint64 // rows sent to the dead-letter topic
	schemas      *schemaLog

	// pendingCommit is the source commit time (Unix µs) of the newest
	// change received since the last watermark; the next watermark carries
	// it into the checkpointer. Only the goroutine handling batches uses it
	// (under txnState.mu for exactly-once streams).
	pendingCommit int64
	// sentAcked is the checkpointer's SafeAckedMicros last reported, so
	// that each latency sample goes out once. Only the sender uses it, and
	// run after the sender has stopped.
	sentAcked int64
}

func newStream(ctx context.Context, srv *Server, start *deliveryv1.StartDelivery) (*stream, error) {
	opts := start.GetOptions()
	switch opts.GetFormat() {
	case taskv1.DataFormat_DATA_FORMAT_UNSPECIFIED, taskv1.DataFormat_DATA_FORMAT_CANAL_JSON, taskv1.DataFormat_DATA_FORMAT_DTS_AVRO,
		taskv1.DataFormat_DATA_FORMAT_DEBEZIUM_JSON:
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
		srcRels:  map[uint32]*cdcv1.Relation{},
		progress: make(chan struct{}, 1),
		failed:   make(chan struct{}),
	}
	names := s.topicNames()
	s.enc = newEncoder(start)
	if err := s.useRegistry(names); err != nil {
		return nil, err
	}
	if err := s.startProducer(names); err != nil {
		return nil, err
	}
	s.logger.InfoContext(ctx, "delivery started", "topics", names, "partition_policy", opts.GetPartitionPolicy().String(),
		"format", opts.GetFormat().String(), "first_id", s.enc.NextID())
	return s, nil
}

// topicNames are the topics the stream may write, the task's default
// first; it also indexes the table selections.
func (s *stream) topicNames() []string {
	names := []string{}
	if t := s.start.GetKafka().GetTopic(); t != "" {
		names = append(names, t)
	}
	for _, t := range s.start.GetObjects().GetTables() {
		s.tsel[[2]string{t.GetSchema(), t.GetTable()}] = t
		if t.GetTopic() != "" && !slices.Contains(names, t.GetTopic()) {
			names = append(names, t.GetTopic())
		}
	}
	opts := s.start.GetOptions()
	for _, t := range []string{opts.GetDdlTopic(), opts.GetDeadLetterTopic()} {
		if t != "" && !slices.Contains(names, t) {
			names = append(names, t)
		}
	}
	return names
}

// startProducer creates the stream's producer, sized to its topics'
// message limits, and the goroutines that read its reports and logs; with
// exactly-once it begins the first transaction.
func (s *stream) startProducer(names []string) error {
	opts, ep := s.start.GetOptions(), s.start.GetKafka()
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
		return status.Error(codes.InvalidArgument, err.Error())
	}
	if opts.GetExactlyOnce() {
		setTransactional(conf, s.start.GetTaskId())
	}
	p, err := kafka.NewProducer(&conf)
	if err != nil {
		return status.Errorf(codes.Internal, "creating the Kafka producer: %v", err)
	}
	s.p = p
	if conf["enable.idempotence"] == true {
		s.inFlight = newInFlight()
	}
	s.srv.streams.Add(1)
	for name, b := range limits {
		s.topics[name] = &topicInfo{name: name, maxBytes: b}
	}
	s.bg.Add(2)
	go s.readEvents()
	go s.readLogs()
	if opts.GetExactlyOnce() {
		if err := s.startTxns(); err != nil {
			s.close()
			return err
		}
	}
	s.logger.Info("producer started", "compression", conf["compression.type"], "acks", conf["acks"])
	return nil
}

// encoder turns change events into messages of one format. Every format
// names tables and columns through relation.Table, so that keys, routing,
// the size check and checkpoints are the same whatever the format.
type encoder interface {
	SetRelation(r *cdcv1.Relation) *relation.Table
	Table(oid uint32) (*relation.Table, bool)
	Encode(dst []byte, t *relation.Table, ev *cdcv1.ChangeEvent) ([]byte, error)
	// EncodeDDL encodes a DDL record (see ddl.go).
	EncodeDDL(dst []byte, t *relation.Table, d relation.DDL) ([]byte, error)
	// NextID is the id the next message will carry.
	NextID() int64
	// UnchangedToastNulls counts unchanged TOAST values the format could not
	// carry (left out of Canal JSON's data, EmptyObject NONE in DTS Avro).
	UnchangedToastNulls() uint64
	// UnchangedToast names, as a JSON array, the columns the last Encode
	// marked as unchanged TOAST values out of band, or is nil (always, for
	// DTS Avro, whose NONE says it in the message).
	UnchangedToast() []byte
}

// keyedEncoder is a format with a key message of its own (Debezium JSON)
// instead of the key columns' text. Partitions are still chosen by that
// text, so that every format puts a row on the same partition.
type keyedEncoder interface {
	// EncodeKey appends ev's key message, or reports false when the table
	// has no key.
	EncodeKey(dst []byte, t *relation.Table, ev *cdcv1.ChangeEvent) ([]byte, bool, error)
	// Tombstones: a DELETE is followed by its key with a null value.
	Tombstones() bool
}

// newEncoder picks the encoder for options.format; Canal JSON is the default.
func newEncoder(start *deliveryv1.StartDelivery) encoder {
	opts := start.GetOptions()
	switch opts.GetFormat() {
	case taskv1.DataFormat_DATA_FORMAT_DEBEZIUM_JSON:
		return debezium.New(debezium.Options{
			SourceDatabase: start.GetSourceDatabase(),
			ServerName:     opts.GetDebeziumServerName(),
			Objects:        start.GetObjects(),
			Schemas:        opts.GetDebeziumSchemas(),
			Tombstones:     !opts.GetDebeziumNoTombstones(),
			Decimal:        opts.GetDebeziumDecimalHandling(),
		})
	case taskv1.DataFormat_DATA_FORMAT_DTS_AVRO:
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
		ValueStyle:       opts.GetCanalValueStyle(),
		MySQLTypeNames:   opts.GetCanalMysqlTypeNames(),
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
func (s *stream) run(srv deliverConn) error {
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
	if err := srv.Send(s.response(stt)); err != nil && result == nil {
		result = err
	}
	if n := s.enc.UnchangedToastNulls(); n > 0 {
		s.logger.Warn("unchanged TOAST values not carried: left out of data with the ferry.unchanged-toast header (Canal JSON), EmptyObject NONE (DTS Avro), or __debezium_unavailable_value with the header (Debezium JSON); set REPLICA IDENTITY FULL to carry them", "count", n)
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
func (s *stream) receive(srv deliverConn) error {
	for {
		req, err := srv.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if p := req.GetBackfill(); p != nil {
			// Without exactly-once there is no checkpoint to keep it in;
			// the client keeps its own.
			if s.txn != nil {
				if err := s.txn.handleBackfill(p); err != nil {
					return err
				}
			}
			continue
		}
		b := req.GetBatch()
		if b == nil {
			return emptyRequestError()
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
	if w := b.GetWatermarkLsn(); w != 0 {
		s.ckpt.WatermarkAt(w, s.takeCommit())
	}
	return nil
}

// takeCommit hands the commit time of the changes since the last watermark
// to the next one.
func (s *stream) takeCommit() int64 {
	c := s.pendingCommit
	s.pendingCommit = 0
	return c
}

// noteCommit remembers the commit time of a batch's newest change: its
// last, since capture sends transactions in commit order. Once per batch,
// not per row.
func (s *stream) noteCommit(evs []*cdcv1.ChangeEvent) {
	if len(evs) == 0 {
		return
	}
	ts := evs[len(evs)-1].GetCommitTime()
	s.pendingCommit = max(s.pendingCommit, ts.GetSeconds()*1_000_000+int64(ts.GetNanos()/1_000))
}

// response reports st. The commit and acknowledgement times go out in the
// first response after the advance that set them, and are zero in one whose
// safe LSN moved over idle watermarks alone.
func (s *stream) response(st checkpoint.State) *deliveryv1.DeliverResponse {
	r := &deliveryv1.DeliverResponse{SafeLsn: st.SafeLSN, AckedEvents: st.Acked, DeadLettered: s.deadLettered.Load()}
	if st.SafeAckedMicros != s.sentAcked {
		r.SafeCommitTimeMicros, r.SafeAckedTimeMicros = st.SafeCommitMicros, st.SafeAckedMicros
		s.sentAcked = st.SafeAckedMicros
	}
	return r
}

// produceBatch applies b's relations and enqueues its events.
func (s *stream) produceBatch(b *cdcv1.ChangeBatch) error {
	s.flushSchemaState()
	for _, r := range b.GetRelations() {
		// Capture sends a relation with every batch that uses it; only a
		// new or changed one is worth re-preparing, re-routing and
		// comparing with the DDL topic's definition.
		if s.sameRelation(r) {
			continue
		}
		t, err := s.prepareRelation(r)
		if err != nil {
			return err
		}
		delete(s.routes, r.GetOid())
		if err := s.observeSchema(t, b); err != nil {
			return err
		}
	}
	for _, ev := range b.GetEvents() {
		select {
		case <-s.failed: // every failure closes it (fail)
			return s.ckpt.Err()
		default:
		}
		if err := s.produce(ev); err != nil {
			return err
		}
	}
	s.noteCommit(b.GetEvents())
	return nil
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
func (s *stream) sendLoop(srv deliverConn, stop <-chan struct{}) error {
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
		return srv.Send(s.response(st))
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
