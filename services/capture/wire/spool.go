package wire

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/jackc/pglogrepl"
)

// A streamed transaction (protocol 2) arrives in blocks while it is still
// running, and may be of any size: holding it until its commit would put
// the whole transaction in memory. Each in-progress top-level transaction
// therefore goes to its own temporary file, its spool, which the commit
// replays and an abort deletes. Memory is bounded by one write buffer (only
// one stream block is open at a time, so all spools share it), one read
// buffer while replaying, and the largest single message, as in protocol 1.
// Disk use is the size of the open streamed transactions' messages.

const (
	// spoolBuffer is the size of the shared write buffer and of the read
	// buffer of a replay.
	spoolBuffer = 64 << 10
	// spoolHeader precedes each record: the message's length, its
	// (sub)transaction's xid and its WAL position.
	spoolHeader = 4 + 4 + 8
)

// ErrNoSpool means a stream message named a transaction that has no spool.
var ErrNoSpool = errors.New("no spool for the transaction")

// SpoolSet holds the spools of one stream's in-progress streamed
// transactions.
type SpoolSet struct {
	dir  string // where spools are created; empty: os.TempDir()
	slot string // names the spool files and errors
	open map[uint32]*spool
	w    *bufio.Writer
	cur  *spool // the transaction whose stream block is open; nil: none
}

// spool is one top-level transaction's spool file.
type spool struct {
	xid  uint32
	file *os.File
	// aborted are the subtransactions whose abort came while the top-level
	// transaction went on; their changes are skipped at replay.
	aborted map[uint32]bool
	records int64
	bytes   int64
}

// SpoolRecord is one spooled message as replay hands it out. data is only
// valid until the next record (the buffer is reused, as pgconn does with
// received messages).
type SpoolRecord struct {
	Subxid uint32
	LSN    pglogrepl.LSN
	Data   []byte // a protocol 1 message: type byte, then the body without the xid
	// Aborted: the subtransaction subxid was rolled back.
	Aborted bool
}

func NewSpoolSet(dir, slot string) *SpoolSet {
	return &SpoolSet{dir: dir, slot: slot, open: map[uint32]*spool{}, w: bufio.NewWriterSize(nil, spoolBuffer)}
}

// Slot is the slot whose stream the spools belong to.
func (s *SpoolSet) Slot() string { return s.slot }

// InBlock tells whether a stream block is open.
func (s *SpoolSet) InBlock() bool { return s.cur != nil }

// Start opens a stream block of top-level transaction xid; first marks its
// first block, which creates the spool. A later block continues it.
func (s *SpoolSet) Start(xid uint32, first bool) error {
	if s.cur != nil {
		return fmt.Errorf("slot %s: a stream block of transaction %d began inside the block of transaction %d", s.slot, xid, s.cur.xid)
	}
	sp := s.open[xid]
	switch {
	case first && sp != nil:
		return fmt.Errorf("slot %s: transaction %d streamed its first block twice", s.slot, xid)
	case !first && sp == nil:
		return fmt.Errorf("slot %s: a later stream block of transaction %d came without its first: %w", s.slot, xid, ErrNoSpool)
	case first:
		f, err := os.CreateTemp(s.dir, fmt.Sprintf("ferry-%s-%d-*.spool", s.slot, xid))
		if err != nil {
			return fmt.Errorf("slot %s: creating the spool of streamed transaction %d (set the capture's -spool-dir to a writable folder): %w", s.slot, xid, err)
		}
		sp = &spool{xid: xid, file: f, aborted: map[uint32]bool{}}
		s.open[xid] = sp
	}
	s.cur = sp
	s.w.Reset(sp.file)
	return nil
}

// Add appends a message of the open block: its type, its body without the
// xid, the xid of its (sub)transaction and its WAL position.
func (s *SpoolSet) Add(subxid uint32, lsn pglogrepl.LSN, typ byte, body []byte) error {
	sp := s.cur
	if sp == nil {
		return fmt.Errorf("slot %s: message %q of transaction %d outside a stream block", s.slot, typ, subxid)
	}
	var hdr [spoolHeader + 1]byte
	binary.BigEndian.PutUint32(hdr[0:], uint32(1+len(body)))
	binary.BigEndian.PutUint32(hdr[4:], subxid)
	binary.BigEndian.PutUint64(hdr[8:], uint64(lsn))
	hdr[spoolHeader] = typ
	if _, err := s.w.Write(hdr[:]); err != nil {
		return s.writeError(sp, err)
	}
	if _, err := s.w.Write(body); err != nil {
		return s.writeError(sp, err)
	}
	sp.records++
	sp.bytes += int64(len(hdr) + len(body))
	return nil
}

func (s *SpoolSet) writeError(sp *spool, err error) error {
	return fmt.Errorf("slot %s: writing the spool %s of streamed transaction %d (is its folder full?): %w", s.slot, sp.file.Name(), sp.xid, err)
}

// Stop closes the open block, writing what the buffer holds to its spool.
func (s *SpoolSet) Stop() error {
	sp := s.cur
	if sp == nil {
		return fmt.Errorf("slot %s: StreamStop outside a stream block", s.slot)
	}
	s.cur = nil
	if err := s.w.Flush(); err != nil {
		return s.writeError(sp, err)
	}
	return nil
}

// Abort handles StreamAbort. subxid == xid aborts the whole transaction:
// its spool is deleted. Otherwise only subtransaction subxid rolled back
// (ROLLBACK TO SAVEPOINT): its records stay in the file but are marked to
// be skipped. PostgreSQL sends an abort for every streamed subtransaction
// the rollback ends, nested ones included, so the set is complete. known is
// false when nothing was spooled for xid, so nothing needed discarding.
func (s *SpoolSet) Abort(xid, subxid uint32) (known bool, err error) {
	sp := s.open[xid]
	if sp == nil {
		return false, nil
	}
	if s.cur != nil {
		return true, fmt.Errorf("slot %s: abort of transaction %d inside a stream block", s.slot, xid)
	}
	if subxid == xid {
		return true, s.remove(sp)
	}
	sp.aborted[subxid] = true
	return true, nil
}

// Replay hands transaction xid's records to fn in the order they were
// spooled, reading the file sequentially, then deletes the spool, whether
// or not replay succeeded.
func (s *SpoolSet) Replay(xid uint32, fn func(SpoolRecord) error) (err error) {
	sp := s.open[xid]
	if sp == nil {
		return fmt.Errorf("slot %s: commit of streamed transaction %d: %w", s.slot, xid, ErrNoSpool)
	}
	if s.cur != nil {
		return fmt.Errorf("slot %s: commit of transaction %d inside a stream block", s.slot, xid)
	}
	defer func() { err = errors.Join(err, s.remove(sp)) }()
	if _, err := sp.file.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("slot %s: rewinding the spool %s of transaction %d: %w", s.slot, sp.file.Name(), xid, err)
	}
	r := bufio.NewReaderSize(sp.file, spoolBuffer)
	var hdr [spoolHeader]byte
	var buf []byte
	for n := int64(0); n < sp.records; n++ {
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			return s.readError(sp, n, err)
		}
		size := int(binary.BigEndian.Uint32(hdr[0:]))
		if cap(buf) < size {
			buf = make([]byte, size)
		}
		buf = buf[:size]
		if _, err := io.ReadFull(r, buf); err != nil {
			return s.readError(sp, n, err)
		}
		subxid := binary.BigEndian.Uint32(hdr[4:])
		rec := SpoolRecord{Subxid: subxid, LSN: pglogrepl.LSN(binary.BigEndian.Uint64(hdr[8:])), Data: buf, Aborted: sp.aborted[subxid]}
		if err := fn(rec); err != nil {
			return err
		}
	}
	return nil
}

func (s *SpoolSet) readError(sp *spool, n int64, err error) error {
	return fmt.Errorf("slot %s: reading record %d of %d of the spool %s of transaction %d: %w", s.slot, n, sp.records, sp.file.Name(), sp.xid, err)
}

// remove closes and deletes a spool.
func (s *SpoolSet) remove(sp *spool) error {
	delete(s.open, sp.xid)
	if s.cur == sp {
		s.cur = nil
	}
	err := sp.file.Close()
	if rerr := os.Remove(sp.file.Name()); rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
		err = errors.Join(err, rerr)
	}
	if err != nil {
		return fmt.Errorf("slot %s: deleting the spool of transaction %d: %w", s.slot, sp.xid, err)
	}
	return nil
}

// RemoveAll deletes every spool. When the stream ends, in-progress
// transactions are of no more use: on the next connection PostgreSQL sends
// each one again from its start. Safe on nil.
func (s *SpoolSet) RemoveAll() error {
	if s == nil {
		return nil
	}
	var err error
	for _, sp := range s.open {
		err = errors.Join(err, s.remove(sp))
	}
	return err
}

// spoolPattern matches the spool files of slot's streams. Slot names are
// of a-z, 0-9 and _, so no other slot's files match.
func spoolPattern(dir, slot string) string {
	if dir == "" {
		dir = os.TempDir()
	}
	return filepath.Join(dir, "ferry-"+slot+"-*.spool")
}

// RemoveOrphans deletes spools an earlier stream of the slot left behind
// when its process died before cleaning up. It runs once the slot is free:
// no live stream writes them then (and one still reading an open file on
// its way out keeps reading it), and PostgreSQL sends their transactions
// again from the start anyway.
func (s *SpoolSet) RemoveOrphans() (int, error) {
	files, err := filepath.Glob(spoolPattern(s.dir, s.slot))
	if err != nil {
		return 0, fmt.Errorf("slot %s: listing old spools: %w", s.slot, err)
	}
	for _, f := range files {
		if err := os.Remove(f); err != nil && !errors.Is(err, os.ErrNotExist) {
			return 0, fmt.Errorf("slot %s: deleting the old spool %s: %w", s.slot, f, err)
		}
	}
	return len(files), nil
}

// CheckSpoolDir tells whether dir (empty: os.TempDir()) can hold spools,
// by creating and deleting one, so a capture started with an unusable
// folder fails at once rather than at its first large transaction.
func CheckSpoolDir(dir string) error {
	f, err := os.CreateTemp(dir, "ferry-spool-check-*")
	if err != nil {
		return fmt.Errorf("the spool folder %q is not writable: %w", dir, err)
	}
	return errors.Join(f.Close(), os.Remove(f.Name()))
}
