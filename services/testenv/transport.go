package testenv

import (
	"os"
	"path/filepath"
	"strings"

	"github.com/ferry-cdc/ferry/platform/config"
	"github.com/ferry-cdc/ferry/platform/grpcsec"
)

// FerryTransportEnv is the environment that gives Ferry's processes the
// stack's mutual TLS and the control API's token (stack.sh env exports
// it): FERRY_TLS_* and FERRY_CONTROL_TOKEN_FILE from the environment, or
// the stack's files in .local/ferry-tls, as the other settings default to
// the stack's, so that `go test` works without the env.
func FerryTransportEnv() []string {
	dir := filepath.Join(RepoRoot(), ".local", "ferry-tls")
	return []string{
		"FERRY_TLS_CA=" + config.Env("FERRY_TLS_CA", filepath.Join(dir, "ca.pem")),
		"FERRY_TLS_CERT=" + config.Env("FERRY_TLS_CERT", filepath.Join(dir, "ferry.pem")),
		"FERRY_TLS_KEY=" + config.Env("FERRY_TLS_KEY", filepath.Join(dir, "ferry.key")),
		"FERRY_CONTROL_TOKEN_FILE=" + ControlTokenFile(),
	}
}

// FerryTransport is FerryTransportEnv as the settings a client dials with.
func FerryTransport() grpcsec.Settings {
	var s grpcsec.Settings
	for _, kv := range FerryTransportEnv() {
		k, v, _ := strings.Cut(kv, "=")
		switch k {
		case "FERRY_TLS_CA":
			s.CAFile = v
		case "FERRY_TLS_CERT":
			s.CertFile = v
		case "FERRY_TLS_KEY":
			s.KeyFile = v
		}
	}
	return s
}

// ControlTokenFile holds the control API's bearer token.
func ControlTokenFile() string {
	return config.Env("FERRY_CONTROL_TOKEN_FILE", filepath.Join(RepoRoot(), ".local", "ferry-tls", "control.token"))
}

// ControlToken is the control API's bearer token, or "" when the stack
// has made none.
func ControlToken() string {
	b, err := os.ReadFile(ControlTokenFile())
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}
