package delivery

import (
	"strings"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	cdcv1 "github.com/ferry-cdc/ferry/gen/ferry/cdc/v1"
	taskv1 "github.com/ferry-cdc/ferry/gen/ferry/task/v1"
	"github.com/ferry-cdc/ferry/services/delivery/relation"
)

// TRUNCATE
//
// A TRUNCATE reaches Kafka as a DDL record of type TRUNCATE on the DDL topic
// (KafkaOptions.ddl_topic, else the table's data topic), partition 0, at its
// place among the rows: it is enqueued between them, so it moves the safe
// LSN only once Kafka has acknowledged it with everything before it. One
// statement may empty several tables, which PostgreSQL may require (tables
// bound by foreign keys are truncated together or with CASCADE), so each
// DDL topic gets one record whose statement names every truncated table
// routed there, and whose database and table are those of the first. Tables
// the task does not select are left out; the operations filter does not
// apply, TRUNCATE being no row change. With truncate_mode FAIL the stream
// stops instead, before the TRUNCATE, so nothing from its transaction on is
// confirmed. Debezium JSON writes one "t" event per truncated table instead,
// as Debezium does, each on its table's DDL topic.

// truncateGroup is the truncated tables whose DDL topic is topic.
type truncateGroup struct {
	topic  *topicInfo
	tables []*relation.Table
}

func (s *stream) produceTruncate(ev *cdcv1.ChangeEvent) error {
	tabs, err := s.truncatedTables(ev)
	if err != nil || len(tabs) == 0 {
		return err
	}
	if s.start.GetOptions().GetTruncateMode() == taskv1.TruncateMode_TRUNCATE_MODE_FAIL {
		return truncateRefused(tabs, ev)
	}
	var groups []*truncateGroup
	for _, t := range tabs {
		ti, err := s.ddlTopic(t)
		if err != nil {
			return err
		}
		i := 0
		for i < len(groups) && groups[i].topic != ti {
			i++
		}
		if i == len(groups) || s.truncateEach() {
			i = len(groups)
			groups = append(groups, &truncateGroup{topic: ti})
		}
		groups[i].tables = append(groups[i].tables, t)
	}
	for _, g := range groups {
		if err := s.sendTruncate(g, ev); err != nil {
			return err
		}
	}
	return nil
}

// truncateEach: Debezium JSON writes one "t" event per truncated table, as
// Debezium does, rather than one record per DDL topic.
func (s *stream) truncateEach() bool {
	return s.start.GetOptions().GetFormat() == taskv1.DataFormat_DATA_FORMAT_DEBEZIUM_JSON
}

// truncatedTables is the tables of ev that the task selects, in ev's order.
func (s *stream) truncatedTables(ev *cdcv1.ChangeEvent) ([]*relation.Table, error) {
	oids := ev.GetTruncate().GetRelationOids()
	if len(oids) == 0 {
		oids = []uint32{ev.GetRelationOid()}
	}
	var out []*relation.Table
	for _, oid := range oids {
		t, ok := s.enc.Table(oid)
		if !ok {
			return nil, status.Errorf(codes.InvalidArgument, "TRUNCATE at LSN %d refers to relation %d, which this stream was never sent", ev.GetLsn(), oid)
		}
		rel := t.Rel
		if selected(s.start.GetObjects(), s.tsel[[2]string{rel.GetSchema(), rel.GetTable()}], rel.GetSchema()) {
			out = append(out, t)
		}
	}
	return out, nil
}

func (s *stream) sendTruncate(g *truncateGroup, ev *cdcv1.ChangeEvent) error {
	d := relation.DDL{Kind: "TRUNCATE", SQL: truncateSQL(g.tables, ev.GetTruncate()), LSN: ev.GetLsn()}
	if ct := ev.GetCommitTime(); ct != nil {
		d.Commit = ct.AsTime()
	}
	first := g.tables[0]
	var err error
	s.buf, err = s.enc.EncodeDDL(s.buf[:0], first, d)
	if err != nil {
		return encodeError(err)
	}
	s.logger.Info("TRUNCATE written to the DDL topic", "sql", d.SQL, "topic", g.topic.name, "lsn", d.LSN)
	return s.send(&kafka.Message{
		TopicPartition: kafka.TopicPartition{Topic: &g.topic.name, Partition: 0},
		Value:          s.buf,
	}, &msgInfo{tab: first, topic: g.topic.name})
}

// truncateSQL names the tables as their messages do, with the statement's
// options in PostgreSQL's order.
func truncateSQL(tabs []*relation.Table, tr *cdcv1.Truncate) string {
	names := make([]string, len(tabs))
	for i, t := range tabs {
		names[i] = qualified(t)
	}
	sql := "TRUNCATE TABLE " + strings.Join(names, ", ")
	if tr.GetRestartIdentity() {
		sql += " RESTART IDENTITY"
	}
	if tr.GetCascade() {
		sql += " CASCADE"
	}
	return sql
}

// truncateRefused is the error of truncate_mode FAIL. InvalidArgument: no
// retry can get past the TRUNCATE, which is replayed at every restart.
func truncateRefused(tabs []*relation.Table, ev *cdcv1.ChangeEvent) error {
	names := make([]string, len(tabs))
	for i, t := range tabs {
		names[i] = t.Rel.GetSchema() + "." + t.Rel.GetTable()
	}
	return status.Errorf(codes.InvalidArgument,
		"TRUNCATE of table %s at LSN %X/%X (transaction %d): kafka.truncate_mode is TRUNCATE_MODE_FAIL, so the task stops before it and confirms nothing from its transaction on; "+
			"re-sync the table with a new task (sync_types.full), or create the task with kafka.truncate_mode TRUNCATE_MODE_DDL_RECORD (the default) to receive TRUNCATE as a DDL record on the DDL topic",
		strings.Join(names, ", "), ev.GetLsn()>>32, uint32(ev.GetLsn()), ev.GetXid())
}
