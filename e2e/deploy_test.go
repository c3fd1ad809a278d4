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

// binaryHelp is the -h text of one of the suite's binaries (the
// Dockerfile's), which lists every flag it has.
func binaryHelp(t *testing.T, bin string) []byte {
	t.Helper()
	help, _ := exec.Command(filepath.Join(binDir, filepath.Base(bin)), "-h").CombinedOutput() // flag's -h exits 2
	if !strings.Contains(string(help), "Usage of") {
		t.Fatalf("%s -h: %s", bin, help)
	}
	return help
}

// hasFlag reports whether -h text lists the flag -name.
func hasFlag(help []byte, name string) bool {
	return regexp.MustCompile(`(?m)^\s+-` + regexp.QuoteMeta(name) + `\b`).Match(help)
}
