package control

import (
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"google.golang.org/protobuf/proto"

	taskv1 "github.com/ferry-cdc/ferry/gen/ferry/task/v1"
	"github.com/ferry-cdc/ferry/platform/taskapi"
	"github.com/ferry-cdc/ferry/services/catalog"
	"github.com/ferry-cdc/ferry/services/delivery/registry"
	"github.com/ferry-cdc/ferry/services/delivery/transform"
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
		{"source.database", s.Source.Database}, {"source.user", s.Source.User},
		{"destination.bootstrap_servers", s.Destination.BootstrapServers}, {"destination.topic", s.Destination.Topic},
	} {
		if f.value == "" {
			errs.add(f.name, "required")
		}
	}
	checkSourceHosts(s.Source, &errs)
	normalizeKafka(s)
	checkExactlyOnce(s, &errs)
	checkTruncateMode(s.Kafka, &errs)
	checkCanalValueStyle(s.Kafka, &errs)
	checkDebezium(s.Kafka, &errs)
	checkTopics(s, &errs)
	checkColumns(s, &errs)
	checkSchemaRegistry(s, &errs)
	checkSecurity(s.Destination, &errs)
	normalizeAdvanced(s, &errs)
	normalizeAcknowledged(s, &errs)
	checkAlerts(s.GetAlerts(), &errs)
	sel := s.GetObjects()
	if !sel.GetWholeDatabase() && len(sel.GetSchemas()) == 0 && len(sel.GetTables()) == 0 {
		errs.add("objects", "select the whole database, schemas or tables")
	}
	for i, t := range sel.GetTables() {
		if t.Schema == "" || t.Table == "" {
			errs.add(fmt.Sprintf("objects.tables[%d]", i), "schema and table are required")
		}
	}
	checkSchemas(sel, &errs)
	checkFilters(sel, &errs)
	checkTransforms(sel, &errs)
	return s, errs.err()
}

// checkSourceHosts wants the server named once: by host and port, or by a
// list of hosts for a primary with standbys. Ports default to 5432.
func checkSourceHosts(src *taskv1.SourceEndpoint, errs *fieldErrors) {
	if len(src.Hosts) == 0 {
		if src.Host == "" {
			errs.add("source.host", "required (or list the servers of a primary with standbys in source.hosts)")
		}
		src.Port = checkPort("source.port", src.Port, errs)
		return
	}
	if src.Host != "" || src.Port != 0 {
		errs.add("source.hosts", "set either source.host and source.port or source.hosts, not both; list every server, the current primary included, in source.hosts")
	}
	seen := map[string]int{}
	for i, h := range src.Hosts {
		field := fmt.Sprintf("source.hosts[%d]", i)
		if h.GetHost() == "" {
			errs.add(field+".host", "required")
			continue
		}
		h.Port = checkPort(field+".port", h.Port, errs)
		addr := net.JoinHostPort(h.Host, fmt.Sprint(h.Port))
		if first, dup := seen[addr]; dup {
			errs.add(field, "%s is already source.hosts[%d]; list each server once", addr, first)
		}
		seen[addr] = i
	}
}

// checkPort returns port, or 5432 when unset.
func checkPort(field string, port uint32, errs *fieldErrors) uint32 {
	if port == 0 {
		return 5432
	}
	if port > 65535 {
		errs.add(field, "%d is not a port (1 to 65535)", port)
	}
	return port
}

// maxFilterLength bounds a table's filter: a condition, not a program.
const maxFilterLength = 4096

// checkFilters trims each table's filter and refuses what can never be a
// publication row filter. Whether PostgreSQL accepts the condition, and
// whether it uses only replica-identity columns, the precheck (row_filter)
// and setup find out on the source (services/internal/rowfilter).
func checkFilters(sel *taskv1.ObjectSelection, errs *fieldErrors) {
	whole := map[string]bool{}
	for _, sc := range sel.GetSchemas() {
		whole[sc.GetSchema()] = true
	}
	for i, t := range sel.GetTables() {
		if t.GetFilter() == "" {
			continue
		}
		field := fmt.Sprintf("objects.tables[%d].filter", i)
		t.Filter = strings.TrimSpace(t.Filter)
		switch {
		case t.Filter == "":
			errs.add(field, "blank; write a condition over the table's columns, or leave filter unset to take every row")
		case len(t.Filter) > maxFilterLength:
			errs.add(field, "%d bytes, over the limit of %d; a filter is one condition", len(t.Filter), maxFilterLength)
		case strings.Contains(t.Filter, ";"):
			errs.add(field, "contains ';', but a filter is one condition, not statements (inside a string literal, write chr(59) instead)")
		case sel.GetWholeDatabase():
			errs.add(field, "objects.whole_database publishes FOR ALL TABLES, whose tables PostgreSQL publishes unfiltered; to filter a table, select the tables by name in objects.tables instead of the whole database")
		case whole[t.GetSchema()]:
			errs.add(field, "schema %q is selected whole in objects.schemas, whose tables PostgreSQL publishes unfiltered; to filter this table, take the schema out of objects.schemas and select its tables by name",
				t.GetSchema())
		}
	}
}

// checkSchemas wants each selected schema named once: a second entry could
// only contradict the first's operations. A table listed as well inside a
// selected schema is fine; its own options (topic, operations, columns)
// apply to it.
func checkSchemas(sel *taskv1.ObjectSelection, errs *fieldErrors) {
	seen := map[string]int{}
	for i, sc := range sel.GetSchemas() {
		field := fmt.Sprintf("objects.schemas[%d].schema", i)
		name := sc.GetSchema()
		if name == "" {
			errs.add(field, "required: name the schema to take whole (tables created in it later included)")
			continue
		}
		if first, dup := seen[name]; dup {
			errs.add(field, "schema %q is already selected by objects.schemas[%d]; keep one entry", name, first)
			continue
		}
		seen[name] = i
	}
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

// checkExactlyOnce refuses exactly-once without acks all: Kafka
// transactions need the idempotent producer, which needs acks all.
func checkExactlyOnce(s *taskv1.TaskSpec, errs *fieldErrors) {
	if k := s.GetKafka(); k.GetExactlyOnce() && k.GetAcks() != taskv1.Acks_ACKS_ALL {
		errs.add("kafka.acks", "%v cannot be used with kafka.exactly_once, which needs ACKS_ALL; set acks to ALL or leave it unset", k.GetAcks())
	}
}

// checkTruncateMode defaults kafka.truncate_mode to DDL_RECORD and refuses
// a value this build does not know, which would otherwise act as the
// default and ship TRUNCATEs the user meant to stop on.
func checkTruncateMode(k *taskv1.KafkaOptions, errs *fieldErrors) {
	switch k.TruncateMode {
	case taskv1.TruncateMode_TRUNCATE_MODE_UNSPECIFIED:
		k.TruncateMode = taskv1.TruncateMode_TRUNCATE_MODE_DDL_RECORD
	case taskv1.TruncateMode_TRUNCATE_MODE_DDL_RECORD, taskv1.TruncateMode_TRUNCATE_MODE_FAIL:
	default:
		errs.add("kafka.truncate_mode", "%v is not a known mode; use TRUNCATE_MODE_DDL_RECORD (a TRUNCATE becomes a DDL record on the DDL topic) or TRUNCATE_MODE_FAIL (the task stops at a TRUNCATE)", k.TruncateMode)
	}
}

// checkCanalValueStyle refuses a style this build does not know, which
// would otherwise act as POSTGRES and feed Flink values it misreads, and
// FLINK or MySQL type names with DTS Avro, which they would not change.
// UNSPECIFIED is left as it is and means POSTGRES.
func checkCanalValueStyle(k *taskv1.KafkaOptions, errs *fieldErrors) {
	const field = "kafka.canal_value_style"
	switch k.CanalValueStyle {
	case taskv1.CanalValueStyle_CANAL_VALUE_STYLE_UNSPECIFIED, taskv1.CanalValueStyle_CANAL_VALUE_STYLE_POSTGRES:
	case taskv1.CanalValueStyle_CANAL_VALUE_STYLE_FLINK:
		if k.Format != taskv1.DataFormat_DATA_FORMAT_CANAL_JSON {
			errs.add(field, "CANAL_VALUE_STYLE_FLINK applies to kafka.format DATA_FORMAT_CANAL_JSON only (the format is %v)", k.Format)
		}
	default:
		errs.add(field, "%v is not a known style; use CANAL_VALUE_STYLE_POSTGRES (PostgreSQL's text) or CANAL_VALUE_STYLE_FLINK (what Flink's canal-json parses)", k.CanalValueStyle)
	}
	if k.CanalMysqlTypeNames && k.Format != taskv1.DataFormat_DATA_FORMAT_CANAL_JSON {
		errs.add("kafka.canal_mysql_type_names", "applies to kafka.format DATA_FORMAT_CANAL_JSON only (the format is %v)", k.Format)
	}
}

// checkDebezium refuses the Debezium JSON options with another format,
// which would ignore them, and a decimal handling this build does not know.
// UNSPECIFIED decimal handling is left as it is and means STRING.
func checkDebezium(k *taskv1.KafkaOptions, errs *fieldErrors) {
	if k.Format != taskv1.DataFormat_DATA_FORMAT_DEBEZIUM_JSON {
		for _, o := range []struct {
			field string
			set   bool
		}{
			{"kafka.debezium_schemas", k.DebeziumSchemas},
			{"kafka.debezium_no_tombstones", k.DebeziumNoTombstones},
			{"kafka.debezium_decimal_handling", k.DebeziumDecimalHandling != taskv1.DebeziumDecimalHandling_DEBEZIUM_DECIMAL_HANDLING_UNSPECIFIED},
			{"kafka.debezium_server_name", k.DebeziumServerName != ""},
		} {
			if o.set {
				errs.add(o.field, "applies to kafka.format DATA_FORMAT_DEBEZIUM_JSON only (the format is %v)", k.Format)
			}
		}
	}
	switch k.DebeziumDecimalHandling {
	case taskv1.DebeziumDecimalHandling_DEBEZIUM_DECIMAL_HANDLING_UNSPECIFIED, taskv1.DebeziumDecimalHandling_DEBEZIUM_DECIMAL_HANDLING_STRING,
		taskv1.DebeziumDecimalHandling_DEBEZIUM_DECIMAL_HANDLING_DOUBLE:
	default:
		errs.add("kafka.debezium_decimal_handling", "%v is not a known mode; use DEBEZIUM_DECIMAL_HANDLING_STRING (exact text) or DEBEZIUM_DECIMAL_HANDLING_DOUBLE (a JSON number)", k.DebeziumDecimalHandling)
	}
}

// checkTopics refuses a dead-letter topic that is also a data or DDL topic:
// a row too large for its data topic would be too large there as well, and
// consumers of data topics cannot tell dead letters from rows.
func checkTopics(s *taskv1.TaskSpec, errs *fieldErrors) {
	dlq := s.GetKafka().GetDeadLetterTopic()
	if dlq == "" {
		return
	}
	if dlq == s.GetDestination().GetTopic() || dlq == s.GetKafka().GetDdlTopic() {
		errs.add("kafka.dead_letter_topic", "%q is also the data or DDL topic; name a topic of its own", dlq)
	}
	for i, t := range s.GetObjects().GetTables() {
		if t.GetTopic() == dlq {
			errs.add("kafka.dead_letter_topic", "%q is also the topic of objects.tables[%d]; name a topic of its own", dlq, i)
		}
	}
}

// checkColumns refuses column mappings that are ambiguous: a column named
// twice, a mapping that both drops and renames, or two columns written under
// one name. Whether the columns exist is the precheck's business, since the
// table can change after the task is created.
func checkColumns(s *taskv1.TaskSpec, errs *fieldErrors) {
	for i, t := range s.GetObjects().GetTables() {
		seen := map[string]bool{}
		renamed := map[string]string{}
		for j, c := range t.GetColumns() {
			field := fmt.Sprintf("objects.tables[%d].columns[%d]", i, j)
			switch {
			case c.GetName() == "":
				errs.add(field, "name the source column")
			case seen[c.GetName()]:
				errs.add(field, "column %q of %s.%s is mapped twice; keep one mapping", c.GetName(), t.GetSchema(), t.GetTable())
			case c.GetDrop() && c.GetRename() != "":
				errs.add(field, "column %q of %s.%s is both dropped and renamed; choose one", c.GetName(), t.GetSchema(), t.GetTable())
			case c.GetRename() != "":
				if prev, dup := renamed[c.GetRename()]; dup {
					errs.add(field, "columns %q and %q of %s.%s are both renamed to %q", prev, c.GetName(), t.GetSchema(), t.GetTable(), c.GetRename())
				}
				renamed[c.GetRename()] = c.GetName()
			}
			seen[c.GetName()] = true
		}
	}
}

// checkSchemaRegistry accepts a registry URL only for DTS Avro, whose values
// then use the Confluent wire format. Canal JSON has no schema to register,
// and its consumers (canal-adapter, Flink's canal-json) read plain JSON that
// a binary header would break, so a registry there is a mistake to report.
// Credentials in the URL are refused: the spec lands in the workflow's
// history, where secrets never go.
func checkSchemaRegistry(s *taskv1.TaskSpec, errs *fieldErrors) {
	raw := s.GetDestination().GetSchemaRegistryUrl()
	if raw == "" {
		return
	}
	const field = "destination.schema_registry_url"
	if _, err := registry.CheckURL(raw); err != nil {
		errs.add(field, "%v", err)
	} else if u, _ := url.Parse(raw); u.User != nil {
		errs.add(field, "holds credentials, which would be stored in the task's history; use a registry that needs none")
	}
	if f := s.GetKafka().GetFormat(); f != taskv1.DataFormat_DATA_FORMAT_DTS_AVRO {
		errs.add(field, "applies to kafka.format DATA_FORMAT_DTS_AVRO only (the format is %v); unset it or choose DTS Avro", f)
	}
}

// checkSecurity checks that the SCRAM credentials and the TLS CA are given
// exactly when destination.security uses them. Whether the password and CA
// files exist is checked by delivery, where they are read: control may run
// on a host that does not mount them.
func checkSecurity(d *taskv1.KafkaEndpoint, errs *fieldErrors) {
	sec := d.GetSecurity()
	var scram, tls bool
	switch sec {
	case taskv1.KafkaSecurity_KAFKA_SECURITY_PLAINTEXT:
	case taskv1.KafkaSecurity_KAFKA_SECURITY_SASL_SCRAM_SHA_256, taskv1.KafkaSecurity_KAFKA_SECURITY_SASL_SCRAM_SHA_512:
		scram = true
	case taskv1.KafkaSecurity_KAFKA_SECURITY_TLS:
		tls = true
	case taskv1.KafkaSecurity_KAFKA_SECURITY_SASL_SSL_SCRAM_SHA_256, taskv1.KafkaSecurity_KAFKA_SECURITY_SASL_SSL_SCRAM_SHA_512:
		scram, tls = true, true
	default:
		errs.add("destination.security", "%v is not a known security setting", sec)
		return
	}
	if scram {
		if d.GetSaslUser() == "" {
			errs.add("destination.sasl_user", "required with destination.security %v", sec)
		}
		checkSecretRef(d.GetSaslPassword(), "destination.sasl_password",
			fmt.Sprintf(`required with destination.security %v: {"file": "/path"} or {"env": "VAR"}`, sec), errs)
	} else if d.GetSaslUser() != "" || d.GetSaslPassword() != nil {
		errs.add("destination.sasl_user", "destination.security %v sends no user; choose a SASL_* security (SCRAM) or clear destination.sasl_user and destination.sasl_password", sec)
	}
	switch {
	case d.GetTlsCa() == nil:
	case !tls:
		errs.add("destination.tls_ca", "destination.security %v does not use TLS; choose TLS or SASL_SSL_SCRAM_SHA_256/512, or clear destination.tls_ca", sec)
	default:
		checkSecretRef(d.GetTlsCa(), "destination.tls_ca",
			`name the CA's PEM file {"file": "/path"} or a variable holding it {"env": "VAR"}, or leave it unset for the system's CA store`, errs)
	}
}

// checkSecretRef requires a reference to name an absolute file path or an
// environment variable; services resolve it where they run, so a relative
// path would depend on each one's working directory.
func checkSecretRef(ref *taskv1.SecretRef, field, missing string, errs *fieldErrors) {
	switch src := ref.GetSource().(type) {
	case *taskv1.SecretRef_File:
		if !filepath.IsAbs(src.File) {
			errs.add(field, "file %q must be an absolute path", src.File)
		}
	case *taskv1.SecretRef_Env:
		if src.Env == "" {
			errs.add(field, "env must name an environment variable")
		}
	default:
		errs.add(field, "%s", missing)
	}
}

func normalizeAdvanced(s *taskv1.TaskSpec, errs *fieldErrors) {
	if s.Advanced == nil {
		s.Advanced = &taskv1.AdvancedOptions{}
	}
	a := s.Advanced
	if a.ConnectionRetryMinutes == 0 {
		a.ConnectionRetryMinutes = taskapi.DefaultConnectionRetryMinutes
	}
	if a.OtherRetryMinutes == 0 {
		a.OtherRetryMinutes = taskapi.DefaultOtherRetryMinutes
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
	if a.HeartbeatSeconds == 0 {
		a.HeartbeatSeconds = taskapi.DefaultHeartbeatSeconds
	}
	if a.HeartbeatSeconds > maxHeartbeatSeconds {
		errs.add("advanced.heartbeat_seconds", "%d is out of range (1 to %d, default %d); an idle slot can trail the WAL by this long",
			a.HeartbeatSeconds, maxHeartbeatSeconds, taskapi.DefaultHeartbeatSeconds)
	}
}

// maxHeartbeatSeconds caps the heartbeat interval at an hour: beyond that an
// idle slot could pin an hour of a busy server's WAL.
const maxHeartbeatSeconds = 3600

// normalizeAcknowledged refuses ids that name no precheck warning, since a
// misspelt id would otherwise acknowledge nothing without a word, and drops
// repeats.
func normalizeAcknowledged(s *taskv1.TaskSpec, errs *fieldErrors) {
	known := catalog.WarningIDs()
	var out []string
	for i, id := range s.AcknowledgedWarnings {
		switch {
		case !slices.Contains(known, id):
			errs.add(fmt.Sprintf("acknowledged_warnings[%d]", i), "%q is not a precheck item that can warn; use one of %s",
				id, strings.Join(known, ", "))
		case !slices.Contains(out, id):
			out = append(out, id)
		}
	}
	s.AcknowledgedWarnings = out
}

// checkAlerts wants a webhook for any rule: an alert nobody receives is a
// log line, and the spec would promise more than that. A latency rule
// needs both its threshold and how long latency must stay over it.
func checkAlerts(a *taskv1.AlertRules, errs *fieldErrors) {
	rules := a.GetOnFailure() || a.GetLatencyThresholdSeconds() > 0 || a.GetLatencyForSeconds() > 0 || sourceAlerts(a)
	if !rules {
		if a.GetWebhookUrl() != "" {
			errs.add("alerts.webhook_url", "set, but no rule is on: set alerts.on_failure, alerts.latency_threshold_seconds or a source threshold")
		}
		return
	}
	if u, err := url.Parse(a.GetWebhookUrl()); a.GetWebhookUrl() == "" || err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		errs.add("alerts.webhook_url", "%q must be an http:// or https:// URL that receives the alerts' JSON", a.GetWebhookUrl())
	}
	if a.GetLatencyForSeconds() > 0 && a.GetLatencyThresholdSeconds() == 0 {
		errs.add("alerts.latency_threshold_seconds", "required when alerts.latency_for_seconds is set (1 to 86400)")
	}
	if a.GetLatencyThresholdSeconds() > 86400 {
		errs.add("alerts.latency_threshold_seconds", "%d is over a day (1 to 86400)", a.GetLatencyThresholdSeconds())
	}
	if a.GetLatencyForSeconds() > 86400 {
		errs.add("alerts.latency_for_seconds", "%d is over a day (0 to 86400)", a.GetLatencyForSeconds())
	}
	checkSourceAlerts(a, errs)
}

// sourceAlerts reports whether any alert on the source side is on.
func sourceAlerts(a *taskv1.AlertRules) bool {
	return a.GetRetainedWalThresholdMegabytes() > 0 || a.GetSlotLagThresholdMegabytes() > 0 || a.GetTransactionThresholdSeconds() > 0
}

func checkSourceAlerts(a *taskv1.AlertRules, errs *fieldErrors) {
	if !sourceAlerts(a) {
		if a.GetSourceForSeconds() > 0 || a.GetSourceCheckSeconds() > 0 {
			errs.add("alerts.source_for_seconds", "set, but no source threshold is: set alerts.retained_wal_threshold_megabytes, slot_lag_threshold_megabytes or transaction_threshold_seconds")
		}
		return
	}
	if c := a.GetSourceCheckSeconds(); c != 0 && (c < 5 || c > 3600) {
		errs.add("alerts.source_check_seconds", "%d is out of range (5 to 3600, default %d): each check is a session on the source", c, taskapi.DefaultSourceCheckSeconds)
	}
	if a.GetSourceForSeconds() > 86400 {
		errs.add("alerts.source_for_seconds", "%d is over a day (0 to 86400)", a.GetSourceForSeconds())
	}
	if a.GetTransactionThresholdSeconds() > 7*86400 {
		errs.add("alerts.transaction_threshold_seconds", "%d is over a week (1 to 604800)", a.GetTransactionThresholdSeconds())
	}
}

// checkTransforms refuses transforms that are wrong whatever the table;
// the precheck (item "transforms") compiles them against the real columns.
func checkTransforms(sel *taskv1.ObjectSelection, errs *fieldErrors) {
	check := func(field string, ts []*taskv1.Transform) {
		for i, t := range ts {
			if msg := transform.CheckSyntax(t); msg != "" {
				errs.add(fmt.Sprintf("%s.transforms[%d]", field, i), "%s", msg)
			}
		}
	}
	check("objects", sel.GetTransforms())
	for i, s := range sel.GetSchemas() {
		check(fmt.Sprintf("objects.schemas[%d]", i), s.GetTransforms())
	}
	for i, t := range sel.GetTables() {
		check(fmt.Sprintf("objects.tables[%d]", i), t.GetTransforms())
	}
}
