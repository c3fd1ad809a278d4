package testenv

import (
	"testing"
	"time"
)

// TestStartKafkaRestarts starts a private broker, stops it and starts it
// again on the same port, and reports how long each step takes.
func TestStartKafkaRestarts(t *testing.T) {
	b := StartKafka(t)
	t.Logf("private broker %s: first start (format excluded) %s", b.Bootstrap(), b.StartTime)
	began := time.Now()
	b.Stop()
	t.Logf("stop (SIGTERM until exit) %s", time.Since(began))
	if err := metadataReady(b.Bootstrap()); err == nil {
		t.Fatalf("metadata from %s succeeded after Stop", b.Bootstrap())
	}
	b.Start()
	t.Logf("restart on the same port and data %s", b.StartTime)
	if err := metadataReady(b.Bootstrap()); err != nil {
		t.Fatalf("metadata after restart: %v", err)
	}
}
