package main

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	taskv1 "github.com/ferry-cdc/ferry/gen/ferry/task/v1"
)

// createTaskOn is createTask for any one table, conflicts ignored.
func (f *ferry) createTaskOn(ctx context.Context, c *config, taskID, topic, tbl string) error {
	return f.createTask(ctx, c, taskID, topic, tbl, &taskv1.KafkaOptions{ConflictMode: taskv1.ConflictMode_CONFLICT_MODE_IGNORE})
}

// drainSample is the topic's end offset at one moment of a catch-up.
type drainSample struct {
	At  time.Duration `json:"-"`
	End int64         `json:"-"`
}

// watchSampledDrain is watchDrain for a topic that already held base
// messages, recording the end offset at every poll so that the rate over
// the middle of the catch-up (steadyRate) can be told from its start and end.
func (e *benchEnv) watchSampledDrain(ctx context.Context, topic, slot string, base int64, n int,
	confirmed func(lsn uint64) bool, t0 time.Time, timeout time.Duration) (drainTimes, []drainSample, error) {
	var d drainTimes
	var samples []drainSample
	err := poll(ctx, timeout, 50*time.Millisecond, "the changes to reach "+topic+" and be confirmed on "+slot, func() (bool, string, error) {
		if d.toKafka == 0 {
			end, err := topicEnd(e.admin, topic)
			if err != nil {
				return false, "", err
			}
			at := time.Since(t0)
			samples = append(samples, drainSample{At: at, End: end - base})
			if end-base >= int64(n) {
				d.toKafka = at
			}
		}
		if err := d.watchSlot(ctx, e.super, slot, confirmed, t0); err != nil {
			return false, "", err
		}
		last := int64(0)
		if len(samples) > 0 {
			last = samples[len(samples)-1].End
		}
		return d.toKafka > 0 && d.toConfirmed > 0, fmt.Sprintf("%d of %d in Kafka after %s, confirmed after %s", last, n, d.toKafka, d.toConfirmed), nil
	})
	return d, samples, err
}

// steadyRate is messages/s between the moments the topic held 10% and 90%
// of n, interpolated between samples: the catch-up's rate with its start
// (reconnecting, the first batches) and its tail left out. Zero when the
// samples are too few to tell.
func steadyRate(samples []drainSample, n int) float64 {
	lo, hi := crossing(samples, float64(n)*0.1), crossing(samples, float64(n)*0.9)
	if lo < 0 || hi <= lo {
		return 0
	}
	return 0.8 * float64(n) / (hi - lo)
}

// crossing is when, in seconds, the end offset first reached v; -1 if never.
func crossing(samples []drainSample, v float64) float64 {
	for i, s := range samples {
		if float64(s.End) < v {
			continue
		}
		if i == 0 {
			return s.At.Seconds()
		}
		p := samples[i-1]
		frac := (v - float64(p.End)) / float64(s.End-p.End)
		return p.At.Seconds() + frac*(s.At-p.At).Seconds()
	}
	return -1
}

// kindCounter counts a topic's messages by kind of change while
// auditTopic reads it: Canal JSON's "type", Debezium's "op".
type kindCounter map[string]int

func (k kindCounter) canal(value []byte) ([]int, error) {
	var m struct {
		Type string `json:"type"`
	}
	if err := json.Unmarshal(value, &m); err != nil {
		return nil, err
	}
	k[m.Type]++
	return nil, nil
}

func (k kindCounter) debezium(value []byte) ([]int, error) {
	if len(value) == 0 {
		k["tombstone"]++
		return nil, nil
	}
	var m struct {
		Op string `json:"op"`
	}
	if err := json.Unmarshal(value, &m); err != nil {
		return nil, err
	}
	kind := map[string]string{"c": opInsert, "u": opUpdate, "d": opDelete}[m.Op]
	if kind == "" {
		kind = "op " + m.Op
	}
	k[kind]++
	return nil, nil
}

// check compares the counts with the workload's: every change exactly once.
func (k kindCounter) check(want map[string]int, topic string) error {
	for _, kind := range []string{opInsert, opUpdate, opDelete} {
		if k[kind] != want[kind] {
			return fmt.Errorf("%s holds %d %s messages, the workload made %d (all kinds: %v)", topic, k[kind], kind, want[kind], map[string]int(k))
		}
	}
	if len(k) != 3 {
		return fmt.Errorf("%s holds messages other than the workload's changes: %v", topic, map[string]int(k))
	}
	return nil
}

// primeFerry writes one row (by insert, an id no workload uses) through a
// streaming task and waits until its message is in topic. Ferry writes the
// table's DDL (Canal JSON "CREATE") to the topic with the first change its
// stream sees; primed, the topic holds that DDL and the row, and every
// message after it is one of the workload's changes.
func (e *benchEnv) primeFerry(ctx context.Context, topic, insert string) error {
	if _, err := e.owner.Exec(ctx, insert, mixedWarmBase, mixedWarmBase); err != nil {
		return fmt.Errorf("writing the priming row: %w", err)
	}
	return poll(ctx, 2*time.Minute, 50*time.Millisecond, "the priming row in "+topic, func() (bool, string, error) {
		end, err := topicEnd(e.admin, topic)
		if err != nil {
			return false, "", err
		}
		if end == 0 {
			return false, "topic empty", nil
		}
		kinds := kindCounter{}
		if _, err := auditTopic(ctx, e.c.kafkaBootstrap, topic, 0, 0, end, kinds.canal); err != nil {
			return false, "", err
		}
		return kinds[opInsert] == 1, fmt.Sprintf("messages %v", map[string]int(kinds)), nil
	})
}

// auditMixed reads the topic past skip, decoding each message with decode,
// and checks that every change the workload made (want, by kind) arrived.
func (e *benchEnv) auditMixed(ctx context.Context, topic string, skip int64, want map[string]int,
	decode func(kindCounter, []byte) ([]int, error)) (topicAudit, kindCounter, error) {
	end, err := topicEnd(e.admin, topic)
	if err != nil {
		return topicAudit{}, nil, err
	}
	kinds := kindCounter{}
	audit, err := auditTopic(ctx, e.c.kafkaBootstrap, topic, 0, skip, end, func(v []byte) ([]int, error) { return decode(kinds, v) })
	if err != nil {
		return audit, nil, err
	}
	if err := kinds.check(want, topic); err != nil {
		return audit, nil, err
	}
	return audit, kinds, nil
}
