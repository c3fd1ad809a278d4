package activities

import (
	"google.golang.org/protobuf/proto"

	cdcv1 "github.com/ferry-cdc/ferry/gen/ferry/cdc/v1"
)

// backfillProgress holds what capture reported of added tables' snapshots
// until Kafka confirms it: a chunk's progress counts only once the safe LSN
// reaches the chunk's high watermark, since its rows ride at that LSN.
type backfillProgress struct {
	confirmed []*cdcv1.BackfillProgress
	pending   []*cdcv1.BackfillProgress
	// at finds a table's entry in confirmed: a full sync of thousands of
	// tables promotes a chunk per table, and a scan of the list for each
	// made the whole full sync quadratic.
	at map[backfillKey]int
}

type backfillKey struct{ schema, table string }

func keyOf(b *cdcv1.BackfillProgress) backfillKey { return backfillKey{b.GetSchema(), b.GetTable()} }

func newBackfillProgress(from []*cdcv1.BackfillProgress) backfillProgress {
	out := backfillProgress{at: make(map[backfillKey]int, len(from))}
	for _, b := range from {
		out.add(proto.Clone(b).(*cdcv1.BackfillProgress))
	}
	return out
}

// add appends a table's first confirmed entry.
func (p *backfillProgress) add(b *cdcv1.BackfillProgress) {
	if p.at == nil {
		p.at = map[backfillKey]int{}
	}
	if _, seen := p.at[keyOf(b)]; !seen {
		p.at[keyOf(b)] = len(p.confirmed)
	}
	p.confirmed = append(p.confirmed, b)
}

// report queues a chunk's progress and promotes what lsn already covers.
func (p *backfillProgress) report(b *cdcv1.BackfillProgress, lsn uint64) {
	p.pending = append(p.pending, b)
	p.promote(lsn)
}

// promote moves pending progress below the safe LSN into the confirmed
// list, replacing the table's earlier entry. Strictly below: the chunk's
// rows ride at its LSN, and a batch sent before them may carry the same
// watermark (a commit that ends where the high watermark starts), so a safe
// LSN equal to it can come from that batch while the chunk is still on its
// way; once the safe LSN is past it, delivery, which confirms in order, has
// the chunk. Taking it at equality lost a chunk's rows when the stream was
// ended at "every backfill confirmed".
func (p *backfillProgress) promote(lsn uint64) {
	keep := p.pending[:0]
	for _, b := range p.pending {
		if b.GetLsn() >= lsn {
			keep = append(keep, b)
			continue
		}
		i, ok := p.at[keyOf(b)]
		if !ok {
			p.add(b)
			continue
		}
		b.EstimatedRows = max(b.GetEstimatedRows(), p.confirmed[i].GetEstimatedRows())
		p.confirmed[i] = b
	}
	p.pending = keep
}

// snapshot copies the confirmed list for a heartbeat.
func (p *backfillProgress) snapshot() []*cdcv1.BackfillProgress {
	if len(p.confirmed) == 0 {
		return nil
	}
	out := make([]*cdcv1.BackfillProgress, len(p.confirmed))
	for i, b := range p.confirmed {
		out[i] = proto.Clone(b).(*cdcv1.BackfillProgress)
	}
	return out
}
