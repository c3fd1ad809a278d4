package testenv

import (
	"errors"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

// ReadCommittedKeys counts topic's messages by key as a read_committed
// consumer, reading every partition until want distinct keys arrived and
// then 2 s more, long enough for duplicates, which would follow at once.
func ReadCommittedKeys(t testing.TB, bootstrap, topic string, want int, within time.Duration) map[string]int {
	t.Helper()
	Integration(t)
	c, err := kafka.NewConsumer(&kafka.ConfigMap{
		"bootstrap.servers": bootstrap, "group.id": "ferry-test-" + topic, "enable.auto.commit": false,
		"auto.offset.reset": "earliest", "isolation.level": "read_committed", "log_level": 3,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.Close() }()
	if err := c.Subscribe(topic, nil); err != nil {
		t.Fatal(err)
	}
	counts := map[string]int{}
	deadline := time.Now().Add(within)
	var quietUntil time.Time
	for {
		now := time.Now()
		if len(counts) >= want && quietUntil.IsZero() {
			quietUntil = now.Add(2 * time.Second)
		}
		if !quietUntil.IsZero() && now.After(quietUntil) {
			return counts
		}
		if now.After(deadline) {
			t.Fatalf("read %d of %d keys from %s in %s: %v", len(counts), want, topic, within, counts)
		}
		m, err := c.ReadMessage(200 * time.Millisecond)
		if err != nil {
			var ke kafka.Error
			if errors.As(err, &ke) && ke.IsTimeout() {
				continue
			}
			t.Fatal(err)
		}
		counts[string(m.Key)]++
	}
}
