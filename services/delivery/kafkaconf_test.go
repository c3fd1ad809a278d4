package delivery

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	taskv1 "github.com/ferry-cdc/ferry/gen/ferry/task/v1"
)

func TestProducerConfig(t *testing.T) {
	ep := &taskv1.KafkaEndpoint{BootstrapServers: "a:9092,b:9092"}
	c, err := producerConfig(ep, nil, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]any{"compression.type": "lz4", "acks": "all", "enable.idempotence": true,
		"security.protocol": "PLAINTEXT", "linger.ms": 5, "batch.size": 1_000_000, "message.max.bytes": 1_000_000} {
		if c[k] != want {
			t.Errorf("%s = %v, want %v", k, c[k], want)
		}
	}
	c, err = producerConfig(ep, &taskv1.KafkaOptions{Compression: taskv1.Compression_COMPRESSION_GZIP, Acks: taskv1.Acks_ACKS_LEADER}, 4096, 20_000_000)
	if err != nil {
		t.Fatal(err)
	}
	if c["compression.type"] != "gzip" || c["acks"] != "1" || c["enable.idempotence"] != nil || c["batch.size"] != 3996 || c["message.max.bytes"] != 20_000_100 {
		t.Errorf("config %v", c)
	}
	c, _ = producerConfig(ep, &taskv1.KafkaOptions{Compression: taskv1.Compression_COMPRESSION_SNAPPY, Acks: taskv1.Acks_ACKS_NONE}, 0, 0)
	if c["compression.type"] != "snappy" || c["acks"] != "0" {
		t.Errorf("config %v", c)
	}

	t.Setenv("FERRY_TEST_SASL_PW", "s3cret-pw")
	sasl := &taskv1.KafkaEndpoint{BootstrapServers: "a:9092", Security: taskv1.KafkaSecurity_KAFKA_SECURITY_SASL_SCRAM_SHA_512,
		SaslUser: "ferry", SaslPassword: &taskv1.SecretRef{Source: &taskv1.SecretRef_Env{Env: "FERRY_TEST_SASL_PW"}}}
	c, err = producerConfig(sasl, &taskv1.KafkaOptions{Compression: taskv1.Compression_COMPRESSION_ZSTD}, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if c["security.protocol"] != "SASL_PLAINTEXT" || c["sasl.mechanisms"] != "SCRAM-SHA-512" || c["sasl.username"] != "ferry" || c["sasl.password"] != "s3cret-pw" || c["compression.type"] != "zstd" {
		t.Errorf("sasl config has wrong settings")
	}
	sasl.Security = taskv1.KafkaSecurity_KAFKA_SECURITY_SASL_SCRAM_SHA_256
	if c, _ = clientConfig(sasl); c["sasl.mechanisms"] != "SCRAM-SHA-256" {
		t.Errorf("mechanism %v", c["sasl.mechanisms"])
	}
	// Errors never carry the password.
	for _, bad := range []*taskv1.KafkaEndpoint{
		{BootstrapServers: "a:9092", Security: taskv1.KafkaSecurity_KAFKA_SECURITY_SASL_SCRAM_SHA_256, SaslPassword: sasl.SaslPassword},
		{BootstrapServers: "a:9092", Security: taskv1.KafkaSecurity_KAFKA_SECURITY_TLS, SaslUser: "u", SaslPassword: sasl.SaslPassword},
		{BootstrapServers: "a:9092", Security: taskv1.KafkaSecurity_KAFKA_SECURITY_SASL_SCRAM_SHA_256, SaslUser: "u",
			SaslPassword: &taskv1.SecretRef{Source: &taskv1.SecretRef_Env{Env: "FERRY_TEST_UNSET_VAR"}}},
		{Security: taskv1.KafkaSecurity_KAFKA_SECURITY_SASL_SCRAM_SHA_256},
	} {
		_, err := clientConfig(bad)
		if err == nil {
			t.Fatalf("accepted %v", bad)
		}
		if strings.Contains(err.Error(), "s3cret") || strings.Contains(fmt.Sprint(bad), "s3cret") {
			t.Fatalf("error carries the password: %v", err)
		}
	}
	if c, _ = clientConfig(&taskv1.KafkaEndpoint{BootstrapServers: "a:9093", Security: taskv1.KafkaSecurity_KAFKA_SECURITY_TLS}); c["security.protocol"] != "SSL" {
		t.Errorf("TLS protocol %v", c["security.protocol"])
	}
}

func TestClientConfigTLS(t *testing.T) {
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	const pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
	if err := os.WriteFile(caFile, []byte(pem), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("FERRY_TEST_CA_PEM", pem)
	t.Setenv("FERRY_TEST_SASL_PW", "s3cret-pw")
	pw := &taskv1.SecretRef{Source: &taskv1.SecretRef_Env{Env: "FERRY_TEST_SASL_PW"}}
	fileCA := &taskv1.SecretRef{Source: &taskv1.SecretRef_File{File: caFile}}

	c, err := clientConfig(&taskv1.KafkaEndpoint{BootstrapServers: "a:9096", Security: taskv1.KafkaSecurity_KAFKA_SECURITY_SASL_SSL_SCRAM_SHA_512,
		SaslUser: "u", SaslPassword: pw, TlsCa: fileCA})
	if err != nil {
		t.Fatal(err)
	}
	if c["security.protocol"] != "SASL_SSL" || c["sasl.mechanisms"] != "SCRAM-SHA-512" || c["ssl.ca.location"] != caFile || c["sasl.username"] != "u" {
		t.Errorf("SASL_SSL config: protocol %v, mechanism %v, CA %v", c["security.protocol"], c["sasl.mechanisms"], c["ssl.ca.location"])
	}
	c, err = clientConfig(&taskv1.KafkaEndpoint{BootstrapServers: "a:9095", Security: taskv1.KafkaSecurity_KAFKA_SECURITY_TLS,
		TlsCa: &taskv1.SecretRef{Source: &taskv1.SecretRef_Env{Env: "FERRY_TEST_CA_PEM"}}})
	if err != nil {
		t.Fatal(err)
	}
	if c["security.protocol"] != "SSL" || c["ssl.ca.pem"] != pem || c["ssl.ca.location"] != nil {
		t.Errorf("TLS with a PEM variable: %v", c)
	}
	c, _ = clientConfig(&taskv1.KafkaEndpoint{BootstrapServers: "a:9096", Security: taskv1.KafkaSecurity_KAFKA_SECURITY_SASL_SSL_SCRAM_SHA_256, SaslUser: "u", SaslPassword: pw})
	if c["sasl.mechanisms"] != "SCRAM-SHA-256" || c["security.protocol"] != "SASL_SSL" || c["ssl.ca.location"] != nil {
		t.Errorf("SASL_SSL without a CA uses the system store: %v %v %v", c["security.protocol"], c["sasl.mechanisms"], c["ssl.ca.location"])
	}

	for name, bad := range map[string]*taskv1.KafkaEndpoint{
		"kafka.tls_ca":        {BootstrapServers: "a", Security: taskv1.KafkaSecurity_KAFKA_SECURITY_PLAINTEXT, TlsCa: fileCA},
		"does not use TLS":    {BootstrapServers: "a", Security: taskv1.KafkaSecurity_KAFKA_SECURITY_SASL_SCRAM_SHA_256, SaslUser: "u", SaslPassword: pw, TlsCa: fileCA},
		"no such file":        {BootstrapServers: "a", Security: taskv1.KafkaSecurity_KAFKA_SECURITY_TLS, TlsCa: &taskv1.SecretRef{Source: &taskv1.SecretRef_File{File: caFile + ".missing"}}},
		"no PEM certificate":  {BootstrapServers: "a", Security: taskv1.KafkaSecurity_KAFKA_SECURITY_TLS, TlsCa: &taskv1.SecretRef{Source: &taskv1.SecretRef_Env{Env: "FERRY_TEST_SASL_PW"}}},
		"kafka.sasl_password": {BootstrapServers: "a", Security: taskv1.KafkaSecurity_KAFKA_SECURITY_SASL_SSL_SCRAM_SHA_256, SaslUser: "u"},
		"kafka.sasl_user":     {BootstrapServers: "a", Security: taskv1.KafkaSecurity_KAFKA_SECURITY_PLAINTEXT, SaslUser: "u", SaslPassword: pw},
	} {
		_, err := clientConfig(bad)
		if err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("%v: error %v, want one naming %q", bad, err, name)
			continue
		}
		if strings.Contains(err.Error(), "s3cret") {
			t.Errorf("error carries the password: %v", err)
		}
	}
}

func TestSecurityStatusRedacts(t *testing.T) {
	ep := &taskv1.KafkaEndpoint{BootstrapServers: "b:9094", Security: taskv1.KafkaSecurity_KAFKA_SECURITY_SASL_SCRAM_SHA_512, SaslUser: "alice"}
	err := securityStatus(ep, kafka.NewError(kafka.ErrAuthentication, "bad proof for s3cret-pw", false), "s3cret-pw")
	if status.Code(err) != codes.Unauthenticated || strings.Contains(err.Error(), "s3cret") ||
		!strings.Contains(err.Error(), `"alice"`) || !strings.Contains(err.Error(), "b:9094") || !strings.Contains(err.Error(), "SCRAM-SHA-512") {
		t.Errorf("auth failure: %v", err)
	}
	ep.Security, ep.TlsCa = taskv1.KafkaSecurity_KAFKA_SECURITY_TLS, &taskv1.SecretRef{Source: &taskv1.SecretRef_File{File: "/etc/ca.pem"}}
	if err := securityStatus(ep, kafka.NewError(kafka.ErrSsl, "certificate verify failed", false), ""); status.Code(err) != codes.FailedPrecondition ||
		!strings.Contains(err.Error(), "destination.tls_ca (/etc/ca.pem)") {
		t.Errorf("TLS failure: %v", err)
	}
}

func TestKafkaCodes(t *testing.T) {
	for code, want := range map[kafka.ErrorCode]codes.Code{
		kafka.ErrTransport: codes.Unavailable, kafka.ErrAllBrokersDown: codes.Unavailable, kafka.ErrMsgTimedOut: codes.Unavailable,
		kafka.ErrTimedOut: codes.Unavailable, kafka.ErrRequestTimedOut: codes.Unavailable,
		kafka.ErrUnknownTopicOrPart: codes.FailedPrecondition, kafka.ErrUnknownTopic: codes.FailedPrecondition,
		kafka.ErrMsgSizeTooLarge: codes.InvalidArgument, kafka.ErrTopicAuthorizationFailed: codes.PermissionDenied,
		kafka.ErrAuthentication: codes.Unauthenticated, kafka.ErrSaslAuthenticationFailed: codes.Unauthenticated,
		kafka.ErrSsl: codes.FailedPrecondition,
	} {
		if got := kafkaCode(kafka.NewError(code, "x", false)); got != want {
			t.Errorf("%v -> %v, want %v", code, got, want)
		}
	}
}
