package control

import (
	"context"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	taskv1 "github.com/ferry-cdc/ferry/gen/ferry/task/v1"
)

func validSpec() *taskv1.TaskSpec {
	return &taskv1.TaskSpec{
		Source:      &taskv1.SourceEndpoint{Host: "db", Database: "my-db", User: "ferry"},
		Destination: &taskv1.KafkaEndpoint{BootstrapServers: "k:9092", Topic: "t"},
		Objects:     &taskv1.ObjectSelection{Tables: []*taskv1.TableSelection{{Schema: "public", Table: "orders"}}},
	}
}

func TestNormalizeFillsDefaults(t *testing.T) {
	in := validSpec()
	s, err := Normalize(in)
	if err != nil {
		t.Fatal(err)
	}
	if s.GetSource().GetPort() != 5432 || s.GetKafka().GetCompression() != taskv1.Compression_COMPRESSION_LZ4 ||
		s.GetKafka().GetAcks() != taskv1.Acks_ACKS_ALL || s.GetKafka().GetFormat() != taskv1.DataFormat_DATA_FORMAT_CANAL_JSON ||
		s.GetAdvanced().GetConnectionRetryMinutes() != 720 || s.GetAdvanced().GetOtherRetryMinutes() != 10 ||
		s.GetAdvanced().GetHeartbeatSeconds() != 30 {
		t.Fatalf("defaults not applied: %v", s)
	}
	if in.GetAdvanced() != nil {
		t.Fatal("Normalize must not modify its input")
	}
}

func TestNormalizeNamesEveryBadField(t *testing.T) {
	s := validSpec()
	s.Source.Host = ""
	s.Destination.Topic = ""
	s.Advanced = &taskv1.AdvancedOptions{ConnectionRetryMinutes: 5, OtherRetryMinutes: 2000}
	_, err := Normalize(s)
	if err == nil {
		t.Fatal("want an error")
	}
	for _, want := range []string{"source.host", "destination.topic", "advanced.connection_retry_minutes", "10 to 1440",
		"advanced.other_retry_minutes", "1 to 1440"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
}

func TestHeartbeatSecondsRange(t *testing.T) {
	for _, tc := range []struct {
		in, want uint32
		bad      bool
	}{{0, 30, false}, {1, 1, false}, {3600, 3600, false}, {3601, 0, true}} {
		s := validSpec()
		s.Advanced = &taskv1.AdvancedOptions{HeartbeatSeconds: tc.in}
		got, err := Normalize(s)
		if tc.bad {
			if err == nil || !strings.Contains(err.Error(), "advanced.heartbeat_seconds: 3601 is out of range (1 to 3600, default 30)") {
				t.Errorf("heartbeat_seconds %d: err = %v, want it refused by name with the range", tc.in, err)
			}
			continue
		}
		if err != nil || got.GetAdvanced().GetHeartbeatSeconds() != tc.want {
			t.Errorf("heartbeat_seconds %d: got %d, %v; want %d", tc.in, got.GetAdvanced().GetHeartbeatSeconds(), err, tc.want)
		}
	}
}

func TestOtherWindowMustBeBelowConnectionWindow(t *testing.T) {
	s := validSpec()
	s.Advanced = &taskv1.AdvancedOptions{ConnectionRetryMinutes: 30, OtherRetryMinutes: 30}
	if _, err := Normalize(s); err == nil || !strings.Contains(err.Error(), "smaller than advanced.connection_retry_minutes") {
		t.Fatalf("err = %v, want the other window refused", err)
	}
}

// Whole schemas and the whole database are selections like tables: a table
// listed inside a selected schema keeps its own options.
func TestWholeDatabaseAndSchemasAreAccepted(t *testing.T) {
	for name, sel := range map[string]*taskv1.ObjectSelection{
		"whole database": {WholeDatabase: true},
		"schemas":        {Schemas: []*taskv1.SchemaSelection{{Schema: "sales"}, {Schema: "Ops-2"}}},
		"schema with a table of its own": {
			Schemas: []*taskv1.SchemaSelection{{Schema: "sales"}},
			Tables:  []*taskv1.TableSelection{{Schema: "sales", Table: "orders", Topic: "orders"}},
		},
	} {
		s := validSpec()
		s.Objects = sel
		n, err := Normalize(s)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if !proto.Equal(n.GetObjects(), sel) {
			t.Errorf("%s: the selection came back as %v", name, n.GetObjects())
		}
	}
}

func TestSchemaSelectionsAreNamedOnce(t *testing.T) {
	s := validSpec()
	s.Objects = &taskv1.ObjectSelection{Schemas: []*taskv1.SchemaSelection{{Schema: "sales"}, {}, {Schema: "sales"}}}
	_, err := Normalize(s)
	for _, want := range []string{
		"objects.schemas[1].schema: required",
		`objects.schemas[2].schema: schema "sales" is already selected by objects.schemas[0]`,
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("err = %v, want it to say %q", err, want)
		}
	}
}

func TestAlertRulesNeedAWebhook(t *testing.T) {
	for _, tc := range []struct {
		rules *taskv1.AlertRules
		want  string // empty: valid
	}{
		{&taskv1.AlertRules{OnFailure: true, WebhookUrl: "http://127.0.0.1:9999/hook"}, ""},
		{&taskv1.AlertRules{LatencyThresholdSeconds: 30, LatencyForSeconds: 60, WebhookUrl: "https://alerts.example/x"}, ""},
		{&taskv1.AlertRules{OnFailure: true}, "alerts.webhook_url"},
		{&taskv1.AlertRules{OnFailure: true, WebhookUrl: "ftp://x/y"}, "http:// or https://"},
		{&taskv1.AlertRules{WebhookUrl: "http://x/y"}, "no rule is on"},
		{&taskv1.AlertRules{LatencyForSeconds: 60, WebhookUrl: "http://x/y"}, "alerts.latency_threshold_seconds"},
		{&taskv1.AlertRules{LatencyThresholdSeconds: 90000, WebhookUrl: "http://x/y"}, "1 to 86400"},
		{&taskv1.AlertRules{RetainedWalThresholdMegabytes: 4096, SourceForSeconds: 300, WebhookUrl: "http://x/y"}, ""},
		{&taskv1.AlertRules{TransactionThresholdSeconds: 600, SourceCheckSeconds: 60, WebhookUrl: "http://x/y"}, ""},
		{&taskv1.AlertRules{SlotLagThresholdMegabytes: 100}, "alerts.webhook_url"},
		{&taskv1.AlertRules{SlotLagThresholdMegabytes: 100, SourceCheckSeconds: 1, WebhookUrl: "http://x/y"}, "5 to 3600"},
		{&taskv1.AlertRules{OnFailure: true, SourceForSeconds: 60, WebhookUrl: "http://x/y"}, "no source threshold"},
		{&taskv1.AlertRules{TransactionThresholdSeconds: 700000, WebhookUrl: "http://x/y"}, "over a week"},
	} {
		s := validSpec()
		s.Alerts = tc.rules
		_, err := Normalize(s)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%v: unexpected error %v", tc.rules, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%v: error %v, want one mentioning %q", tc.rules, err, tc.want)
		}
	}
}

func TestUpdateThrottleNeedsAThrottle(t *testing.T) {
	s := NewServer(nil, Options{TaskQueue: "q"}, nil, nil)
	_, err := s.UpdateThrottle(context.Background(), &taskv1.UpdateThrottleRequest{TaskId: "x"})
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "full and/or incremental") {
		t.Fatalf("UpdateThrottle without a throttle: err = %v, want InvalidArgument saying what to set", err)
	}
}

func TestDeadLetterTopicMustBeItsOwn(t *testing.T) {
	s := validSpec()
	s.Kafka = &taskv1.KafkaOptions{DeadLetterTopic: "big-rows"}
	s.Objects.Tables[0].Topic = "big-rows"
	_, err := Normalize(s)
	if err == nil || !strings.Contains(err.Error(), "kafka.dead_letter_topic") || !strings.Contains(err.Error(), "objects.tables[0]") {
		t.Fatalf("got %v, want an error naming kafka.dead_letter_topic and objects.tables[0]", err)
	}
	s.Objects.Tables[0].Topic = ""
	_, err = Normalize(s)
	if err != nil {
		t.Fatal(err)
	}
}

func TestSchemaRegistryURLIsCheckedAndSupported(t *testing.T) {
	s := validSpec()
	s.Kafka = &taskv1.KafkaOptions{Format: taskv1.DataFormat_DATA_FORMAT_DTS_AVRO}
	s.Destination.SchemaRegistryUrl = "http://127.0.0.1:58081/apis/ccompat/v7"
	_, err := Normalize(s)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		url    string
		format taskv1.DataFormat
		want   string
	}{
		{"127.0.0.1:58081", taskv1.DataFormat_DATA_FORMAT_DTS_AVRO, "not a URL"},
		{"ftp://r:1", taskv1.DataFormat_DATA_FORMAT_DTS_AVRO, "http or https"},
		{"http://u:pw@r:8081", taskv1.DataFormat_DATA_FORMAT_DTS_AVRO, "credentials"},
		{"http://r:8081", taskv1.DataFormat_DATA_FORMAT_CANAL_JSON, "DTS_AVRO only"},
		{"http://r:8081", taskv1.DataFormat_DATA_FORMAT_UNSPECIFIED, "DTS_AVRO only"}, // Canal JSON by default
	} {
		s := validSpec()
		s.Kafka = &taskv1.KafkaOptions{Format: tc.format}
		s.Destination.SchemaRegistryUrl = tc.url
		_, err := Normalize(s)
		if err == nil || !strings.Contains(err.Error(), "destination.schema_registry_url") || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q with %v: err = %v, want destination.schema_registry_url named with %q", tc.url, tc.format, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), "pw") {
			t.Errorf("%q: the error leaks the password: %v", tc.url, err)
		}
	}
}

func TestColumnMappingsMustBeUnambiguous(t *testing.T) {
	s := validSpec()
	s.Objects.Tables[0].Columns = []*taskv1.ColumnMapping{
		{Name: "a", Rename: "x"}, {Name: "b", Rename: "x"}, {Name: "a", Drop: true}, {Name: "c", Drop: true, Rename: "y"}, {},
	}
	_, err := Normalize(s)
	if err == nil {
		t.Fatal("want an error")
	}
	for _, want := range []string{
		`objects.tables[0].columns[1]: columns "a" and "b" of public.orders are both renamed to "x"`,
		`objects.tables[0].columns[2]: column "a" of public.orders is mapped twice`,
		`objects.tables[0].columns[3]: column "c" of public.orders is both dropped and renamed`,
		`objects.tables[0].columns[4]: name the source column`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
	s.Objects.Tables[0].Columns = []*taskv1.ColumnMapping{{Name: "a", Rename: "x"}, {Name: "b", Drop: true}}
	s.Objects.NameCase = taskv1.NameCase_NAME_CASE_UPPER
	s.Objects.Operations = []taskv1.OperationSet{taskv1.OperationSet_OPERATION_SET_INSERT}
	s.Kafka = &taskv1.KafkaOptions{DdlTopic: "ddl"}
	_, err = Normalize(s)
	if err != nil {
		t.Fatal(err)
	}
}

func TestExactlyOnceNeedsAcksAll(t *testing.T) {
	s := validSpec()
	s.Kafka = &taskv1.KafkaOptions{ExactlyOnce: true, Acks: taskv1.Acks_ACKS_LEADER}
	if _, err := Normalize(s); err == nil || !strings.Contains(err.Error(), "kafka.acks") || !strings.Contains(err.Error(), "kafka.exactly_once") {
		t.Fatalf("got %v, want an error naming kafka.acks and kafka.exactly_once", err)
	}
	s.Kafka.Acks = taskv1.Acks_ACKS_UNSPECIFIED
	_, err := Normalize(s)
	if err != nil {
		t.Fatalf("exactly-once with default acks: %v", err)
	}
}

func TestTruncateModeDefaultsAndIsChecked(t *testing.T) {
	s, err := Normalize(validSpec())
	if err != nil || s.GetKafka().GetTruncateMode() != taskv1.TruncateMode_TRUNCATE_MODE_DDL_RECORD {
		t.Fatalf("default truncate_mode %v (%v), want DDL_RECORD", s.GetKafka().GetTruncateMode(), err)
	}
	in := validSpec()
	in.Kafka = &taskv1.KafkaOptions{TruncateMode: taskv1.TruncateMode_TRUNCATE_MODE_FAIL}
	if s, err := Normalize(in); err != nil || s.GetKafka().GetTruncateMode() != taskv1.TruncateMode_TRUNCATE_MODE_FAIL {
		t.Fatalf("FAIL kept as %v (%v)", s.GetKafka().GetTruncateMode(), err)
	}
	in.Kafka.TruncateMode = 7
	if _, err := Normalize(in); err == nil || !strings.Contains(err.Error(), "kafka.truncate_mode") || !strings.Contains(err.Error(), "TRUNCATE_MODE_FAIL") {
		t.Fatalf("unknown truncate_mode: %v, want an error naming the field and the modes", err)
	}
}

func TestCanalValueStyleIsChecked(t *testing.T) {
	for _, style := range []taskv1.CanalValueStyle{taskv1.CanalValueStyle_CANAL_VALUE_STYLE_UNSPECIFIED,
		taskv1.CanalValueStyle_CANAL_VALUE_STYLE_POSTGRES, taskv1.CanalValueStyle_CANAL_VALUE_STYLE_FLINK} {
		in := validSpec()
		in.Kafka = &taskv1.KafkaOptions{CanalValueStyle: style}
		if s, err := Normalize(in); err != nil || s.GetKafka().GetCanalValueStyle() != style {
			t.Fatalf("style %v kept as %v (%v)", style, s.GetKafka().GetCanalValueStyle(), err)
		}
	}
	for _, k := range []*taskv1.KafkaOptions{
		{CanalValueStyle: 9},
		{CanalValueStyle: taskv1.CanalValueStyle_CANAL_VALUE_STYLE_FLINK, Format: taskv1.DataFormat_DATA_FORMAT_DTS_AVRO},
	} {
		in := validSpec()
		in.Kafka = k
		if _, err := Normalize(in); err == nil || !strings.Contains(err.Error(), "kafka.canal_value_style") {
			t.Errorf("%v: err = %v, want kafka.canal_value_style named", k, err)
		}
	}
	in := validSpec()
	in.Kafka = &taskv1.KafkaOptions{CanalMysqlTypeNames: true, Format: taskv1.DataFormat_DATA_FORMAT_DTS_AVRO}
	if _, err := Normalize(in); err == nil || !strings.Contains(err.Error(), "kafka.canal_mysql_type_names") {
		t.Errorf("MySQL type names with DTS Avro: err = %v, want kafka.canal_mysql_type_names named", err)
	}
	in.Kafka.Format = taskv1.DataFormat_DATA_FORMAT_CANAL_JSON
	if _, err := Normalize(in); err != nil {
		t.Errorf("MySQL type names with Canal JSON: %v", err)
	}
}

func TestDebeziumOptionsNeedTheDebeziumFormat(t *testing.T) {
	dbz := taskv1.DataFormat_DATA_FORMAT_DEBEZIUM_JSON
	for _, c := range []struct {
		k     *taskv1.KafkaOptions
		field string // "" when valid
	}{
		{&taskv1.KafkaOptions{Format: dbz, DebeziumSchemas: true, DebeziumNoTombstones: true, DebeziumServerName: "srv",
			DebeziumDecimalHandling: taskv1.DebeziumDecimalHandling_DEBEZIUM_DECIMAL_HANDLING_DOUBLE}, ""},
		{&taskv1.KafkaOptions{DebeziumSchemas: true}, "kafka.debezium_schemas"},
		{&taskv1.KafkaOptions{Format: taskv1.DataFormat_DATA_FORMAT_DTS_AVRO, DebeziumNoTombstones: true}, "kafka.debezium_no_tombstones"},
		{&taskv1.KafkaOptions{DebeziumServerName: "srv"}, "kafka.debezium_server_name"},
		{&taskv1.KafkaOptions{Format: dbz, DebeziumDecimalHandling: 7}, "kafka.debezium_decimal_handling"},
	} {
		in := validSpec()
		in.Kafka = c.k
		_, err := Normalize(in)
		switch {
		case c.field == "" && err != nil:
			t.Errorf("%v: %v", c.k, err)
		case c.field != "" && (err == nil || !strings.Contains(err.Error(), c.field)):
			t.Errorf("%v: err = %v, want %s named", c.k, err, c.field)
		}
	}
}

func TestKafkaSecurityIsCheckedAndSupported(t *testing.T) {
	pw := &taskv1.SecretRef{Source: &taskv1.SecretRef_File{File: "/secrets/kafka-password"}}
	ca := &taskv1.SecretRef{Source: &taskv1.SecretRef_Env{Env: "KAFKA_CA_PEM"}}
	for _, d := range []*taskv1.KafkaEndpoint{
		{Security: taskv1.KafkaSecurity_KAFKA_SECURITY_SASL_SCRAM_SHA_256, SaslUser: "u", SaslPassword: pw},
		{Security: taskv1.KafkaSecurity_KAFKA_SECURITY_SASL_SCRAM_SHA_512, SaslUser: "u", SaslPassword: pw},
		{Security: taskv1.KafkaSecurity_KAFKA_SECURITY_TLS},
		{Security: taskv1.KafkaSecurity_KAFKA_SECURITY_TLS, TlsCa: ca},
		{Security: taskv1.KafkaSecurity_KAFKA_SECURITY_SASL_SSL_SCRAM_SHA_256, SaslUser: "u", SaslPassword: pw, TlsCa: ca},
		{Security: taskv1.KafkaSecurity_KAFKA_SECURITY_SASL_SSL_SCRAM_SHA_512, SaslUser: "u", SaslPassword: pw},
	} {
		s := validSpec()
		d.BootstrapServers, d.Topic = "k:9093", "t"
		s.Destination = d
		_, err := Normalize(s)
		if err != nil {
			t.Fatalf("%v: %v", d, err)
		}
	}
	for _, tc := range []struct {
		d     *taskv1.KafkaEndpoint
		wants []string
	}{
		{&taskv1.KafkaEndpoint{Security: taskv1.KafkaSecurity_KAFKA_SECURITY_SASL_SCRAM_SHA_256},
			[]string{"destination.sasl_user: required", "destination.sasl_password: required", `{"file": "/path"}`}},
		{&taskv1.KafkaEndpoint{Security: taskv1.KafkaSecurity_KAFKA_SECURITY_SASL_SSL_SCRAM_SHA_512, SaslUser: "u",
			SaslPassword: &taskv1.SecretRef{Source: &taskv1.SecretRef_File{File: "secrets/pw"}}},
			[]string{"destination.sasl_password", "absolute path"}},
		{&taskv1.KafkaEndpoint{Security: taskv1.KafkaSecurity_KAFKA_SECURITY_PLAINTEXT, SaslUser: "u", TlsCa: ca},
			[]string{"destination.sasl_user", "sends no user", "destination.tls_ca", "does not use TLS"}},
		{&taskv1.KafkaEndpoint{Security: taskv1.KafkaSecurity_KAFKA_SECURITY_SASL_SCRAM_SHA_256, SaslUser: "u", SaslPassword: pw, TlsCa: ca},
			[]string{"destination.tls_ca", "does not use TLS"}},
		{&taskv1.KafkaEndpoint{Security: taskv1.KafkaSecurity_KAFKA_SECURITY_TLS, TlsCa: &taskv1.SecretRef{}},
			[]string{"destination.tls_ca", "PEM file"}},
		{&taskv1.KafkaEndpoint{Security: taskv1.KafkaSecurity(99)}, []string{"destination.security", "not a known"}},
	} {
		s := validSpec()
		tc.d.BootstrapServers, tc.d.Topic = "k:9093", "t"
		s.Destination = tc.d
		_, err := Normalize(s)
		for _, want := range tc.wants {
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("%v: err = %v, want it to mention %q", tc.d, err, want)
			}
		}
	}
}

func TestExactlyOnceFullSyncIsAccepted(t *testing.T) {
	s := validSpec()
	s.Kafka = &taskv1.KafkaOptions{ExactlyOnce: true}
	s.SyncTypes = &taskv1.SyncTypes{Full: true, Schema: true}
	_, err := Normalize(s)
	if err != nil {
		t.Fatal(err)
	}
	// Keyless tables are refused at setup, where the tables are known.
}

func TestNormalizeAcknowledgedWarnings(t *testing.T) {
	in := validSpec()
	in.AcknowledgedWarnings = []string{"toast", "primary_key", "toast"}
	s, err := Normalize(in)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(s.GetAcknowledgedWarnings(), ","); got != "toast,primary_key" {
		t.Errorf("acknowledged_warnings = %s, want toast,primary_key (repeats dropped)", got)
	}
	// wal_level can only fail, and a misspelt id would acknowledge nothing.
	in.AcknowledgedWarnings = []string{"primary_key", "wal_level", "primary_keys"}
	_, err = Normalize(in)
	for _, want := range []string{`acknowledged_warnings[1]: "wal_level"`, `acknowledged_warnings[2]: "primary_keys"`, "use one of primary_key, "} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v, want it to say %q", err, want)
		}
	}
}

func TestSourceHosts(t *testing.T) {
	s := validSpec()
	s.Source.Host = ""
	s.Source.Hosts = []*taskv1.HostPort{{Host: "pg-a"}, {Host: "pg-b", Port: 6432}}
	n, err := Normalize(s)
	if err != nil {
		t.Fatal(err)
	}
	if got := n.GetSource().GetHosts(); got[0].GetPort() != 5432 || got[1].GetPort() != 6432 || n.GetSource().GetPort() != 0 {
		t.Errorf("hosts %v port %d: want the default port on pg-a only and no source.port", got, n.GetSource().GetPort())
	}
	for _, tc := range []struct {
		name  string
		edit  func(*taskv1.SourceEndpoint)
		wants []string
	}{
		{"both forms", func(s *taskv1.SourceEndpoint) { s.Host = "db" }, []string{"source.hosts", "not both"}},
		{"unnamed host", func(s *taskv1.SourceEndpoint) { s.Hosts[1].Host = "" }, []string{"source.hosts[1].host", "required"}},
		{"bad port", func(s *taskv1.SourceEndpoint) { s.Hosts[0].Port = 70000 }, []string{"source.hosts[0].port", "1 to 65535"}},
		{"duplicate", func(s *taskv1.SourceEndpoint) { s.Hosts[1].Port = 5432; s.Hosts[1].Host = "pg-a" },
			[]string{"source.hosts[1]", "pg-a:5432 is already source.hosts[0]"}},
		{"neither", func(s *taskv1.SourceEndpoint) { s.Hosts = nil }, []string{"source.host", "required"}},
	} {
		bad := proto.Clone(s).(*taskv1.TaskSpec)
		tc.edit(bad.Source)
		_, err := Normalize(bad)
		for _, w := range tc.wants {
			if err == nil || !strings.Contains(err.Error(), w) {
				t.Errorf("%s: error %v does not mention %q", tc.name, err, w)
			}
		}
	}
}

// Transforms that are wrong whatever the table are refused by Normalize,
// named by their place in the spec; the precheck types them.
func TestNormalizeRefusesBrokenTransforms(t *testing.T) {
	s := validSpec()
	s.Objects.Transforms = []*taskv1.Transform{{Kind: &taskv1.Transform_Filter{Filter: "row.id >"}}}
	s.Objects.Tables[0].Transforms = []*taskv1.Transform{
		{Kind: &taskv1.Transform_Key{Key: `string(row.id)`}},
		{},
		{Kind: &taskv1.Transform_Mask{Mask: &taskv1.MaskColumn{Column: "email"}}},
	}
	_, err := Normalize(s)
	for _, want := range []string{"objects.transforms[0]: ERROR: <input>:1:9: Syntax error", "objects.tables[0].transforms[1]: an empty transform",
		"objects.tables[0].transforms[2]: mask: choose hash"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Normalize: %v, want %q", err, want)
		}
	}
	if err != nil && strings.Contains(err.Error(), "transforms[0]: key") {
		t.Errorf("a good key transform was refused: %v", err)
	}
}
