package capture

import (
	"context"
	"errors"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	capturev1 "github.com/ferry-cdc/ferry/gen/ferry/capture/v1"
)

// GetSlotHealth reads what the task's source alerts watch. The reading is
// the one the metrics take, on a session of its own, so it works whether
// or not this instance holds the slot's stream.
func (s *Server) GetSlotHealth(ctx context.Context, req *capturev1.GetSlotHealthRequest) (*capturev1.GetSlotHealthResponse, error) {
	r, err := readSlotLag(ctx, req.GetSource(), req.GetSlotName())
	if errors.Is(err, errSlotMissing) {
		return nil, status.Errorf(codes.NotFound, "%v", err)
	}
	if err != nil {
		return nil, toStatus(err)
	}
	return &capturev1.GetSlotHealthResponse{LagBytes: r.lag, RetainedWalBytes: r.retained, OldestTransactionSeconds: r.oldestTxn}, nil
}
