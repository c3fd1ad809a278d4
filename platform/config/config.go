// Package config holds what every Ferry binary's Config loading shares:
// the services, the worker, the benchmark and the test helpers read their
// defaults from the environment the same way.
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

// EnvOrOff is Env for settings that an empty value turns off: a variable
// set to the empty string gives "", and only an unset one gives def.
func EnvOrOff(key, def string) string {
	if v, ok := os.LookupEnv(key); ok {
		return v
	}
	return def
}
