package fleet

import (
	"context"
	"net"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferry-cdc/ferry/platform/grpcsec/grpcsectest"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/ferry-cdc/ferry/platform/grpcsec"
)

// instance serves health on loopback and counts the checks it answers.
func instance(t *testing.T, opts ...grpc.ServerOption) (string, *atomic.Int64) {
	t.Helper()
	var calls atomic.Int64
	s := grpc.NewServer(append(opts, grpc.ChainUnaryInterceptor(func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		calls.Add(1)
		return h(ctx, req)
	}))...)
	healthpb.RegisterHealthServer(s, health.NewServer())
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = s.Serve(lis) }()
	t.Cleanup(s.Stop)
	return lis.Addr().String(), &calls
}

var plaintext = grpcsec.Settings{Insecure: true}

func TestCallsAreSpreadOverEveryInstance(t *testing.T) {
	a, aCalls := instance(t)
	b, bCalls := instance(t)
	conn, err := Dial("static:///"+a+","+b, plaintext)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close() }()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	h := healthpb.NewHealthClient(conn)
	// Round robin alternates once both are connected; until then calls go
	// to whichever connected first.
	deadline := time.Now().Add(10 * time.Second)
	for aCalls.Load() == 0 || bCalls.Load() == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("calls per instance %d and %d after 10 s: round robin should reach both", aCalls.Load(), bCalls.Load())
		}
		if _, err := h.Check(ctx, &healthpb.HealthCheckRequest{}, grpc.WaitForReady(true)); err != nil {
			t.Fatal(err)
		}
	}
}

// A static list over TLS checks each instance's certificate for its own
// host, not the first one's: here one instance has a certificate for
// localhost only, the other for 127.0.0.1 only.
func TestStaticInstancesAreCheckedForTheirOwnNames(t *testing.T) {
	ca := grpcsectest.NewCA(t)
	ca.Issue("byname", "localhost")
	ca.Issue("byip", "127.0.0.1")
	ca.Issue("client")
	server := func(name string) grpc.ServerOption {
		cert, key, caFile := ca.Files(name)
		o, err := grpcsec.Settings{CertFile: cert, KeyFile: key, CAFile: caFile}.ServerOption(grpcsec.VerifyClientCertIfGiven)
		if err != nil {
			t.Fatal(err)
		}
		return o
	}
	a, aCalls := instance(t, server("byname"))
	b, bCalls := instance(t, server("byip"))
	_, aPort, _ := net.SplitHostPort(a)
	cert, key, caFile := ca.Files("client")
	conn, err := Dial("static:///localhost:"+aPort+","+b, grpcsec.Settings{CertFile: cert, KeyFile: key, CAFile: caFile})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close() }()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	h := healthpb.NewHealthClient(conn)
	for aCalls.Load() == 0 || bCalls.Load() == 0 {
		if _, err := h.Check(ctx, &healthpb.HealthCheckRequest{}, grpc.WaitForReady(true)); err != nil {
			t.Fatalf("with %d and %d calls answered: %v (a handshake checked the wrong name?)", aCalls.Load(), bCalls.Load(), err)
		}
	}
}

func TestMembersReachEachInstanceAndForgetDeparted(t *testing.T) {
	a, aCalls := instance(t)
	b, bCalls := instance(t)
	m := NewMembers("static:///"+a+","+b, plaintext)
	defer m.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conns, err := m.Conns(ctx)
	if err != nil || len(conns) != 2 {
		t.Fatalf("Conns: %d clients, %v; want 2", len(conns), err)
	}
	for _, c := range conns {
		if _, err := healthpb.NewHealthClient(c).Check(ctx, &healthpb.HealthCheckRequest{}, grpc.WaitForReady(true)); err != nil {
			t.Fatal(err)
		}
	}
	if aCalls.Load() != 1 || bCalls.Load() != 1 {
		t.Fatalf("calls per instance %d and %d, want 1 each", aCalls.Load(), bCalls.Load())
	}
	m.target = "static:///" + b // a departed
	if conns, err = m.Conns(ctx); err != nil || len(conns) != 1 || len(m.conns) != 1 {
		t.Fatalf("after a departed: %d clients (%d kept), %v; want 1", len(conns), len(m.conns), err)
	}
}

func TestInstancesResolveEveryForm(t *testing.T) {
	ctx := context.Background()
	cases := map[string][]string{
		"static:///127.0.0.1:1,127.0.0.2:2": {"127.0.0.1:1", "127.0.0.2:2"},
		"127.0.0.1:7402":                    {"127.0.0.1:7402"},
		"dns:///127.0.0.1:7402":             {"127.0.0.1:7402"},
	}
	for target, want := range cases {
		got, err := Instances(ctx, target)
		if err != nil || !slices.Equal(got, want) {
			t.Errorf("Instances(%s) = %v, %v; want %v", target, got, err, want)
		}
	}
	if got, err := Instances(ctx, "localhost:7402"); err != nil || !slices.Contains(got, "127.0.0.1:7402") {
		t.Errorf("Instances(localhost:7402) = %v, %v; want 127.0.0.1:7402 among them", got, err)
	}
	if _, err := Instances(ctx, "no-port"); err == nil {
		t.Error("Instances(no-port): want an error naming the forms")
	}
}
