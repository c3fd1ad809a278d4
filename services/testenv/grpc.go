package testenv

import (
	"net"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/ferry-cdc/ferry/platform/grpccodec"
)

// ServeGRPC serves what register registers on a loopback port, with
// Ferry's codec, and returns a client connection to it and a stop that a
// test may call early, as a crash would; t.Cleanup stops it too.
func ServeGRPC(t testing.TB, register func(*grpc.Server)) (*grpc.ClientConn, func()) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer(grpccodec.ServerOption())
	register(gs)
	go func() { _ = gs.Serve(lis) }()
	t.Cleanup(gs.Stop)
	cc, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()), grpccodec.DialOption())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cc.Close() })
	return cc, gs.Stop
}
