package rpcstream

import (
	"errors"
	"io"
	"testing"
)

func TestRecvErrFindsTheStatusBehindEOF(t *testing.T) {
	status := errors.New("the stream's status")
	recv := func() (int, error) { return 0, status }
	if got := RecvErr(recv, io.EOF); !errors.Is(got, status) {
		t.Errorf("RecvErr(io.EOF) = %v, want the status Recv reports", got)
	}
	other := errors.New("not EOF")
	if got := RecvErr(recv, other); !errors.Is(got, other) {
		t.Errorf("RecvErr(%v) = %v, want it unchanged", other, got)
	}
}
