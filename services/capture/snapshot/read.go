// Package snapshot is full sync from an exported snapshot: several
// readers import the snapshot a new slot exported and share its tables in
// chunks of blocks, each read with COPY into snapshot INSERTs. Its COPY
// decoding also reads the backfill's chunks.
package snapshot

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	capturev1 "github.com/ferry-cdc/ferry/gen/ferry/capture/v1"
	cdcv1 "github.com/ferry-cdc/ferry/gen/ferry/cdc/v1"
	taskv1 "github.com/ferry-cdc/ferry/gen/ferry/task/v1"
	"github.com/ferry-cdc/ferry/services/capture/throttle"
	"github.com/ferry-cdc/ferry/services/internal/pgsource"
	"github.com/ferry-cdc/ferry/services/internal/pgsql"
)

// Full sync meets incremental sync at the slot's consistent point: the slot
// is created with EXPORT_SNAPSHOT, so the exported snapshot holds exactly
// the transactions that commit before that point and the slot streams
// exactly those that commit after it. No row is missed and none is read
// twice. Several readers import the snapshot, each on a connection of its
// own, and share the tables in chunks of blocks (chunks.go), so a
// large table is read at the speed of all of them.
//
// The snapshot lives only as long as the replication session that exported
// it, so a snapshot that is interrupted cannot be resumed: the next attempt
// drops the slot and starts again. The resumable path is DBLog's
// watermarks beside the stream (package backfill), which reads tables in
// primary-key order and so needs a key on every table. The task workflow
// (the Setup activity and the workflow's planChunkedFullSync) takes that path for full
// sync when every selected table has a primary key, and for tables added
// to a running task; it takes this one when any table has none, and for
// tasks whose workflow began before chunked full sync existed.
// Exactly-once delivery refuses this path, whose retries write every row
// again.

const (
	defaultSnapshotParallelism = 4
	snapshotProgressEvery      = time.Second
)

// snapshotItem is what a reader hands to the sending loop: a batch of a
// table, the end of a chunk of it, or both.
type snapshotItem struct {
	table int
	batch *cdcv1.ChangeBatch
	done  bool
}

// Exported is a new slot's snapshot; repl must stay open, and idle,
// until every reader has imported it.
type Exported struct {
	Repl *pgconn.PgConn
	Name string
	LSN  pglogrepl.LSN
	At   *timestamppb.Timestamp
}

// Options are what capture decides about a snapshot beyond its request.
type Options struct {
	// ChunkBlocks, when set, replaces snapshotChunkBlocks, so that tests
	// split small tables into many chunks.
	ChunkBlocks int64
	// MaxBatch is the most rows in a batch when the request sets none.
	MaxBatch int
}

// Read plans the chunks, runs the readers and sends what they read,
// with progress about once a second. It returns the final counts.
func Read(ctx context.Context, req *capturev1.ReadSnapshotRequest, snap *Exported,
	thr *throttle.Throttle, gs capturev1.CaptureService_ReadSnapshotServer, opts Options) ([]*taskv1.TableRowCount, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// The first reader's session plans: it is in the snapshot already.
	first, version, err := openSnapshotSession(ctx, req, snap)
	if err != nil {
		return nil, err
	}
	chunks, perTable, err := planChunks(ctx, first, version, req.GetTables(), cmp.Or(opts.ChunkBlocks, snapshotChunkBlocks))
	if err != nil {
		_ = first.Close(context.WithoutCancel(ctx))
		return nil, err
	}
	workers := min(cmp.Or(int(req.GetParallelism()), defaultSnapshotParallelism), len(chunks))
	// Two batches per reader in flight: enough to keep the sender busy,
	// little enough that memory stays a few batches whatever the table size.
	items := make(chan snapshotItem, 2*workers)
	var (
		next     atomic.Int64
		wg       sync.WaitGroup
		errOnce  sync.Once
		firstErr error
	)
	fail := func(err error) {
		errOnce.Do(func() { firstErr = err })
		cancel()
	}
	r := &chunkReaders{req: req, snap: snap, thr: thr, version: version, maxBatch: opts.MaxBatch, chunks: chunks, next: &next, items: items}
	for w := range workers {
		conn := first
		if w > 0 {
			conn = nil // opened by the reader, in parallel with the others
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := r.loop(ctx, conn); err != nil {
				fail(err)
			}
		}()
	}
	go func() { wg.Wait(); close(items) }()

	counts := make([]*taskv1.TableRowCount, len(req.GetTables()))
	for i, t := range req.GetTables() {
		counts[i] = &taskv1.TableRowCount{Table: t}
	}
	if err := sendSnapshot(gs, items, counts, perTable); err != nil {
		fail(err)
		for range items { // let the readers see the cancellation and leave
		}
	}
	if firstErr != nil {
		return nil, firstErr
	}
	return counts, finishSnapshot(gs, snap, counts)
}

// sendSnapshot relays the readers' items until they are all done. Chunks
// of a table are read at once by several readers, so their batches
// interleave; a table is done when every one of its chunks is (perTable
// counts each table's chunks).
func sendSnapshot(gs capturev1.CaptureService_ReadSnapshotServer, items <-chan snapshotItem, counts []*taskv1.TableRowCount, perTable []int) error {
	tick := time.NewTicker(snapshotProgressEvery)
	defer tick.Stop()
	progress := func() error {
		return gs.Send(&capturev1.ReadSnapshotResponse{Progress: &capturev1.SnapshotProgress{Tables: counts}})
	}
	left := slices.Clone(perTable)
	for {
		select {
		case it, ok := <-items:
			if !ok {
				return nil
			}
			if it.batch != nil {
				if err := gs.Send(&capturev1.ReadSnapshotResponse{Batch: it.batch}); err != nil {
					return fmt.Errorf("sending a snapshot batch: %w", err)
				}
				counts[it.table].Rows += uint64(len(it.batch.GetEvents()))
			}
			if it.done {
				if left[it.table]--; left[it.table] > 0 {
					continue
				}
				counts[it.table].Done = true
				if err := progress(); err != nil {
					return fmt.Errorf("sending snapshot progress: %w", err)
				}
			}
		case <-tick.C:
			if err := progress(); err != nil {
				return fmt.Errorf("sending snapshot progress: %w", err)
			}
		}
	}
}

// finishSnapshot sends the consistent point as a watermark, so that
// delivery's safe LSN reaches it exactly when every snapshot row is in
// Kafka, and then the final counts.
func finishSnapshot(gs capturev1.CaptureService_ReadSnapshotServer, snap *Exported, counts []*taskv1.TableRowCount) error {
	if err := gs.Send(&capturev1.ReadSnapshotResponse{Batch: &cdcv1.ChangeBatch{WatermarkLsn: uint64(snap.LSN)}}); err != nil {
		return fmt.Errorf("sending the snapshot's watermark: %w", err)
	}
	if err := gs.Send(&capturev1.ReadSnapshotResponse{Progress: &capturev1.SnapshotProgress{Tables: counts, Done: true}}); err != nil {
		return fmt.Errorf("sending the snapshot's counts: %w", err)
	}
	return nil
}

// openSnapshotSession opens a connection in a transaction that imports
// the snapshot, and reads the source's server_version_num.
func openSnapshotSession(ctx context.Context, req *capturev1.ReadSnapshotRequest, snap *Exported) (*pgx.Conn, int, error) {
	conn, err := pgsource.Connect(ctx, req.GetSource())
	if err != nil {
		return nil, 0, err
	}
	version, err := importSnapshot(ctx, conn, snap)
	if err != nil {
		_ = conn.Close(context.WithoutCancel(ctx))
		return nil, 0, err
	}
	return conn, version, nil
}

func importSnapshot(ctx context.Context, conn *pgx.Conn, snap *Exported) (int, error) {
	if _, err := conn.Exec(ctx, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"); err != nil {
		return 0, fmt.Errorf("starting the snapshot transaction: %w", err)
	}
	if _, err := conn.Exec(ctx, "SET TRANSACTION SNAPSHOT "+pgsql.Literal(snap.Name)); err != nil {
		return 0, fmt.Errorf("importing snapshot %s: %w", snap.Name, err)
	}
	return pgsource.ServerVersion(ctx, conn)
}

// chunkReaders is what the readers of one snapshot share: the plan and
// the queue of chunks (next is the next chunk to take).
type chunkReaders struct {
	req     *capturev1.ReadSnapshotRequest
	snap    *Exported
	thr     *throttle.Throttle
	version int
	// maxBatch is the most rows in a batch when the request sets none.
	maxBatch int
	chunks   []tableChunk
	next     *atomic.Int64
	items    chan<- snapshotItem
}

// loop reads chunks from the shared queue until none is left, on conn or,
// when nil, on a connection of its own that imports the snapshot.
func (r *chunkReaders) loop(ctx context.Context, conn *pgx.Conn) error {
	if conn == nil {
		var err error
		if conn, _, err = openSnapshotSession(ctx, r.req, r.snap); err != nil {
			return err
		}
	}
	defer func() { _ = conn.Close(context.WithoutCancel(ctx)) }()
	maxBatch := cmp.Or(int(r.req.GetMaxBatchEvents()), r.maxBatch)
	tables := r.req.GetTables()
	var st *snapshotTable // the table of the last chunk, usually the next's too
	for {
		i := int(r.next.Add(1)) - 1
		if i >= len(r.chunks) {
			break
		}
		c := r.chunks[i]
		var err error
		if st == nil || st.idx != c.table {
			st, err = describeSnapshotTable(ctx, conn, r.version, r.req.GetPublicationName(), c.table, tables[c.table])
		}
		if err == nil {
			tr := &TableReader{idx: c.table, snap: r.snap, maxBatch: maxBatch, items: r.items, thr: r.thr}
			err = tr.read(ctx, conn, st, c)
		}
		if err != nil {
			return snapshotReadError(r.req.GetSource().GetUser(), tables[c.table], r.snap.Name, err)
		}
	}
	if _, err := conn.Exec(ctx, "COMMIT"); err != nil {
		return fmt.Errorf("ending the snapshot transaction: %w", err)
	}
	return nil
}

// snapshotReadError names the table a snapshot reader failed on and, when
// the role may not read it, the GRANT that fixes it.
func snapshotReadError(role string, t *taskv1.TableRef, snapshot string, err error) error {
	if pgsql.IsCode(err, "42501") {
		return status.Errorf(codes.PermissionDenied,
			"reading %s in snapshot %s: %v; role %q may not read the table: run GRANT SELECT ON %s TO %s",
			pgsql.Qualified(t), snapshot, err, role, pgsql.Qualified(t), pgx.Identifier{role}.Sanitize())
	}
	return fmt.Errorf("reading %s in snapshot %s: %w", pgsql.Qualified(t), snapshot, err)
}
