// Command ferryctl is Ferry's command-line client for the control API.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"time"

	"github.com/ferry-cdc/ferry/platform/config"
	"github.com/ferry-cdc/ferry/services/ferryctl"
)

// loadConfig reads the global flags, which stand before the command; the
// command's own flags are parsed by the ferryctl package.
func loadConfig() (ferryctl.Config, []string) {
	c := ferryctl.Config{Output: ferryctl.OutputText}
	flag.StringVar(&c.Server, "server", config.Env("FERRY_CONTROL_ADDRESS", "127.0.0.1:7400"), "the control API's `host:port` (env FERRY_CONTROL_ADDRESS)")
	flag.DurationVar(&c.Timeout, "timeout", 30*time.Second, "bound on the whole command, every call it makes included")
	c.Transport.Register(flag.CommandLine)
	flag.StringVar(&c.TokenFile, "token-file", config.Env("FERRY_CONTROL_TOKEN_FILE", ""), "file holding the control API's bearer token (env FERRY_CONTROL_TOKEN_FILE); empty: none sent")
	flag.Func("output", "`text` for people (the default) or json, the response as protojson", func(s string) error {
		o, err := ferryctl.ParseOutput(s)
		c.Output = o
		return err
	})
	flag.Usage = func() {
		ferryctl.WriteUsage(flag.CommandLine.Output())
		_, _ = fmt.Fprintln(flag.CommandLine.Output(), "\nglobal flags:")
		flag.PrintDefaults()
	}
	flag.Parse()
	return c, flag.Args()
}

func main() {
	cfg, args := loadConfig()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	code := ferryctl.Run(ctx, cfg, args, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
