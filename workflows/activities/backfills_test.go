package activities

import (
	"fmt"
	"testing"

	cdcv1 "github.com/ferry-cdc/ferry/gen/ferry/cdc/v1"
)

func TestBackfillProgressWaitsForItsLSN(t *testing.T) {
	p := newBackfillProgress([]*cdcv1.BackfillProgress{{Schema: "public", Table: "a", EstimatedRows: 5000}})
	p.report(&cdcv1.BackfillProgress{Schema: "public", Table: "a", AfterKey: []string{"500"}, Rows: 500, Lsn: 100}, 90)
	if got := p.snapshot()[0].GetRows(); got != 0 {
		t.Fatalf("progress at LSN 100 confirmed at safe LSN 90: rows = %d", got)
	}
	p.report(&cdcv1.BackfillProgress{Schema: "public", Table: "a", AfterKey: []string{"1000"}, Rows: 1000, Lsn: 200}, 90)
	p.promote(150)
	got := p.snapshot()
	if len(got) != 1 || got[0].GetRows() != 500 || got[0].GetAfterKey()[0] != "500" || got[0].GetEstimatedRows() != 5000 {
		t.Fatalf("after safe LSN 150: %v, want the first chunk only, estimate kept", got)
	}
	// At its own LSN a chunk is not confirmed yet: an earlier batch may
	// carry the same watermark while the chunk's rows are still on their way.
	p.promote(200)
	if got := p.snapshot(); got[0].GetRows() != 500 || len(p.pending) != 1 {
		t.Fatalf("after safe LSN 200: %v (pending %d); want the chunk at 200 still pending", got, len(p.pending))
	}
	p.promote(201)
	if got := p.snapshot(); got[0].GetRows() != 1000 || len(p.pending) != 0 {
		t.Fatalf("after safe LSN 201: %v (pending %d)", got, len(p.pending))
	}
	// A second table's first report adds an entry.
	p.report(&cdcv1.BackfillProgress{Schema: "public", Table: "b", Rows: 7, Done: true, Lsn: 210}, 300)
	if got := p.snapshot(); len(got) != 2 || !got[1].GetDone() {
		t.Fatalf("second table: %v", got)
	}
}

func TestBackfillProgressOfManyTables(t *testing.T) {
	const n = 5000
	var from []*cdcv1.BackfillProgress
	for i := range n {
		from = append(from, &cdcv1.BackfillProgress{Schema: "s", Table: fmt.Sprintf("t%05d", i), EstimatedRows: 9})
	}
	p := newBackfillProgress(from)
	lsn := uint64(100)
	for i := n - 1; i >= 0; i-- { // not in list order
		lsn++
		p.report(&cdcv1.BackfillProgress{Schema: "s", Table: fmt.Sprintf("t%05d", i), AfterKey: []string{"3"}, Rows: 3, Done: true, Lsn: lsn}, lsn)
	}
	p.report(&cdcv1.BackfillProgress{Schema: "s2", Table: "t00000", Rows: 1, Lsn: lsn + 1}, lsn+1)
	// Each report at a safe LSN equal to its own stays pending (see
	// promote); a safe LSN past all of them confirms them.
	p.promote(lsn + 2)
	p.merge([]*cdcv1.BackfillProgress{{Schema: "s", Table: "t00042", Rows: 4, Done: true, Lsn: lsn + 5}}, lsn)
	got := p.snapshot()
	if len(got) != n+1 {
		t.Fatalf("%d entries, want %d", len(got), n+1)
	}
	for i, b := range got[:n] {
		want := uint64(3)
		if i == 42 {
			want = 4
		}
		if b.GetTable() != fmt.Sprintf("t%05d", i) || b.GetRows() != want || !b.GetDone() || b.GetEstimatedRows() != 9 {
			t.Fatalf("entry %d: %v; want t%05d done with %d rows and its estimate", i, b, i, want)
		}
	}
	if last := got[n]; last.GetSchema() != "s2" || last.GetRows() != 1 {
		t.Fatalf("a table of another schema with the same name: %v", last)
	}
}
