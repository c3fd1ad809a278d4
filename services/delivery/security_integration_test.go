package delivery

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	cdcv1 "github.com/ferry-cdc/ferry/gen/ferry/cdc/v1"
	deliveryv1 "github.com/ferry-cdc/ferry/gen/ferry/delivery/v1"
	taskv1 "github.com/ferry-cdc/ferry/gen/ferry/task/v1"
	"github.com/ferry-cdc/ferry/services/internal/secret"
	"github.com/ferry-cdc/ferry/services/testenv"
)

// logBuffer collects a server's slog output across goroutines.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// loggedServer serves delivery with every log record (librdkafka's
// included) captured, so tests can look for leaked passwords.
func loggedServer(t *testing.T) (deliveryv1.DeliveryServiceClient, *logBuffer) {
	t.Helper()
	logs := &logBuffer{}
	client, _ := startServerLogging(t, slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	return client, logs
}

// noSecret fails the test if secret occurs in any of texts.
func noSecret(t *testing.T, secret string, texts ...string) {
	t.Helper()
	if len(secret) < 8 {
		t.Fatalf("test secret %q is too short to search for", secret)
	}
	for _, s := range texts {
		if strings.Contains(s, secret) {
			t.Fatalf("the password leaked into: %s", s)
		}
	}
}

// TestSecuredKafkaRoundTrip creates topics and delivers rows over each of
// the local broker's secured listeners, then reads them back over
// PLAINTEXT.
func TestSecuredKafkaRoundTrip(t *testing.T) {
	plain := realKafka(t)
	for _, sec := range []taskv1.KafkaSecurity{
		taskv1.KafkaSecurity_KAFKA_SECURITY_SASL_SCRAM_SHA_256,
		taskv1.KafkaSecurity_KAFKA_SECURITY_SASL_SCRAM_SHA_512,
		taskv1.KafkaSecurity_KAFKA_SECURITY_TLS,
		taskv1.KafkaSecurity_KAFKA_SECURITY_SASL_SSL_SCRAM_SHA_256,
		taskv1.KafkaSecurity_KAFKA_SECURITY_SASL_SSL_SCRAM_SHA_512,
	} {
		t.Run(sec.String(), func(t *testing.T) { roundTrip(t, plain, testenv.KafkaSecured(t, sec)) })
	}
	// The CA as PEM text in a variable (ssl.ca.pem) rather than a file.
	t.Run("KAFKA_SECURITY_TLS_CA_FROM_ENV", func(t *testing.T) {
		ep := testenv.KafkaSecured(t, taskv1.KafkaSecurity_KAFKA_SECURITY_TLS)
		pem, err := os.ReadFile(ep.GetTlsCa().GetFile())
		if err != nil {
			t.Fatal(err)
		}
		t.Setenv("FERRY_TEST_KAFKA_CA_PEM", string(pem))
		ep.TlsCa = &taskv1.SecretRef{Source: &taskv1.SecretRef_Env{Env: "FERRY_TEST_KAFKA_CA_PEM"}}
		roundTrip(t, plain, ep)
	})
}

// roundTrip runs EnsureTopics and a Deliver stream of two rows over ep and
// reads the rows back over the PLAINTEXT listener plain.
func roundTrip(t *testing.T, plain string, ep *taskv1.KafkaEndpoint) {
	sec := ep.GetSecurity()
	pw, err := secret.Resolve(ep.GetSaslPassword())
	if err != nil {
		t.Fatalf("%v (run `make up` to create the local SCRAM users)", err)
	}
	client, logs := loggedServer(t)
	ep.Topic = testenv.UniqueName("ferry_sec")
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	resp, err := client.EnsureTopics(ctx, &deliveryv1.EnsureTopicsRequest{Kafka: ep, Topics: []*deliveryv1.TopicSpec{{Name: ep.Topic, Partitions: 2}}})
	if err != nil {
		t.Fatalf("EnsureTopics over %s at %s: %v", sec, ep.BootstrapServers, err)
	}
	if len(resp.GetCreated()) != 1 || resp.GetCreated()[0] != ep.Topic {
		t.Fatalf("EnsureTopics created %v, want [%s]", resp.GetCreated(), ep.Topic)
	}
	st := start("", ep.Topic, nil)
	st.Kafka = ep
	s := openSession(t, ctx, client, st)
	s.send(&cdcv1.ChangeBatch{Relations: []*cdcv1.Relation{ordersRelation()},
		Events: []*cdcv1.ChangeEvent{insert(71, "over "+sec.String(), 100), insert(72, "second", 101)}, WatermarkLsn: 110})
	last, err := s.finish(60 * time.Second)
	if err != nil {
		t.Fatalf("Deliver over %s: %v", sec, err)
	}
	if last.GetSafeLsn() != 110 || last.GetAckedEvents() != 2 {
		t.Fatalf("final %v, want safe LSN 110 with 2 acked", last)
	}
	var all string
	for _, m := range consume(t, plain, ep.Topic, 2, 30*time.Second) {
		all += string(m.Value)
	}
	if !strings.Contains(all, `"id":"71"`) || !strings.Contains(all, `"id":"72"`) || !strings.Contains(all, "over "+sec.String()) {
		t.Fatalf("messages over %s do not carry the rows: %s", sec, all)
	}
	if !strings.Contains(logs.String(), "delivery started") {
		t.Fatalf("the service's log was not captured: %s", logs)
	}
	if pw != "" {
		noSecret(t, pw, logs.String())
	}
}

// TestSecuredKafkaWrongPassword: a rejected password fails EnsureTopics and
// a stream's start at once with Unauthenticated, naming user, brokers and
// fields to fix, and the password appears in no error and no log line.
func TestSecuredKafkaWrongPassword(t *testing.T) {
	realKafka(t)
	for _, sec := range []taskv1.KafkaSecurity{
		taskv1.KafkaSecurity_KAFKA_SECURITY_SASL_SCRAM_SHA_256,
		taskv1.KafkaSecurity_KAFKA_SECURITY_SASL_SSL_SCRAM_SHA_512,
	} {
		t.Run(sec.String(), func(t *testing.T) {
			wrong := fmt.Sprintf("wrong-pw-%d-%d", os.Getpid(), time.Now().UnixNano())
			env := "FERRY_TEST_WRONG_PW_" + sec.String()
			t.Setenv(env, wrong)
			ep := testenv.KafkaSecured(t, sec)
			ep.SaslPassword = &taskv1.SecretRef{Source: &taskv1.SecretRef_Env{Env: env}}
			ep.Topic = testenv.UniqueName("ferry_sec_bad")
			client, logs := loggedServer(t)
			for what, err := range securedCalls(t, client, ep) {
				if status.Code(err) != codes.Unauthenticated {
					t.Fatalf("%s with a wrong password: %v, want Unauthenticated", what, err)
				}
				msg := status.Convert(err).Message()
				for _, want := range []string{ep.GetSaslUser(), ep.GetBootstrapServers(), "destination.sasl_password", "destination.sasl_user", "Authentication failed"} {
					if !strings.Contains(msg, want) {
						t.Errorf("%s: error %q does not mention %q", what, msg, want)
					}
				}
				noSecret(t, wrong, msg)
				t.Logf("%s: %s", what, msg)
			}
			// The failure is logged, with the user, yet without the password.
			if !strings.Contains(logs.String(), "cannot use Kafka") || !strings.Contains(logs.String(), ep.GetSaslUser()) {
				t.Fatalf("the failure was not logged with its user: %s", logs)
			}
			noSecret(t, wrong, logs.String())
		})
	}
}

// TestTLSWithoutCA: without destination.tls_ca the broker's certificate,
// signed by the local CA, is not trusted, and the error says which field
// to set.
func TestTLSWithoutCA(t *testing.T) {
	realKafka(t)
	ep := testenv.KafkaSecured(t, taskv1.KafkaSecurity_KAFKA_SECURITY_TLS)
	ep.TlsCa = nil
	ep.Topic = testenv.UniqueName("ferry_sec_noca")
	client, _ := loggedServer(t)
	for what, err := range securedCalls(t, client, ep) {
		if status.Code(err) != codes.FailedPrecondition {
			t.Fatalf("%s without a CA: %v, want FailedPrecondition", what, err)
		}
		msg := status.Convert(err).Message()
		for _, want := range []string{ep.GetBootstrapServers(), "certificate", "destination.tls_ca"} {
			if !strings.Contains(msg, want) {
				t.Errorf("%s: error %q does not mention %q", what, msg, want)
			}
		}
		t.Logf("%s: %s", what, msg)
	}
}

// securedCalls runs EnsureTopics and a Deliver start against ep, expecting
// both to fail within a few seconds, and returns their errors.
func securedCalls(t *testing.T, client deliveryv1.DeliveryServiceClient, ep *taskv1.KafkaEndpoint) map[string]error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	began := time.Now()
	_, ensureErr := client.EnsureTopics(ctx, &deliveryv1.EnsureTopicsRequest{Kafka: ep, Topics: []*deliveryv1.TopicSpec{{Name: ep.GetTopic()}}})
	st := start("", ep.GetTopic(), nil)
	st.Kafka = ep
	s := openSession(t, ctx, client, st)
	_, deliverErr := s.drain(20 * time.Second)
	if d := time.Since(began); d > connectTimeout {
		t.Errorf("the failures took %s; security errors must not wait for a timeout", d)
	}
	if ensureErr == nil || deliverErr == nil {
		t.Fatalf("EnsureTopics: %v; Deliver: %v; want both to fail", ensureErr, deliverErr)
	}
	return map[string]error{"EnsureTopics": ensureErr, "Deliver": deliverErr}
}
