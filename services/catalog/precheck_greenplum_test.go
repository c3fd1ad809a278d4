package catalog

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	taskv1 "github.com/ferry-cdc/ferry/gen/ferry/task/v1"
	"github.com/ferry-cdc/ferry/services/internal/pgsource"
	"github.com/ferry-cdc/ferry/services/testenv"
)

// version() as servers printed it, copied from public logs and docs
// (gpstate output, psql sessions); none of these servers runs here.
const (
	gp7_4_0 = "PostgreSQL 12.12 (Greenplum Database 7.4.0 build commit:27de6dc6d00607a5630a41fd2c0ad489f40e2ad4) on x86_64-pc-linux-gnu, compiled by gcc (GCC) 8.5.0 20210514 (Red Hat 8.5.0-22), 64-bit compiled on Jan 31 2025 03:17:23 Bhuvnesh C."
	gp7Beta = "PostgreSQL 12.12 (Greenplum Database 7.0.0-beta.5 build commit:08189b6c918790e7bc32184a6661de14fe22c8d5 Open Source) on x86_64-pc-linux-gnu, compiled by gcc (GCC) 8.5.0 20210514 (Red Hat 8.5.0-18), 64-bit compiled on Aug  1 2023 20:56:54"
	gp7Ad   = "PostgreSQL 12.12 (Greenplum Database 7.2.0_arenadata5 build 103+git7888a88) on x86_64-pc-linux-gnu, compiled by gcc (Ubuntu 11.4.0-1ubuntu1~22.04) 11.4.0, 64-bit compiled on Sep 16 2024 20:02:13 Bhuvnesh C."
	gp6     = "PostgreSQL 9.4.26 (Greenplum Database 6.25.3 build commit:367edc6b4dfd909fe38fc288ade9e294d74e3f9a Open Source) on x86_64-unknown-linux-gnu, compiled by gcc (Ubuntu 7.5.0-3ubuntu1~18.04) 7.5.0, 64-bit compiled on Oct  4 2023 23:27:38"
	hashdat = "PostgreSQL 9.4.26 (Greenplum Database 6.20.0 build 9999) (HashData Warehouse 3.13.8 build 27594) on x86_64-unknown-linux-gnu, compiled by gcc (GCC) 10.2.1 20210130 (Red Hat 10.2.1-11), 64-bit compiled on Feb 10 2023 17:22:03"
	cbdb    = "PostgreSQL 14.4 (Apache Cloudberry 1.6.0+dev.1383.g5cdbab19af build dev) on x86_64-pc-linux-gnu, compiled by gcc (GCC) 8.5.0 20210514 (Red Hat 8.5.0-23), 64-bit compiled on Feb 26 2025 18:20:10"
	pg16    = "PostgreSQL 16.2 (Ubuntu 16.2-1.pgdg22.04+1) on x86_64-pc-linux-gnu, compiled by gcc (Ubuntu 11.4.0-1ubuntu1~22.04) 11.4.0, 64-bit"
	pg12    = "PostgreSQL 12.22 on x86_64-pc-linux-gnu, compiled by gcc (GCC) 8.5.0, 64-bit"
)

func TestClassifyServer(t *testing.T) {
	for _, c := range []struct {
		name, version, adbpg string
		fork                 string
		forkVersion, adb     []int
	}{
		{name: "PostgreSQL 16", version: pg16},
		{name: "PostgreSQL 12", version: pg12},
		{name: "Greenplum 7.4", version: gp7_4_0, fork: "Greenplum", forkVersion: []int{7, 4, 0}},
		{name: "Greenplum 7 beta", version: gp7Beta, fork: "Greenplum", forkVersion: []int{7, 0, 0}},
		{name: "Arenadata Greenplum 7", version: gp7Ad, fork: "Greenplum", forkVersion: []int{7, 2, 0}},
		{name: "Greenplum 6", version: gp6, fork: "Greenplum", forkVersion: []int{6, 25, 3}},
		{name: "HashData", version: hashdat, fork: "Greenplum", forkVersion: []int{6, 20, 0}},
		{name: "Cloudberry", version: cbdb, fork: "Cloudberry", forkVersion: []int{1, 6, 0}},
		// AnalyticDB reports its kernel in adbpg_version, dotted as its
		// documentation writes it (7.2.1.4); version() names Greenplum.
		{name: "AnalyticDB 7.2.1.4", version: gp7Beta, adbpg: "7.2.1.4", fork: "Greenplum", forkVersion: []int{7, 0, 0}, adb: []int{7, 2, 1, 4}},
		{name: "AnalyticDB 6", version: gp6, adbpg: "6.3.6.0", fork: "Greenplum", forkVersion: []int{6, 25, 3}, adb: []int{6, 3, 6, 0}},
		{name: "AnalyticDB in version()", version: "PostgreSQL 12.12 (AnalyticDB for PostgreSQL)", fork: "Greenplum", adb: []int{}},
	} {
		f := classifyServer(c.version, c.adbpg)
		if f.name != c.fork || !slices.Equal(f.version, c.forkVersion) || !slices.Equal(f.adb, c.adb) || (f.adb == nil) != (c.adb == nil) {
			t.Errorf("%s: classified as %q %v, AnalyticDB %v; want %q %v, AnalyticDB %v", c.name, f.name, f.version, f.adb, c.fork, c.forkVersion, c.adb)
		}
	}
}

func TestGreenplumItem(t *testing.T) {
	for _, c := range []struct {
		name, version, adbpg string
		num, segments        int
		sev                  taskv1.Severity
		says                 []string
	}{
		{name: "PostgreSQL", version: pg16, num: 160002, sev: taskv1.Severity_SEVERITY_PASS},
		{name: "Greenplum 7", version: gp7_4_0, num: 120012, segments: 4, sev: taskv1.Severity_SEVERITY_FAIL,
			says: []string{"the source is Greenplum 7.4.0 (PostgreSQL 12 kernel, 4 segments)", "decodes none of them", "AnalyticDB for PostgreSQL with kernel 7.2.1.4"}},
		{name: "Arenadata Greenplum 7", version: gp7Ad, num: 120012, sev: taskv1.Severity_SEVERITY_FAIL, says: []string{"the source is Greenplum 7.2.0 (PostgreSQL 12 kernel)"}},
		{name: "Cloudberry", version: cbdb, num: 140004, segments: 2, sev: taskv1.Severity_SEVERITY_FAIL, says: []string{"the source is Cloudberry 1.6.0 (PostgreSQL 14 kernel, 2 segments)"}},
		{name: "old AnalyticDB 7", version: gp7Beta, adbpg: "7.0.6.1", num: 120012, sev: taskv1.Severity_SEVERITY_FAIL,
			says: []string{"AnalyticDB for PostgreSQL kernel 7.0.6.1", "needs kernel 7.2.1.4 or later", "minor version"}},
		{name: "AnalyticDB 7.2.1.3", version: gp7Beta, adbpg: "7.2.1.3", num: 120012, sev: taskv1.Severity_SEVERITY_FAIL},
		{name: "AnalyticDB 6", version: gp6, adbpg: "6.3.6.0", num: 90426, sev: taskv1.Severity_SEVERITY_FAIL, says: []string{"PostgreSQL 9 kernel"}},
		{name: "AnalyticDB without its kernel version", version: "PostgreSQL 12.12 (AnalyticDB for PostgreSQL)", num: 120012,
			sev: taskv1.Severity_SEVERITY_FAIL, says: []string{"does not report its kernel version"}},
		{name: "AnalyticDB 7.2.1.4", version: gp7Beta, adbpg: "7.2.1.4", num: 120012, segments: 8, sev: taskv1.Severity_SEVERITY_WARN,
			says: []string{"AnalyticDB for PostgreSQL kernel 7.2.1.4 (Greenplum 7.0.0, PostgreSQL 12 kernel, 8 segments)", "cannot verify", "starts over if interrupted", "need PostgreSQL 15"}},
		{name: "AnalyticDB 7.3", version: gp7_4_0, adbpg: "7.3.0.0", num: 120012, sev: taskv1.Severity_SEVERITY_WARN},
	} {
		it := greenplumItem(classifyServer(c.version, c.adbpg), c.num, c.segments)
		if it.GetId() != "greenplum" || it.GetSeverity() != c.sev {
			t.Errorf("%s: item %s is %v, want greenplum %v: %s", c.name, it.GetId(), it.GetSeverity(), c.sev, it.GetMessage())
			continue
		}
		text := it.GetMessage() + " / " + it.GetFix()
		for _, want := range c.says {
			if !strings.Contains(text, want) {
				t.Errorf("%s: %q does not say %q", c.name, text, want)
			}
		}
		if c.sev != taskv1.Severity_SEVERITY_PASS && it.GetFix() == "" {
			t.Errorf("%s: no fix", c.name)
		}
	}
}

func TestGreenplumWarningCanBeAcknowledged(t *testing.T) {
	if !slices.Contains(WarningIDs(), "greenplum") {
		t.Error("WarningIDs lacks greenplum, which AnalyticDB for PostgreSQL sources get as a warning")
	}
}

func TestParseDotted(t *testing.T) {
	for in, want := range map[string][]int{
		"7.2.1.4": {7, 2, 1, 4}, "7.0.0-beta.5": {7, 0, 0}, "7.2.0_arenadata5": {7, 2, 0}, "1.6.0+dev.1383": {1, 6, 0}, "": nil, "x": nil,
	} {
		if got := parseDotted(in); !slices.Equal(got, want) {
			t.Errorf("parseDotted(%q) = %v, want %v", in, got, want)
		}
	}
	if !atLeast([]int{7, 2, 1, 4}, minADBKernel) || !atLeast([]int{7, 3}, minADBKernel) || atLeast([]int{7, 2, 1}, minADBKernel) {
		t.Error("atLeast misorders kernel versions")
	}
}

// The item's queries run on the PostgreSQL 12 kernel that Greenplum 7 and
// AnalyticDB for PostgreSQL 7 have, and pass plain PostgreSQL.
func TestGreenplumCheckOnPostgres12And15(t *testing.T) {
	for _, major := range []int{12, 15} {
		pg := testenv.StartPostgresVersion(t, major)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		conn, err := pgsource.Connect(ctx, pg.Source())
		if err != nil {
			cancel()
			t.Fatalf("PostgreSQL %d: %v", major, err)
		}
		it := checkGreenplum(ctx, conn)
		_ = conn.Close(ctx)
		cancel()
		if it.GetId() != "greenplum" || it.GetSeverity() != taskv1.Severity_SEVERITY_PASS {
			t.Errorf("PostgreSQL %d: item %v, want greenplum PASS", major, it)
		}
	}
}
