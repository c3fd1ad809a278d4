// Command delivery serves DeliveryService: it writes change events to Kafka
// and reports the LSNs Kafka has acknowledged.
package main

import (
	"flag"
	"log"
	"log/slog"
	"os"

	deliveryv1 "github.com/ferry-cdc/ferry/gen/ferry/delivery/v1"
	"github.com/ferry-cdc/ferry/services/delivery"
	"github.com/ferry-cdc/ferry/services/internal/config"
	"github.com/ferry-cdc/ferry/services/internal/grpcserver"
)

// Config is read once at start from flags, which default to the environment.
type Config struct {
	// Listen is the host:port to serve gRPC on.
	Listen string
	// CPUProfile, when set, is where a CPU profile of the whole run is
	// written at exit (for the benchmark; off in production).
	CPUProfile string
}

func loadConfig() Config {
	var c Config
	flag.StringVar(&c.Listen, "listen", config.Env("FERRY_DELIVERY_LISTEN", "127.0.0.1:7403"), "host:port to serve gRPC on (env FERRY_DELIVERY_LISTEN)")
	flag.StringVar(&c.CPUProfile, "cpuprofile", config.Env("FERRY_CPU_PROFILE", ""), "write a CPU profile to this file until exit (env FERRY_CPU_PROFILE)")
	flag.Parse()
	return c
}

func main() {
	cfg := loadConfig()
	logger := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	srv := grpcserver.New("delivery", logger)
	deliveryv1.RegisterDeliveryServiceServer(srv, delivery.NewServer(logger))
	stopProfile := func() error { return nil }
	if cfg.CPUProfile != "" {
		stop, err := grpcserver.ProfileCPU(cfg.CPUProfile)
		if err != nil {
			log.Fatal(err)
		}
		stopProfile = stop
	}
	err := srv.RunUntilSignal(cfg.Listen)
	if perr := stopProfile(); perr != nil && err == nil {
		err = perr
	}
	if err != nil {
		log.Fatal(err)
	}
}
