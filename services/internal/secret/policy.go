package secret

import (
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"

	taskv1 "github.com/ferry-cdc/ferry/gen/ferry/task/v1"
)

// Policy is where a service may read secrets from. Task specs arrive from
// callers of the control API; without a policy, any caller could name
// /etc/shadow or AWS_SECRET_ACCESS_KEY as a "password" and have the service
// send it to a host of the caller's choosing.
type Policy struct {
	// Dirs are the directories (and their subdirectories) secret files may
	// be in, after symbolic links are followed.
	Dirs []string
	// EnvPrefix starts the name of every variable a secret may come from.
	EnvPrefix string
	// Setting names where an operator changes Dirs and EnvPrefix, for the
	// errors: for example "-secret-dirs (FERRY_SECRET_DIRS)".
	DirsSetting, EnvSetting string
}

// DefaultDirs are Ferry's own directories for mounted secrets. Not the
// whole of /run/secrets: Kubernetes mounts the pod's service-account token
// under /var/run/secrets/kubernetes.io, which no task may name.
const DefaultDirs = "/run/secrets/ferry,/etc/ferry/secrets"

// DefaultEnvPrefix keeps a service's other variables (credentials of the
// host, Ferry's own settings) out of reach.
const DefaultEnvPrefix = "FERRY_SECRET_"

// NewPolicy builds a policy from a comma-separated list of absolute
// directories and an environment variable prefix.
func NewPolicy(dirs, envPrefix, dirsSetting, envSetting string) (Policy, error) {
	if envPrefix == "" {
		// An empty prefix would let a task name any variable of the
		// service: credentials of the host included.
		return Policy{}, fmt.Errorf("%s is empty; name a prefix such as %s", envSetting, DefaultEnvPrefix)
	}
	p := Policy{EnvPrefix: envPrefix, DirsSetting: dirsSetting, EnvSetting: envSetting}
	for _, d := range strings.Split(dirs, ",") {
		d = strings.TrimSpace(d)
		if d == "" {
			continue
		}
		if !filepath.IsAbs(d) {
			return Policy{}, fmt.Errorf("%s: %q is not an absolute directory", dirsSetting, d)
		}
		if r := realPath(filepath.Clean(d)); !slices.Contains(p.Dirs, r) {
			p.Dirs = append(p.Dirs, r) // /var/run is often a link to /run
		}
	}
	return p, nil
}

// ErrRefused marks a reference the policy does not allow.
var ErrRefused = errors.New("secret reference refused")

// Allow checks a reference against the policy; field names where the
// reference is in the request, for the error.
func (p Policy) Allow(field string, ref *taskv1.SecretRef) error {
	switch src := ref.GetSource().(type) {
	case *taskv1.SecretRef_File:
		if !filepath.IsAbs(src.File) {
			return fmt.Errorf("%w: %s names file %q, which is not an absolute path", ErrRefused, field, src.File)
		}
		path := realPath(filepath.Clean(src.File))
		for _, d := range p.Dirs {
			if path == d || strings.HasPrefix(path, d+string(filepath.Separator)) {
				return nil
			}
		}
		return fmt.Errorf("%w: %s names file %s, outside the directories this service reads secrets from (%s); move the secret into one of them, or add its directory to %s",
			ErrRefused, field, src.File, strings.Join(p.Dirs, ", "), p.DirsSetting)
	case *taskv1.SecretRef_Env:
		if !strings.HasPrefix(src.Env, p.EnvPrefix) {
			return fmt.Errorf("%w: %s names variable %s, but this service reads secrets only from variables starting with %q; rename the variable, or change %s",
				ErrRefused, field, src.Env, p.EnvPrefix, p.EnvSetting)
		}
	}
	return nil
}

// realPath follows symbolic links where the path exists, so that a link
// inside an allowed directory cannot point outside it; a missing path is
// judged as written (reading it fails anyway).
func realPath(p string) string {
	if r, err := filepath.EvalSymlinks(p); err == nil {
		return r
	}
	if r, err := filepath.EvalSymlinks(filepath.Dir(p)); err == nil {
		return filepath.Join(r, filepath.Base(p))
	}
	return p
}
