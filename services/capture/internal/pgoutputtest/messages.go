// Package pgoutputtest builds pgoutput messages as the walsender writes
// them, for the tests of capture and its packages.
package pgoutputtest

import (
	"encoding/binary"
	"strconv"
)

// The type bytes of protocol 2's stream messages.
const (
	streamStart  = 'S'
	streamStop   = 'E'
	streamCommit = 'c'
	streamAbort  = 'A'
)

// Builders of protocol 2 messages as pgoutput writes them. xid is 0
// outside a stream block, where messages carry none.

// WithXid is a message of type typ, with xid after the type byte unless
// it is 0.
func WithXid(typ byte, xid uint32, body []byte) []byte {
	out := []byte{typ}
	if xid != 0 {
		out = binary.BigEndian.AppendUint32(out, xid)
	}
	return append(out, body...)
}

// StreamStart opens a stream block of transaction xid.
func StreamStart(xid uint32, first bool) []byte {
	out := binary.BigEndian.AppendUint32([]byte{streamStart}, xid)
	if first {
		return append(out, 1)
	}
	return append(out, 0)
}

// StreamStop closes the open stream block.
func StreamStop() []byte { return []byte{streamStop} }

// StreamCommit commits streamed transaction xid.
func StreamCommit(xid uint32, commit, end uint64) []byte {
	out := binary.BigEndian.AppendUint32([]byte{streamCommit}, xid)
	out = append(out, 0)
	out = binary.BigEndian.AppendUint64(out, commit)
	out = binary.BigEndian.AppendUint64(out, end)
	return binary.BigEndian.AppendUint64(out, 0)
}

// StreamAbort is protocol 2's StreamAbort.
func StreamAbort(xid, subxid uint32) []byte {
	out := binary.BigEndian.AppendUint32([]byte{streamAbort}, xid)
	return binary.BigEndian.AppendUint32(out, subxid)
}

// StreamAbortV4 is StreamAbort as protocol 4 sends it with streaming
// 'parallel': the abort's LSN and time (microseconds since 2000) follow.
func StreamAbortV4(xid, subxid uint32, lsn uint64, micros int64) []byte {
	out := binary.BigEndian.AppendUint64(StreamAbort(xid, subxid), lsn)
	return binary.BigEndian.AppendUint64(out, uint64(micros))
}

// Relation defines relation oid as public.t(id int8).
func Relation(xid, oid uint32) []byte {
	body := binary.BigEndian.AppendUint32(nil, oid)
	body = append(body, "public\x00t\x00d"...)
	body = binary.BigEndian.AppendUint16(body, 1)
	body = append(body, 1)
	body = append(body, "id\x00"...)
	body = binary.BigEndian.AppendUint32(body, 20)
	body = binary.BigEndian.AppendUint32(body, 0xffffffff)
	return WithXid('R', xid, body)
}

// Insert inserts id into relation oid.
func Insert(xid, oid uint32, id int) []byte {
	body := binary.BigEndian.AppendUint32(nil, oid)
	body = append(body, 'N')
	body = binary.BigEndian.AppendUint16(body, 1)
	text := strconv.Itoa(id)
	body = append(body, 't')
	body = binary.BigEndian.AppendUint32(body, uint32(len(text)))
	return WithXid('I', xid, append(body, text...))
}

// Begin begins transaction xid, which commits at final.
func Begin(xid uint32, final uint64) []byte {
	out := binary.BigEndian.AppendUint64([]byte{'B'}, final)
	out = binary.BigEndian.AppendUint64(out, 0)
	return binary.BigEndian.AppendUint32(out, xid)
}

// Commit commits the open transaction.
func Commit(commit, end uint64) []byte {
	out := binary.BigEndian.AppendUint64([]byte{'C', 0}, commit)
	out = binary.BigEndian.AppendUint64(out, end)
	return binary.BigEndian.AppendUint64(out, 0)
}

// LogicalMessage is an 'M' message as pgoutput writes it outside streaming.
func LogicalMessage(transactional bool, lsn uint64, prefix, content string) []byte {
	out := []byte{'M', 0}
	if transactional {
		out[1] = 1
	}
	out = binary.BigEndian.AppendUint64(out, lsn)
	out = append(append(out, prefix...), 0)
	out = binary.BigEndian.AppendUint32(out, uint32(len(content)))
	return append(out, content...)
}

// Truncate is pgoutput's Truncate: relation count, options, OIDs.
func Truncate(xid uint32, opts uint8, oids ...uint32) []byte {
	body := binary.BigEndian.AppendUint32(nil, uint32(len(oids)))
	body = append(body, opts)
	for _, oid := range oids {
		body = binary.BigEndian.AppendUint32(body, oid)
	}
	return WithXid('T', xid, body)
}
