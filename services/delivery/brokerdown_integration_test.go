package delivery

import (
	"context"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	deliveryv1 "github.com/ferry-cdc/ferry/gen/ferry/delivery/v1"
	"github.com/ferry-cdc/ferry/services/testenv"
)

// TestDeliverBrokerStoppedFailsStream stops the only broker under an idle
// stream: the stream must end promptly with Unavailable naming the brokers
// and keep its safe LSN, rather than sit on the outage (librdkafka alone
// would wait message.timeout.ms, and forever with nothing to send) while
// the task looks healthy and its retry window never starts.
func TestDeliverBrokerStoppedFailsStream(t *testing.T) {
	b := testenv.StartKafka(t)
	client, _ := startServer(t)
	topic := testenv.UniqueName("ferry_brokerdown")
	ensure(t, client, b.Bootstrap(), &deliveryv1.TopicSpec{Name: topic})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	s := openSession(t, ctx, client, start(b.Bootstrap(), topic, nil))
	s.send(rowBatch(0, true))
	safe := rowBatch(0, false).GetWatermarkLsn()
	s.waitSafe(safe, time.Minute)

	b.Stop()
	began := time.Now()
	last, err := s.drain(30 * time.Second)
	t.Logf("the stream ended %s after the broker stopped: %v", time.Since(began).Round(time.Millisecond), err)
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("the stream ended with %v, want Unavailable", err)
	}
	if msg := status.Convert(err).Message(); !strings.Contains(msg, b.Bootstrap()) || !strings.Contains(msg, "unreachable") {
		t.Fatalf("error %q does not say the brokers at %s are unreachable", msg, b.Bootstrap())
	}
	if last.GetSafeLsn() != safe {
		t.Fatalf("final safe LSN %d, want %d, the last batch Kafka acknowledged", last.GetSafeLsn(), safe)
	}
}
