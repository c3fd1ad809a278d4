package e2e

import (
	"fmt"
	"testing"
	"time"

	"github.com/ferry-cdc/ferry/services/testenv"
)

// The version matrix: end-to-end tests of this suite, run as written
// against a private PostgreSQL of each supported major but 15, which the
// rest of the suite covers on the shared server (AsShared points the
// suite's source settings at the private one). Budget: at most 12 minutes
// of .ci/run on 2 cores in all, so the longer scenarios run where the code
// paths differ, and versionMatrix says which run where.
//
//   - round trips in Canal JSON and DTS Avro, partitioned tables, a table
//     added to a running task, filters and TRUNCATE: every version;
//   - the chunked full sync beside a writer, with capture killed (SIGKILL)
//     and resumed, every row counted: every version (before 14 its
//     watermarks go through Ferry's signal table);
//   - worker and capture killed under a writer, every row counted: 12 and
//     17, the oldest and newest (every version kills capture in the
//     chunked full sync);
//   - the exported snapshot's seam under a writer (200,000 rows): 12, where
//     a table is one chunk (no TID range scans before 14);
//   - exactly-once chunked full sync under kills: 12, whose watermarks go
//     through the signal table.
//
// Measured on 2 cores in a whole CI run: 10 min 53 s with the kill test on
// every version and the seam on 17 too, which took .ci/run to 30 min 23 s;
// without those, about 8 min 20 s.
var versionMatrix = []struct {
	name  string
	test  func(*testing.T)
	where []int
}{
	{"RoundTripCanal", TestInsertUpdateDeleteRoundTrip, []int{12, 13, 14, 16, 17}},
	{"RoundTripAvro", TestAvroInsertUpdateDeleteRoundTrip, []int{12, 13, 14, 16, 17}},
	{"PartitionedAndAddedTables", TestPartitionedAndAddedTables, []int{12, 13, 14, 16, 17}},
	{"TruncateReachesTheDDLTopicInOrder", TestTruncateReachesTheDDLTopicInOrder, []int{12, 13, 14, 16, 17}},
	{"ChunkedFullSyncResumesAfterCaptureKill", TestChunkedFullSyncResumesAfterCaptureKill, []int{12, 13, 14, 16, 17}},
	{"KillWorkerAndCaptureLosesNothing", TestKillWorkerAndCaptureLosesNothing, []int{12, 17}},
	{"FullSyncSeam", TestFullSyncMeetsIncrementalWithNoGapAndNoDouble, []int{12}},
	{"ExactlyOnceFullSyncSurvivesKills", TestExactlyOnceFullSyncSurvivesKills, []int{12}},
}

func TestSourceVersions(t *testing.T) {
	for _, major := range testenv.SupportedMajors {
		if major == 15 {
			continue
		}
		t.Run(fmt.Sprint(major), func(t *testing.T) {
			begun := time.Now()
			testenv.StartPostgresVersion(t, major).AsShared(t)
			for _, m := range versionMatrix {
				for _, w := range m.where {
					if w == major {
						t.Run(m.name, m.test)
					}
				}
			}
			t.Logf("PostgreSQL %d: the matrix took %s", major, time.Since(begun).Round(time.Second))
		})
	}
}
