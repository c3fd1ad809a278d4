// Command catalog serves CatalogService: source introspection and prechecks.
package main

import (
	"flag"
	"log"
	"log/slog"
	"os"

	catalogv1 "github.com/ferry-cdc/ferry/gen/ferry/catalog/v1"
	"github.com/ferry-cdc/ferry/services/catalog"
	"github.com/ferry-cdc/ferry/services/internal/config"
	"github.com/ferry-cdc/ferry/services/internal/grpcserver"
)

// Config is read once at start from flags, which default to the environment.
type Config struct {
	Listen string
}

func loadConfig() Config {
	var c Config
	flag.StringVar(&c.Listen, "listen", config.Env("FERRY_CATALOG_LISTEN", "127.0.0.1:7401"), "host:port to serve gRPC on")
	flag.Parse()
	return c
}

func main() {
	cfg := loadConfig()
	logger := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	srv := grpcserver.New("catalog", logger)
	catalogv1.RegisterCatalogServiceServer(srv, catalog.NewServer(logger))
	if err := srv.RunUntilSignal(cfg.Listen); err != nil {
		log.Fatal(err)
	}
}
