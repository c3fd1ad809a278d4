// Package rpcstream holds what every side of Ferry's gRPC streams needs.
package rpcstream

import (
	"errors"
	"io"
)

// RecvErr recovers the real error behind a failed Send: gRPC reports the
// stream's status only to Recv, and Send returns a bare io.EOF.
func RecvErr[T any](recv func() (T, error), sendErr error) error {
	if !errors.Is(sendErr, io.EOF) {
		return sendErr
	}
	if _, err := recv(); err != nil {
		return err
	}
	return sendErr
}
