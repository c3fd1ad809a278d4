package secret

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	taskv1 "github.com/ferry-cdc/ferry/gen/ferry/task/v1"
)

func TestResolveFileTrimsNewline(t *testing.T) {
	p := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(p, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := Resolve(&taskv1.SecretRef{Source: &taskv1.SecretRef_File{File: p}})
	if err != nil || got != "s3cret" {
		t.Fatalf("Resolve = %q, %v; want s3cret", got, err)
	}
}

func TestResolveEnv(t *testing.T) {
	t.Setenv("FERRY_TEST_SECRET", "from-env")
	got, err := Resolve(&taskv1.SecretRef{Source: &taskv1.SecretRef_Env{Env: "FERRY_TEST_SECRET"}})
	if err != nil || got != "from-env" {
		t.Fatalf("Resolve = %q, %v; want from-env", got, err)
	}
}

func TestResolveErrorsNameTheSource(t *testing.T) {
	_, err := Resolve(&taskv1.SecretRef{Source: &taskv1.SecretRef_Env{Env: "FERRY_TEST_MISSING"}})
	if err == nil || !strings.Contains(err.Error(), "FERRY_TEST_MISSING") {
		t.Fatalf("missing env: err = %v, want one naming the variable", err)
	}
	_, err = Resolve(&taskv1.SecretRef{Source: &taskv1.SecretRef_File{File: "/nonexistent/pw"}})
	if err == nil || !strings.Contains(err.Error(), "/nonexistent/pw") {
		t.Fatalf("missing file: err = %v, want one naming the path", err)
	}
	if got, err := Resolve(nil); err != nil || got != "" {
		t.Fatalf("Resolve(nil) = %q, %v; want empty", got, err)
	}
}
