package main

import (
	"context"
	"fmt"
	"os"
	"time"
)

// mixedWarmBase puts the Debezium warm-up's ids far above any the workload
// uses, so that no UPDATE or DELETE of the workload touches them.
const mixedWarmBase = 1 << 40

// mixedDbzTarget is the mixed scenario's connector. tombstones.on.delete
// is off: by default Debezium follows each DELETE's event with a tombstone
// (a null value for log compaction), two messages for one change, while
// Ferry writes one; off, both write exactly one message per change.
func mixedDbzTarget() dbzTarget {
	return dbzTarget{table: mixedTable, slot: mixedDbzSlot, pub: mixedDbzPub,
		extra: [][2]string{{"tombstones.on.delete", "false"}}}
}

// measureMixedDebezium times Debezium on the mixed backlog as
// measureDebezium does on the inserts-only one: a fresh worker, warm-up
// inserts through it, the connector stopped, the backlog written, the clock
// started at resume.
func (e *benchEnv) measureMixedDebezium(ctx context.Context, w *mixWorkload, run int) (res mixedSide, err error) {
	prefix := fmt.Sprintf("ferrybench_mixdbz_%d_%d", os.Getpid(), run)
	topic := prefix + ".public." + mixedTable
	heartbeats := "__debezium-heartbeat." + prefix
	dir, err := os.MkdirTemp("", "ferrybench-debezium-")
	if err != nil {
		return res, fmt.Errorf("creating the Kafka Connect folder: %w", err)
	}
	if err := recreateMixedTable(ctx, e.owner, w.prefill); err != nil {
		return res, err
	}
	k, err := e.startDebeziumOn(ctx, mixedDbzTarget(), dir, prefix, topic, heartbeats)
	defer e.cleanupDebezium(ctx, k, e.targetLeftovers(mixedDbzTarget(), dir, topic, heartbeats), &err)
	if err != nil {
		return res, err
	}
	if err = k.waitSlot(ctx, e.super, mixedDbzSlot, true, dbzStartTimeout); err != nil {
		return res, err
	}
	warm := min(dbzWarmupRows, len(w.ops))
	if err = e.warmUpMixedDebezium(ctx, k, topic, warm); err != nil {
		return res, err
	}
	if err = k.put(ctx, "stop"); err != nil {
		return res, err
	}
	if err = k.waitSlot(ctx, e.super, mixedDbzSlot, false, time.Minute); err != nil {
		return res, err
	}
	return e.timeMixedDebezium(ctx, k, w, topic, int64(warm))
}

// warmUpMixedDebezium streams warm inserts through the connector and waits
// until they are in Kafka and their last commit is confirmed.
func (e *benchEnv) warmUpMixedDebezium(ctx context.Context, k *connectWorker, topic string, warm int) error {
	var lastTxn uint64
	for lo := 1; lo <= warm; lo += 1000 {
		lsn, err := currentLSN(ctx, e.owner)
		if err != nil {
			return err
		}
		lastTxn = lsn
		if _, err := e.owner.Exec(ctx, mixedPrefillSQL, mixedWarmBase+lo, mixedWarmBase+min(lo+999, warm)); err != nil {
			return fmt.Errorf("writing Debezium's warm-up rows: %w", err)
		}
	}
	confirmed := func(lsn uint64) bool { return lsn > lastTxn }
	if _, _, err := e.watchSampledDrain(ctx, topic, mixedDbzSlot, 0, warm, confirmed, time.Now(), dbzStartTimeout); err != nil {
		return fmt.Errorf("warming Debezium up: %w; %s", err, k.status(ctx))
	}
	return nil
}

func (e *benchEnv) timeMixedDebezium(ctx context.Context, k *connectWorker, w *mixWorkload, topic string, warm int64) (mixedSide, error) {
	var res mixedSide
	n := len(w.ops)
	b, err := e.writeMix(ctx, w)
	if err != nil {
		return res, err
	}
	res.WriteSeconds = b.took.Seconds()
	pid := k.cmd.Process.Pid
	before, err := readProc(pid)
	if err != nil {
		return res, fmt.Errorf("sampling Kafka Connect: %w", err)
	}
	t0 := time.Now()
	if err := k.put(ctx, "resume"); err != nil {
		return res, err
	}
	// Debezium confirms commit positions only: see timeCatchUp.
	confirmed := func(lsn uint64) bool { return lsn > b.lastTxn }
	d, samples, err := e.watchSampledDrain(ctx, topic, mixedDbzSlot, warm, n, confirmed, t0, e.c.ferryTimeout)
	if err != nil {
		return res, fmt.Errorf("%w; %s", err, k.status(ctx))
	}
	after, err := readProc(pid)
	if err != nil {
		return res, fmt.Errorf("sampling Kafka Connect: %w", err)
	}
	cpu := after.CPUSeconds - before.CPUSeconds
	res.Processes = map[string]procUsage{"debezium": {CPUSeconds: cpu, CPUSecondsPerMillion: cpu * 1e6 / float64(n), PeakRSSMB: after.PeakRSSMB}}
	audit, kinds, err := e.auditMixed(ctx, topic, warm, w.counts, kindCounter.debezium)
	if err != nil {
		return res, err
	}
	res.finish(n, d, samples, audit, kinds)
	return res, nil
}
