package delivery

import (
	"context"
	"errors"
	"io"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	capturev1 "github.com/ferry-cdc/ferry/gen/ferry/capture/v1"
	cdcv1 "github.com/ferry-cdc/ferry/gen/ferry/cdc/v1"
	deliveryv1 "github.com/ferry-cdc/ferry/gen/ferry/delivery/v1"
	"github.com/ferry-cdc/ferry/services/testenv"
)

// fakeCapture plays a scripted change stream or snapshot, then ends with
// end (nil: waits for the client to go), and records the acks it gets.
type fakeCapture struct {
	capturev1.UnimplementedCaptureServiceServer
	script []*capturev1.StreamChangesResponse
	snap   []*capturev1.ReadSnapshotResponse
	end    error
	starts chan *capturev1.StartStream
	acks   chan uint64
}

func (f *fakeCapture) StreamChanges(srv capturev1.CaptureService_StreamChangesServer) error {
	first, err := srv.Recv()
	if err != nil {
		return err
	}
	f.starts <- first.GetStart()
	go func() {
		for {
			req, err := srv.Recv()
			if err != nil {
				return
			}
			f.acks <- req.GetAck().GetFlushedLsn()
		}
	}()
	for _, m := range f.script {
		if err := srv.Send(m); err != nil {
			return err
		}
	}
	if f.end != nil {
		return f.end
	}
	<-srv.Context().Done()
	return srv.Context().Err()
}

func (f *fakeCapture) ReadSnapshot(_ *capturev1.ReadSnapshotRequest, srv capturev1.CaptureService_ReadSnapshotServer) error {
	for _, m := range f.snap {
		if err := srv.Send(m); err != nil {
			return err
		}
	}
	return f.end
}

// replicateWith serves delivery with capture fake and returns a client.
func replicateWith(t *testing.T, fake *fakeCapture) deliveryv1.DeliveryServiceClient {
	t.Helper()
	cc, _ := testenv.ServeGRPC(t, func(gs *grpc.Server) { capturev1.RegisterCaptureServiceServer(gs, fake) })
	client, impl := startServer(t)
	impl.Capture = capturev1.NewCaptureServiceClient(cc)
	return client
}

// openReplicate opens Replicate on client and sends reqs, with a minute for
// the whole test.
func openReplicate(t *testing.T, client deliveryv1.DeliveryServiceClient, reqs ...*deliveryv1.ReplicateRequest) grpc.BidiStreamingClient[deliveryv1.ReplicateRequest, deliveryv1.ReplicateResponse] {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	rs, err := client.Replicate(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, req := range reqs {
		if err := rs.Send(req); err != nil {
			t.Fatal(err)
		}
	}
	return rs
}

func startDelivery(bootstrap string) *deliveryv1.ReplicateRequest {
	return &deliveryv1.ReplicateRequest{Kind: &deliveryv1.ReplicateRequest_Delivery{Delivery: start(bootstrap, "orders", nil)}}
}

func changes(b *cdcv1.ChangeBatch) *capturev1.StreamChangesResponse {
	return &capturev1.StreamChangesResponse{Batch: b}
}

// Rows go from capture to Kafka inside delivery: the client gets capture's
// backfill progress before any safe LSN past it, every safe LSN it hears
// is one capture was told first, and capture's failure comes back with its
// own code, named as capture's.
func TestReplicateFeedsDeliveryFromCapture(t *testing.T) {
	bootstrap := fakeKafka(t, 1, "orders")
	fake := &fakeCapture{
		script: []*capturev1.StreamChangesResponse{
			changes(&cdcv1.ChangeBatch{Relations: []*cdcv1.Relation{ordersRelation()}, Events: []*cdcv1.ChangeEvent{insert(1, "a", 90), insert(2, "b", 95)}, WatermarkLsn: 100}),
			{Backfill: &cdcv1.BackfillProgress{Schema: "public", Table: "orders", Lsn: 100, Rows: 2}},
			changes(&cdcv1.ChangeBatch{Events: []*cdcv1.ChangeEvent{insert(3, "c", 150)}, WatermarkLsn: 200}),
		},
		starts: make(chan *capturev1.StartStream, 1), acks: make(chan uint64, 100),
	}
	rs := openReplicate(t, replicateWith(t, fake), startDelivery(bootstrap),
		&deliveryv1.ReplicateRequest{Kind: &deliveryv1.ReplicateRequest_Changes{Changes: &capturev1.StartStream{SlotName: "s", StartLsn: 50}}})
	if got := (<-fake.starts).GetStartLsn(); got != 50 {
		t.Fatalf("capture started at %d, want the client's 50", got)
	}
	var sawBackfill bool
	for safe := uint64(0); safe < 200; {
		m, err := rs.Recv()
		if err != nil {
			t.Fatalf("Replicate ended before safe LSN 200: %v", err)
		}
		if m.GetBackfill() != nil {
			sawBackfill = true
			continue
		}
		safe = m.GetAck().GetSafeLsn()
		if safe > 100 && !sawBackfill {
			t.Fatalf("safe LSN %d reached the client before the backfill progress at 100", safe)
		}
		if safe > 0 && lastAck(t, fake.acks, safe) != safe {
			t.Fatalf("capture was never told safe LSN %d, which the client heard", safe)
		}
		if m.GetReceivedEvents() < m.GetAck().GetAckedEvents() {
			t.Fatalf("received %d events but %d acked", m.GetReceivedEvents(), m.GetAck().GetAckedEvents())
		}
	}
}

// lastAck drains the acks capture has received and returns the newest,
// which must reach want within a few seconds.
func lastAck(t *testing.T, acks chan uint64, want uint64) uint64 {
	t.Helper()
	var last uint64
	deadline := time.After(5 * time.Second)
	for last < want {
		select {
		case a := <-acks:
			last = max(last, a)
		case <-deadline:
			return last
		}
	}
	return last
}

func TestReplicateNamesCapturesFailure(t *testing.T) {
	bootstrap := fakeKafka(t, 1, "orders")
	fake := &fakeCapture{end: status.Error(codes.DataLoss, "replication slot s is gone"),
		starts: make(chan *capturev1.StartStream, 1), acks: make(chan uint64, 10)}
	rs := openReplicate(t, replicateWith(t, fake), startDelivery(bootstrap),
		&deliveryv1.ReplicateRequest{Kind: &deliveryv1.ReplicateRequest_Changes{Changes: &capturev1.StartStream{SlotName: "s"}}})
	for {
		_, err := rs.Recv()
		if err == nil {
			continue
		}
		st := status.Convert(err)
		if st.Code() != codes.DataLoss || st.Message() != "capture stream: replication slot s is gone" {
			t.Fatalf("Replicate ended with %v; want DataLoss \"capture stream: replication slot s is gone\"", err)
		}
		return
	}
}

// A snapshot's Replicate ends by itself once Kafka has every row, with its
// start and progress relayed and its rows counted.
func TestReplicateSnapshotEndsWhenKafkaHasEveryRow(t *testing.T) {
	bootstrap := fakeKafka(t, 1, "orders")
	fake := &fakeCapture{snap: []*capturev1.ReadSnapshotResponse{
		{Started: &capturev1.SnapshotStarted{ConsistentLsn: 500}},
		{Batch: &cdcv1.ChangeBatch{Relations: []*cdcv1.Relation{ordersRelation()}, Events: []*cdcv1.ChangeEvent{insert(1, "a", 500), insert(2, "b", 500)}}},
		{Batch: &cdcv1.ChangeBatch{WatermarkLsn: 500}},
		{Progress: &capturev1.SnapshotProgress{Done: true}},
	}}
	rs := openReplicate(t, replicateWith(t, fake), startDelivery(bootstrap),
		&deliveryv1.ReplicateRequest{Kind: &deliveryv1.ReplicateRequest_Snapshot{Snapshot: &capturev1.ReadSnapshotRequest{SlotName: "s"}}})
	var started, done bool
	var last *deliveryv1.ReplicateResponse
	for {
		m, err := rs.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("Replicate failed: %v", err)
		}
		started = started || m.GetSnapshotStarted().GetConsistentLsn() == 500
		done = done || m.GetSnapshotProgress().GetDone()
		last = m
	}
	if !started || !done || last.GetAck().GetAckedEvents() != 2 || last.GetAck().GetSafeLsn() != 500 || last.GetReceivedEvents() != 2 {
		t.Fatalf("started %v, done %v, last %v; want both, then 2 rows received and acked at safe LSN 500", started, done, last)
	}
}
