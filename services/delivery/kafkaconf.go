package delivery

import (
	"fmt"
	"os"
	"strings"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"

	taskv1 "github.com/ferry-cdc/ferry/gen/ferry/task/v1"
	"github.com/ferry-cdc/ferry/services/internal/secret"
)

const (
	// lingerMs lets librdkafka fill batches for 5 ms: enough to batch a
	// busy stream, short enough not to matter for latency.
	lingerMs = 5
	// batchBytes is librdkafka's cap on one partition's batch before
	// compression. One megabyte per request amortizes per-request costs
	// (about 5,000 typical 200-byte Canal messages) and stays under the
	// broker's default max.message.bytes (1,048,588), which the compressed
	// batch must not exceed. It is lowered when a task's topic allows less.
	batchBytes = 1_000_000
	// batchMessages lifts librdkafka's default of 10,000 messages per batch
	// so that batchBytes, not the message count, ends a batch of small rows.
	batchMessages = 100_000
	// queueMessages and queueKBytes bound the producer's local queue. At
	// about a second of peak throughput it rides out a broker hiccup, and
	// past it Produce pushes back on capture instead of growing: with
	// librdkafka's defaults (100k messages and 1 GiB, or the 1M messages
	// this used to allow) a burst took delivery's RSS past 256 MB.
	queueMessages = 200_000
	queueKBytes   = 64 << 10
	// eventsChannel is confluent-kafka-go's buffer of delivery reports
	// between librdkafka and readEvents, 1,000,000 by default. Its buffer
	// is one object full of pointers that the garbage collector scans on
	// every cycle (16 MB at the default), and librdkafka stops counting a
	// message against queueMessages once its report is in it, so a
	// reader that falls behind let reports pile up past that bound. A
	// few of readEvents' bursts are enough to keep it busy.
	eventsChannel = 4 * maxReportBurst
	// defaultTopicMaxBytes is Kafka's default max.message.bytes, used when a
	// topic's own limit cannot be read.
	defaultTopicMaxBytes = 1_048_588
	// recordOverhead is what a one-record batch adds to key and value on
	// the wire (61-byte batch header plus the record's own framing).
	recordOverhead = 100
)

// clientConfig is the part of the librdkafka configuration that producers
// and admin clients share: servers and security. Errors never contain the
// password.
func clientConfig(ep *taskv1.KafkaEndpoint) (kafka.ConfigMap, error) {
	servers := strings.TrimSpace(ep.GetBootstrapServers())
	if servers == "" {
		return nil, fmt.Errorf("kafka.bootstrap_servers is empty")
	}
	c := kafka.ConfigMap{
		"bootstrap.servers": servers,
		"client.id":         "ferry-delivery",
	}
	sec := ep.GetSecurity()
	var protocol, mech string
	switch sec {
	case taskv1.KafkaSecurity_KAFKA_SECURITY_UNSPECIFIED, taskv1.KafkaSecurity_KAFKA_SECURITY_PLAINTEXT:
		protocol = "PLAINTEXT"
	case taskv1.KafkaSecurity_KAFKA_SECURITY_SASL_SCRAM_SHA_256:
		protocol, mech = "SASL_PLAINTEXT", "SCRAM-SHA-256"
	case taskv1.KafkaSecurity_KAFKA_SECURITY_SASL_SCRAM_SHA_512:
		protocol, mech = "SASL_PLAINTEXT", "SCRAM-SHA-512"
	case taskv1.KafkaSecurity_KAFKA_SECURITY_TLS:
		protocol = "SSL"
	case taskv1.KafkaSecurity_KAFKA_SECURITY_SASL_SSL_SCRAM_SHA_256:
		protocol, mech = "SASL_SSL", "SCRAM-SHA-256"
	case taskv1.KafkaSecurity_KAFKA_SECURITY_SASL_SSL_SCRAM_SHA_512:
		protocol, mech = "SASL_SSL", "SCRAM-SHA-512"
	default:
		return nil, fmt.Errorf("unknown kafka.security %v", sec)
	}
	c["security.protocol"] = protocol
	if mech != "" {
		if err := setSCRAM(c, ep, mech); err != nil {
			return nil, err
		}
	} else if ep.GetSaslUser() != "" {
		// A user the security setting would not send is a misconfiguration,
		// not something to ignore.
		return nil, fmt.Errorf("kafka.sasl_user is set but kafka.security %s sends no user; use SASL_SCRAM_SHA_256/512 (or SASL_SSL_SCRAM_SHA_256/512 over TLS) or clear kafka.sasl_user", sec)
	}
	if strings.HasSuffix(protocol, "SSL") {
		return c, setCA(c, ep.GetTlsCa())
	}
	if ep.GetTlsCa() != nil {
		return nil, fmt.Errorf("kafka.tls_ca is set but kafka.security %s does not use TLS; use TLS or SASL_SSL_SCRAM_SHA_256/512, or clear kafka.tls_ca", sec)
	}
	return c, nil
}

func setSCRAM(c kafka.ConfigMap, ep *taskv1.KafkaEndpoint, mech string) error {
	if ep.GetSaslUser() == "" {
		return fmt.Errorf("kafka.security %s needs kafka.sasl_user", ep.GetSecurity())
	}
	if ep.GetSaslPassword().GetSource() == nil {
		return fmt.Errorf("kafka.security %s needs kafka.sasl_password (a file or environment variable reference)", ep.GetSecurity())
	}
	pw, err := secret.Resolve(ep.GetSaslPassword())
	if err != nil {
		return fmt.Errorf("resolving kafka.sasl_password: %w", err)
	}
	c["sasl.mechanisms"] = mech
	c["sasl.username"] = ep.GetSaslUser()
	c["sasl.password"] = pw
	return nil
}

// setCA points librdkafka at the CA that verifies the brokers: a file by
// path, so librdkafka reads it itself, or PEM text from a variable. Without
// one, librdkafka uses the system's CA store.
func setCA(c kafka.ConfigMap, ref *taskv1.SecretRef) error {
	switch src := ref.GetSource().(type) {
	case nil:
		return nil
	case *taskv1.SecretRef_File:
		f, err := os.Open(src.File)
		if err != nil {
			return fmt.Errorf("kafka.tls_ca: %w (check the path and that this service may read it)", err)
		}
		_ = f.Close()
		c["ssl.ca.location"] = src.File
	default:
		pem, err := secret.Resolve(ref)
		if err != nil {
			return fmt.Errorf("resolving kafka.tls_ca: %w", err)
		}
		if !strings.Contains(pem, "-----BEGIN CERTIFICATE-----") {
			return fmt.Errorf("kafka.tls_ca: the variable holds no PEM certificate (-----BEGIN CERTIFICATE-----)")
		}
		c["ssl.ca.pem"] = pem
	}
	return nil
}

// producerConfig is the full producer configuration. maxTopicBytes are the
// smallest and largest max.message.bytes of the task's topics (0 when
// unknown).
func producerConfig(ep *taskv1.KafkaEndpoint, opts *taskv1.KafkaOptions, minTopicBytes, maxTopicBytes int) (kafka.ConfigMap, error) {
	c, err := clientConfig(ep)
	if err != nil {
		return nil, err
	}
	switch opts.GetCompression() {
	case taskv1.Compression_COMPRESSION_UNSPECIFIED, taskv1.Compression_COMPRESSION_LZ4:
		c["compression.type"] = "lz4"
	case taskv1.Compression_COMPRESSION_GZIP:
		c["compression.type"] = "gzip"
	case taskv1.Compression_COMPRESSION_SNAPPY:
		c["compression.type"] = "snappy"
	case taskv1.Compression_COMPRESSION_ZSTD:
		c["compression.type"] = "zstd"
	default:
		return nil, fmt.Errorf("unknown kafka options compression %v", opts.GetCompression())
	}
	switch opts.GetAcks() {
	case taskv1.Acks_ACKS_UNSPECIFIED, taskv1.Acks_ACKS_ALL:
		c["acks"] = "all"
		c["enable.idempotence"] = true
	case taskv1.Acks_ACKS_LEADER:
		c["acks"] = "1"
	case taskv1.Acks_ACKS_NONE:
		c["acks"] = "0"
	default:
		return nil, fmt.Errorf("unknown kafka options acks %v", opts.GetAcks())
	}
	batch := batchBytes
	if minTopicBytes > 0 && minTopicBytes-recordOverhead < batch {
		batch = max(minTopicBytes-recordOverhead, 1)
	}
	msgMax := 1_000_000
	if maxTopicBytes+recordOverhead > msgMax {
		msgMax = min(maxTopicBytes+recordOverhead, 1_000_000_000)
	}
	c["linger.ms"] = lingerMs
	c["batch.size"] = batch
	c["batch.num.messages"] = batchMessages
	c["queue.buffering.max.messages"] = queueMessages
	c["queue.buffering.max.kbytes"] = queueKBytes
	c["message.max.bytes"] = msgMax
	c["go.delivery.report.fields"] = "none"
	c["go.events.channel.size"] = eventsChannel
	// Nothing produces through ProduceChannel; its default buffer is
	// 8 MB of pointers.
	c["go.produce.channel.size"] = 0
	c["go.logs.channel.enable"] = true
	return c, nil
}
