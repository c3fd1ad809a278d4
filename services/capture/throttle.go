package capture

import (
	"context"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	capturev1 "github.com/ferry-cdc/ferry/gen/ferry/capture/v1"
	cdcv1 "github.com/ferry-cdc/ferry/gen/ferry/cdc/v1"
	"github.com/ferry-cdc/ferry/services/capture/throttle"
)

// paceWith returns the stream's hook that holds each batch until thr lets it
// go (see paceBatch).
func (st *stream) paceWith(ctx context.Context, thr *throttle.Throttle) func(*cdcv1.ChangeBatch) error {
	return func(b *cdcv1.ChangeBatch) error { return st.paceBatch(ctx, thr, b) }
}

// paceBatch waits until thr lets b go. The replication connection is not
// read meanwhile, so the wait goes in slices with a standby status update
// after each (see throttle.Slice); the update reports only the flushed
// position that acks moved, as always: throttling confirms nothing. A batch
// without events (a watermark) goes at once.
func (st *stream) paceBatch(ctx context.Context, thr *throttle.Throttle, b *cdcv1.ChangeBatch) error {
	if len(b.GetEvents()) == 0 {
		return nil
	}
	c := thr.BatchCost(b)
	for {
		paid, err := thr.Pay(ctx, &c, time.Now().Add(throttle.Slice))
		if err != nil || paid {
			return err
		}
		if err := st.sendStatus(time.Now()); err != nil {
			return err
		}
	}
}

// UpdateThrottle changes the throttle of the slot's running calls. A call
// counts as running from the moment it is accepted, including while it
// waits for the slot or exports its snapshot, until it returns; a call that
// starts later takes its throttle from its own request, so the caller must
// also put the new throttle in the requests it makes from now on. Zero
// calls updated is not an error: the slot may simply have none running.
func (s *Server) UpdateThrottle(_ context.Context, req *capturev1.UpdateThrottleRequest) (*capturev1.UpdateThrottleResponse, error) {
	if req.GetSlotName() == "" {
		return nil, status.Error(codes.InvalidArgument, "UpdateThrottle needs slot_name: the replication slot whose running calls to change")
	}
	n := s.throttles.Update(req.GetSlotName(), req.GetIncremental(), req.GetFull())
	s.logger.Info("throttle updated", "slot", req.GetSlotName(), "calls_updated", n,
		"incremental", req.GetIncremental().String(), "full", req.GetFull().String())
	return &capturev1.UpdateThrottleResponse{StreamsUpdated: uint32(n)}, nil
}
