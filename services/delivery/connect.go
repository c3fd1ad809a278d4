package delivery

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	taskv1 "github.com/ferry-cdc/ferry/gen/ferry/task/v1"
)

// connectTimeout bounds the wait for the first broker to answer.
const connectTimeout = 15 * time.Second

// kafkaConn is an admin client on a producer handle. A plain admin client
// drops librdkafka's error events, so a wrong password or an untrusted
// certificate would only show as a timeout; the producer's event channel
// carries them.
type kafkaConn struct {
	admin *kafka.AdminClient
	p     *kafka.Producer
	ep    *taskv1.KafkaEndpoint
	pw    string           // redacted from every error
	sec   chan kafka.Error // authentication and TLS failures
	done  chan struct{}    // the event reader has stopped
}

// dialKafka connects with the endpoint's security settings and waits until
// a broker answers. A rejected user or certificate fails at once with
// Unauthenticated or FailedPrecondition, naming the broker and the fix;
// no answer within connectTimeout is Unavailable.
func dialKafka(ctx context.Context, logger *slog.Logger, ep *taskv1.KafkaEndpoint) (*kafkaConn, error) {
	conf, err := clientConfig(ep)
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	pw, _ := conf["sasl.password"].(string)
	// This producer sends nothing: its channels carry a few events, not
	// the 1,000,000-slot buffers (24 MB) confluent-kafka-go allocates by
	// default on every stream start.
	conf["go.events.channel.size"] = 100
	conf["go.produce.channel.size"] = 0
	p, err := kafka.NewProducer(&conf)
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "creating a Kafka client for %s: %s", ep.GetBootstrapServers(), redact(err.Error(), pw))
	}
	admin, err := kafka.NewAdminClientFromProducer(p)
	if err != nil {
		p.Close()
		return nil, status.Errorf(codes.Internal, "creating the Kafka admin client: %v", err)
	}
	c := &kafkaConn{admin: admin, p: p, ep: ep, pw: pw, sec: make(chan kafka.Error, 1), done: make(chan struct{})}
	go c.readEvents()
	if err := c.waitReady(ctx); err != nil {
		c.Close()
		logger.WarnContext(ctx, "cannot use Kafka", "brokers", ep.GetBootstrapServers(), "security", ep.GetSecurity().String(),
			"user", ep.GetSaslUser(), "error", err)
		return nil, err
	}
	return c, nil
}

// Close releases the client.
func (c *kafkaConn) Close() {
	c.admin.Close()
	c.p.Close()
	<-c.done
}

func (c *kafkaConn) readEvents() {
	defer close(c.done)
	for ev := range c.p.Events() {
		if ke, ok := ev.(kafka.Error); ok && securityCode(ke.Code()) {
			select {
			case c.sec <- ke:
			default:
			}
		}
	}
}

// waitReady polls broker metadata until it arrives, a security failure is
// reported, or the deadline passes.
func (c *kafkaConn) waitReady(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, connectTimeout)
	defer cancel()
	for {
		_, err := c.admin.GetMetadata(nil, false, 500)
		if err == nil {
			return nil
		}
		select {
		case ke := <-c.sec:
			return securityStatus(c.ep, ke, c.pw)
		case <-ctx.Done():
			return status.Errorf(codes.Unavailable, "no Kafka broker at %s answered within %s (last error: %s); check destination.bootstrap_servers, that the brokers run, and that destination.security matches their listener",
				c.ep.GetBootstrapServers(), connectTimeout, redact(err.Error(), c.pw))
		default:
		}
	}
}

// securityCode reports librdkafka errors that retrying cannot fix: the
// broker rejected the credentials, or the TLS handshake failed.
func securityCode(code kafka.ErrorCode) bool {
	switch code {
	case kafka.ErrAuthentication, kafka.ErrSaslAuthenticationFailed, kafka.ErrSsl:
		return true
	}
	return false
}

// securityStatus explains a security failure. pw, if not empty, never
// appears in the result.
func securityStatus(ep *taskv1.KafkaEndpoint, ke kafka.Error, pw string) error {
	msg := redact(ke.Error(), pw)
	servers := ep.GetBootstrapServers()
	if ke.Code() == kafka.ErrSsl {
		fix := "destination.tls_ca is unset, so the system's CA store was used; set destination.tls_ca to the PEM file of the CA that signed the brokers' certificates"
		if f := ep.GetTlsCa().GetFile(); f != "" {
			fix = fmt.Sprintf("check that destination.tls_ca (%s) holds the CA that signed the brokers' certificates", f)
		} else if v := ep.GetTlsCa().GetEnv(); v != "" {
			fix = fmt.Sprintf("check that the variable %s (destination.tls_ca) holds the CA that signed the brokers' certificates", v)
		}
		return status.Errorf(codes.FailedPrecondition, "the TLS handshake with Kafka at %s failed: %s; %s; also check that the certificates name the host in destination.bootstrap_servers and that the listener speaks TLS",
			servers, msg, fix)
	}
	return status.Errorf(codes.Unauthenticated, "Kafka at %s rejected user %q (%s): %s; check destination.sasl_user, the password that destination.sasl_password points at, and that the user has %s credentials on the brokers",
		servers, ep.GetSaslUser(), ep.GetSecurity(), msg, mechanismOf(ep.GetSecurity()))
}

func mechanismOf(s taskv1.KafkaSecurity) string {
	if strings.HasSuffix(s.String(), "512") {
		return "SCRAM-SHA-512"
	}
	return "SCRAM-SHA-256"
}

// redact removes a secret from a message that came from a library.
func redact(msg, secret string) string {
	if secret == "" {
		return msg
	}
	return strings.ReplaceAll(msg, secret, "[redacted]")
}
