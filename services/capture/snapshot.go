package capture

import (
	"cmp"
	"context"
	"errors"
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
// own, and share the tables in chunks of blocks (snapshot_chunks.go), so a
// large table is read at the speed of all of them.
//
// The snapshot lives only as long as the replication session that exported
// it, so a snapshot that is interrupted cannot be resumed: the next attempt
// drops the slot and starts again. The resumable path is DBLog's
// watermarks beside the stream (backfill.go), which reads tables in
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

// exportedSnapshot is a new slot's snapshot; repl must stay open, and idle,
// until every reader has imported it.
type exportedSnapshot struct {
	repl *pgconn.PgConn
	name string
	lsn  pglogrepl.LSN
	at   *timestamppb.Timestamp
}

// ReadSnapshot is full sync; see the contract in capture.proto.
func (s *Server) ReadSnapshot(req *capturev1.ReadSnapshotRequest, gs capturev1.CaptureService_ReadSnapshotServer) error {
	if err := validateNames(req.GetSlotName(), req.GetPublicationName()); err != nil {
		return err
	}
	if len(req.GetTables()) == 0 {
		return status.Error(codes.InvalidArgument, "ReadSnapshot needs at least one table")
	}
	ctx := gs.Context()
	thr := throttle.ForSnapshot(req.GetThrottle())
	defer s.throttles.Add(req.GetSlotName(), thr)()
	gs, unwatch := s.Metrics.watchSnapshot(req, gs)
	defer unwatch()
	snap, err := s.exportSnapshot(ctx, req)
	if err != nil {
		return toStatus(err)
	}
	defer func() { _ = snap.repl.Close(context.WithoutCancel(ctx)) }()
	started := &capturev1.SnapshotStarted{ConsistentLsn: uint64(snap.lsn), SnapshotName: snap.name, SnapshotTime: snap.at}
	if err := gs.Send(&capturev1.ReadSnapshotResponse{Started: started}); err != nil {
		return toStatus(fmt.Errorf("sending the snapshot's start: %w", err))
	}
	begun := time.Now()
	counts, err := s.readTables(ctx, req, snap, thr, gs)
	if err != nil {
		if ctx.Err() != nil {
			return status.FromContextError(ctx.Err()).Err()
		}
		s.logger.Warn("snapshot failed", "slot", req.GetSlotName(), "error", err)
		return toStatus(err)
	}
	var total uint64
	for _, c := range counts {
		total += c.GetRows()
	}
	s.logger.Info("snapshot read", "slot", req.GetSlotName(), "consistent_lsn", snap.lsn.String(),
		"tables", len(counts), "rows", total, "seconds", time.Since(begun).Seconds())
	return nil
}

// exportSnapshot creates the slot with an exported snapshot, once the
// publication exists (a slot older than its publication cannot decode).
func (s *Server) exportSnapshot(ctx context.Context, req *capturev1.ReadSnapshotRequest) (*exportedSnapshot, error) {
	slot, pub := req.GetSlotName(), req.GetPublicationName()
	conn, err := pgsource.Connect(ctx, req.GetSource())
	if err != nil {
		return nil, err
	}
	defer func() { _ = conn.Close(context.WithoutCancel(ctx)) }()
	if _, exists, err := publicationTables(ctx, conn, pub); err != nil {
		return nil, err
	} else if !exists {
		return nil, failedPrecondition("publication %q does not exist; run setup (EnsureReplication with publication_only) before full sync", pub)
	}
	if err := s.dropStaleSlot(ctx, conn, req, slot); err != nil {
		return nil, err
	}
	if owner := req.GetOwner(); owner != "" {
		if err := claimSlot(ctx, conn, pub, owner); err != nil {
			return nil, err
		}
	}
	failover, err := slotFailover(ctx, conn, req.GetSource())
	if err != nil {
		return nil, err
	}
	repl, err := connectReplication(ctx, req.GetSource())
	if err != nil {
		return nil, err
	}
	res, err := createSlot(ctx, repl, slot, failover, true)
	if err == nil {
		snap := &exportedSnapshot{repl: repl, name: res.SnapshotName}
		if snap.lsn, err = pglogrepl.ParseLSN(res.ConsistentPoint); err == nil {
			var at time.Time
			err = conn.QueryRow(ctx, "SELECT now()").Scan(&at)
			snap.at = timestamppb.New(at)
		}
		if err == nil {
			s.logger.Info("snapshot exported", "slot", slot, "snapshot", snap.name, "consistent_lsn", snap.lsn.String(), "failover", failover)
			return snap, nil
		}
	}
	_ = repl.Close(context.WithoutCancel(ctx))
	return nil, fmt.Errorf("creating replication slot %s with an exported snapshot: %w", slot, err)
}

// dropStaleSlot drops the task's slot left by an earlier snapshot attempt:
// its snapshot died with that attempt's session, so the slot's start point
// no longer meets any snapshot. A slot of another plugin or database is not
// Ferry's to drop.
func (s *Server) dropStaleSlot(ctx context.Context, conn *pgx.Conn, req *capturev1.ReadSnapshotRequest, slot string) error {
	src := req.GetSource()
	info, err := lookupSlot(ctx, conn, slot)
	if errors.Is(err, errSlotMissing) {
		return nil
	}
	if err != nil {
		return err
	}
	if info.plugin != "pgoutput" || info.database != src.GetDatabase() {
		return failedPrecondition("replication slot %s exists with plugin %q on database %q, but Ferry needs pgoutput on %q; drop it or choose another task ID",
			slot, info.plugin, info.database, src.GetDatabase())
	}
	if owner := req.GetOwner(); owner != "" {
		if err := ownSlot(ctx, conn, slot, req.GetPublicationName(), owner); err != nil {
			return err
		}
	}
	s.logger.Warn("dropping the slot of an interrupted full sync; the snapshot starts again", "slot", slot)
	_, err = dropSlot(ctx, conn, slot)
	return err
}

// readTables plans the chunks, runs the readers and sends what they read,
// with progress about once a second. It returns the final counts.
func (s *Server) readTables(ctx context.Context, req *capturev1.ReadSnapshotRequest, snap *exportedSnapshot,
	thr *throttle.Throttle, gs capturev1.CaptureService_ReadSnapshotServer) ([]*taskv1.TableRowCount, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// The first reader's session plans: it is in the snapshot already.
	first, version, err := openSnapshotSession(ctx, req, snap)
	if err != nil {
		return nil, err
	}
	chunks, perTable, err := planChunks(ctx, first, version, req.GetTables(), cmp.Or(s.snapshotChunkBlocks, snapshotChunkBlocks))
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
	r := &chunkReaders{req: req, snap: snap, thr: thr, version: version, chunks: chunks, next: &next, items: items}
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
func finishSnapshot(gs capturev1.CaptureService_ReadSnapshotServer, snap *exportedSnapshot, counts []*taskv1.TableRowCount) error {
	if err := gs.Send(&capturev1.ReadSnapshotResponse{Batch: &cdcv1.ChangeBatch{WatermarkLsn: uint64(snap.lsn)}}); err != nil {
		return fmt.Errorf("sending the snapshot's watermark: %w", err)
	}
	if err := gs.Send(&capturev1.ReadSnapshotResponse{Progress: &capturev1.SnapshotProgress{Tables: counts, Done: true}}); err != nil {
		return fmt.Errorf("sending the snapshot's counts: %w", err)
	}
	return nil
}

// openSnapshotSession opens a connection in a transaction that imports
// the snapshot, and reads the source's server_version_num.
func openSnapshotSession(ctx context.Context, req *capturev1.ReadSnapshotRequest, snap *exportedSnapshot) (*pgx.Conn, int, error) {
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

func importSnapshot(ctx context.Context, conn *pgx.Conn, snap *exportedSnapshot) (int, error) {
	if _, err := conn.Exec(ctx, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"); err != nil {
		return 0, fmt.Errorf("starting the snapshot transaction: %w", err)
	}
	if _, err := conn.Exec(ctx, "SET TRANSACTION SNAPSHOT "+pgsql.Literal(snap.name)); err != nil {
		return 0, fmt.Errorf("importing snapshot %s: %w", snap.name, err)
	}
	return serverVersion(ctx, conn)
}

// chunkReaders is what the readers of one snapshot share: the plan and
// the queue of chunks (next is the next chunk to take).
type chunkReaders struct {
	req     *capturev1.ReadSnapshotRequest
	snap    *exportedSnapshot
	thr     *throttle.Throttle
	version int
	chunks  []tableChunk
	next    *atomic.Int64
	items   chan<- snapshotItem
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
	maxBatch := cmp.Or(int(r.req.GetMaxBatchEvents()), defaultMaxBatchEvents)
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
			tr := &tableReader{idx: c.table, snap: r.snap, maxBatch: maxBatch, items: r.items, thr: r.thr}
			err = tr.read(ctx, conn, st, c)
		}
		if err != nil {
			return snapshotReadError(r.req.GetSource().GetUser(), tables[c.table], r.snap.name, err)
		}
	}
	if _, err := conn.Exec(ctx, "COMMIT"); err != nil {
		return fmt.Errorf("ending the snapshot transaction: %w", err)
	}
	return nil
}
