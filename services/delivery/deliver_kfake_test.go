package delivery

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	cdcv1 "github.com/ferry-cdc/ferry/gen/ferry/cdc/v1"
	deliveryv1 "github.com/ferry-cdc/ferry/gen/ferry/delivery/v1"
	taskv1 "github.com/ferry-cdc/ferry/gen/ferry/task/v1"
	"github.com/ferry-cdc/ferry/services/delivery/canal/canaltest"
)

func fakeKafka(t *testing.T, partitions int32, topics ...string) string {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(partitions, topics...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return strings.Join(c.ListenAddrs(), ",")
}

func TestDeliverKfake(t *testing.T) {
	bootstrap := fakeKafka(t, 3, "orders")
	client, _ := startServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	began := time.Now()
	s := openSession(t, ctx, client, start(bootstrap, "orders", &taskv1.KafkaOptions{
		PartitionPolicy: taskv1.PartitionPolicy_PARTITION_POLICY_HASH_PRIMARY_KEY,
		Compression:     taskv1.Compression_COMPRESSION_ZSTD,
	}))

	s.send(&cdcv1.ChangeBatch{Relations: []*cdcv1.Relation{ordersRelation()},
		Events: []*cdcv1.ChangeEvent{insert(1, "a", 90), insert(2, "b", 91), insert(3, "c", 92)}, WatermarkLsn: 100})
	r := s.waitSafe(100, 20*time.Second)
	if r.GetAckedEvents() != 3 {
		t.Fatalf("acked %d at safe 100, want 3", r.GetAckedEvents())
	}
	if r.GetSafeCommitTimeMicros() != commitTime.UnixMicro() || r.GetSafeAckedTimeMicros() == 0 {
		t.Fatalf("safe 100 moved over changes but reports commit %d ack %d, want commit %d and an ack time",
			r.GetSafeCommitTimeMicros(), r.GetSafeAckedTimeMicros(), commitTime.UnixMicro())
	}
	// A transaction split over two batches: the first has no watermark, and
	// its commit time reaches the watermark of the second.
	later := commitTime.Add(time.Minute)
	split := insert(4, "d", 150)
	split.CommitTime = timestamppb.New(later)
	s.send(&cdcv1.ChangeBatch{Events: []*cdcv1.ChangeEvent{insert(5, "e", 151), split}})
	s.send(&cdcv1.ChangeBatch{Events: []*cdcv1.ChangeEvent{}, WatermarkLsn: 200})
	if r := s.waitSafe(200, 20*time.Second); r.GetSafeCommitTimeMicros() != later.UnixMicro() {
		t.Fatalf("safe 200 reports commit time %d, want the split transaction's %d", r.GetSafeCommitTimeMicros(), later.UnixMicro())
	}
	s.send(&cdcv1.ChangeBatch{Events: []*cdcv1.ChangeEvent{insert(6, "f", 210)}, WatermarkLsn: 220})
	s.waitSafe(220, 20*time.Second)
	// An idle keepalive: the safe LSN moves on a watermark alone.
	s.send(&cdcv1.ChangeBatch{WatermarkLsn: 250})
	if r := s.waitSafe(250, 20*time.Second); r.GetSafeCommitTimeMicros() != 0 || r.GetSafeAckedTimeMicros() != 0 {
		t.Fatalf("idle keepalive reports commit %d ack %d, want zero", r.GetSafeCommitTimeMicros(), r.GetSafeAckedTimeMicros())
	}
	s.send(&cdcv1.ChangeBatch{Events: []*cdcv1.ChangeEvent{insert(7, "g", 260)}, WatermarkLsn: 300})
	last, err := s.finish(20 * time.Second)
	if err != nil {
		t.Fatalf("stream ended with %v", err)
	}
	if last.GetSafeLsn() != 300 || last.GetAckedEvents() != 7 {
		t.Fatalf("final response %v, want safe 300 acked 7", last)
	}
	checkLatencyTimes(t, s.seen, began, time.Now(), 300)
	for _, r := range s.seen {
		if l := r.GetSafeLsn(); l != 100 && l != 200 && l != 220 && l != 250 && l != 300 {
			t.Fatalf("safe LSN %d is not a watermark", l)
		}
	}

	msgs := consume(t, bootstrap, "orders", 7, 20*time.Second)
	var ids []int64
	for _, m := range msgs {
		c := canaltest.Decode(t, m.Value)
		key := string(m.Key)
		if *c.Data[0]["id"] != key {
			t.Fatalf("key %q for row %v", key, c.Data[0])
		}
		if want := JavaPartition(key, 3); m.TopicPartition.Partition != want {
			t.Fatalf("key %q on partition %d, want %d", key, m.TopicPartition.Partition, want)
		}
		wantEs := commitTime.UnixMilli()
		if key == "4" {
			wantEs = later.UnixMilli()
		}
		if *c.Database != "public" || *c.Table != "orders" || *c.Type != "INSERT" || *c.Es != wantEs {
			t.Fatalf("unexpected message %s", m.Value)
		}
		ids = append(ids, *c.ID)
	}
	slices.Sort(ids)
	for i := 1; i < len(ids); i++ {
		if ids[i] != ids[i-1]+1 {
			t.Fatalf("ids not consecutive: %v", ids)
		}
	}
}

// checkLatencyTimes checks the commit and acknowledgement times of every
// response: either both zero or a commit time no later than an ack time
// taken while the test ran, each ack time reported once. The response that
// first reports safe LSN lastLSN must carry them.
func checkLatencyTimes(t *testing.T, seen []*deliveryv1.DeliverResponse, began, ended time.Time, lastLSN uint64) {
	t.Helper()
	reported := map[int64]bool{}
	firstLast := true
	for _, r := range seen {
		commit, acked := r.GetSafeCommitTimeMicros(), r.GetSafeAckedTimeMicros()
		if r.GetSafeLsn() == lastLSN && firstLast {
			firstLast = false
			if acked == 0 {
				t.Fatalf("the first response at safe %d carries no times: %v", lastLSN, r)
			}
		}
		if commit == 0 && acked == 0 {
			continue
		}
		if commit == 0 || commit > acked {
			t.Fatalf("response %v: commit time after the ack time, or only one of them", r)
		}
		if acked < began.UnixMicro() || acked > ended.UnixMicro() {
			t.Fatalf("ack time %s is outside the test's run %s..%s", time.UnixMicro(acked), began, ended)
		}
		if reported[acked] {
			t.Fatalf("ack time %d reported twice", acked)
		}
		reported[acked] = true
	}
}

func TestDeliverFirstMessageMustBeStart(t *testing.T) {
	client, _ := startServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	st, err := client.Deliver(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Send(&deliveryv1.DeliverRequest{Kind: &deliveryv1.DeliverRequest_Batch{Batch: &cdcv1.ChangeBatch{}}}); err != nil {
		t.Fatal(err)
	}
	_, err = st.Recv()
	if status.Code(err) != codes.InvalidArgument {
		t.Fatalf("got %v, want InvalidArgument", err)
	}
}

func TestDeliverMissingTopic(t *testing.T) {
	bootstrap := fakeKafka(t, 1, "other")
	client, _ := startServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s := openSession(t, ctx, client, start(bootstrap, "missing", nil))
	s.send(&cdcv1.ChangeBatch{Relations: []*cdcv1.Relation{ordersRelation()}, WatermarkLsn: 10})
	s.waitSafe(10, 20*time.Second)
	s.send(&cdcv1.ChangeBatch{Events: []*cdcv1.ChangeEvent{insert(1, "a", 11)}, WatermarkLsn: 20})
	last, err := s.drain(20 * time.Second)
	if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), `"missing"`) {
		t.Fatalf("got %v, want FailedPrecondition naming the topic", err)
	}
	if last.GetSafeLsn() != 10 {
		t.Fatalf("final safe LSN %d, want 10", last.GetSafeLsn())
	}
}

func TestDeliverUnknownRelation(t *testing.T) {
	bootstrap := fakeKafka(t, 1, "orders")
	client, _ := startServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s := openSession(t, ctx, client, start(bootstrap, "orders", nil))
	s.send(&cdcv1.ChangeBatch{Events: []*cdcv1.ChangeEvent{insert(1, "a", 11)}, WatermarkLsn: 20})
	_, err := s.drain(20 * time.Second)
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "relation") {
		t.Fatalf("got %v, want InvalidArgument about the relation", err)
	}
}

// TestDeliverVolume pushes many small batches over several partitions, so
// that acknowledgements arrive out of order, and checks the final account.
func TestDeliverVolume(t *testing.T) {
	bootstrap := fakeKafka(t, 8, "orders")
	client, _ := startServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	began := time.Now()
	s := openSession(t, ctx, client, start(bootstrap, "orders", &taskv1.KafkaOptions{
		PartitionPolicy: taskv1.PartitionPolicy_PARTITION_POLICY_HASH_PRIMARY_KEY}))
	const batches, per = 200, 100
	id := int64(0)
	for b := 0; b < batches; b++ {
		evs := make([]*cdcv1.ChangeEvent, per)
		for i := range evs {
			id++
			evs[i] = insert(id, "row", uint64(id))
		}
		wm := uint64(0)
		if b%3 != 1 || b == batches-1 { // some batches end mid-transaction
			wm = uint64(id)
		}
		batch := &cdcv1.ChangeBatch{Events: evs, WatermarkLsn: wm}
		if b == 0 {
			batch.Relations = []*cdcv1.Relation{ordersRelation()}
		}
		s.send(batch)
	}
	last, err := s.finish(60 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if last.GetSafeLsn() != uint64(id) || last.GetAckedEvents() != uint64(id) {
		t.Fatalf("final %v, want safe %d acked %d", last, id, id)
	}
	checkLatencyTimes(t, s.seen, began, time.Now(), uint64(id))
	for _, r := range s.seen {
		// Safe LSNs are only ever watermarks: ends of batches b%3 != 1.
		if l := r.GetSafeLsn(); l%per != 0 || ((l/per-1)%3 == 1 && l != uint64(id)) {
			t.Fatalf("safe LSN %d is not a watermark", l)
		}
	}
	t.Logf("%d responses for %d batches", len(s.seen), batches)
}
