package delivery

// # Backfill progress in the exactly-once checkpoint
//
// A backfill chunk (services/capture/backfill) arrives as a batch of
// snapshot INSERTs whose watermark is the chunk's high watermark, followed
// at once by a backfill frame: the table's progress at that watermark. A
// chunk read again after a restart gets a new watermark, so resuming from
// the checkpoint LSN alone would not drop its rows: the checkpoint must
// also say which chunks are in Kafka. Each checkpoint record therefore
// carries, per table, the latest progress whose chunk it commits, and the
// next stream returns them as resumed_backfills.
//
// The chunk's rows and its progress must commit in one transaction. So a
// transaction that reaches a watermark with a chunk's rows is held open
// until the chunk's progress arrives (or, for a client that does not relay
// progress, the next batch; or heldMax), instead of committing at that
// watermark. A chunk whose rows were all dropped (every key changed under
// it) holds nothing back; if its progress misses the transaction, a retried
// stream reads that chunk again and sends its rows as snapshot INSERTs at a
// later position, after their changes: the table still ends right.

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	cdcv1 "github.com/ferry-cdc/ferry/gen/ferry/cdc/v1"
)

// heldMax bounds how long a chunk's transaction waits for the chunk's
// progress: the client relays it right behind the chunk, unless it is a
// client that never relays progress.
const heldMax = 2 * time.Second

// backfillKey names a table in txnState.backfills.
func backfillKey(b *cdcv1.BackfillProgress) string { return b.GetSchema() + "." + b.GetTable() }

// chunkBatch tells a backfill chunk's batch: snapshot rows placed at the
// batch's watermark.
func chunkBatch(b *cdcv1.ChangeBatch) bool {
	evs := b.GetEvents()
	return len(evs) > 0 && evs[0].GetSnapshot() && evs[0].GetCommitLsn() == b.GetWatermarkLsn()
}

// handleBackfill queues a chunk's progress for the next commit and lets a
// transaction held for it commit when due.
func (t *txnState) handleBackfill(p *cdcv1.BackfillProgress) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.err != nil {
		return t.err
	}
	t.queued = append(t.queued, p)
	if t.held == 0 || p.GetLsn() < t.held {
		return nil
	}
	t.held = 0
	return t.commitIfDueLocked()
}

// releaseHeldLocked ends the wait for a chunk's progress when another batch
// comes first: the client does not relay progress. The transaction then
// commits at the chunk's watermark if it is due, before the batch joins it.
func (t *txnState) releaseHeldLocked() error {
	if t.held == 0 {
		return nil
	}
	t.held = 0
	return t.commitIfDueLocked()
}

// holding reports whether the open transaction waits for a chunk's progress.
func (t *txnState) holding() bool {
	return t.held != 0 && time.Since(t.heldAt) < heldMax
}

// commitIfDueLocked commits the open transaction when it ends at a
// watermark and has grown old or large enough.
func (t *txnState) commitIfDueLocked() error {
	if t.open && t.atMark && (t.msgs >= txnMaxMessages || time.Since(t.openedAt) >= txnMaxAge) {
		return t.commitLocked()
	}
	return nil
}

// takeBackfillsLocked folds the queued progress whose chunk is at or below
// the checkpoint being committed into the task's backfills and returns them
// as the record holds them.
func (t *txnState) takeBackfillsLocked() ([]json.RawMessage, error) {
	keep := t.queued[:0]
	for _, p := range t.queued {
		if p.GetLsn() > t.mark {
			keep = append(keep, p)
			continue
		}
		t.backfills[backfillKey(p)] = p
	}
	clear(t.queued[len(keep):])
	t.queued = keep
	return encodeBackfills(t.backfills)
}

// encodeBackfills writes each table's progress in protobuf's JSON form,
// ordered by table so that equal states give equal records.
func encodeBackfills(m map[string]*cdcv1.BackfillProgress) ([]json.RawMessage, error) {
	var out []json.RawMessage
	for _, k := range slices.Sorted(maps.Keys(m)) {
		b, err := protojson.Marshal(m[k])
		if err != nil {
			return nil, fmt.Errorf("encoding the backfill progress of %s: %w", k, err)
		}
		out = append(out, b)
	}
	return out, nil
}

// decodeBackfills reads a record's backfills back.
func decodeBackfills(raw []json.RawMessage) (map[string]*cdcv1.BackfillProgress, error) {
	out := make(map[string]*cdcv1.BackfillProgress, len(raw))
	for i, r := range raw {
		var p cdcv1.BackfillProgress
		if err := protojson.Unmarshal(r, &p); err != nil {
			return nil, fmt.Errorf("decoding backfill progress %d: %w", i, err)
		}
		out[backfillKey(&p)] = &p
	}
	return out, nil
}

// forgetHeld drops the progress below the client's checkpoint, which the
// client holds already (StartDelivery.checkpoint_lsn). Without it a record
// would carry every table ever backfilled, for good. Progress at the
// checkpoint stays: the client confirms a chunk only once its safe LSN is
// past the chunk's (the worker's backfillProgress.promote).
func forgetHeld(m map[string]*cdcv1.BackfillProgress, clientLSN uint64) {
	maps.DeleteFunc(m, func(_ string, p *cdcv1.BackfillProgress) bool { return p.GetLsn() < clientLSN })
}

// resumedBackfills lists the recovered progress for the first response.
func (t *txnState) resumedBackfills() []*cdcv1.BackfillProgress {
	out := make([]*cdcv1.BackfillProgress, 0, len(t.backfills))
	for _, k := range slices.Sorted(maps.Keys(t.backfills)) {
		out = append(out, proto.Clone(t.backfills[k]).(*cdcv1.BackfillProgress))
	}
	return out
}

// emptyRequestError answers a later request that is neither a batch nor
// backfill progress.
func emptyRequestError() error {
	return status.Error(codes.InvalidArgument, "only the first DeliverRequest may be start; later ones must be batch or backfill")
}
