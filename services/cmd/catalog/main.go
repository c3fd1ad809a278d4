// Command catalog serves CatalogService: source introspection and prechecks.
package main

import (
	"context"
	"flag"
	"log"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	catalogv1 "github.com/ferry-cdc/ferry/gen/ferry/catalog/v1"
	"github.com/ferry-cdc/ferry/services/catalog"
	"github.com/ferry-cdc/ferry/services/internal/grpcserver"
)

// Config is read once at start from flags, which default to the environment.
type Config struct {
	Listen string
}

func loadConfig() Config {
	var c Config
	flag.StringVar(&c.Listen, "listen", envOr("FERRY_CATALOG_LISTEN", "127.0.0.1:7401"), "host:port to serve gRPC on")
	flag.Parse()
	return c
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

func main() {
	cfg := loadConfig()
	logger := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	srv := grpcserver.New("catalog", logger)
	catalogv1.RegisterCatalogServiceServer(srv, catalog.NewServer(logger))
	if err := srv.Run(ctx, cfg.Listen); err != nil {
		log.Fatal(err)
	}
}
