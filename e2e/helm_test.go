package e2e

import (
	"bytes"
	"errors"
	"io"
	"io/fs"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/ferry-cdc/ferry/services/testenv"
)

// The Helm chart (deploy/helm/ferry) is rendered by the pinned helm, with
// its defaults and with every option on, and held to the binaries it runs:
// a chart that names a flag, a port, a variable or a file the processes do
// not agree with fails here, not in a cluster.

const chartDir = "deploy/helm/ferry"

// chartCase is one rendering: the values file (none: the defaults) and the
// task secrets those values mount, as the values name them.
type chartCase struct {
	values, sourceSecret, kafkaSecret string
}

var chartCases = []chartCase{
	{values: "", sourceSecret: "ferry-source"},
	{values: "ci/full-values.yaml", sourceSecret: "ferry-pg", kafkaSecret: "ferry-kafka"},
}

// resolvers are the processes that resolve task secrets (secret.Policy):
// catalog and capture the source's, delivery Kafka's.
var resolvers = map[string]bool{"catalog": true, "capture": true, "delivery": true}

// credentialFlags name files of Ferry's own credentials, each of which must
// be in a mounted Secret.
var credentialFlags = []string{"tls-cert", "tls-key", "tls-ca", "token-file", "payload-key-file"}

func TestHelmChartRunsTheBinariesConsistently(t *testing.T) {
	testenv.Integration(t) // the binaries are built by TestMain outside the fast tier
	helm := pinnedTool(t, "helm")
	for _, c := range chartCases {
		name := c.values
		if name == "" {
			name = "defaults"
		}
		t.Run(filepath.Base(name), func(t *testing.T) {
			checkChart(t, renderChart(t, helm, c.values), c)
		})
	}
}

// pinnedTool builds the tool at deploy/local/versions.env's version if it
// is missing (CI's make lint has built it already) and returns its path.
func pinnedTool(t *testing.T, name string) string {
	t.Helper()
	tools := filepath.Join(repoRoot(), "deploy", "local", "tools.sh")
	if out, err := exec.Command(tools, "ensure", name).CombinedOutput(); err != nil {
		t.Fatalf("tools.sh ensure %s: %v\n%s", name, err, out)
	}
	out, err := exec.Command(tools, "path", name).Output()
	if err != nil {
		t.Fatalf("tools.sh path %s: %v", name, err)
	}
	return strings.TrimSpace(string(out))
}

// renderChart runs helm template as release "ferry" and parses its output.
func renderChart(t *testing.T, helm, values string) *chart {
	t.Helper()
	args := []string{"template", "ferry", filepath.Join(repoRoot(), chartDir), "--namespace", "ferry"}
	if values != "" {
		args = append(args, "--values", filepath.Join(repoRoot(), chartDir, values))
	}
	var stderr bytes.Buffer
	cmd := exec.Command(helm, args...)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("helm %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	c, err := parseChart(out)
	if err != nil {
		t.Fatalf("parsing the rendered chart: %v", err)
	}
	return c
}

// The parts of the rendered objects the checks read.
type (
	meta struct {
		Name        string            `yaml:"name"`
		Labels      map[string]string `yaml:"labels"`
		Annotations map[string]string `yaml:"annotations"`
	}
	object struct {
		Kind     string `yaml:"kind"`
		Metadata meta   `yaml:"metadata"`
	}
	workload struct {
		object `yaml:",inline"`
		Spec   struct {
			Template struct {
				Metadata meta    `yaml:"metadata"`
				Spec     podSpec `yaml:"spec"`
			} `yaml:"template"`
		} `yaml:"spec"`
	}
	podSpec struct {
		AutomountServiceAccountToken *bool       `yaml:"automountServiceAccountToken"`
		Containers                   []container `yaml:"containers"`
		Volumes                      []volume    `yaml:"volumes"`
	}
	volume struct {
		Name   string `yaml:"name"`
		Secret *struct {
			SecretName string `yaml:"secretName"`
		} `yaml:"secret"`
	}
	container struct {
		Name    string   `yaml:"name"`
		Command []string `yaml:"command"`
		Args    []string `yaml:"args"`
		Env     []struct {
			Name string `yaml:"name"`
		} `yaml:"env"`
		Ports []struct {
			Name          string `yaml:"name"`
			ContainerPort int    `yaml:"containerPort"`
		} `yaml:"ports"`
		ReadinessProbe *probe `yaml:"readinessProbe"`
		LivenessProbe  *probe `yaml:"livenessProbe"`
		VolumeMounts   []struct {
			Name      string `yaml:"name"`
			MountPath string `yaml:"mountPath"`
		} `yaml:"volumeMounts"`
	}
	probe struct {
		HTTPGet *struct {
			Path string `yaml:"path"`
			Port string `yaml:"port"` // a number or a port's name
		} `yaml:"httpGet"`
	}
	service struct {
		object `yaml:",inline"`
		Spec   struct {
			Selector  map[string]string `yaml:"selector"`
			Ports     []servicePort     `yaml:"ports"`
			ClusterIP string            `yaml:"clusterIP"`
		} `yaml:"spec"`
	}
	servicePort struct {
		Name       string `yaml:"name"`
		Port       int    `yaml:"port"`
		TargetPort string `yaml:"targetPort"` // a number or a port's name
	}
	serviceMonitor struct {
		object `yaml:",inline"`
		Spec   struct {
			Selector struct {
				MatchLabels map[string]string `yaml:"matchLabels"`
			} `yaml:"selector"`
			Endpoints []endpoint `yaml:"endpoints"`
		} `yaml:"spec"`
	}
	endpoint struct {
		Port string `yaml:"port"`
	}
)

// target is the container port a Service port sends to: by default its own.
func (sp servicePort) target() string {
	if sp.TargetPort == "" {
		return strconv.Itoa(sp.Port)
	}
	return sp.TargetPort
}

// chart is a rendering, by kind.
type chart struct {
	deployments, jobs []workload
	services          []service
	monitors          []serviceMonitor
}

func parseChart(out []byte) (*chart, error) {
	c := &chart{}
	dec := yaml.NewDecoder(bytes.NewReader(out))
	for {
		var doc yaml.Node
		if err := dec.Decode(&doc); errors.Is(err, io.EOF) {
			return c, nil
		} else if err != nil {
			return nil, err
		}
		var o object
		if err := doc.Decode(&o); err != nil {
			return nil, err
		}
		var err error
		switch o.Kind {
		case "Deployment":
			err = decodeInto(&doc, &c.deployments)
		case "Job":
			err = decodeInto(&doc, &c.jobs)
		case "Service":
			err = decodeInto(&doc, &c.services)
		case "ServiceMonitor":
			err = decodeInto(&doc, &c.monitors)
		}
		if err != nil {
			return nil, err
		}
	}
}

func decodeInto[T any](doc *yaml.Node, list *[]T) error {
	var v T
	if err := doc.Decode(&v); err != nil {
		return err
	}
	*list = append(*list, v)
	return nil
}

// process is one Deployment's container as the checks see it.
type process struct {
	bin   string // catalog, capture, …
	w     *workload
	c     *container
	flags map[string]string
}

func checkChart(t *testing.T, c *chart, cc chartCase) {
	procs := checkDeployments(t, c)
	known := ferryEnvNames(t)
	for _, p := range procs {
		checkPorts(t, p)
		checkEnv(t, p, known)
		checkCredentialFiles(t, p)
	}
	checkTaskSecrets(t, procs, cc)
	checkServices(t, c, procs)
	checkScraping(t, c, procs)
	checkTemporal(t, procs)
	checkSearchAttributeJob(t, c, procs)
}

// checkDeployments: one Deployment for each of Ferry's processes, each
// running a binary the image holds with flags that binary has.
func checkDeployments(t *testing.T, c *chart) map[string]*process {
	targets, err := dockerTargets()
	if err != nil {
		t.Fatal(err)
	}
	procs := map[string]*process{}
	for i := range c.deployments {
		w := &c.deployments[i]
		pod := w.Spec.Template.Spec
		if pod.AutomountServiceAccountToken == nil || *pod.AutomountServiceAccountToken {
			t.Errorf("%s mounts the service account's token: no process needs the Kubernetes API", w.Metadata.Name)
		}
		if len(pod.Containers) != 1 || len(pod.Containers[0].Command) != 1 {
			t.Fatalf("%s: want one container with a command of one binary, have %+v", w.Metadata.Name, pod.Containers)
		}
		ct := &pod.Containers[0]
		bin := strings.TrimPrefix(ct.Command[0], "/ferry/")
		if bin == ct.Command[0] || !slices.Contains(targets, "./services/cmd/"+bin) && !slices.Contains(targets, "./workflows/cmd/"+bin) {
			t.Fatalf("%s runs %s, which the Dockerfile does not build into /ferry/ (%v)", w.Metadata.Name, ct.Command[0], targets)
		}
		if procs[bin] != nil {
			t.Fatalf("two Deployments run %s", bin)
		}
		procs[bin] = &process{bin: bin, w: w, c: ct, flags: parseFlags(t, w.Metadata.Name, binaryHelp(t, bin), ct.Args)}
	}
	if got := slices.Sorted(maps.Keys(procs)); !slices.Equal(got, slices.Sorted(slices.Values(services))) {
		t.Fatalf("the chart runs %v, want each of %v once", got, services)
	}
	return procs
}

// parseFlags reads -name=value arguments, each of a flag the binary has.
func parseFlags(t *testing.T, where string, help []byte, args []string) map[string]string {
	t.Helper()
	flags := map[string]string{}
	for _, a := range args {
		if !strings.HasPrefix(a, "-") {
			t.Fatalf("%s: argument %q is not -flag=value", where, a)
		}
		name, value, _ := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if !hasFlag(help, name) {
			t.Errorf("%s runs its binary with -%s, which it does not have", where, name)
		}
		flags[name] = value
	}
	return flags
}

// port is the port of a host:port flag value.
func port(t *testing.T, where, hostPort string) int {
	t.Helper()
	i := strings.LastIndex(hostPort, ":")
	n, err := strconv.Atoi(hostPort[i+1:])
	if i < 0 || err != nil {
		t.Fatalf("%s: %q is not host:port", where, hostPort)
	}
	return n
}

// containerPort resolves a number or a port's name to a port the container
// declares; 0 when it declares none such.
func containerPort(c *container, ref string) int {
	for _, p := range c.Ports {
		if p.Name == ref && ref != "" || strconv.Itoa(p.ContainerPort) == ref {
			return p.ContainerPort
		}
	}
	return 0
}

// checkPorts: the container's ports are the ones the process listens on,
// and the probes ask the metrics port, where /healthz is served.
func checkPorts(t *testing.T, p *process) {
	where := p.w.Metadata.Name
	metrics := port(t, where+" -metrics-addr", p.flags["metrics-addr"])
	if containerPort(p.c, "metrics") != metrics {
		t.Errorf("%s: container port \"metrics\" is %d, -metrics-addr listens on %d", where, containerPort(p.c, "metrics"), metrics)
	}
	if listen, ok := p.flags["listen"]; ok {
		if got, want := containerPort(p.c, "grpc"), port(t, where+" -listen", listen); got != want {
			t.Errorf("%s: container port \"grpc\" is %d, -listen listens on %d", where, got, want)
		}
	} else if p.bin != "worker" {
		t.Errorf("%s runs %s without -listen: it would listen on loopback only", where, p.bin)
	}
	probes := map[string]*probe{"livenessProbe": p.c.LivenessProbe, "readinessProbe": p.c.ReadinessProbe}
	for kind, pr := range probes {
		if pr == nil || pr.HTTPGet == nil {
			t.Errorf("%s has no %s over HTTP (the gRPC probe speaks no TLS)", where, kind)
			continue
		}
		if got := containerPort(p.c, pr.HTTPGet.Port); got != metrics {
			t.Errorf("%s: %s asks port %q, not the metrics port %d", where, kind, pr.HTTPGet.Port, metrics)
		}
		if want := "/healthz"; pr.HTTPGet.Path != want {
			t.Errorf("%s: %s asks %s, not %s", where, kind, pr.HTTPGet.Path, want)
		}
	}
}

// ferryEnvNames are the FERRY_* variables the processes' code reads.
func ferryEnvNames(t *testing.T) map[string]bool {
	t.Helper()
	re := regexp.MustCompile(`"(FERRY_[A-Z0-9_]+)"`)
	names := map[string]bool{}
	for _, dir := range []string{"services", "platform", "workflows"} {
		err := filepath.WalkDir(filepath.Join(repoRoot(), dir), func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
				return err
			}
			b, err := os.ReadFile(path)
			for _, m := range re.FindAllSubmatch(b, -1) {
				names[string(m[1])] = true
			}
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return names
}

// checkEnv: every variable the chart sets is one Ferry reads, or a task
// secret under the default -secret-env-prefix.
func checkEnv(t *testing.T, p *process, known map[string]bool) {
	for _, e := range p.c.Env {
		taskSecret := resolvers[p.bin] && strings.HasPrefix(e.Name, "FERRY_SECRET_")
		if !known[e.Name] && !taskSecret {
			t.Errorf("%s sets %s, which no Ferry process reads", p.w.Metadata.Name, e.Name)
		}
	}
}

// secretMounts are the container's mounts of Secret volumes, by mount
// path, each naming its Secret.
func secretMounts(t *testing.T, p *process) map[string]string {
	t.Helper()
	secrets := map[string]string{}
	for _, v := range p.w.Spec.Template.Spec.Volumes {
		if v.Secret != nil {
			secrets[v.Name] = v.Secret.SecretName
		}
	}
	mounts := map[string]string{}
	for _, m := range p.c.VolumeMounts {
		if !slices.ContainsFunc(p.w.Spec.Template.Spec.Volumes, func(v volume) bool { return v.Name == m.Name }) {
			t.Errorf("%s mounts volume %s, which the pod does not have", p.w.Metadata.Name, m.Name)
		}
		if s, ok := secrets[m.Name]; ok {
			mounts[filepath.Clean(m.MountPath)] = s
		}
	}
	return mounts
}

// checkCredentialFiles: each file a credential flag names is a key of a
// mounted Secret.
func checkCredentialFiles(t *testing.T, p *process) {
	mounts := secretMounts(t, p)
	for _, f := range credentialFlags {
		path, ok := p.flags[f]
		if !ok {
			continue
		}
		if _, ok := mounts[filepath.Dir(filepath.Clean(path))]; !ok {
			t.Errorf("%s: -%s=%s is not a key of a mounted Secret (Secret mounts: %v)", p.w.Metadata.Name, f, path, mounts)
		}
	}
	if p.flags["tls-cert"] == "" || p.flags["tls-key"] == "" || p.flags["tls-ca"] == "" {
		t.Errorf("%s runs without -tls-cert, -tls-key and -tls-ca: it would refuse to start", p.w.Metadata.Name)
	}
	if p.bin == "control" && p.flags["token-file"] == "" {
		t.Errorf("%s: control has no -token-file: only certificate holders could call it", p.w.Metadata.Name)
	}
}

// under reports whether path is dir or inside it.
func under(path, dir string) bool {
	path, dir = filepath.Clean(path), filepath.Clean(dir)
	return path == dir || strings.HasPrefix(path, dir+string(filepath.Separator))
}

// checkTaskSecrets: a Secret no credential flag names is a task secret;
// it is mounted only in a process that resolves task secrets, inside that
// process's -secret-dirs. The source's is in catalog and capture, Kafka's
// in delivery, and the three processes allow the same directories (each
// checks every reference of a spec it receives).
func checkTaskSecrets(t *testing.T, procs map[string]*process, cc chartCase) {
	where := map[string][]string{} // Secret -> processes it is mounted in
	for _, p := range procs {
		for path, secretName := range secretMounts(t, p) {
			if slices.ContainsFunc(credentialFlags, func(f string) bool { return p.flags[f] != "" && under(p.flags[f], path) }) {
				continue
			}
			where[secretName] = append(where[secretName], p.bin)
			if !resolvers[p.bin] {
				t.Errorf("%s mounts Secret %s at %s, but %s resolves no task secret", p.w.Metadata.Name, secretName, path, p.bin)
				continue
			}
			dirs := strings.Split(p.flags["secret-dirs"], ",")
			if !slices.ContainsFunc(dirs, func(d string) bool { return d != "" && under(path, d) }) {
				t.Errorf("%s mounts Secret %s at %s, outside its -secret-dirs %q: specs could not name its files", p.w.Metadata.Name, secretName, path, p.flags["secret-dirs"])
			}
		}
	}
	want := map[string][]string{cc.sourceSecret: {"capture", "catalog"}}
	if cc.kafkaSecret != "" {
		want[cc.kafkaSecret] = []string{"delivery"}
	}
	for s := range where {
		slices.Sort(where[s])
	}
	if !maps.EqualFunc(where, want, slices.Equal) {
		t.Errorf("task secrets are mounted in %v, want %v", where, want)
	}
	if d := procs["catalog"].flags["secret-dirs"]; d == "" || procs["capture"].flags["secret-dirs"] != d || procs["delivery"].flags["secret-dirs"] != d {
		t.Errorf("-secret-dirs differ: catalog %q, capture %q, delivery %q", d, procs["capture"].flags["secret-dirs"], procs["delivery"].flags["secret-dirs"])
	}
}

// matches reports whether a selector picks an object with these labels.
func matches(sel, labels map[string]string) bool {
	for k, v := range sel {
		if labels[k] != v {
			return false
		}
	}
	return len(sel) > 0
}

// selects returns the process a Service's selector picks; nil for none.
func selects(t *testing.T, sel map[string]string, procs map[string]*process) *process {
	t.Helper()
	var found []*process
	for _, p := range procs {
		if matches(sel, p.w.Spec.Template.Metadata.Labels) {
			found = append(found, p)
		}
	}
	if len(found) > 1 {
		t.Fatalf("selector %v picks %d Deployments", sel, len(found))
	}
	if len(found) == 0 {
		return nil
	}
	return found[0]
}

// checkServices: each Service port reaches the container port of the same
// role, and every target a process dials (dns:///name:port) is a gRPC
// Service port of the process it names, on a headless Service, whose DNS
// lists every pod for the client to balance over.
func checkServices(t *testing.T, c *chart, procs map[string]*process) {
	reach := map[string]string{} // "name:port" -> the process serving it
	headless := map[string]bool{}
	for _, s := range c.services {
		p := selects(t, s.Spec.Selector, procs)
		if p == nil {
			t.Errorf("Service %s selects no Deployment", s.Metadata.Name)
			continue
		}
		for _, sp := range s.Spec.Ports {
			target := sp.target()
			got := containerPort(p.c, target)
			if want := containerPort(p.c, sp.Name); sp.Name == "" || got == 0 || got != want {
				t.Errorf("Service %s port %q targets %s (container port %d), not the container's port %q (%d)", s.Metadata.Name, sp.Name, target, got, sp.Name, want)
			}
			if sp.Name == "grpc" {
				reach[s.Metadata.Name+":"+strconv.Itoa(sp.Port)] = p.bin
				headless[s.Metadata.Name+":"+strconv.Itoa(sp.Port)] = s.Spec.ClusterIP == "None"
			}
		}
	}
	for _, p := range procs {
		for _, dep := range []string{"catalog", "capture", "delivery"} {
			target, ok := p.flags[dep]
			if !ok {
				continue
			}
			addr, isDNS := strings.CutPrefix(target, "dns:///")
			switch {
			case !isDNS:
				t.Errorf("%s dials -%s=%s: want dns:///service:port, so that every instance is reached", p.w.Metadata.Name, dep, target)
			case reach[addr] != dep:
				t.Errorf("%s dials -%s=%s, which is no gRPC Service port of %s (Services: %v)", p.w.Metadata.Name, dep, target, dep, reach)
			case !headless[addr]:
				t.Errorf("%s dials -%s=%s, whose Service is not headless (clusterIP: None): DNS would give one address and no balancing", p.w.Metadata.Name, dep, target)
			}
		}
	}
}

// checkScraping: every process's metrics are scraped, through pod
// annotations naming the metrics port or a ServiceMonitor that selects a
// Service with a metrics port for it.
func checkScraping(t *testing.T, c *chart, procs map[string]*process) {
	monitored := map[string]bool{}
	for _, m := range c.monitors {
		for _, s := range c.services {
			p := selects(t, s.Spec.Selector, procs)
			if p == nil || !matches(m.Spec.Selector.MatchLabels, s.Metadata.Labels) {
				continue
			}
			for _, sp := range s.Spec.Ports {
				scraped := slices.ContainsFunc(m.Spec.Endpoints, func(e endpoint) bool { return e.Port == sp.Name })
				if scraped && containerPort(p.c, sp.target()) == containerPort(p.c, "metrics") {
					monitored[p.bin] = true
				}
			}
		}
	}
	for _, p := range procs {
		ann := p.w.Spec.Template.Metadata.Annotations
		metrics := containerPort(p.c, "metrics")
		if ann["prometheus.io/scrape"] == "true" {
			if ann["prometheus.io/port"] != strconv.Itoa(metrics) {
				t.Errorf("%s: prometheus.io/port is %q, the metrics port %d", p.w.Metadata.Name, ann["prometheus.io/port"], metrics)
			}
		} else if !monitored[p.bin] {
			t.Errorf("%s's metrics are scraped neither through annotations nor by a ServiceMonitor", p.w.Metadata.Name)
		}
	}
}

// checkTemporal: control starts tasks where the worker runs them, and both
// seal payloads alike.
func checkTemporal(t *testing.T, procs map[string]*process) {
	for _, f := range []string{"temporal", "namespace", "task-queue", "payload-key-file"} {
		if c, w := procs["control"].flags[f], procs["worker"].flags[f]; c != w {
			t.Errorf("control runs with -%s=%q, the worker with %q", f, c, w)
		}
	}
}

var stackSearchAttributes = regexp.MustCompile(`(?m)^TEMPORAL_SEARCH_ATTRIBUTES=\(([^)]*)\)`)

// checkSearchAttributeJob: a Helm hook registers the search attributes the
// local stack registers, in the Temporal namespace control and the worker
// use, with flags the pinned temporal CLI has.
func checkSearchAttributeJob(t *testing.T, c *chart, procs map[string]*process) {
	if len(c.jobs) != 1 || c.jobs[0].Metadata.Annotations["helm.sh/hook"] == "" || len(c.jobs[0].Spec.Template.Spec.Containers) != 1 {
		t.Fatalf("want one Job, a Helm hook with one container, have %d", len(c.jobs))
	}
	job := c.jobs[0]
	cmd := job.Spec.Template.Spec.Containers[0].Command
	sub := []string{"temporal", "operator", "search-attribute", "create"}
	if len(cmd) < len(sub) || !slices.Equal(cmd[:len(sub)], sub) {
		t.Fatalf("Job %s runs %v, not %v", job.Metadata.Name, cmd, sub)
	}
	help, err := exec.Command(pinnedTool(t, "temporal"), append(sub[1:], "-h")...).CombinedOutput()
	if err != nil {
		t.Fatalf("temporal %s -h: %v\n%s", strings.Join(sub[1:], " "), err, help)
	}
	var names []string
	flags := map[string]string{}
	for _, a := range cmd[len(sub):] {
		name, value, _ := strings.Cut(strings.TrimPrefix(a, "--"), "=")
		if !strings.HasPrefix(a, "--") || !regexp.MustCompile(`(?m)^\s+(-\w, )?--`+regexp.QuoteMeta(name)+`\b`).Match(help) {
			t.Errorf("Job %s runs the temporal CLI with %q, which it does not have", job.Metadata.Name, a)
		}
		if name == "name" {
			names = append(names, value)
		}
		flags[name] = value
	}
	for i := range names { // one --type types every --name, as in stack.sh's NAME=TYPE
		names[i] += "=" + flags["type"]
	}
	stack, err := os.ReadFile(filepath.Join(repoRoot(), "deploy", "local", "stack.sh"))
	if err != nil {
		t.Fatal(err)
	}
	m := stackSearchAttributes.FindSubmatch(stack)
	if m == nil {
		t.Fatal("deploy/local/stack.sh has no TEMPORAL_SEARCH_ATTRIBUTES=(…)")
	}
	if want := strings.Fields(string(m[1])); !slices.Equal(slices.Sorted(slices.Values(names)), slices.Sorted(slices.Values(want))) {
		t.Errorf("Job %s registers %v, the local stack %v", job.Metadata.Name, names, want)
	}
	if flags["address"] != procs["worker"].flags["temporal"] || flags["namespace"] != procs["worker"].flags["namespace"] {
		t.Errorf("Job %s registers in %s namespace %s, the worker runs on %s namespace %s", job.Metadata.Name,
			flags["address"], flags["namespace"], procs["worker"].flags["temporal"], procs["worker"].flags["namespace"])
	}
}
