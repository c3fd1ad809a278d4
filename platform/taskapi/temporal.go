package taskapi

import (
	"flag"
	"fmt"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/log"

	"github.com/ferry-cdc/ferry/platform/config"
)

// TemporalSettings is how the worker and the control API reach Temporal:
// the same flags and environment in both, and the same payload key, which
// they must share for either to read what the other wrote.
type TemporalSettings struct {
	Address, Namespace, TaskQueue string
	// PayloadKeyFile seals every workflow payload (EncryptionCodec); empty
	// leaves them in clear.
	PayloadKeyFile string
}

// Register adds -temporal, -namespace, -task-queue and -payload-key-file.
func (s *TemporalSettings) Register(fs *flag.FlagSet) {
	fs.StringVar(&s.Address, "temporal", config.Env("FERRY_TEMPORAL_ADDRESS", "127.0.0.1:7233"), "Temporal frontend host:port")
	fs.StringVar(&s.Namespace, "namespace", config.Env("FERRY_TEMPORAL_NAMESPACE", "default"), "Temporal namespace")
	fs.StringVar(&s.TaskQueue, "task-queue", config.Env("FERRY_TASK_QUEUE", DefaultTaskQueue), "Temporal task queue tasks run on")
	fs.StringVar(&s.PayloadKeyFile, "payload-key-file", config.Env("FERRY_PAYLOAD_KEY_FILE", ""),
		"AES-256 key (32 bytes, raw or hex) that seals workflow payloads in Temporal; the worker and the control API need the same key")
}

// Dial connects with Ferry's data converter, sealed when a key is set. The
// codec is nil without a key.
func (s TemporalSettings) Dial(logger log.Logger) (client.Client, converter.PayloadCodec, error) {
	codec, err := PayloadCodec(s.PayloadKeyFile)
	if err != nil {
		return nil, nil, err
	}
	tc, err := client.Dial(client.Options{
		HostPort: s.Address, Namespace: s.Namespace, Logger: logger,
		DataConverter: DataConverterWith(codec), FailureConverter: FailureConverterWith(codec),
	})
	if err != nil {
		return nil, nil, fmt.Errorf("connecting to Temporal at %s: %w", s.Address, err)
	}
	return tc, codec, nil
}
