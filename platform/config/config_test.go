package config

import "testing"

func TestEnv(t *testing.T) {
	t.Setenv("FERRY_CONFIG_TEST_SET", "v")
	t.Setenv("FERRY_CONFIG_TEST_EMPTY", "")
	cases := []struct {
		key, env, orOff string
	}{
		{"FERRY_CONFIG_TEST_SET", "v", "v"},
		// Empty means "use the default" for Env, and "off" for EnvOrOff.
		{"FERRY_CONFIG_TEST_EMPTY", "def", ""},
		{"FERRY_CONFIG_TEST_UNSET", "def", "def"},
	}
	for _, c := range cases {
		if got := Env(c.key, "def"); got != c.env {
			t.Errorf("Env(%s) = %q, want %q", c.key, got, c.env)
		}
		if got := EnvOrOff(c.key, "def"); got != c.orOff {
			t.Errorf("EnvOrOff(%s) = %q, want %q", c.key, got, c.orOff)
		}
	}
}
