// Package secret resolves SecretRefs where a service runs, so that passwords
// never travel through Temporal histories or task specs.
package secret

import (
	"fmt"
	"os"
	"strings"

	taskv1 "github.com/ferry-cdc/ferry/gen/ferry/task/v1"
)

// Resolve returns the secret ref points at. A nil or empty ref is the empty
// secret, which is valid for trust authentication.
func Resolve(ref *taskv1.SecretRef) (string, error) {
	switch src := ref.GetSource().(type) {
	case nil:
		return "", nil
	case *taskv1.SecretRef_File:
		b, err := os.ReadFile(src.File)
		if err != nil {
			return "", fmt.Errorf("reading secret file %s: %w (check the path and that this service may read it)", src.File, err)
		}
		return strings.TrimRight(string(b), "\r\n"), nil
	case *taskv1.SecretRef_Env:
		v, ok := os.LookupEnv(src.Env)
		if !ok {
			return "", fmt.Errorf("secret environment variable %s is not set in this service's environment", src.Env)
		}
		return v, nil
	default:
		return "", fmt.Errorf("unknown secret source %T", src)
	}
}
