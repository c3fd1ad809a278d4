package secret

import (
	"flag"

	"github.com/ferry-cdc/ferry/platform/config"
)

// Settings is where a service that resolves task secrets may read them,
// as its flags give it.
type Settings struct {
	Dirs, EnvPrefix string
}

// Register adds -secret-dirs and -secret-env-prefix to fs, defaulting to
// FERRY_SECRET_DIRS and FERRY_SECRET_ENV_PREFIX.
func (s *Settings) Register(fs *flag.FlagSet) {
	fs.StringVar(&s.Dirs, "secret-dirs", config.Env("FERRY_SECRET_DIRS", DefaultDirs),
		"comma-separated absolute directories that task secrets of kind file may be in (env FERRY_SECRET_DIRS)")
	fs.StringVar(&s.EnvPrefix, "secret-env-prefix", config.Env("FERRY_SECRET_ENV_PREFIX", DefaultEnvPrefix),
		"prefix every environment variable named by a task secret of kind env must have (env FERRY_SECRET_ENV_PREFIX)")
}

// Policy is the checked form of the settings.
func (s Settings) Policy() (Policy, error) {
	return NewPolicy(s.Dirs, s.EnvPrefix, "-secret-dirs (FERRY_SECRET_DIRS)", "-secret-env-prefix (FERRY_SECRET_ENV_PREFIX)")
}
