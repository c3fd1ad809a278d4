package config

import (
	"flag"

	"github.com/ferry-cdc/ferry/services/internal/secret"
)

// Secrets is where a service that resolves task secrets may read them.
type Secrets struct {
	Dirs, EnvPrefix string
}

// Register adds -secret-dirs and -secret-env-prefix to fs, defaulting to
// FERRY_SECRET_DIRS and FERRY_SECRET_ENV_PREFIX.
func (s *Secrets) Register(fs *flag.FlagSet) {
	fs.StringVar(&s.Dirs, "secret-dirs", Env("FERRY_SECRET_DIRS", secret.DefaultDirs),
		"comma-separated absolute directories that task secrets of kind file may be in (env FERRY_SECRET_DIRS)")
	fs.StringVar(&s.EnvPrefix, "secret-env-prefix", Env("FERRY_SECRET_ENV_PREFIX", secret.DefaultEnvPrefix),
		"prefix every environment variable named by a task secret of kind env must have (env FERRY_SECRET_ENV_PREFIX)")
}

// Policy is the checked form of the settings.
func (s Secrets) Policy() (secret.Policy, error) {
	return secret.NewPolicy(s.Dirs, s.EnvPrefix, "-secret-dirs (FERRY_SECRET_DIRS)", "-secret-env-prefix (FERRY_SECRET_ENV_PREFIX)")
}
