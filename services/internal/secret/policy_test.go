package secret

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	capturev1 "github.com/ferry-cdc/ferry/gen/ferry/capture/v1"
	cdcv1 "github.com/ferry-cdc/ferry/gen/ferry/cdc/v1"
	taskv1 "github.com/ferry-cdc/ferry/gen/ferry/task/v1"
)

func fileRef(p string) *taskv1.SecretRef {
	return &taskv1.SecretRef{Source: &taskv1.SecretRef_File{File: p}}
}

func envRef(v string) *taskv1.SecretRef {
	return &taskv1.SecretRef{Source: &taskv1.SecretRef_Env{Env: v}}
}

func testPolicy(t *testing.T) (Policy, string) {
	t.Helper()
	dir := t.TempDir()
	p, err := NewPolicy(" "+dir+" ,", "FERRY_SECRET_", "-secret-dirs", "-secret-env-prefix")
	if err != nil {
		t.Fatal(err)
	}
	return p, dir
}

func TestPolicyAllowsOnlyItsDirectoriesAndPrefix(t *testing.T) {
	p, dir := testPolicy(t)
	outside := t.TempDir()
	if err := os.WriteFile(filepath.Join(outside, "key"), []byte("k"), 0o600); err != nil {
		t.Fatal(err)
	}
	// A link inside the allowed directory to a file outside it is judged
	// by where it points.
	if err := os.Symlink(filepath.Join(outside, "key"), filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	allowed := map[string]*taskv1.SecretRef{
		"file in dir":    fileRef(filepath.Join(dir, "pg-password")),
		"file below dir": fileRef(filepath.Join(dir, "sub", "pw")),
		"prefixed env":   envRef("FERRY_SECRET_PG"),
		"no reference":   nil,
	}
	for name, ref := range allowed {
		if err := p.Allow("source.password", ref); err != nil {
			t.Errorf("%s: refused: %v", name, err)
		}
	}
	refused := map[string]*taskv1.SecretRef{
		"system file":        fileRef("/etc/shadow"),
		"dot-dot escape":     fileRef(filepath.Join(dir, "..", filepath.Base(outside), "key")),
		"sibling with stem":  fileRef(dir + "-other/pw"),
		"link out":           fileRef(filepath.Join(dir, "link")),
		"relative":           fileRef("pw"),
		"unprefixed env":     envRef("AWS_SECRET_ACCESS_KEY"),
		"prefix not a start": envRef("X_FERRY_SECRET_PG"),
	}
	for name, ref := range refused {
		err := p.Allow("source.password", ref)
		if !errors.Is(err, ErrRefused) {
			t.Errorf("%s: want refused, got %v", name, err)
			continue
		}
		if !strings.Contains(err.Error(), "source.password") {
			t.Errorf("%s: the error should name the field: %v", name, err)
		}
	}
}

func TestNewPolicyRefusesRelativeDirectories(t *testing.T) {
	if _, err := NewPolicy("/run/secrets,secrets", "FERRY_SECRET_", "-secret-dirs (FERRY_SECRET_DIRS)", "x"); err == nil || !strings.Contains(err.Error(), "FERRY_SECRET_DIRS") {
		t.Fatalf("want an error naming the setting, got %v", err)
	}
}

func TestCheckFindsReferencesAnywhereInARequest(t *testing.T) {
	p, dir := testPolicy(t)
	w := newWalker(p)
	good := &taskv1.SourceEndpoint{Password: fileRef(filepath.Join(dir, "pw"))}
	bad := &taskv1.SourceEndpoint{Password: fileRef("/etc/shadow")}
	if err := w.check(&capturev1.StartStream{Source: good, SlotName: "s"}); err != nil {
		t.Errorf("an allowed reference was refused: %v", err)
	}
	err := w.check(&capturev1.StartStream{Source: bad, SlotName: "s"})
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "source.password") || !strings.Contains(err.Error(), "-secret-dirs") {
		t.Errorf("want InvalidArgument naming source.password and the setting, got %v", err)
	}
	// Nested deeper, in a task spec's destination.
	spec := &taskv1.TaskSpec{Source: good, Destination: &taskv1.KafkaEndpoint{SaslPassword: envRef("HOME")}}
	if err := w.check(spec); status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "destination.sasl_password") {
		t.Errorf("want the destination's variable refused, got %v", err)
	}
	// Messages whose types cannot hold a reference are not walked, and
	// values that are not protobuf messages pass.
	if err := w.check(&cdcv1.ChangeEvent{Lsn: 1}); err != nil {
		t.Errorf("a change event: %v", err)
	}
	if err := w.check("not a message"); err != nil {
		t.Errorf("a non-message: %v", err)
	}
	if w.canReach((&cdcv1.ChangeEvent{}).ProtoReflect().Descriptor()) {
		t.Error("a change event cannot hold a SecretRef")
	}
}

// An empty prefix would open every variable of the service.
func TestNewPolicyRefusesAnEmptyPrefix(t *testing.T) {
	if _, err := NewPolicy(DefaultDirs, "", "-secret-dirs", "-secret-env-prefix (FERRY_SECRET_ENV_PREFIX)"); err == nil || !strings.Contains(err.Error(), "FERRY_SECRET_ENV_PREFIX") {
		t.Fatalf("want an error naming the setting, got %v", err)
	}
	p, err := NewPolicy(DefaultDirs, DefaultEnvPrefix, "d", "e")
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Allow("source.password", fileRef("/var/run/secrets/kubernetes.io/serviceaccount/token")); err == nil {
		t.Fatal("the default directories let a task name the pod's service-account token")
	}
}
