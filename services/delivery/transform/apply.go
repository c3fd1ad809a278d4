package transform

import (
	"fmt"
	"unsafe"

	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/common/types/ref"

	cdcv1 "github.com/ferry-cdc/ferry/gen/ferry/cdc/v1"
	"github.com/ferry-cdc/ferry/services/delivery/relation"
	"github.com/ferry-cdc/ferry/services/tuple"
)

// Result is an event after the transforms.
type Result struct {
	// Event is the transformed event, in the output relation's columns; nil
	// when a filter leaves the row out. It and its tuples are reused by the
	// next Apply.
	Event *cdcv1.ChangeEvent
	// Topic, when not empty, is the topic a route transform chose.
	Topic string
	// Key, when HasKey, is the Kafka key a key transform chose.
	Key    []byte
	HasKey bool
}

// RowError is a transform that failed on one row, such as a division by
// zero. It names the transform, never the row's values.
type RowError struct {
	Position int
	Msg      string
}

func (e *RowError) Error() string {
	return fmt.Sprintf("transform %d failed: %s", e.Position, e.Msg)
}

// rowView is row or old: one image of the row, parsed on demand.
type rowView struct {
	p    *Pipeline
	tu   *cdcv1.Tuple // the image; unset: every column is null
	alt  *cdcv1.Tuple // supplies unchanged TOAST values (the before-image)
	vals []ref.Val    // per slot; nil: not read yet
	// before: the image is a before-image, which reveals only the replica
	// identity's columns; unknown records that a step read one it hides.
	before, unknown bool
}

func (r *rowView) reset(tu, alt *cdcv1.Tuple, before bool) {
	r.tu, r.alt, r.before, r.unknown = tu, alt, before, false
	clear(r.vals)
}

func (r *rowView) get(slot int) ref.Val {
	if v := r.vals[slot]; v != nil {
		return v
	}
	v := r.load(slot)
	r.vals[slot] = v
	return v
}

func (r *rowView) value(slot int) (any, error) {
	v := r.get(slot)
	if e, ok := v.(*types.Err); ok {
		return nil, e
	}
	return v, nil
}

// isUnknown reports whether v is an unchanged TOAST value the source did
// not send, or a value computed from one.
func isUnknown(v ref.Val) bool {
	_, ok := v.(*types.Unknown)
	return ok
}

// field is a source column's text and kind in this image.
func (r *rowView) field(slot int) ([]byte, tuple.Kind) {
	if slot >= tuple.Len(r.tu) {
		if r.before {
			r.unknown = true
		}
		return nil, tuple.Null
	}
	text, k := tuple.Field(r.tu, slot)
	if r.before && !r.p.reveals[slot] && tuple.Len(r.alt) > 0 {
		// A before-image completed by the after-image: the row a DELETE
		// made from an UPDATE is routed and keyed by.
		text, k = tuple.Field(r.alt, slot)
	}
	if k == tuple.UnchangedToast && slot < tuple.Len(r.alt) {
		// Only a before-image's text is the value: a key-only one holds
		// nulls for every other column.
		if at, ak := tuple.Field(r.alt, slot); ak == tuple.Text {
			text, k = at, ak
		}
	}
	if k == tuple.Null && r.before && !r.p.reveals[slot] {
		r.unknown = true
	}
	return text, k
}

func (r *rowView) load(slot int) ref.Val {
	if slot >= len(r.p.srcTypes) {
		return types.NullValue
	}
	text, k := r.field(slot)
	switch k {
	case tuple.UnchangedToast:
		return types.NewUnknown(int64(slot), nil)
	case tuple.Text:
	default:
		return types.NullValue
	}
	col := r.p.src.GetColumns()[slot]
	v, err := parse(relation.ValueOID(col), r.p.srcTypes[slot], text)
	if err != nil {
		// The parser's message would quote the value.
		return types.NewErr("column %q: its text is not a valid %s", col.GetName(), r.p.srcTypes[slot])
	}
	return v
}

// text is a slot's value as text: a source column's as the source sent
// it (numeric with its digits and scale, a date without a time), a
// computed one's as PostgreSQL would print it.
func (r *rowView) text(slot int) ref.Val {
	if slot >= len(r.p.srcTypes) {
		return r.get(slot)
	}
	text, k := r.field(slot)
	switch k {
	case tuple.UnchangedToast:
		return types.NewUnknown(int64(slot), nil)
	case tuple.Text:
		return types.String(unsafe.String(unsafe.SliceData(text), len(text)))
	}
	return types.NullValue
}

// state is a Pipeline's reusable per-row memory: Apply is not safe for
// concurrent use.
type state struct {
	row, old, none rowView
	vars           vars
	ev             cdcv1.ChangeEvent
	newT, oldT     cdcv1.Tuple
	key            []byte
	keySet         bool
	topic          string
	scratch        []byte
}

func (s *state) init(p *Pipeline) {
	for _, v := range []*rowView{&s.row, &s.old, &s.none} {
		v.p, v.vals = p, make([]ref.Val, p.slots)
	}
	s.vars.schema, s.vars.table = p.schema, p.table
}

func opName(op cdcv1.Operation) types.String {
	switch op {
	case cdcv1.Operation_OPERATION_INSERT:
		return "INSERT"
	case cdcv1.Operation_OPERATION_UPDATE:
		return "UPDATE"
	case cdcv1.Operation_OPERATION_DELETE:
		return "DELETE"
	}
	return ""
}

// Apply runs the transforms on ev. Errors are *RowError.
func (p *Pipeline) Apply(ev *cdcv1.ChangeEvent) (Result, error) {
	s := &p.st
	s.vars.op = opName(ev.GetOp())
	s.vars.commit = types.Timestamp{Time: ev.GetCommitTime().AsTime()}
	s.key, s.keySet, s.topic = s.key[:0], false, ""
	switch ev.GetOp() {
	case cdcv1.Operation_OPERATION_INSERT:
		return p.applyInsert(ev)
	case cdcv1.Operation_OPERATION_DELETE:
		return p.applyDelete(ev)
	case cdcv1.Operation_OPERATION_UPDATE:
		return p.applyUpdate(ev)
	}
	return Result{Event: ev}, nil
}

func (p *Pipeline) applyInsert(ev *cdcv1.ChangeEvent) (Result, error) {
	s := &p.st
	s.row.reset(ev.GetNewTuple(), nil, false)
	s.none.reset(nil, nil, false)
	v, err := p.run(&s.row, &s.none, final)
	if err != nil || v == fail {
		return Result{}, err
	}
	return p.result(ev, cdcv1.Operation_OPERATION_INSERT, p.image(&s.newT, &s.row, ev.GetNewTuple()), nil), nil
}

// applyDelete filters on the before-image; a DELETE whose image hides a
// column the filters read is kept, since it may remove a row that was sent.
func (p *Pipeline) applyDelete(ev *cdcv1.ChangeEvent) (Result, error) {
	s := &p.st
	s.row.reset(ev.GetOldTuple(), nil, true)
	s.none.reset(nil, nil, false)
	v, err := p.run(&s.row, &s.none, final)
	if err != nil {
		return Result{}, err
	}
	if v == fail && !s.row.unknown {
		return Result{}, nil
	}
	if v == fail { // stopped at a filter: route, key and columns regardless
		if _, err := p.run(&s.row, &s.none, emit); err != nil {
			return Result{}, err
		}
	}
	return p.result(ev, cdcv1.Operation_OPERATION_DELETE, nil, p.image(&s.oldT, &s.row, ev.GetOldTuple())), nil
}

// applyUpdate runs the steps on the new image, and when filters exist and
// the before-image reveals what they read, on it too: a row entering the
// filter becomes an INSERT, one leaving it a DELETE. When the before-image
// cannot tell, a passing row stays an UPDATE and a failing one becomes a
// DELETE of its key, which may remove a row that was never sent but never
// leaves one behind. A filter that cannot tell for an unchanged TOAST value
// never makes a DELETE: the before-image decides when it can, else the
// change stays an UPDATE.
func (p *Pipeline) applyUpdate(ev *cdcv1.ChangeEvent) (Result, error) {
	s := &p.st
	oldT := ev.GetOldTuple()
	s.row.reset(ev.GetNewTuple(), oldT, false)
	s.old.reset(oldT, nil, true)
	newV, err := p.run(&s.row, &s.old, final)
	if err != nil {
		return Result{}, err
	}
	// Filters that read old judge the change, not the row: there is no
	// before-row to test them on, and a failing one drops the change.
	judge := p.hasOld && !p.readsOld
	oldKnown, oldV := false, fail
	if tuple.Len(oldT) > 0 && (judge || p.slots > len(p.srcTypes)) {
		s.old.reset(oldT, nil, true)
		s.none.reset(nil, nil, false)
		m := columns
		if judge {
			m = decide
		}
		if oldV, err = p.run(&s.old, &s.none, m); err != nil {
			return Result{}, err
		}
		oldKnown = judge && oldV != unknown && !s.old.unknown
	}
	if newV == unknown {
		newV = pass
		if oldKnown {
			newV = oldV
		}
	}
	newPass, oldPass := newV == pass, oldV == pass
	if !judge && !newPass {
		return Result{}, nil
	}
	switch {
	case newPass && (!oldKnown || oldPass):
		var before *cdcv1.Tuple
		if tuple.Len(oldT) > 0 {
			before = p.image(&s.oldT, &s.old, oldT)
		}
		return p.result(ev, cdcv1.Operation_OPERATION_UPDATE, p.image(&s.newT, &s.row, ev.GetNewTuple()), before), nil
	case newPass:
		return p.result(ev, cdcv1.Operation_OPERATION_INSERT, p.image(&s.newT, &s.row, ev.GetNewTuple()), nil), nil
	case oldKnown && !oldPass:
		return Result{}, nil
	}
	return p.deleteFromUpdate(ev, oldKnown)
}

// deleteFromUpdate is the DELETE of a row an UPDATE moved out of the
// filters, routed and keyed as the row was: by its before-image, completed
// by the after-image where the before-image hides a column.
func (p *Pipeline) deleteFromUpdate(ev *cdcv1.ChangeEvent, oldKnown bool) (Result, error) {
	s := &p.st
	oldT := ev.GetOldTuple()
	if tuple.Len(oldT) == 0 {
		if _, err := p.run(&s.row, &s.none, emit); err != nil {
			return Result{}, err
		}
		return p.result(ev, cdcv1.Operation_OPERATION_DELETE, nil, p.keyImage(&s.oldT, &s.row, ev.GetNewTuple())), nil
	}
	alt := ev.GetNewTuple()
	if oldKnown {
		alt = nil
	}
	s.old.reset(oldT, alt, true)
	s.none.reset(nil, nil, false)
	if _, err := p.run(&s.old, &s.none, emit); err != nil {
		return Result{}, err
	}
	if oldKnown {
		return p.result(ev, cdcv1.Operation_OPERATION_DELETE, nil, p.image(&s.oldT, &s.old, oldT)), nil
	}
	return p.result(ev, cdcv1.Operation_OPERATION_DELETE, nil, p.keyImage(&s.oldT, &s.old, oldT)), nil
}

func (p *Pipeline) result(ev *cdcv1.ChangeEvent, op cdcv1.Operation, newT, oldT *cdcv1.Tuple) Result {
	s := &p.st
	s.ev = cdcv1.ChangeEvent{
		Op: op, RelationOid: ev.GetRelationOid(), Lsn: ev.GetLsn(), CommitLsn: ev.GetCommitLsn(), Xid: ev.GetXid(),
		CommitTime: ev.GetCommitTime(), Snapshot: ev.GetSnapshot(), NewTuple: newT, OldTuple: oldT,
	}
	return Result{Event: &s.ev, Topic: s.topic, Key: s.key, HasKey: s.keySet}
}
