// Command capture serves CaptureService: replication slot management and the
// PostgreSQL change stream.
package main

import (
	"flag"
	"fmt"
	"log"
	"log/slog"
	"os"

	capturev1 "github.com/ferry-cdc/ferry/gen/ferry/capture/v1"
	"github.com/ferry-cdc/ferry/services/capture"
	"github.com/ferry-cdc/ferry/services/internal/config"
	"github.com/ferry-cdc/ferry/services/internal/grpcserver"
)

// Config is read once at start from flags, which default to the environment.
type Config struct {
	Listen   string
	LogLevel slog.Level
}

func loadConfig() (Config, error) {
	var c Config
	var level string
	flag.StringVar(&c.Listen, "listen", config.Env("FERRY_CAPTURE_LISTEN", "127.0.0.1:7402"), "host:port to serve gRPC on")
	flag.StringVar(&level, "log-level", config.Env("FERRY_CAPTURE_LOG_LEVEL", "info"), "debug, info, warn or error")
	flag.Parse()
	if err := c.LogLevel.UnmarshalText([]byte(level)); err != nil {
		return c, fmt.Errorf("invalid log level %q: %w", level, err)
	}
	return c, nil
}

func main() {
	cfg, err := loadConfig()
	if err != nil {
		log.Fatal(err)
	}
	logger := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: cfg.LogLevel}))
	srv := grpcserver.New("capture", logger)
	capturev1.RegisterCaptureServiceServer(srv, capture.NewServer(logger))
	if err := srv.RunUntilSignal(cfg.Listen); err != nil {
		log.Fatal(err)
	}
}
