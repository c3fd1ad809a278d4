package wire

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/jackc/pglogrepl"
)

// spoolFiles lists the spools in dir.
func spoolFiles(t *testing.T, dir string) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "ferry-*.spool"))
	if err != nil {
		t.Fatal(err)
	}
	return files
}

type spooled struct {
	subxid  uint32
	lsn     pglogrepl.LSN
	data    string
	aborted bool
}

func replayAll(t *testing.T, s *SpoolSet, xid uint32) []spooled {
	t.Helper()
	var out []spooled
	err := s.Replay(xid, func(r SpoolRecord) error {
		out = append(out, spooled{r.Subxid, r.LSN, string(r.Data), r.Aborted})
		return nil
	})
	if err != nil {
		t.Fatalf("replaying %d: %v", xid, err)
	}
	return out
}

func mustSpool(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// Records come back in order, across blocks interleaved with another
// transaction's, with the subtransactions that rolled back marked; a
// record larger than the buffers survives; every spool is deleted by its
// commit, its abort or removeAll.
func TestSpoolReplaysInOrderAndForgets(t *testing.T) {
	dir := t.TempDir()
	s := NewSpoolSet(dir, "slot_a")
	big := bytes.Repeat([]byte("x"), 3*spoolBuffer+7)

	mustSpool(t, s.Start(100, true))
	mustSpool(t, s.Add(100, 10, 'R', []byte("rel")))
	mustSpool(t, s.Add(101, 11, 'I', []byte("sub 101 a")))
	mustSpool(t, s.Stop())
	mustSpool(t, s.Start(200, true))
	mustSpool(t, s.Add(200, 12, 'I', []byte("other")))
	mustSpool(t, s.Stop())
	mustSpool(t, s.Start(100, false))
	mustSpool(t, s.Add(102, 13, 'I', big))
	mustSpool(t, s.Add(101, 14, 'R', []byte("rel again")))
	mustSpool(t, s.Add(100, 15, 'U', []byte("top")))
	mustSpool(t, s.Stop())
	if got := len(spoolFiles(t, dir)); got != 2 {
		t.Fatalf("%d spool files for two open transactions", got)
	}

	if known, err := s.Abort(100, 101); !known || err != nil {
		t.Fatalf("subtransaction abort: %v, %v", known, err)
	}
	if known, err := s.Abort(200, 200); !known || err != nil {
		t.Fatalf("top-level abort: %v, %v", known, err)
	}
	if known, err := s.Abort(300, 300); known || err != nil {
		t.Fatalf("abort of a transaction never streamed: %v, %v", known, err)
	}
	if got := len(spoolFiles(t, dir)); got != 1 {
		t.Fatalf("%d spool files after the abort of one of two", got)
	}
	got := replayAll(t, s, 100)
	want := []spooled{
		{100, 10, "Rrel", false},
		{101, 11, "Isub 101 a", true},
		{102, 13, "I" + string(big), false},
		{101, 14, "Rrel again", true},
		{100, 15, "Utop", false},
	}
	if !slices.Equal(got, want) {
		t.Fatalf("replayed %d records %.200v, want %.200v", len(got), got, want)
	}
	if files := spoolFiles(t, dir); len(files) != 0 {
		t.Fatalf("spools left after commit and abort: %v", files)
	}
	if err := s.Replay(100, func(SpoolRecord) error { return nil }); !errors.Is(err, ErrNoSpool) {
		t.Fatalf("a second replay: %v, want ErrNoSpool", err)
	}

	mustSpool(t, s.Start(400, true))
	mustSpool(t, s.Add(400, 20, 'I', []byte("left open")))
	mustSpool(t, s.RemoveAll())
	if files := spoolFiles(t, dir); len(files) != 0 || len(s.open) != 0 || s.InBlock() {
		t.Fatalf("removeAll left %v, %d open, in block %v", files, len(s.open), s.InBlock())
	}
}

// The stream messages must follow the protocol: each refusal names the
// transaction.
func TestSpoolRefusesOutOfOrderMessages(t *testing.T) {
	s := NewSpoolSet(t.TempDir(), "slot_b")
	if err := s.Start(7, false); !errors.Is(err, ErrNoSpool) {
		t.Fatalf("a later block without the first: %v", err)
	}
	if err := s.Add(7, 1, 'I', nil); err == nil {
		t.Fatal("a message outside any block was spooled")
	}
	if err := s.Stop(); err == nil {
		t.Fatal("StreamStop outside a block was accepted")
	}
	mustSpool(t, s.Start(7, true))
	if err := s.Start(8, true); err == nil {
		t.Fatal("a block began inside another")
	}
	if _, err := s.Abort(7, 7); err == nil {
		t.Fatal("an abort inside the transaction's own block was accepted")
	}
	mustSpool(t, s.Add(7, 1, 'I', []byte("row")))
	mustSpool(t, s.Stop())
	if err := s.Start(7, true); err == nil {
		t.Fatal("a transaction's first block came twice")
	}
	if err := s.Replay(7, func(SpoolRecord) error { return errors.New("stop") }); err == nil || err.Error() != "stop" {
		t.Fatalf("replay did not return its callback's error: %v", err)
	}
	if len(s.open) != 0 {
		t.Fatal("a failed replay kept its spool")
	}
}

// An unusable folder fails the first streamed transaction with an error
// that names the fix.
func TestSpoolInAMissingFolder(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "missing")
	err := NewSpoolSet(dir, "slot_c").Start(5, true)
	if err == nil || !contains(err.Error(), "slot_c", "transaction 5", "-spool-dir") {
		t.Fatalf("spooling into a missing folder: %v", err)
	}
	if err := CheckSpoolDir(dir); err == nil {
		t.Fatal("CheckSpoolDir accepted a missing folder")
	}
	if err := CheckSpoolDir(t.TempDir()); err != nil {
		t.Fatalf("CheckSpoolDir: %v", err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the missing folder was created: %v", err)
	}
}

// Spools a dead process left behind are deleted by the slot's next stream,
// and only that slot's.
func TestSpoolOrphansOfTheSlotAreDeleted(t *testing.T) {
	dir := t.TempDir()
	for _, name := range []string{"ferry-slot_d-7-1.spool", "ferry-slot_d-8-2.spool", "ferry-slot_d_x-7-3.spool", "other.spool"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("old"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	n, err := NewSpoolSet(dir, "slot_d").RemoveOrphans()
	if err != nil || n != 2 {
		t.Fatalf("removed %d, %v; want 2", n, err)
	}
	left, err := filepath.Glob(filepath.Join(dir, "*"))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{filepath.Join(dir, "ferry-slot_d_x-7-3.spool"), filepath.Join(dir, "other.spool")}
	if !slices.Equal(left, want) {
		t.Fatalf("left %v, want %v", left, want)
	}
}

func contains(s string, parts ...string) bool {
	for _, p := range parts {
		if !strings.Contains(s, p) {
			return false
		}
	}
	return true
}
