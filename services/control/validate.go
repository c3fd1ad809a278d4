package control

import (
	"fmt"
	"regexp"
	"strings"

	"google.golang.org/protobuf/proto"

	taskv1 "github.com/ferry-cdc/ferry/gen/ferry/task/v1"
	"github.com/ferry-cdc/ferry/workflows/task"
)

var taskIDPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]{0,39}$`)

// fieldErrors collects every problem in a spec, so a user fixes them in one go.
type fieldErrors []string

func (f *fieldErrors) add(field, format string, args ...any) {
	*f = append(*f, field+": "+fmt.Sprintf(format, args...))
}

func (f fieldErrors) err() error {
	if len(f) == 0 {
		return nil
	}
	return fmt.Errorf("invalid task spec: %s", strings.Join(f, "; "))
}

// Normalize returns a copy of spec with defaults filled in, or an error that
// names every bad field and the allowed range.
func Normalize(spec *taskv1.TaskSpec) (*taskv1.TaskSpec, error) {
	s := proto.Clone(spec).(*taskv1.TaskSpec)
	var errs fieldErrors
	if s.Source == nil {
		s.Source = &taskv1.SourceEndpoint{}
	}
	if s.Destination == nil {
		s.Destination = &taskv1.KafkaEndpoint{}
	}
	for _, f := range []struct{ name, value string }{
		{"source.host", s.Source.Host}, {"source.database", s.Source.Database}, {"source.user", s.Source.User},
		{"destination.bootstrap_servers", s.Destination.BootstrapServers}, {"destination.topic", s.Destination.Topic},
	} {
		if f.value == "" {
			errs.add(f.name, "required")
		}
	}
	if s.Source.Port == 0 {
		s.Source.Port = 5432
	} else if s.Source.Port > 65535 {
		errs.add("source.port", "%d is not a port (1 to 65535)", s.Source.Port)
	}
	normalizeKafka(s)
	normalizeAdvanced(s, &errs)
	sel := s.GetObjects()
	if !sel.GetWholeDatabase() && len(sel.GetSchemas()) == 0 && len(sel.GetTables()) == 0 {
		errs.add("objects", "select the whole database, schemas or tables")
	}
	for i, t := range sel.GetTables() {
		if t.Schema == "" || t.Table == "" {
			errs.add(fmt.Sprintf("objects.tables[%d]", i), "schema and table are required")
		}
	}
	return s, errs.err()
}

func normalizeKafka(s *taskv1.TaskSpec) {
	if s.Kafka == nil {
		s.Kafka = &taskv1.KafkaOptions{}
	}
	k := s.Kafka
	if k.Format == taskv1.DataFormat_DATA_FORMAT_UNSPECIFIED {
		k.Format = taskv1.DataFormat_DATA_FORMAT_CANAL_JSON
	}
	if k.Compression == taskv1.Compression_COMPRESSION_UNSPECIFIED {
		k.Compression = taskv1.Compression_COMPRESSION_LZ4
	}
	if k.PartitionPolicy == taskv1.PartitionPolicy_PARTITION_POLICY_UNSPECIFIED {
		k.PartitionPolicy = taskv1.PartitionPolicy_PARTITION_POLICY_ALL_TO_ZERO
	}
	if k.Acks == taskv1.Acks_ACKS_UNSPECIFIED {
		k.Acks = taskv1.Acks_ACKS_ALL
	}
	if k.ConflictMode == taskv1.ConflictMode_CONFLICT_MODE_UNSPECIFIED {
		k.ConflictMode = taskv1.ConflictMode_CONFLICT_MODE_REPORT
	}
	if s.Destination.Security == taskv1.KafkaSecurity_KAFKA_SECURITY_UNSPECIFIED {
		s.Destination.Security = taskv1.KafkaSecurity_KAFKA_SECURITY_PLAINTEXT
	}
}

func normalizeAdvanced(s *taskv1.TaskSpec, errs *fieldErrors) {
	if s.Advanced == nil {
		s.Advanced = &taskv1.AdvancedOptions{}
	}
	a := s.Advanced
	if a.ConnectionRetryMinutes == 0 {
		a.ConnectionRetryMinutes = task.DefaultConnectionRetryMinutes
	}
	if a.OtherRetryMinutes == 0 {
		a.OtherRetryMinutes = task.DefaultOtherRetryMinutes
	}
	if a.ConnectionRetryMinutes < 10 || a.ConnectionRetryMinutes > 1440 {
		errs.add("advanced.connection_retry_minutes", "%d is out of range (10 to 1440, default 720)", a.ConnectionRetryMinutes)
	}
	if a.OtherRetryMinutes < 1 || a.OtherRetryMinutes > 1440 {
		errs.add("advanced.other_retry_minutes", "%d is out of range (1 to 1440, default 10)", a.OtherRetryMinutes)
	}
	if a.OtherRetryMinutes >= a.ConnectionRetryMinutes {
		errs.add("advanced.other_retry_minutes", "%d must be smaller than advanced.connection_retry_minutes (%d)",
			a.OtherRetryMinutes, a.ConnectionRetryMinutes)
	}
}

// notYetSupported lists options that are part of the contract but whose
// implementation has not landed. Refusing them beats silently ignoring them.
func notYetSupported(s *taskv1.TaskSpec) []string {
	var out []string
	need := func(cond bool, field, area string) {
		if cond {
			out = append(out, fmt.Sprintf("%s (lands with the %s issue)", field, area))
		}
	}
	sel := s.GetObjects()
	need(s.GetSyncTypes().GetFull(), "sync_types.full", "capture")
	need(sel.GetWholeDatabase() || len(sel.GetSchemas()) > 0, "objects.whole_database/objects.schemas (tables created later)", "task-lifecycle")
	need(sel.GetNameCase() > taskv1.NameCase_NAME_CASE_SOURCE, "objects.name_case", "delivery")
	need(len(sel.GetOperations()) > 0, "objects.operations", "task-lifecycle")
	for i, t := range sel.GetTables() {
		need(t.GetFilter() != "", fmt.Sprintf("objects.tables[%d].filter", i), "capture")
		need(len(t.GetColumns()) > 0, fmt.Sprintf("objects.tables[%d].columns", i), "delivery")
		need(len(t.GetOperations()) > 0, fmt.Sprintf("objects.tables[%d].operations", i), "task-lifecycle")
	}
	k := s.GetKafka()
	need(k.GetExactlyOnce(), "kafka.exactly_once", "delivery")
	need(k.GetDeadLetterTopic() != "", "kafka.dead_letter_topic", "delivery")
	need(k.GetDdlTopic() != "", "kafka.ddl_topic", "delivery")
	need(s.GetDestination().GetSchemaRegistryUrl() != "", "destination.schema_registry_url", "delivery")
	need(s.GetDestination().GetSecurity() != taskv1.KafkaSecurity_KAFKA_SECURITY_PLAINTEXT, "destination.security", "delivery")
	adv := s.GetAdvanced()
	need(adv.GetFullThrottle().GetRowsPerSecond()+adv.GetFullThrottle().GetQueriesPerSecond()+adv.GetFullThrottle().GetMegabytesPerSecond() > 0,
		"advanced.full_throttle", "task-lifecycle")
	need(adv.GetIncrementalThrottle().GetRowsPerSecond()+adv.GetIncrementalThrottle().GetMegabytesPerSecond() > 0,
		"advanced.incremental_throttle", "task-lifecycle")
	need(s.GetAlerts().GetOnFailure() || s.GetAlerts().GetLatencyThresholdSeconds() > 0, "alerts", "task-lifecycle")
	return out
}
