package capture

import (
	"testing"
	"time"

	cdcv1 "github.com/ferry-cdc/ferry/gen/ferry/cdc/v1"
)

func TestBatcherWatermarkOnlyAtCommitBoundary(t *testing.T) {
	b := newBatcher(0, 0)
	if b.maxEvents != 1000 || b.delay != 20*time.Millisecond {
		t.Fatalf("defaults = %d, %s", b.maxEvents, b.delay)
	}
	now := time.Now()
	rel := &cdcv1.Relation{Oid: 1}
	b.add(now, rel, &cdcv1.ChangeEvent{RelationOid: 1})
	b.commit(now, 100)
	if b.cur.WatermarkLsn != 100 {
		t.Fatalf("watermark after commit = %d", b.cur.WatermarkLsn)
	}
	b.add(now, nil, &cdcv1.ChangeEvent{RelationOid: 1})
	if b.cur.WatermarkLsn != 0 {
		t.Fatal("a batch that ends inside a transaction must carry watermark 0")
	}
	if b.due(now) || !b.due(now.Add(20*time.Millisecond)) {
		t.Fatal("due must turn true exactly at the delay")
	}
	got := b.take()
	if len(got.Events) != 2 || len(got.Relations) != 1 || !b.empty() {
		t.Fatalf("take = %v, empty=%v", got, b.empty())
	}
	b.commit(now, 200)
	if got := b.take(); len(got.Events) != 0 || got.WatermarkLsn != 200 {
		t.Fatalf("a commit whose events went earlier must still yield its watermark: %v", got)
	}
}

func TestBatcherFull(t *testing.T) {
	b := newBatcher(2, 1000)
	now := time.Now()
	b.add(now, nil, &cdcv1.ChangeEvent{RelationOid: 7})
	if b.due(now) || !b.refers(7) || b.refers(8) {
		t.Fatal("one event of two is not due")
	}
	b.add(now, nil, &cdcv1.ChangeEvent{RelationOid: 7})
	if !b.due(now) {
		t.Fatal("a full batch is due")
	}
}
