// Package grpcserver gives every Ferry service the same gRPC server: health,
// reflection (so grpcurl works with no proto files), and graceful shutdown.
package grpcserver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/reflection"

	"github.com/ferry-cdc/ferry/platform/grpccodec"
)

// Server is a gRPC server that reports SERVING once Run has bound its port.
type Server struct {
	*grpc.Server
	health *health.Server
	name   string
	logger *slog.Logger
}

// New returns a server; register services on it before Run. It encodes
// with grpccodec, which decodes Ferry's messages without reflection.
func New(name string, logger *slog.Logger, opts ...grpc.ServerOption) *Server {
	// MaxConnectionAge makes clients open a new connection now and then
	// (GOAWAY), and so resolve their target again: a client learns of an
	// instance added behind a DNS name only when it resolves. Calls running
	// on the old connection, streams above all, go on to their end.
	reconnect := grpc.KeepaliveParams(keepalive.ServerParameters{MaxConnectionAge: 5 * time.Minute})
	s := grpc.NewServer(append([]grpc.ServerOption{grpccodec.ServerOption(), reconnect}, opts...)...)
	h := health.NewServer()
	healthpb.RegisterHealthServer(s, h)
	reflection.Register(s)
	return &Server{Server: s, health: h, name: name, logger: logger}
}

// HealthHandler answers an HTTP probe with the gRPC health service's
// overall status (200 while SERVING, 503 otherwise): Kubernetes' own gRPC
// probe speaks no TLS, and the services speak nothing else.
func (s *Server) HealthHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		res, err := s.health.Check(r.Context(), &healthpb.HealthCheckRequest{})
		if err != nil || res.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			http.Error(w, "not serving", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("SERVING\n"))
	})
}

// RunUntilSignal serves on addr until SIGINT or SIGTERM.
func (s *Server) RunUntilSignal(addr string) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return s.Run(ctx, addr)
}

// Run serves on addr until ctx ends, then drains in-flight calls for up to
// ten seconds before closing them.
func (s *Server) Run(ctx context.Context, addr string) error {
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listening on %s for %s: %w", addr, s.name, err)
	}
	for svc := range s.GetServiceInfo() {
		s.health.SetServingStatus(svc, healthpb.HealthCheckResponse_SERVING)
	}
	s.health.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	s.logger.Info("serving", "service", s.name, "addr", lis.Addr().String())

	errc := make(chan error, 1)
	go func() { errc <- s.Serve(lis) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serving %s: %w", s.name, err)
	case <-ctx.Done():
	}
	s.health.Shutdown()
	stopped := make(chan struct{})
	go func() { s.GracefulStop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(10 * time.Second):
		s.Stop()
	}
	if err := <-errc; err != nil && !errors.Is(err, grpc.ErrServerStopped) {
		return fmt.Errorf("serving %s: %w", s.name, err)
	}
	return nil
}
