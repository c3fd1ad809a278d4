package task

import (
	"context"
	"fmt"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"

	capturev1 "github.com/ferry-cdc/ferry/gen/ferry/capture/v1"
	cdcv1 "github.com/ferry-cdc/ferry/gen/ferry/cdc/v1"
	deliveryv1 "github.com/ferry-cdc/ferry/gen/ferry/delivery/v1"
	"github.com/ferry-cdc/ferry/workflows/grpccodec"
)

// echoDelivery decodes the DeliverRequests it gets with the server's codec
// and hands them to the test.
type echoDelivery struct {
	deliveryv1.UnimplementedDeliveryServiceServer
	got chan *deliveryv1.DeliverRequest
}

func (e *echoDelivery) Deliver(srv deliveryv1.DeliveryService_DeliverServer) error {
	for range 2 { // start, then one batch
		req, err := srv.Recv()
		if err != nil {
			return err
		}
		e.got <- req
	}
	return srv.Send(&deliveryv1.DeliverResponse{SafeLsn: 42})
}

// The worker dials with grpccodec as every call's default; its relay's own
// frame codec must still win on the relay streams, or raw frames could not
// be sent at all. Delivery, serving with grpccodec, must read the relayed
// frame as the batch capture sent.
func TestRelayFramesOverGrpccodecConnections(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer(grpccodec.ServerOption())
	echo := &echoDelivery{got: make(chan *deliveryv1.DeliverRequest, 2)}
	deliveryv1.RegisterDeliveryServiceServer(gs, echo)
	go func() { _ = gs.Serve(lis) }()
	t.Cleanup(gs.Stop)
	cc, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()), grpccodec.DialOption())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cc.Close() })

	batch := &cdcv1.ChangeBatch{WatermarkLsn: 42, Relations: []*cdcv1.Relation{{Oid: 7, Schema: "s", Table: "t"}}}
	for i := range 2000 {
		batch.Events = append(batch.Events, &cdcv1.ChangeEvent{Op: cdcv1.Operation_OPERATION_INSERT, RelationOid: 7, Lsn: uint64(i),
			NewValues: []*cdcv1.Value{{Kind: &cdcv1.Value_Text{Text: fmt.Sprint("row ", i)}}, {Kind: &cdcv1.Value_Null{Null: true}}}})
	}
	wire, err := proto.Marshal(&capturev1.StreamChangesResponse{Batch: batch})
	if err != nil {
		t.Fatal(err)
	}
	frame := &rawFrame{b: wire}
	if err := frame.toDeliverRequest(); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := deliveryv1.NewDeliveryServiceClient(cc).Deliver(ctx, grpc.ForceCodecV2(frameCodec{}))
	if err != nil {
		t.Fatal(err)
	}
	start := &deliveryv1.DeliverRequest{Kind: &deliveryv1.DeliverRequest_Start{Start: &deliveryv1.StartDelivery{TaskId: "relay-codec"}}}
	if err := st.Send(start); err != nil {
		t.Fatalf("sending start: %v", err)
	}
	if err := st.SendMsg(frame); err != nil {
		t.Fatalf("sending a raw frame on a grpccodec connection: %v", err)
	}
	resp, err := st.Recv()
	if err != nil || resp.GetSafeLsn() != 42 {
		t.Fatalf("response = %v, %v; want safe LSN 42", resp, err)
	}
	if got := <-echo.got; !proto.Equal(got, start) {
		t.Fatalf("delivery read start as %v, want %v", got, start)
	}
	if got := <-echo.got; !proto.Equal(got.GetBatch(), batch) {
		t.Fatalf("delivery read the relayed batch with %d events, want the %d capture sent, equal", len(got.GetBatch().GetEvents()), len(batch.GetEvents()))
	}
}
