// Package config holds what every Ferry binary's Config loading shares.
package config

import "os"

// Env returns the environment variable key, or def when it is unset or
// empty. Flags take their defaults from it, so a flag beats the environment.
func Env(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}
