package capture

import (
	"fmt"

	"github.com/jackc/pglogrepl"
	"google.golang.org/protobuf/proto"

	capturev1 "github.com/ferry-cdc/ferry/gen/ferry/capture/v1"
	cdcv1 "github.com/ferry-cdc/ferry/gen/ferry/cdc/v1"
	"github.com/ferry-cdc/ferry/services/capture/backfill"
	"github.com/ferry-cdc/ferry/services/capture/decode"
)

// backfillMark handles a watermark of this stream's backfill and reports
// whether it consumed the message. A low watermark only opens the chunk's
// window; message then treats it as any other position.
func (st *stream) backfillMark(m *pglogrepl.LogicalDecodingMessage, lsn pglogrepl.LSN) (bool, error) {
	bf := st.bf
	if bf == nil || m.Transactional || m.Prefix != backfill.Prefix {
		return false, nil
	}
	kind, n, ok := bf.ParseMark(m.Content)
	if !ok {
		return false, nil // another stream's, or replayed from an earlier one
	}
	if st.txn != nil {
		return true, fmt.Errorf("backfill watermark %q at %s arrived inside transaction %d", m.Content, lsn, st.txn.xid)
	}
	if kind == "lw" {
		bf.OpenWindow(n)
		return false, nil
	}
	return true, st.backfillChunk(n, lsn)
}

// backfillChunk sends chunk n at its high watermark hw: first what the
// stream holds (all of it older than the chunk), then the chunk's rows as
// a batch whose watermark is hw, then the table's progress.
func (st *stream) backfillChunk(n int64, hw pglogrepl.LSN) error {
	bf := st.bf
	c, err := bf.Take(n)
	if err != nil {
		return err
	}
	if !st.batch.empty() {
		pending := st.batch.take()
		if pending.GetWatermarkLsn() >= uint64(hw) {
			// A commit that ended where the HW starts: the chunk's batch
			// must be the first to carry hw, or delivery could confirm hw
			// while the chunk is still on its way.
			pending.WatermarkLsn = 0
		}
		if err := st.send(pending); err != nil {
			return err
		}
	}
	st.lsn.Receive(hw)
	b := &cdcv1.ChangeBatch{Events: bf.Keep(c, uint64(hw)), WatermarkLsn: uint64(hw)}
	if def := st.chunkRelation(c.Relation()); def != nil && len(b.Events) > 0 {
		b.Relations = []*cdcv1.Relation{def}
	}
	if err := st.send(b); err != nil {
		return err
	}
	p := bf.Advance(c, len(b.Events), uint64(hw))
	if p.GetDone() {
		st.logger.Info("backfill done", "table", bf.TableName(c), "rows", p.GetRows())
	}
	if err := st.out.Send(&capturev1.StreamChangesResponse{Backfill: p}); err != nil {
		return fmt.Errorf("sending the backfill progress of %s: %w", bf.TableName(c), err)
	}
	return nil
}

// chunkRelation is the definition to send with a chunk read as rel: none
// when the stream sent that very definition already. When the stream's
// differs (the table changed), the chunk carries its own and the stream's
// goes out again before its next change.
func (st *stream) chunkRelation(rel *decode.Relation) *cdcv1.Relation {
	cur, ok := st.rels.Lookup(rel.Msg.RelationID)
	if ok && proto.Equal(cur.Proto, rel.Proto) {
		if cur.Sent {
			return nil
		}
		cur.Sent = true
		return cur.Proto
	}
	if ok {
		cur.Sent = false
	}
	return rel.Proto
}
