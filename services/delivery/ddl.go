package delivery

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	cdcv1 "github.com/ferry-cdc/ferry/gen/ferry/cdc/v1"
	"github.com/ferry-cdc/ferry/services/delivery/relation"
)

// DDL records
//
// PostgreSQL's logical replication does not carry DDL statements; it sends a
// relation's new definition before the first change that uses it. Delivery
// compares each definition it receives with the last one the task wrote to
// the DDL topic (KafkaOptions.ddl_topic, else the table's data topic, always
// partition 0) and writes the difference as a statement over the names the
// table's rows carry (capitalization and column mapping applied):
//
//   - CREATE TABLE, for a table the task has never described, when schema
//     sync is on (StartDelivery.write_table_definitions);
//   - ALTER TABLE with ADD COLUMN, DROP COLUMN, ALTER COLUMN ... TYPE and
//     REPLICA IDENTITY actions, for a changed definition. A renamed column
//     reads as a DROP and an ADD: the relation message cannot tell them
//     apart. A change that no statement over the written columns can express
//     (a dropped column that the mapping drops anyway, a new key) updates the
//     stored definition without a record.
//
// A TRUNCATE takes the same way to the same topic (truncate.go).
//
// The last definition written survives restarts in the compacted topic
// schemaStateTopic (key: task id and table; value: the definition as JSON),
// so that a change made while Ferry was stopped is still reported when the
// table is next seen. A definition is stored only after Kafka acknowledged
// its DDL record, so a crash between the two repeats the record rather than
// losing it (at least once, like rows).
const schemaStateTopic = "__ferry_schemas"

// tableDef is a table's definition as the DDL topic last described it.
type tableDef struct {
	Columns  []colDef `json:"columns"`
	Identity string   `json:"identity"`
}

type colDef struct {
	Name string `json:"name"`
	Type string `json:"type"`
}

// schemaRecord is a definition to store once its DDL record is acknowledged.
type schemaRecord struct {
	key string
	def tableDef
}

// schemaLog keeps the definitions the task has written.
type schemaLog struct {
	taskID string
	known  map[string]tableDef // by stateKey

	mu    sync.Mutex
	acked []schemaRecord // acknowledged DDL records whose state is unwritten
}

func (l *schemaLog) stateKey(rel *cdcv1.Relation) string {
	return l.taskID + "\x00" + rel.GetSchema() + "\x00" + rel.GetTable()
}

func (l *schemaLog) ack(r schemaRecord) {
	l.mu.Lock()
	l.acked = append(l.acked, r)
	l.mu.Unlock()
}

func (l *schemaLog) takeAcked() []schemaRecord {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := l.acked
	l.acked = nil
	return out
}

// defOf is t's definition as its messages name it.
func defOf(t *relation.Table) tableDef {
	cols := t.Rel.GetColumns()
	d := tableDef{Identity: t.Rel.GetReplicaIdentity().String()}
	for _, c := range t.Names.Columns {
		d.Columns = append(d.Columns, colDef{Name: c.Name, Type: cols[c.Src].GetTypeName()})
	}
	return d
}

func quoteIdent(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }

func qualified(t *relation.Table) string {
	return quoteIdent(t.Names.Schema) + "." + quoteIdent(t.Names.Table)
}

func createSQL(t *relation.Table, d tableDef) string {
	cols := make([]string, len(d.Columns))
	for i, c := range d.Columns {
		cols[i] = quoteIdent(c.Name) + " " + c.Type
	}
	return "CREATE TABLE " + qualified(t) + " (" + strings.Join(cols, ", ") + ")"
}

// alterSQL is the statement that turns old into d, or "" when none can.
func alterSQL(t *relation.Table, old, d tableDef) string {
	was := map[string]string{}
	for _, c := range old.Columns {
		was[c.Name] = c.Type
	}
	var acts []string
	for _, c := range old.Columns {
		if !slices.ContainsFunc(d.Columns, func(n colDef) bool { return n.Name == c.Name }) {
			acts = append(acts, "DROP COLUMN "+quoteIdent(c.Name))
		}
	}
	for _, c := range d.Columns {
		switch typ, ok := was[c.Name]; {
		case !ok:
			acts = append(acts, "ADD COLUMN "+quoteIdent(c.Name)+" "+c.Type)
		case typ != c.Type:
			acts = append(acts, "ALTER COLUMN "+quoteIdent(c.Name)+" TYPE "+c.Type)
		}
	}
	if old.Identity != d.Identity {
		// USING INDEX needs the index's name, which the relation does not
		// carry; the change still shows in the before-images.
		switch d.Identity {
		case cdcv1.ReplicaIdentity_REPLICA_IDENTITY_FULL.String():
			acts = append(acts, "REPLICA IDENTITY FULL")
		case cdcv1.ReplicaIdentity_REPLICA_IDENTITY_DEFAULT.String():
			acts = append(acts, "REPLICA IDENTITY DEFAULT")
		case cdcv1.ReplicaIdentity_REPLICA_IDENTITY_NOTHING.String():
			acts = append(acts, "REPLICA IDENTITY NOTHING")
		}
	}
	if len(acts) == 0 {
		return ""
	}
	return "ALTER TABLE " + qualified(t) + " " + strings.Join(acts, ", ")
}

func (d tableDef) equal(o tableDef) bool {
	return d.Identity == o.Identity && slices.Equal(d.Columns, o.Columns)
}

// observeSchema writes a DDL record when t's definition is new or changed.
// b is the batch that carried it, for the LSN and time of the change.
func (s *stream) observeSchema(t *relation.Table, b *cdcv1.ChangeBatch) error {
	if operationsFor(s.start.GetObjects(), s.tsel[[2]string{t.Rel.GetSchema(), t.Rel.GetTable()}], t.Rel.GetSchema()) == 0 {
		// A table the task no longer selects gets no DDL records either.
		return nil
	}
	key := s.schemas.stateKey(t.Rel)
	def := defOf(t)
	old, known := s.schemas.known[key]
	if known && old.equal(def) {
		return nil
	}
	s.schemas.known[key] = def
	d := relation.DDL{Kind: "ALTER"}
	switch {
	case !known && !s.start.GetWriteTableDefinitions():
		// Without schema sync the first definition is only a baseline.
		s.schemas.ack(schemaRecord{key, def})
		return nil
	case !known:
		d = relation.DDL{Kind: "CREATE", SQL: createSQL(t, def)}
	default:
		d.SQL = alterSQL(t, old, def)
	}
	if d.SQL == "" {
		s.schemas.ack(schemaRecord{key, def})
		return nil
	}
	for _, ev := range b.GetEvents() {
		if ev.GetRelationOid() == t.Rel.GetOid() || slices.Contains(ev.GetTruncate().GetRelationOids(), t.Rel.GetOid()) {
			d.LSN = ev.GetLsn()
			if ct := ev.GetCommitTime(); ct != nil {
				d.Commit = ct.AsTime()
			}
			break
		}
	}
	return s.produceDDL(t, d, schemaRecord{key, def})
}

func (s *stream) produceDDL(t *relation.Table, d relation.DDL, rec schemaRecord) error {
	ti, err := s.ddlTopic(t)
	if err != nil {
		return err
	}
	s.buf, err = s.enc.EncodeDDL(s.buf[:0], t, d)
	if err != nil {
		return encodeError(err)
	}
	if len(s.buf) == 0 {
		// The format has no DDL records (Debezium JSON): the definition
		// is only remembered, as for a change no statement expresses.
		s.schemas.ack(rec)
		return nil
	}
	s.logger.Info("table definition written to the DDL topic", "schema", t.Rel.GetSchema(), "table", t.Rel.GetTable(),
		"kind", d.Kind, "sql", d.SQL, "topic", ti.name, "lsn", d.LSN)
	return s.send(&kafka.Message{
		TopicPartition: kafka.TopicPartition{Topic: &ti.name, Partition: 0},
		Value:          s.buf,
	}, &msgInfo{tab: t, topic: ti.name, schema: &rec})
}

func (s *stream) ddlTopic(t *relation.Table) (*topicInfo, error) {
	if name := s.start.GetOptions().GetDdlTopic(); name != "" {
		return s.topic(name)
	}
	r, err := s.routeFor(t)
	if err != nil {
		return nil, err
	}
	return r.topic, nil
}

// schemaAcked stores the definition a DDL record described once Kafka has
// acknowledged the record. Outside a transaction it is written at once, so
// that a stream cancelled right after (a pause) does not repeat the record;
// a transactional producer may write only inside its transaction, so there
// it waits for the stream's goroutine.
func (s *stream) schemaAcked(r schemaRecord) {
	if s.txn == nil && s.writeSchemaState(r) {
		return
	}
	s.schemas.ack(r)
}

// flushSchemaState stores the definitions whose DDL records Kafka has
// acknowledged but which could not be written at once. It runs on the
// stream's goroutine, inside the current transaction if there is one.
func (s *stream) flushSchemaState() {
	pending := s.schemas.takeAcked()
	for i, r := range pending {
		if !s.writeSchemaState(r) {
			for _, rest := range pending[i:] {
				s.schemas.ack(rest) // tried again with the next batch
			}
			return
		}
	}
}

// finishSchemaState stores what the last acknowledged DDL records describe
// before the stream ends, so that the next stream does not repeat them.
func (s *stream) finishSchemaState() {
	if s.txn != nil {
		// The last transaction is committed; a write outside one would
		// fail. The next stream repeats at most the last DDL records.
		return
	}
	s.flushSchemaState()
	if n := s.p.Flush(10_000); n > 0 {
		s.logger.Warn("table definitions not stored in time; DDL records may repeat after a restart", "unflushed", n)
	}
}

// writeSchemaState stores a definition and reports whether the producer took
// the record. The record is not part of the safe LSN: losing it costs one
// repeated DDL record after a restart, nothing more.
func (s *stream) writeSchemaState(r schemaRecord) bool {
	v, _ := json.Marshal(r.def) // plain strings: cannot fail
	topic := schemaStateTopic
	err := s.p.Produce(&kafka.Message{TopicPartition: kafka.TopicPartition{Topic: &topic, Partition: kafka.PartitionAny},
		Key: []byte(r.key), Value: v, Opaque: stateWrite{}}, nil)
	if err != nil {
		s.logger.Warn("storing a table definition failed; its DDL record may repeat after a restart", "table", r.key, "error", err)
		return false
	}
	return true
}

// stateWrite marks the delivery reports of schemaStateTopic records.
type stateWrite struct{}

// loadSchemas reads the definitions this task wrote before, creating the
// state topic when it is missing.
func loadSchemas(ctx context.Context, conf kafka.ConfigMap, taskID string) (*schemaLog, error) {
	l := &schemaLog{taskID: taskID, known: map[string]tableDef{}}
	if err := ensureStateTopic(ctx, conf, schemaStateTopic); err != nil {
		return nil, err
	}
	prefix := taskID + "\x00"
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	err := readCompacted(ctx, conf, schemaStateTopic, func(m *kafka.Message) error {
		if !strings.HasPrefix(string(m.Key), prefix) {
			return nil
		}
		if m.Value == nil { // a tombstone
			delete(l.known, string(m.Key))
			return nil
		}
		var d tableDef
		if err := json.Unmarshal(m.Value, &d); err != nil {
			return fmt.Errorf("decoding the definition stored under %q: %w", m.Key, err)
		}
		l.known[string(m.Key)] = d
		return nil
	})
	if err != nil {
		return nil, status.Errorf(codes.Unavailable, "reading table definitions from topic %s: %v", schemaStateTopic, err)
	}
	return l, nil
}

// ensureStateTopic creates a compacted one-partition topic for Ferry's own
// state, if it does not exist.
func ensureStateTopic(ctx context.Context, conf kafka.ConfigMap, name string) error {
	admin, err := kafka.NewAdminClient(&conf)
	if err != nil {
		return status.Errorf(codes.Internal, "creating a Kafka admin client: %v", err)
	}
	defer admin.Close()
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	res, err := admin.CreateTopics(cctx, []kafka.TopicSpecification{{
		Topic: name, NumPartitions: 1, ReplicationFactor: -1,
		Config: map[string]string{"cleanup.policy": "compact"},
	}})
	if err != nil {
		return kafkaStatus(err, "creating topic "+name)
	}
	if code := res[0].Error.Code(); code != kafka.ErrNoError && code != kafka.ErrTopicAlreadyExists {
		return kafkaStatus(res[0].Error, "creating topic "+name)
	}
	return waitVisible(cctx, admin, []string{name})
}

// readCompacted reads every partition of topic from the beginning up to its
// end offset at the time of the call, as a read_committed consumer.
func readCompacted(ctx context.Context, conf kafka.ConfigMap, topic string, fn func(*kafka.Message) error) error {
	cc := kafka.ConfigMap{}
	for k, v := range conf {
		cc[k] = v
	}
	cc["group.id"] = "ferry-state-reader" // required by the client; no offsets are committed
	cc["enable.auto.commit"] = false
	cc["isolation.level"] = "read_committed"
	c, err := kafka.NewConsumer(&cc)
	if err != nil {
		return err
	}
	defer func() { _ = c.Close() }()
	md, err := c.GetMetadata(&topic, false, 10_000)
	if err != nil {
		return err
	}
	ends := map[int32]int64{}
	var tps []kafka.TopicPartition
	for _, p := range md.Topics[topic].Partitions {
		_, hi, err := c.QueryWatermarkOffsets(topic, p.ID, 10_000)
		if err != nil {
			return err
		}
		if hi > 0 {
			ends[p.ID] = hi
			tps = append(tps, kafka.TopicPartition{Topic: &topic, Partition: p.ID, Offset: kafka.OffsetBeginning})
		}
	}
	if len(tps) == 0 {
		return nil
	}
	if err := c.Assign(tps); err != nil {
		return err
	}
	for len(ends) > 0 {
		if err := ctx.Err(); err != nil {
			return err
		}
		m, err := c.ReadMessage(time.Second)
		if err != nil {
			var ke kafka.Error
			if errors.As(err, &ke) && ke.Code() == kafka.ErrTimedOut {
				// Compaction or aborted transactions can leave no record
				// at the end offset; the position says we are past it.
				pos, perr := c.Position(tps)
				if perr != nil {
					return perr
				}
				for _, tp := range pos {
					if hi, ok := ends[tp.Partition]; ok && int64(tp.Offset) >= hi {
						delete(ends, tp.Partition)
					}
				}
				continue
			}
			return err
		}
		if err := fn(m); err != nil {
			return err
		}
		if int64(m.TopicPartition.Offset)+1 >= ends[m.TopicPartition.Partition] {
			delete(ends, m.TopicPartition.Partition)
		}
	}
	return nil
}
