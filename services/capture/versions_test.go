package capture

import (
	"fmt"
	"maps"
	"slices"
	"testing"

	"github.com/ferry-cdc/ferry/services/testenv"
)

// versionSuite is the part of capture's tests that must hold on every
// supported PostgreSQL: the stream, its acks and restarts, the heartbeat,
// and the backfill beside live changes, whose watermarks travel as logical
// messages from 14 and through Ferry's signal table before, and row
// filters, which Ferry evaluates itself before 15. The tests run
// as written, against a private server of each version (AsShared).
var versionSuite = map[string]func(*testing.T){
	"StreamChangesEndToEnd":                 TestStreamChangesEndToEnd,
	"RestartWithoutAckRedelivers":           TestRestartWithoutAckRedelivers,
	"QuotedNamesAndRelease":                 TestQuotedNamesAndRelease,
	"BackfillBesideLiveChanges":             TestBackfillBesideLiveChangesRebuildsTheTable,
	"BackfillResumesAfterTheLastAckedChunk": TestBackfillResumesAfterTheLastAckedChunk,
	// Before 15 Ferry evaluates filters itself (rowfilter.Program).
	"RowFilterStreamsMatchingRows":         TestRowFilterStreamsMatchingRows,
	"RowFilterRefusalsLeaveThePublication": TestRowFilterRefusalsLeaveThePublication,
	"RowFilterSnapshotAndBackfill":         TestRowFilterSnapshotAndBackfill,
}

// TestEveryVersion runs versionSuite on each supported major but 15, which
// the rest of the package covers on the shared server.
func TestEveryVersion(t *testing.T) {
	for _, major := range testenv.SupportedMajors {
		if major == 15 {
			continue
		}
		t.Run(fmt.Sprint(major), func(t *testing.T) {
			testenv.StartPostgresVersion(t, major).AsShared(t)
			for _, name := range slices.Sorted(maps.Keys(versionSuite)) {
				t.Run(name, versionSuite[name])
			}
		})
	}
}
