package dtsavro

import (
	cdcv1 "github.com/ferry-cdc/ferry/gen/ferry/cdc/v1"
	"github.com/ferry-cdc/ferry/services/delivery/relation"
)

// EncodeDDL appends a DDL Record for rt: operation DDL, objectName as for the
// table's rows, fields and beforeImages null, and the statement in the
// string branch of afterImages (formats.md). sourcePosition and
// safeSourcePosition are the LSN where the definition took effect.
func (e *Encoder) EncodeDDL(dst []byte, rt *relation.Table, d relation.DDL) ([]byte, error) {
	t, err := form(rt)
	if err != nil {
		return dst, err
	}
	commit := d.Commit
	if commit.IsZero() {
		commit = e.now()
	}
	w := e.w
	w.Reset(nil)
	e.writeHeader(w, t, sch.opDDL, &cdcv1.ChangeEvent{Lsn: d.LSN, CommitLsn: d.LSN}, commit)
	w.WriteInt(0) // fields: null
	w.WriteInt(0) // beforeImages: null
	w.WriteInt(sch.imageText)
	w.WriteString(d.SQL)
	w.WriteLong(commit.UnixMilli())
	return append(dst, w.Buffer()...), nil
}
