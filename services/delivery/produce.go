package delivery

// Producing one row: its route (topic, partition policy, operations), key,
// size check against the topic's limit, and the enqueue that gives it a
// sequence number in the checkpointer.

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	cdcv1 "github.com/ferry-cdc/ferry/gen/ferry/cdc/v1"
	taskv1 "github.com/ferry-cdc/ferry/gen/ferry/task/v1"
	"github.com/ferry-cdc/ferry/services/delivery/relation"
	"github.com/ferry-cdc/ferry/services/delivery/transform"
	"github.com/ferry-cdc/ferry/services/tuple"
)

func (s *stream) routeFor(tab *relation.Table) (*route, error) {
	oid := tab.Rel.GetOid()
	if r, ok := s.routes[oid]; ok {
		return r, nil
	}
	rel := tab.Rel
	tsel := s.tsel[[2]string{rel.GetSchema(), rel.GetTable()}]
	ops := operationsFor(s.start.GetObjects(), tsel, rel.GetSchema())
	if ops == 0 {
		r := &route{ops: ops}
		s.routes[oid] = r
		return r, nil
	}
	name := s.start.GetKafka().GetTopic()
	if tsel.GetTopic() != "" {
		name = tsel.GetTopic()
	}
	if name == "" {
		return nil, status.Errorf(codes.FailedPrecondition, "no topic for table %s.%s: set kafka.topic or the table's topic", rel.GetSchema(), rel.GetTable())
	}
	ti, err := s.topic(name)
	if err != nil {
		return nil, status.Errorf(status.Code(err), "table %s.%s: %s", rel.GetSchema(), rel.GetTable(), status.Convert(err).Message())
	}
	full := rel.GetSchema() + "." + rel.GetTable()
	r := &route{topic: ti, full: full, tablePart: JavaPartition(full, ti.partitions), ops: ops}
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
func (s *stream) appendKey(dst []byte, tab *relation.Table, ev *cdcv1.ChangeEvent) ([]byte, bool) {
	if len(tab.KeyIdx) == 0 {
		return dst, false
	}
	row, other := ev.GetNewTuple(), ev.GetOldTuple()
	if tuple.Len(other) > 0 || tuple.Len(row) == 0 {
		row, other = other, row
	}
	for _, i := range tab.KeyIdx {
		if i >= tuple.Len(row) {
			continue
		}
		text, k := tuple.Field(row, i)
		if k != tuple.Text && i < tuple.Len(other) {
			text, _ = tuple.Field(other, i)
		}
		dst = append(dst, text...)
	}
	return dst, true
}

// rowKey is the message key: a key transform's, else the key columns'
// text (nil when the table has no key).
func (s *stream) rowKey(tab *relation.Table, ev *cdcv1.ChangeEvent, res transform.Result) ([]byte, bool) {
	if res.HasKey {
		return res.Key, true
	}
	var hasKey bool
	s.keyBuf, hasKey = s.appendKey(s.keyBuf[:0], tab, ev)
	if !hasKey {
		return nil, false
	}
	return s.keyBuf, true
}

func (s *stream) produce(ev *cdcv1.ChangeEvent) error {
	if ev.GetOp() == cdcv1.Operation_OPERATION_TRUNCATE {
		return s.produceTruncate(ev)
	}
	tab, ok := s.enc.Table(ev.GetRelationOid())
	if !ok {
		return status.Errorf(codes.InvalidArgument, "event at LSN %d refers to relation %d, which this stream was never sent", ev.GetLsn(), ev.GetRelationOid())
	}
	r, err := s.routeFor(tab)
	if err != nil {
		return err
	}
	// The operations a table ships are the source's: an UPDATE a filter
	// turns into an INSERT is shipped only when UPDATE is.
	if !r.ops.allows(ev.GetOp()) {
		return nil
	}
	res, err := s.applyTransforms(tab, ev)
	if err != nil || res.Event == nil {
		return err
	}
	if del, ins, ok := s.splitKeyChange(tab, res); ok {
		if err := s.emit(tab, r, res, del); err != nil {
			return err
		}
		return s.emit(tab, r, res, ins)
	}
	return s.emit(tab, r, res, res.Event)
}

// splitKeyChange turns an UPDATE that changes the key into a DELETE of the
// old key and an INSERT of the new, for a format with key messages of its
// own (Debezium JSON), as Debezium writes it: the DELETE's tombstone then
// lets compaction and upserting sinks drop the old key. A key a transform
// sets is the user's, and is left alone.
func (s *stream) splitKeyChange(tab *relation.Table, res transform.Result) (del, ins *cdcv1.ChangeEvent, ok bool) {
	ev := res.Event
	if _, keyed := s.enc.(keyedEncoder); !keyed || res.HasKey || ev.GetOp() != cdcv1.Operation_OPERATION_UPDATE || !keyChanged(tab, ev) {
		return nil, nil, false
	}
	del = proto.CloneOf(ev)
	del.Op, del.NewTuple = cdcv1.Operation_OPERATION_DELETE, nil
	ins = proto.CloneOf(ev)
	ins.Op, ins.OldTuple = cdcv1.Operation_OPERATION_INSERT, nil
	return del, ins, true
}

// keyChanged: pgoutput sends the old key only when it changed (or every
// old column, under REPLICA IDENTITY FULL, where the key is compared).
func keyChanged(tab *relation.Table, ev *cdcv1.ChangeEvent) bool {
	old, cur := ev.GetOldTuple(), ev.GetNewTuple()
	if old == nil || len(tab.KeyIdx) == 0 {
		return false
	}
	for _, i := range tab.KeyIdx {
		if i >= tuple.Len(old) || i >= tuple.Len(cur) {
			return false
		}
		a, ak := tuple.Field(old, i)
		b, bk := tuple.Field(cur, i)
		if ak != bk || !bytes.Equal(a, b) {
			return true
		}
	}
	return false
}

// emit writes one event, as the route and transforms say, with its
// tombstone when the format writes one.
func (s *stream) emit(tab *relation.Table, r *route, res transform.Result, ev *cdcv1.ChangeEvent) error {
	ti, tablePart, err := s.target(r, res)
	if err != nil {
		return err
	}
	s.buf, err = s.enc.Encode(s.buf[:0], tab, ev)
	if err != nil {
		return encodeError(err)
	}
	key, hasKey := s.rowKey(tab, ev, res)
	msgKey, hasMsgKey, err := s.messageKey(tab, ev, res, key, hasKey)
	if err != nil {
		return encodeError(err)
	}
	if size := len(s.buf) + len(msgKey) + recordOverhead; size > ti.maxBytes {
		if s.start.GetOptions().GetDeadLetterTopic() != "" {
			return s.deadLetter(tab, ev, ti, msgKey, s.buf, size)
		}
		return s.tooLarge(tab, ev, ti, size)
	}
	part := int32(0)
	switch s.start.GetOptions().GetPartitionPolicy() {
	case taskv1.PartitionPolicy_PARTITION_POLICY_HASH_TABLE:
		part = tablePart
	case taskv1.PartitionPolicy_PARTITION_POLICY_HASH_PRIMARY_KEY:
		part = partitionFor(taskv1.PartitionPolicy_PARTITION_POLICY_HASH_PRIMARY_KEY, r.full, key, ti.partitions)
		if !hasKey {
			part = 0
		}
	}
	// One Message serves every row: Produce copies what it needs.
	s.msg = kafka.Message{
		TopicPartition: kafka.TopicPartition{Topic: &ti.name, Partition: part},
		Value:          s.buf,
		Key:            msgKey,
		Headers:        headersFor(ev, s.enc.UnchangedToast()),
	}
	info := s.infos.next()
	*info = msgInfo{tab: tab, topic: ti.name, commitMicros: commitMicros(ev)}
	if err := s.send(&s.msg, info); err != nil {
		return err
	}
	return s.tombstone(tab, ev, ti, part, msgKey, hasMsgKey)
}

// messageKey is the Kafka key: a key transform's, else the format's own
// key message (Debezium JSON), else the key columns' text (key).
func (s *stream) messageKey(tab *relation.Table, ev *cdcv1.ChangeEvent, res transform.Result, key []byte, hasKey bool) ([]byte, bool, error) {
	ke, ok := s.enc.(keyedEncoder)
	if !ok || res.HasKey {
		return key, hasKey, nil
	}
	var err error
	s.msgKeyBuf, hasKey, err = ke.EncodeKey(s.msgKeyBuf[:0], tab, ev)
	if err != nil || !hasKey {
		return nil, false, err
	}
	return s.msgKeyBuf, true, nil
}

// tombstone follows a DELETE with its key and a null value when the
// format asks for it (Debezium's tombstones.on.delete), so that log
// compaction can drop the key. A row without a key gets none: compaction
// has nothing to drop. It is enqueued like any message, so the safe LSN
// passes the DELETE only once Kafka has acknowledged both.
func (s *stream) tombstone(tab *relation.Table, ev *cdcv1.ChangeEvent, ti *topicInfo, part int32, key []byte, hasKey bool) error {
	ke, ok := s.enc.(keyedEncoder)
	if !ok || !ke.Tombstones() || !hasKey || ev.GetOp() != cdcv1.Operation_OPERATION_DELETE {
		return nil
	}
	s.msg = kafka.Message{
		TopicPartition: kafka.TopicPartition{Topic: &ti.name, Partition: part},
		Key:            key,
	}
	info := s.infos.next()
	*info = msgInfo{tab: tab, topic: ti.name, commitMicros: commitMicros(ev)}
	return s.send(&s.msg, info)
}

// infoSlab hands out msgInfos from chunks, one allocation per chunk rather
// than per message; a chunk lives on while any report of it is pending.
// Only the goroutine producing rows uses it.
type infoSlab struct{ free []msgInfo }

const infoChunk = 256

func (a *infoSlab) next() *msgInfo {
	if len(a.free) == 0 {
		a.free = make([]msgInfo, infoChunk)
	}
	m := &a.free[0]
	a.free = a.free[1:]
	return m
}

// snapshotHeaders mark rows read by full sync, in every format: Canal JSON's
// key set is fixed and strict consumers reject any other key, so the mark
// cannot go into the message itself. librdkafka copies headers on Produce,
// so one shared slice serves every message.
var snapshotHeaders = []kafka.Header{{Key: SnapshotHeader, Value: []byte("true")}}

// SnapshotHeader is the Kafka header, valued "true", on rows from full sync.
const SnapshotHeader = "ferry.snapshot"

// UnchangedToastHeader names, as a JSON array of written column names, the
// unchanged TOAST values a Canal JSON UPDATE leaves out of data because the
// replica identity did not reveal them. A JSON array, not a list with
// commas, because a column name may hold a comma.
const UnchangedToastHeader = "ferry.unchanged-toast"

func headersFor(ev *cdcv1.ChangeEvent, unchangedToast []byte) []kafka.Header {
	if unchangedToast != nil {
		// Only UPDATEs have them, and full sync writes no UPDATE.
		return []kafka.Header{{Key: UnchangedToastHeader, Value: unchangedToast}}
	}
	if ev.GetSnapshot() {
		return snapshotHeaders
	}
	return nil
}

// send enqueues msg under a new sequence number, waiting while the
// producer's queue is full. librdkafka copies key and value, so the caller
// may reuse their buffers at once. msg must name its partition.
func (s *stream) send(msg *kafka.Message, info *msgInfo) error {
	info.seq = s.ckpt.Enqueue()
	info.size = len(msg.Key) + len(msg.Value)
	topic, part := *msg.TopicPartition.Topic, msg.TopicPartition.Partition
	if s.inFlight != nil {
		if part < 0 {
			err := status.Errorf(codes.Internal, "a message for topic %q names no partition", topic)
			s.fail(info.seq, err)
			return err
		}
		s.inFlight.push(topic, part, info)
		msg.Opaque = nil
	} else {
		msg.Opaque = info
	}
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
		if s.inFlight != nil {
			s.inFlight.dropLast(topic, part) // no report will come
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

// tooLarge explains a row over its topic's limit. It names the row by its
// table, key columns and LSN: the key's values are row values, which never
// go into errors (they reach the task's state and Temporal's history).
func (s *stream) tooLarge(tab *relation.Table, ev *cdcv1.ChangeEvent, ti *topicInfo, size int) error {
	rel := tab.Rel
	row := ev.GetNewTuple()
	if tuple.Len(row) == 0 {
		row = ev.GetOldTuple()
	}
	type colSize struct {
		name string
		n    int
	}
	var sizes []colSize
	for i, c := range rel.GetColumns() {
		if i < tuple.Len(row) {
			text, _ := tuple.Field(row, i)
			sizes = append(sizes, colSize{c.GetName(), len(text)})
		}
	}
	slices.SortFunc(sizes, func(a, b colSize) int { return b.n - a.n })
	var top []string
	for _, c := range sizes[:min(3, len(sizes))] {
		top = append(top, fmt.Sprintf("%s (%d bytes)", c.name, c.n))
	}
	return status.Errorf(codes.InvalidArgument,
		"row of table %s.%s (key columns %s) at LSN %d encodes to %d bytes, over the max.message.bytes of topic %q (%d): "+
			"largest columns %s; drop them in the table's column mapping, or raise the topic's max.message.bytes",
		rel.GetSchema(), rel.GetTable(), keyColumns(rel), ev.GetLsn(), size, ti.name, ti.maxBytes, strings.Join(top, ", "))
}

// keyColumns lists the relation's key columns, "(none)" without a key.
func keyColumns(rel *cdcv1.Relation) string {
	var names []string
	for _, c := range rel.GetColumns() {
		if c.GetKey() {
			names = append(names, c.GetName())
		}
	}
	if len(names) == 0 {
		return "(none)"
	}
	return strings.Join(names, ", ")
}

// deliveryError explains a failed message.
func (s *stream) deliveryError(ke kafka.Error, info *msgInfo) error {
	rel := info.tab.Rel
	code := kafkaCode(ke)
	switch {
	case code == codes.InvalidArgument:
		return status.Errorf(code, "Kafka rejected a row of table %s.%s (key columns %s) on topic %q as too large (%v): "+
			"drop its largest columns in the table's column mapping, or raise the topic's max.message.bytes",
			rel.GetSchema(), rel.GetTable(), keyColumns(rel), info.topic, ke)
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
