// Package wire is capture's side of the replication protocol: pgoutput's
// messages framed and parsed (protocol 1, and 2 or 4 with in-progress
// transactions streamed), the spools those transactions wait in until
// they commit, and the positions a stream reports back to PostgreSQL.
package wire

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pglogrepl"
)

// ErrDecoderPanic marks a message that made pglogrepl's decoder panic. The
// framing check below exists so that this never happens; the fuzz tests
// fail when it does.
var ErrDecoderPanic = errors.New("pgoutput decoder panicked")

// ParseMessage decodes one pgoutput (protocol version 1) message. pglogrepl
// trusts the server's lengths: a short or corrupt message makes it index
// past the buffer, and a tuple column or TRUNCATE claiming 4 GiB makes it
// allocate that much. checkFraming walks the message first, so whatever
// reaches pglogrepl is complete and exactly as long as it says.
func ParseMessage(data []byte) (msg pglogrepl.Message, err error) {
	if err := checkFraming(data); err != nil {
		return nil, err
	}
	defer func() {
		if r := recover(); r != nil {
			msg, err = nil, fmt.Errorf("%w on message type %q: %v", ErrDecoderPanic, data[0], r)
		}
	}()
	return pglogrepl.Parse(data)
}

// wireReader reads big-endian protocol fields and remembers the first
// short read, so callers check once at the end.
type wireReader struct {
	buf []byte
	err error
}

func (r *wireReader) take(n int) []byte {
	if r.err != nil {
		return nil
	}
	if n < 0 || n > len(r.buf) {
		r.err = fmt.Errorf("message is truncated: %d more bytes needed, %d left", n, len(r.buf))
		return nil
	}
	out := r.buf[:n]
	r.buf = r.buf[n:]
	return out
}

func (r *wireReader) byte1() byte {
	if b := r.take(1); b != nil {
		return b[0]
	}
	return 0
}

func (r *wireReader) uint16() uint16 {
	if b := r.take(2); b != nil {
		return binary.BigEndian.Uint16(b)
	}
	return 0
}

func (r *wireReader) uint32() uint32 {
	if b := r.take(4); b != nil {
		return binary.BigEndian.Uint32(b)
	}
	return 0
}

func (r *wireReader) uint64() uint64 {
	if b := r.take(8); b != nil {
		return binary.BigEndian.Uint64(b)
	}
	return 0
}

// cstring skips a NUL-terminated string.
func (r *wireReader) cstring() {
	if r.err != nil {
		return
	}
	for i, b := range r.buf {
		if b == 0 {
			r.buf = r.buf[i+1:]
			return
		}
	}
	r.err = errors.New("message is truncated: string without its terminating NUL")
}

// tuple skips a TupleData, refusing column kinds pgoutput does not send.
func (r *wireReader) tuple() {
	n := r.uint16()
	for i := 0; i < int(n) && r.err == nil; i++ {
		switch kind := r.byte1(); kind {
		case pglogrepl.TupleDataTypeNull, pglogrepl.TupleDataTypeToast:
		case pglogrepl.TupleDataTypeText, pglogrepl.TupleDataTypeBinary:
			r.take(int(r.uint32()))
		default:
			if r.err == nil {
				r.err = fmt.Errorf("tuple column %d has unknown kind %q", i, kind)
			}
		}
	}
}

// expect consumes one byte that must be one of want.
func (r *wireReader) expect(what string, want ...byte) byte {
	b := r.byte1()
	if r.err != nil {
		return 0
	}
	for _, w := range want {
		if b == w {
			return b
		}
	}
	r.err = fmt.Errorf("%s is %q, want one of %q", what, b, want)
	return 0
}

// checkFraming checks that data is one complete message of a type protocol
// version 1 defines (plus 'M', which messages 'true' enables), with nothing
// left over.
func checkFraming(data []byte) error {
	if len(data) == 0 {
		return errors.New("empty pgoutput message")
	}
	return checkBody(data[0], data[1:])
}

// checkBody is checkFraming for a message of type typ whose body (what
// follows the type byte) is body.
func checkBody(typ byte, body []byte) error {
	r := &wireReader{buf: body}
	switch typ {
	case 'B': // final LSN, commit time, xid
		r.take(8 + 8 + 4)
	case 'C': // flags, commit LSN, end LSN, commit time
		r.take(1 + 8 + 8 + 8)
	case 'O': // origin LSN, name
		r.take(8)
		r.cstring()
	case 'Y': // type OID, namespace, name
		r.take(4)
		r.cstring()
		r.cstring()
	case 'R':
		checkRelation(r)
	case 'I':
		r.take(4)
		r.expect("insert tuple marker", 'N')
		r.tuple()
	case 'U':
		r.take(4)
		if r.expect("update tuple marker", 'K', 'O', 'N') != 'N' {
			r.tuple()
			r.expect("update new-tuple marker", 'N')
		}
		r.tuple()
	case 'D':
		r.take(4)
		r.expect("delete tuple marker", 'K', 'O')
		r.tuple()
	case 'T': // relation count, options, OIDs
		n := r.uint32()
		r.take(1)
		r.take(int(min(uint64(n)*4, uint64(len(r.buf))+1)))
	case 'M': // flags, LSN, prefix, content
		r.take(1 + 8)
		r.cstring()
		r.take(int(r.uint32()))
	default:
		return fmt.Errorf("unsupported pgoutput message type %q", typ)
	}
	return r.done(typ)
}

// done reports the first short read, or bytes left over, of message typ.
func (r *wireReader) done(typ byte) error {
	if r.err != nil {
		return fmt.Errorf("pgoutput message %q: %w", typ, r.err)
	}
	if len(r.buf) != 0 {
		return fmt.Errorf("pgoutput message %q has %d unexpected trailing bytes", typ, len(r.buf))
	}
	return nil
}

// checkRelation walks a Relation message: OID, namespace, name, replica
// identity, then each column's flags, name, type OID and modifier.
func checkRelation(r *wireReader) {
	r.take(4)
	r.cstring()
	r.cstring()
	r.take(1)
	n := r.uint16()
	for i := 0; i < int(n) && r.err == nil; i++ {
		r.take(1)
		r.cstring()
		r.take(4 + 4)
	}
}

// Protocol version 2 (PostgreSQL 14 and later, with streaming 'on') adds
// four messages for transactions the walsender streams before they end.
// Between StreamStart and StreamStop (a stream block) every Relation, Type,
// change and transactional Message carries the xid of its (sub)transaction
// right after its type byte; the rest of each is as in protocol 1.
// Protocol version 4 (PostgreSQL 16 and later) with streaming 'parallel'
// sends the same messages, except that StreamAbort also carries the
// abort's LSN and time (StreamMode).
const (
	MsgStreamStart  = 'S' // top-level xid, first-segment flag
	MsgStreamStop   = 'E' // nothing
	MsgStreamCommit = 'c' // xid, flags, commit LSN, end LSN, commit time
	MsgStreamAbort  = 'A' // top-level xid, aborted (sub)transaction's xid; parallel: abort LSN, abort time
)

// StreamMode is what a stream asked pgoutput to send of transactions still
// in progress.
type StreamMode int

const (
	// StreamOff (protocol 1): a transaction arrives whole at its commit.
	StreamOff StreamMode = iota
	// StreamOn (protocol 2, streaming 'on', PostgreSQL 14 and later).
	StreamOn
	// StreamParallel (protocol 4, streaming 'parallel', PostgreSQL 16 and
	// later). For the publisher, 'parallel' differs from 'on' only in the
	// StreamAbort message, which gains the abort's LSN and time so that a
	// subscriber's parallel apply worker can record its progress; which
	// transactions are streamed, when, and how their blocks interleave is
	// decided by the reorder buffer alone, the same in both modes.
	StreamParallel
)

func (m StreamMode) String() string {
	switch m {
	case StreamOn:
		return "protocol 2, streaming on"
	case StreamParallel:
		return "protocol 4, streaming parallel"
	}
	return "protocol 1, no streaming"
}

// IsStreamControl tells whether typ is one of the four stream messages.
func IsStreamControl(typ byte) bool {
	switch typ {
	case MsgStreamStart, MsgStreamStop, MsgStreamCommit, MsgStreamAbort:
		return true
	}
	return false
}

// HasStreamXid tells whether a message of type typ carries an xid inside a
// stream block.
func HasStreamXid(typ byte) bool {
	switch typ {
	case 'R', 'Y', 'I', 'U', 'D', 'T', 'M':
		return true
	}
	return false
}

// CheckStreamFraming is checkFraming for protocol version 2, or 4 with
// parallel: inStream says whether a stream block is open, which decides
// both which messages may come and how they are laid out. Begin and Commit
// never come inside a block, nor stream messages other than StreamStop.
func CheckStreamFraming(data []byte, inStream, parallel bool) error {
	if len(data) == 0 {
		return errors.New("empty pgoutput message")
	}
	typ := data[0]
	r := &wireReader{buf: data[1:]}
	switch {
	case inStream && HasStreamXid(typ):
		if r.take(4); r.err != nil {
			return r.done(typ)
		}
		return checkBody(typ, r.buf)
	case inStream && typ == 'O':
		return checkBody(typ, r.buf)
	case inStream && typ != MsgStreamStop:
		return fmt.Errorf("pgoutput message %q inside a stream block", typ)
	case !inStream && typ == MsgStreamStop:
		return errors.New("pgoutput StreamStop outside a stream block")
	case typ == MsgStreamStart:
		r.take(4 + 1)
	case typ == MsgStreamCommit:
		r.take(4 + 1 + 8 + 8 + 8)
	case typ == MsgStreamAbort && parallel:
		r.take(4 + 4 + 8 + 8)
	case typ == MsgStreamAbort:
		r.take(4 + 4)
	case typ != MsgStreamStop:
		return checkBody(typ, r.buf)
	}
	return r.done(typ)
}

// StreamXid splits a message that CheckStreamFraming accepted inside a
// stream block, of a type that carries an xid there (HasStreamXid), into
// that xid and the protocol 1 body that follows it.
func StreamXid(data []byte) (xid uint32, body []byte) {
	r := wireReader{buf: data[1:]}
	xid = r.uint32()
	return xid, r.buf
}

// StreamAbortMessage is a StreamAbort. pglogrepl (the version go.mod pins)
// decodes protocol 2's two xids and ignores the abort LSN and time that
// protocol 4 appends with streaming 'parallel', so Ferry reads those
// itself; they are zero in protocol 2.
type StreamAbortMessage struct {
	pglogrepl.StreamAbortMessageV2
	AbortLSN  pglogrepl.LSN
	AbortTime time.Time
}

// pgEpochMicros is where PostgreSQL's timestamps count from, 2000-01-01
// UTC, in microseconds since 1970.
const pgEpochMicros = 946_684_800_000_000

// ParseStreamMessage decodes one protocol 2 (or, with parallel, protocol 4)
// message with pglogrepl, once CheckStreamFraming accepts it; a StreamAbort
// comes back as a *StreamAbortMessage.
func ParseStreamMessage(data []byte, inStream, parallel bool) (msg pglogrepl.Message, err error) {
	if err := CheckStreamFraming(data, inStream, parallel); err != nil {
		return nil, err
	}
	defer func() {
		if r := recover(); r != nil {
			msg, err = nil, fmt.Errorf("%w on message type %q: %v", ErrDecoderPanic, data[0], r)
		}
	}()
	msg, err = pglogrepl.ParseV2(data, inStream)
	if abort, ok := msg.(*pglogrepl.StreamAbortMessageV2); ok && err == nil {
		out := &StreamAbortMessage{StreamAbortMessageV2: *abort}
		if parallel {
			r := wireReader{buf: data[1+4+4:]}
			out.AbortLSN = pglogrepl.LSN(r.uint64())
			out.AbortTime = time.UnixMicro(pgEpochMicros + int64(r.uint64())).UTC()
		}
		return out, nil
	}
	return msg, err
}
