package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

// chaosLog consumes a chaos topic (read_committed) and rebuilds the table:
// the last message per key wins, and a DELETE removes the key. Under
// at-least-once delivery a change may come again after a fault, so order is
// judged on first arrivals: a key's changes, each counted the first time it
// arrives, must come in increasing rank. A change that comes again is a
// duplicate. A snapshot row is a read of the row, not a change: one that
// repeats a version the stream (or an earlier read) already brought is a
// snapshot repeat, which chunked full sync may legitimately produce, and
// is reported apart.
type chaosLog struct {
	mu        sync.Mutex
	state     map[int64]int64 // id -> version, the rebuilt table
	top       map[int64]int64 // id -> highest rank arrived
	seen      map[chaosChange]bool
	firstSnap map[chaosChange]bool // whether the first arrival was a snapshot row
	// next is, per partition, the offset after the last message applied.
	// The consumer's group can lose its assignment in a long cut and read
	// the partition again from the start (it commits no offsets): what it
	// reads again is the consumer's repeat, not Kafka's, and is skipped.
	next        map[int32]kafka.Offset
	rereads     int
	at          kafka.TopicPartition // the message being applied, to name it
	messages    int
	duplicates  int
	snapRepeats int
	outOfOrder  int
	examples    []string
	dupExamples []string
	dupChanges  []chaosChange
	bad         []string
}

func collectChaosLog(t *testing.T, bootstrap, topic string) *chaosLog {
	t.Helper()
	c, err := kafka.NewConsumer(&kafka.ConfigMap{
		"bootstrap.servers": bootstrap, "group.id": uniqueName("e2e-chaos"), "auto.offset.reset": "earliest",
		"enable.auto.commit": false, "isolation.level": "read_committed",
		// The broker and the network to it fail on purpose.
		"log_level": 0,
	})
	if err != nil {
		t.Fatalf("Kafka consumer on %s: %v", bootstrap, err)
	}
	if err := c.Subscribe(topic, nil); err != nil {
		t.Fatalf("subscribing to %s: %v", topic, err)
	}
	l := &chaosLog{state: map[int64]int64{}, top: map[int64]int64{}, seen: map[chaosChange]bool{}, firstSnap: map[chaosChange]bool{},
		next: map[int32]kafka.Offset{}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			if msg, err := c.ReadMessage(200 * time.Millisecond); err == nil && l.fresh(msg.TopicPartition) {
				l.apply(msg.Value, isSnapshot(msg))
			}
		}
	}()
	t.Cleanup(func() {
		cancel()
		<-done
		_ = c.Close()
	})
	return l
}

// fresh tells whether the message at tp comes after every one applied
// from its partition.
func (l *chaosLog) fresh(tp kafka.TopicPartition) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if next, ok := l.next[tp.Partition]; ok && tp.Offset < next {
		l.rereads++
		return false
	}
	l.next[tp.Partition] = tp.Offset + 1
	l.at = tp
	return true
}

func (l *chaosLog) apply(value []byte, snapshot bool) {
	var m struct {
		Type string               `json:"type"`
		Data []map[string]*string `json:"data"`
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.messages++
	id, ver, err := int64(0), int64(0), json.Unmarshal(value, &m)
	if err == nil && (len(m.Data) != 1 || m.Data[0]["id"] == nil || m.Data[0]["ver"] == nil) {
		err = fmt.Errorf("not one row with id and ver")
	}
	if err == nil {
		id, err = strconv.ParseInt(*m.Data[0]["id"], 10, 64)
	}
	if err == nil {
		ver, err = strconv.ParseInt(*m.Data[0]["ver"], 10, 64)
	}
	if err != nil {
		l.bad = append(l.bad, fmt.Sprintf("%.200s", value))
		return
	}
	c := chaosChange{id: id, rank: 2 * ver}
	if m.Type == "DELETE" {
		c.rank++
		delete(l.state, id)
	} else {
		l.state[id] = ver
	}
	l.order(c, m.Type, snapshot)
}

// order counts c as a first arrival, a duplicate or a snapshot repeat.
func (l *chaosLog) order(c chaosChange, typ string, snapshot bool) {
	switch top, ok := l.top[c.id]; {
	case l.seen[c] && snapshot:
		l.snapRepeats++
	case l.seen[c]:
		l.duplicates++
		if len(l.dupExamples) < 5 {
			l.dupChanges = append(l.dupChanges, c)
			l.dupExamples = append(l.dupExamples, fmt.Sprintf("key %d: %s of rank %d again (first as a snapshot row: %t; highest rank %d); message %d, partition %d offset %v",
				c.id, typ, c.rank, l.firstSnap[c], l.top[c.id], l.messages, l.at.Partition, l.at.Offset))
		}
	case ok && c.rank < top:
		l.outOfOrder++
		if len(l.examples) < 5 {
			l.examples = append(l.examples, fmt.Sprintf("key %d: %s of rank %d (snapshot %t) after rank %d", c.id, typ, c.rank, snapshot, top))
		}
	}
	if !l.seen[c] {
		l.firstSnap[c] = snapshot
	}
	l.seen[c] = true
	l.top[c.id] = max(l.top[c.id], c.rank)
}

// diff counts the keys whose rebuilt version differs from want's (missing,
// extra or stale), naming a few.
func (l *chaosLog) diff(want map[int64]int64) (int, string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	n, ex := 0, ""
	note := func(id int64, got, exp string) {
		n++
		if n <= 5 {
			ex += fmt.Sprintf(" key %d: Kafka %s, source %s;", id, got, exp)
		}
	}
	for id, v := range want {
		if got, ok := l.state[id]; !ok {
			note(id, "none", fmt.Sprint(v))
		} else if got != v {
			note(id, fmt.Sprint(got), fmt.Sprint(v))
		}
	}
	for id, got := range l.state {
		if _, ok := want[id]; !ok {
			note(id, fmt.Sprint(got), "none")
		}
	}
	return n, ex
}

// missing counts the changes of txns not arrived, naming a few.
func (l *chaosLog) missing(txns []chaosTxn) (n, checked int, ex string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, tx := range txns {
		for _, c := range tx.changes {
			checked++
			if !l.seen[c] {
				n++
				if n <= 5 {
					ex += fmt.Sprintf(" key %d rank %d (txn upper LSN %d);", c.id, c.rank, tx.lsn)
				}
			}
		}
	}
	return n, checked, ex
}

// counts are the figures of the round's table.
func (l *chaosLog) counts() (messages, outOfOrder, duplicates, snapRepeats int, examples, bad []string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	examples = append(append([]string(nil), l.examples...), l.dupExamples...)
	return l.messages, l.outOfOrder, l.duplicates, l.snapRepeats, examples, append([]string(nil), l.bad...)
}
