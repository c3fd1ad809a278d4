package catalog

import (
	"context"
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"

	taskv1 "github.com/ferry-cdc/ferry/gen/ferry/task/v1"
)

// Greenplum 7, and AnalyticDB for PostgreSQL 7 built on it, run a PostgreSQL
// 12 kernel on a coordinator and on every segment. The rows of a user table
// live on the segments, each a PostgreSQL instance with its own WAL; the
// coordinator, where Ferry connects, holds the catalog. Logical decoding is
// per instance: a slot on an upstream Greenplum 7 coordinator decodes none
// of the rows the segments store, and Ferry reads one slot. The managed
// sync this product matches supports AnalyticDB for PostgreSQL from kernel
// 7.2.1.4, so that is the one Greenplum-based source the precheck lets
// through, with what the PostgreSQL 12 kernel cannot do spelled out.

// minADBKernel is the first AnalyticDB for PostgreSQL kernel the managed
// sync to Kafka accepts as a source.
var minADBKernel = []int{7, 2, 1, 4}

// mppFork is what version() and adbpg_version say about a Greenplum-based
// server; name is empty for plain PostgreSQL.
type mppFork struct {
	name    string // "Greenplum", "Greengage", "Cloudberry"
	version []int  // the fork's own version, from version()
	// adb is the AnalyticDB for PostgreSQL kernel version (adbpg_version,
	// for example 7.2.1.4); nil when the server is not AnalyticDB.
	adb    []int
	adbRaw string
}

// forkPattern finds the fork in version()'s parentheses, as in
// "PostgreSQL 12.12 (Greenplum Database 7.1.0 build commit:…) on x86_64…"
// or "PostgreSQL 14.4 (Apache Cloudberry 2.0.0 …)".
var forkPattern = regexp.MustCompile(`\((Greenplum|Greengage|Cloudberry) Database (\d+(?:\.\d+)*)|\(Apache (Cloudberry) (\d+(?:\.\d+)*)`)

// classifyServer reads the fork from version() and the adbpg_version
// setting (empty when the server has none). AnalyticDB reports its kernel
// in adbpg_version; its version() names Greenplum.
func classifyServer(version, adbpgVersion string) mppFork {
	var f mppFork
	if m := forkPattern.FindStringSubmatch(version); m != nil {
		f.name, f.version = m[1]+m[3], parseDotted(m[2]+m[4])
	}
	if adbpgVersion != "" || strings.Contains(version, "AnalyticDB") {
		f.adb, f.adbRaw = parseDotted(adbpgVersion), adbpgVersion
		if f.adb == nil {
			f.adb = []int{} // AnalyticDB that does not say its kernel
		}
		if f.name == "" {
			f.name = "Greenplum"
		}
	}
	return f
}

// parseDotted reads "7.2.1.4" (and "7.0.0-beta.5", "7.2.0_arenadata5") as
// its leading numbers; nil when there are none.
func parseDotted(s string) []int {
	var out []int
	for _, part := range strings.Split(s, ".") {
		end := strings.IndexFunc(part, func(r rune) bool { return r < '0' || r > '9' })
		if end == 0 {
			break
		}
		if end > 0 {
			part = part[:end]
		}
		n, err := strconv.Atoi(part)
		if err != nil {
			break
		}
		out = append(out, n)
		if end > 0 {
			break
		}
	}
	return out
}

// atLeast compares dotted versions, missing parts counting as zero.
func atLeast(v, min []int) bool {
	for i := range max(len(v), len(min)) {
		a, b := 0, 0
		if i < len(v) {
			a = v[i]
		}
		if i < len(min) {
			b = min[i]
		}
		if a != b {
			return a > b
		}
	}
	return true
}

func dotted(v []int) string {
	parts := make([]string, len(v))
	for i, n := range v {
		parts[i] = strconv.Itoa(n)
	}
	return strings.Join(parts, ".")
}

// greenplumID is the precheck item about Greenplum-based sources; as a
// warning (AnalyticDB for PostgreSQL) it can be acknowledged.
const greenplumID = "greenplum"

// kernel12Limits is what Ferry does differently on a PostgreSQL 12 kernel,
// as Greenplum 7 and AnalyticDB for PostgreSQL 7 have.
const kernel12Limits = "full sync reads one exported snapshot, which starts over if interrupted; " +
	"tables added to a running task cannot be backfilled and large transactions are decoded only once committed (both need PostgreSQL 14); " +
	"row filters and whole-schema selections need PostgreSQL 15"

// greenplumItem judges a source from what classifyServer found. versionNum
// is server_version_num; segments the number of primary segments (0 when
// unknown).
func greenplumItem(f mppFork, versionNum, segments int) *taskv1.PrecheckItem {
	if f.name == "" {
		return pass(greenplumID, "the source is PostgreSQL, not Greenplum or AnalyticDB for PostgreSQL")
	}
	what := describeFork(f, versionNum, segments)
	if f.adb == nil {
		return fail(greenplumID, what+": the rows of its tables live on the segments, each with its own WAL, and logical decoding on the coordinator, where Ferry connects, decodes none of them; Ferry would stream no changes",
			"use AnalyticDB for PostgreSQL with kernel 7.2.1.4 or later, or PostgreSQL 12 or later, as the source")
	}
	if !atLeast(f.adb, minADBKernel) {
		return fail(greenplumID, what+": synchronizing AnalyticDB for PostgreSQL to Kafka needs kernel 7.2.1.4 or later",
			"upgrade the instance's minor version to 7.2.1.4 or later in the AnalyticDB for PostgreSQL console, then run the precheck again")
	}
	return warn(greenplumID, what+": Ferry relies on its coordinator decoding the changes its segments store, as the managed sync does from kernel 7.2.1.4, and cannot verify that from its connection; on the PostgreSQL 12 kernel "+kernel12Limits,
		"acknowledge this warning (acknowledged_warnings: greenplum) once the limits are acceptable; compare the first rows in Kafka with the source")
}

// describeFork names the source for the messages, for example
// "the source is AnalyticDB for PostgreSQL kernel 7.2.1.4 (Greenplum 7.0.0, PostgreSQL 12 kernel, 4 segments)".
func describeFork(f mppFork, versionNum, segments int) string {
	var details []string
	if len(f.version) > 0 {
		details = append(details, f.name+" "+dotted(f.version))
	}
	details = append(details, fmt.Sprintf("PostgreSQL %d kernel", versionNum/10000))
	if segments > 0 {
		details = append(details, fmt.Sprintf("%d segments", segments))
	}
	name := f.name
	switch {
	case len(f.adb) > 0:
		name = "AnalyticDB for PostgreSQL kernel " + dotted(f.adb)
	case f.adb != nil:
		name = "AnalyticDB for PostgreSQL, which does not report its kernel version (adbpg_version)"
	case len(f.version) > 0:
		name += " " + dotted(f.version)
		details = details[1:]
	}
	return fmt.Sprintf("the source is %s (%s)", name, strings.Join(details, ", "))
}

// checkGreenplum reads version(), adbpg_version (AnalyticDB's kernel
// version, absent elsewhere) and, where gp_segment_configuration exists,
// the number of primary segments.
func checkGreenplum(ctx context.Context, conn *pgx.Conn) *taskv1.PrecheckItem {
	var version string
	var num int
	var adb *string
	var mpp bool
	err := conn.QueryRow(ctx, `SELECT version(), current_setting('server_version_num')::int, current_setting('adbpg_version', true),
		to_regclass('pg_catalog.gp_segment_configuration') IS NOT NULL`).Scan(&version, &num, &adb, &mpp)
	if err != nil {
		return queryFailed(greenplumID, err)
	}
	f := classifyServer(version, deref(adb))
	if mpp && f.name == "" {
		f.name = "Greenplum" // a fork whose version() does not say so
	}
	segments := 0
	if mpp {
		if err := conn.QueryRow(ctx, `SELECT count(*) FROM gp_segment_configuration WHERE role = 'p' AND content >= 0`).Scan(&segments); err != nil {
			return queryFailed(greenplumID, err)
		}
	}
	return greenplumItem(f, num, segments)
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}
