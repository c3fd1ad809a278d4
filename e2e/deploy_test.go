package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/ferry-cdc/ferry/services/testenv"
)

// The image (deploy/k8s/Dockerfile) is built where Docker runs, which CI is
// not; so its Go build is the one place that lists Ferry's binaries, the
// suite builds exactly that list, and these tests hold the manifests to it.

var dockerBuild = regexp.MustCompile(`(?s)go build -o /out/ ((?:\\\s*\n\s*|[^\n])*)`)

// dockerTargets are the packages the Dockerfile builds, as "./services/cmd/x".
func dockerTargets() ([]string, error) {
	b, err := os.ReadFile(filepath.Join(repoRoot(), "deploy", "k8s", "Dockerfile"))
	if err != nil {
		return nil, err
	}
	m := dockerBuild.FindSubmatch(b)
	if m == nil {
		return nil, fmt.Errorf("deploy/k8s/Dockerfile has no `go build -o /out/ …` line")
	}
	return strings.Fields(strings.ReplaceAll(string(m[1]), "\\", " ")), nil
}

func TestDockerfileBuildsEveryBinary(t *testing.T) {
	targets, err := dockerTargets()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("go", "list", "-f", `{{if eq .Name "main"}}{{.Dir}}{{end}}`, "./services/...", "./workflows/...")
	cmd.Dir = repoRoot()
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("listing main packages: %v", err)
	}
	var mains []string
	for _, dir := range strings.Fields(string(out)) {
		rel, err := filepath.Rel(repoRoot(), dir)
		if err != nil {
			t.Fatal(err)
		}
		mains = append(mains, "./"+filepath.ToSlash(rel))
	}
	slices.Sort(mains)
	slices.Sort(targets)
	if !slices.Equal(mains, targets) {
		t.Fatalf("the Dockerfile builds %v, but the services and the worker have the commands %v: list each in its go build", targets, mains)
	}
}

var manifestCommand = regexp.MustCompile(`(?s)command: \[(/ferry/[^\]]*)\]`)

// Every container of deploy/k8s/ferry.yaml runs a binary the image holds,
// with flags that binary has.
func TestKubernetesManifestRunsTheBinariesWithTheirFlags(t *testing.T) {
	testenv.Integration(t) // the binaries are built by TestMain outside the fast tier
	b, err := os.ReadFile(filepath.Join(repoRoot(), "deploy", "k8s", "ferry.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	commands := manifestCommand.FindAllSubmatch(b, -1)
	if len(commands) != len(services) {
		t.Fatalf("ferry.yaml runs %d commands, want one for each of %v", len(commands), services)
	}
	for _, m := range commands {
		args := strings.FieldsFunc(string(m[1]), func(r rune) bool { return r == ',' || r == ' ' || r == '\n' })
		bin := filepath.Join(binDir, filepath.Base(args[0]))
		help, _ := exec.Command(bin, "-h").CombinedOutput() // flag's -h exits 2
		if !strings.Contains(string(help), "Usage of") {
			t.Fatalf("%s -h: %s", args[0], help)
		}
		for _, a := range args[1:] {
			name := strings.TrimLeft(strings.SplitN(a, "=", 2)[0], "-")
			if !regexp.MustCompile(`(?m)^\s+-` + regexp.QuoteMeta(name) + `\b`).Match(help) {
				t.Errorf("ferry.yaml runs %s with -%s, which it does not have", args[0], name)
			}
		}
	}
}
