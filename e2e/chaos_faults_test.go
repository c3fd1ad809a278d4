package e2e

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The faults a chaos round draws from. Each strikes, lasts, and ends; the
// round then waits until the task streams again before the next one. The
// long cuts are not in the list: a round ends with one or with none.
var chaosFaults = []string{
	"kill-catalog", "kill-capture", "kill-delivery", "kill-control", "kill-worker",
	"pg-crash", "kafka-kill", "cut-pg-short", "cut-kafka-short", "spool-full",
}

// chaosWindow is the task's connection and other retry windows, in
// one-second minutes: room for the private broker's JVM to restart on a
// busy two-core machine, and the short cuts stay well inside it.
const chaosWindow = 30

// chaosOtherWindow is the window of other failures (a full spool folder),
// which must be shorter than the connection window.
const chaosOtherWindow = 20

// chaosPlan is what one round does, drawn from its seed alone, so that
// FERRY_CHAOS_SEED=<seed> FERRY_CHAOS_ROUNDS=1 replays it.
type chaosPlan struct {
	seed        uint64
	exactlyOnce bool
	faults      []string
	// incremental says, per fault, to wait for incremental sync before it
	// strikes; the others strike at once, most often in full sync.
	incremental []bool
	longCut     string // "", "cut-pg-long" or "cut-kafka-long"
	rng         *rand.Rand
}

func newChaosPlan(seed uint64) *chaosPlan {
	rng := rand.New(rand.NewPCG(seed, 0xc4a05))
	p := &chaosPlan{seed: seed, rng: rng, exactlyOnce: rng.IntN(2) == 1}
	for _, i := range rng.Perm(len(chaosFaults))[:3] {
		p.faults = append(p.faults, chaosFaults[i])
		p.incremental = append(p.incremental, rng.IntN(2) == 1)
	}
	if rng.IntN(4) == 0 {
		p.longCut = []string{"cut-pg-long", "cut-kafka-long"}[rng.IntN(2)]
	}
	p.override(os.Getenv("FERRY_CHAOS_FAULTS"))
	return p
}

// override replaces the drawn faults with a comma-separated list, to
// narrow down a failing round (FERRY_CHAOS_FAULTS=pg-crash,cut-pg-long);
// the moments and the mode are still the seed's. "none" strikes nothing.
func (p *chaosPlan) override(list string) {
	if list == "" {
		return
	}
	p.faults, p.longCut = nil, ""
	for _, f := range strings.Split(list, ",") {
		switch {
		case f == "none":
		case strings.HasSuffix(f, "-long"):
			p.longCut = f
		default:
			p.faults = append(p.faults, f)
			p.incremental = append(p.incremental, p.rng.IntN(2) == 1)
		}
	}
}

// moment is a random wait before a fault strikes, or a short cut's length.
func (p *chaosPlan) moment(lo, hi time.Duration) time.Duration {
	return lo + time.Duration(p.rng.Int64N(int64(hi-lo)))
}

func (p *chaosPlan) mode() string {
	if p.exactlyOnce {
		return "exactly-once"
	}
	return "at-least-once"
}

func (p *chaosPlan) String() string {
	s := strings.Join(p.faults, ",")
	if p.longCut != "" {
		s += "," + p.longCut
	}
	return s
}

// strike injects one fault and ends it.
func (r *chaosRound) strike(fault string) {
	r.t.Helper()
	switch {
	case strings.HasPrefix(fault, "kill-"):
		name := strings.TrimPrefix(fault, "kill-")
		r.f.kill(name)
		r.f.start(name)
	case fault == "pg-crash":
		r.e.conn = nil
		r.e.pg.Crash()
		r.e.pg.Start()
	case fault == "kafka-kill":
		r.env.broker.Kill()
		r.env.broker.Start()
	case fault == "cut-pg-short":
		r.cutFor(r.pgProxy, r.plan.moment(time.Second, 6*time.Second))
	case fault == "cut-kafka-short":
		r.cutFor(r.env.kafkaProxy, r.plan.moment(time.Second, 6*time.Second))
	case fault == "spool-full":
		r.fillSpool()
	default:
		r.t.Fatalf("unknown fault %q", fault)
	}
}

func (r *chaosRound) cutFor(p *tcpProxy, d time.Duration) {
	p.cut()
	defer p.restore()
	<-time.After(d) // the fault's length, not a wait for a condition
	r.t.Logf("cut %s for %s", p.addr(), d.Round(time.Millisecond))
}

// fillSpool fills capture's spool folder, has the writer run a transaction
// big enough to be streamed and spooled, waits until capture fails to
// write its spool, and frees the space.
func (r *chaosRound) fillSpool() {
	r.t.Helper()
	if r.env.spoolSkip != "" {
		r.skipped = append(r.skipped, "spool-full: "+r.env.spoolSkip)
		r.struck[len(r.struck)-1] += "(skipped)"
		return
	}
	filler := filepath.Join(r.env.spoolDir, "chaos-filler")
	if err := fill(filler); err != nil {
		r.t.Fatalf("filling the spool folder: %v", err)
	}
	defer func() { _ = os.Remove(filler) }()
	bulk := make(chan error, 1)
	go func() { bulk <- r.w.bulkUpdate() }()
	eventually(r.t, 60*time.Second, "capture to fail writing its spool", func() (bool, string) {
		log := r.f.logTail("capture")
		return strings.Contains(log, "(is its folder full?)") || strings.Contains(log, "creating the spool"),
			"task error: " + r.e.f.state(r.e.taskID).GetLastError()
	})
	r.t.Logf("capture failed to spool a streamed transaction into the full folder")
	if err := os.Remove(filler); err != nil {
		r.t.Fatal(err)
	}
	if err := <-bulk; err != nil {
		r.t.Logf("the bulk transaction failed (its outcome is unknown): %v", err)
	}
}

// fill writes path until the file system is full.
func fill(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer func() { _ = f.Close() }()
	buf := make([]byte, 64<<10)
	for {
		if _, err := f.Write(buf); err != nil {
			if errors.Is(err, syscall.ENOSPC) {
				return nil
			}
			return err
		}
	}
}

// mountSpool mounts a small tmpfs for capture's spools. Mounting needs
// root: elsewhere the fault cannot be set up, which fails the run under
// CI=true and is reported in the table otherwise.
func mountSpool(t *testing.T) (dir, skip string) {
	t.Helper()
	dir = t.TempDir()
	if os.Geteuid() != 0 {
		skip = "not root, so no tmpfs to fill"
	} else if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=4m,mode=0700", "tmpfs", dir).CombinedOutput(); err != nil {
		skip = fmt.Sprintf("mount -t tmpfs: %v: %s", err, strings.TrimSpace(string(out)))
	} else {
		t.Cleanup(func() {
			if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
				t.Errorf("umount %s: %v: %s", dir, err, out)
			}
		})
	}
	if skip != "" && os.Getenv("CI") == "true" {
		t.Fatalf("the spool-full fault cannot be set up: %s", skip)
	}
	return dir, skip
}
