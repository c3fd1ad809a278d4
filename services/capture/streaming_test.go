package capture

import (
	"encoding/binary"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"

	cdcv1 "github.com/ferry-cdc/ferry/gen/ferry/cdc/v1"
)

// Builders of protocol 2 messages as pgoutput writes them. xid is 0
// outside a stream block, where messages carry none.

func withXid(typ byte, xid uint32, body []byte) []byte {
	out := []byte{typ}
	if xid != 0 {
		out = binary.BigEndian.AppendUint32(out, xid)
	}
	return append(out, body...)
}

func streamStartMsg(xid uint32, first bool) []byte {
	out := binary.BigEndian.AppendUint32([]byte{msgStreamStart}, xid)
	if first {
		return append(out, 1)
	}
	return append(out, 0)
}

func streamStopMsg() []byte { return []byte{msgStreamStop} }

func streamCommitMsg(xid uint32, commit, end uint64) []byte {
	out := binary.BigEndian.AppendUint32([]byte{msgStreamCommit}, xid)
	out = append(out, 0)
	out = binary.BigEndian.AppendUint64(out, commit)
	out = binary.BigEndian.AppendUint64(out, end)
	return binary.BigEndian.AppendUint64(out, 0)
}

func streamAbortMsg(xid, subxid uint32) []byte {
	out := binary.BigEndian.AppendUint32([]byte{msgStreamAbort}, xid)
	return binary.BigEndian.AppendUint32(out, subxid)
}

// streamAbortMsgV4 is StreamAbort as protocol 4 sends it with streaming
// 'parallel': the abort's LSN and time (microseconds since 2000) follow.
func streamAbortMsgV4(xid, subxid uint32, lsn uint64, micros int64) []byte {
	out := binary.BigEndian.AppendUint64(streamAbortMsg(xid, subxid), lsn)
	return binary.BigEndian.AppendUint64(out, uint64(micros))
}

// relationMsg defines relation oid as public.t(id int8).
func relationMsg(xid, oid uint32) []byte {
	body := binary.BigEndian.AppendUint32(nil, oid)
	body = append(body, "public\x00t\x00d"...)
	body = binary.BigEndian.AppendUint16(body, 1)
	body = append(body, 1)
	body = append(body, "id\x00"...)
	body = binary.BigEndian.AppendUint32(body, 20)
	body = binary.BigEndian.AppendUint32(body, 0xffffffff)
	return withXid('R', xid, body)
}

// insertMsg inserts id into relation oid.
func insertMsg(xid, oid uint32, id int) []byte {
	body := binary.BigEndian.AppendUint32(nil, oid)
	body = append(body, 'N')
	body = binary.BigEndian.AppendUint16(body, 1)
	text := strconv.Itoa(id)
	body = append(body, 't')
	body = binary.BigEndian.AppendUint32(body, uint32(len(text)))
	return withXid('I', xid, append(body, text...))
}

func beginMsg(xid uint32, final uint64) []byte {
	out := binary.BigEndian.AppendUint64([]byte{'B'}, final)
	out = binary.BigEndian.AppendUint64(out, 0)
	return binary.BigEndian.AppendUint32(out, xid)
}

func commitMsg(commit, end uint64) []byte {
	out := binary.BigEndian.AppendUint64([]byte{'C', 0}, commit)
	out = binary.BigEndian.AppendUint64(out, end)
	return binary.BigEndian.AppendUint64(out, 0)
}

func rowIDs(evs []*cdcv1.ChangeEvent) []int64 {
	var out []int64
	for _, ev := range evs {
		out = append(out, colInt(ev.GetNewTuple(), 0))
	}
	return out
}

// Two streamed transactions interleave with each other and with an
// ordinary one; one loses a subtransaction, the other aborts. What arrives
// is what protocol 1 would have sent: the ordinary transaction at its
// commit, then the surviving streamed rows at theirs, in streamed order,
// with the commit's LSNs, and watermarks only at commits.
//
// Protocol 4 (streaming 'parallel') differs only in its longer aborts.
func TestStreamedTransactionsReplayAtTheirCommit(t *testing.T) {
	v4Abort := func(xid, subxid uint32) []byte { return streamAbortMsgV4(xid, subxid, 0x4000, 1) }
	t.Run("protocol 2", func(t *testing.T) { checkStreamedReplay(t, fuzzStreamV2, streamAbortMsg) })
	t.Run("protocol 4", func(t *testing.T) { checkStreamedReplay(t, fuzzStreamV4, v4Abort) })
}

func checkStreamedReplay(t *testing.T, newStream func(sender, string) *stream, abort func(xid, subxid uint32) []byte) {
	dir := t.TempDir()
	out := &recorder{}
	st := newStream(out, dir)
	const oid = 16400
	msgs := [][]byte{
		streamStartMsg(700, true),
		relationMsg(700, oid),
		insertMsg(700, oid, 1),
		insertMsg(701, oid, 2), // subtransaction 701, rolled back below
		// The relation's definition comes with the rolled-back
		// subtransaction's change; pgoutput does not repeat it for row 5.
		relationMsg(701, oid+1),
		insertMsg(701, oid+1, 20),
		streamStopMsg(),
		streamStartMsg(800, true),
		relationMsg(800, oid),
		insertMsg(800, oid, 90), // transaction 800 aborts
		streamStopMsg(),
		beginMsg(900, 0x3000),
		relationMsg(0, oid),
		insertMsg(0, oid, 50),
		commitMsg(0x3000, 0x3100),
		abort(700, 701),
		streamStartMsg(700, false),
		insertMsg(702, oid, 3),
		insertMsg(700, oid, 4),
		insertMsg(700, oid+1, 5),
		streamStopMsg(),
		abort(800, 800),
		streamCommitMsg(700, 0x5000, 0x5100),
	}
	if err := feed(st, msgs); err != nil {
		t.Fatal(err)
	}
	batches := append(out.batches, st.batch.take())
	evs := events(batches)
	if got := rowIDs(evs); !slices.Equal(got, []int64{50, 1, 3, 4, 5}) {
		t.Fatalf("rows %v, want [50 1 3 4 5]", got)
	}
	lsns := feedLSNs(msgs)
	for i, want := range []struct {
		xid         uint32
		commit, lsn uint64
	}{
		{900, 0x3000, uint64(lsns[13])}, {700, 0x5000, uint64(lsns[2])}, {700, 0x5000, uint64(lsns[17])},
		{700, 0x5000, uint64(lsns[18])}, {700, 0x5000, uint64(lsns[19])},
	} {
		ev := evs[i]
		if ev.GetXid() != want.xid || ev.GetCommitLsn() != want.commit || ev.GetLsn() != want.lsn {
			t.Fatalf("row %d: xid %d commit %x lsn %x, want %d %x %x", colInt(ev.GetNewTuple(), 0),
				ev.GetXid(), ev.GetCommitLsn(), ev.GetLsn(), want.xid, want.commit, want.lsn)
		}
	}
	checkWatermarks(t, batches)
	if w := lastWatermark(batches); w != 0x5100 {
		t.Fatalf("last watermark %x, want the streamed commit's end 5100", w)
	}
	if files := spoolFiles(t, dir); len(files) != 0 {
		t.Fatalf("spools left: %v", files)
	}
}

// Nothing of a streamed transaction moves a watermark or reaches the
// client before its commit, and a stream that ends deletes what it spooled.
func TestOpenStreamedTransactionSendsNothing(t *testing.T) {
	dir := t.TempDir()
	out := &recorder{}
	st := fuzzStreamV2(out, dir)
	err := feed(st, [][]byte{
		streamStartMsg(700, true), relationMsg(700, 16400), insertMsg(700, 16400, 1), streamStopMsg(),
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(out.batches) != 0 || !st.batch.empty() {
		t.Fatalf("an open streamed transaction produced %v, pending %v", out.batches, st.batch.cur)
	}
	if len(spoolFiles(t, dir)) != 1 {
		t.Fatal("the streamed transaction has no spool")
	}
	if err := st.spools.removeAll(); err != nil {
		t.Fatal(err)
	}
	if files := spoolFiles(t, dir); len(files) != 0 {
		t.Fatalf("spools left: %v", files)
	}
}

// Protocol violations are errors, never silently dropped data: a commit of
// a transaction this stream never saw, a Begin inside a stream block, a
// stream message inside an ordinary transaction.
func TestStreamProtocolViolations(t *testing.T) {
	for name, msgs := range map[string][][]byte{
		"commit without spool":       {streamCommitMsg(5, 0x5000, 0x5100)},
		"begin inside a block":       {streamStartMsg(5, true), beginMsg(6, 0x3000)},
		"block inside a transaction": {beginMsg(6, 0x3000), streamStartMsg(5, true)},
		"later block first":          {streamStartMsg(5, false)},
		"stop outside a block":       {streamStopMsg()},
	} {
		st := fuzzStreamV2(&recorder{}, t.TempDir())
		if err := feed(st, msgs); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestParseStreamMessage(t *testing.T) {
	for name, c := range map[string]struct {
		data     []byte
		inStream bool
		ok       bool
	}{
		"start":                {streamStartMsg(5, true), false, true},
		"start in a block":     {streamStartMsg(5, true), true, false},
		"stop":                 {streamStopMsg(), true, true},
		"stop with a tail":     {append(streamStopMsg(), 0), true, false},
		"commit":               {streamCommitMsg(5, 1, 2), false, true},
		"short commit":         {streamCommitMsg(5, 1, 2)[:20], false, false},
		"abort":                {streamAbortMsg(5, 6), false, true},
		"abort with a v4 tail": {streamAbortMsgV4(5, 6, 7, 8), false, false},
		"insert with xid":      {insertMsg(5, 1, 1), true, true},
		"insert without xid":   {insertMsg(0, 1, 1), true, false},
		"relation with xid":    {relationMsg(5, 1), true, true},
		"insert outside":       {insertMsg(0, 1, 1), false, true},
		"begin in a block":     {beginMsg(5, 1), true, false},
		"xid cut short":        {[]byte("I\x00\x00"), true, false},
		"origin in a block":    {append([]byte("O"+string(make([]byte, 8))+"origin"), 0), true, true},
		"commit in a block":    {commitMsg(1, 2), true, false},
		"unknown type outside": {[]byte("Z"), false, false},
	} {
		msg, err := parseStreamMessage(c.data, c.inStream, false)
		if (err == nil) != c.ok || (msg == nil) == c.ok {
			t.Errorf("%s: got %T, %v; want ok=%v", name, msg, err, c.ok)
		}
	}
	m, err := parseStreamMessage(insertMsg(77, 16400, 3), true, false)
	if im, ok := m.(*pglogrepl.InsertMessageV2); err != nil || !ok || im.Xid != 77 || im.RelationID != 16400 {
		t.Fatalf("insert with xid parses as %+v, %v", m, err)
	}
}

// With streaming 'parallel' (protocol 4) StreamAbort carries the abort's
// LSN and time after the two xids, which pglogrepl does not read; Ferry
// does, and refuses protocol 2's shorter form, as it refuses the longer one
// on protocol 2. The other messages are protocol 2's.
func TestParseStreamMessageProtocol4(t *testing.T) {
	at := time.Date(2025, time.March, 4, 5, 6, 7, 891_000, time.UTC)
	micros := at.Sub(time.Date(2000, time.January, 1, 0, 0, 0, 0, time.UTC)).Microseconds()
	m, err := parseStreamMessage(streamAbortMsgV4(5, 6, 0x16_0000_2A28, micros), false, true)
	if err != nil {
		t.Fatal(err)
	}
	abort, ok := m.(*streamAbortMessage)
	if !ok || abort.Xid != 5 || abort.SubXid != 6 || abort.AbortLSN != 0x16_0000_2A28 || !abort.AbortTime.Equal(at) {
		t.Fatalf("protocol 4 abort parses as %T %+v", m, m)
	}
	if m, err := parseStreamMessage(streamAbortMsg(5, 6), false, false); err != nil || m.(*streamAbortMessage).AbortLSN != 0 {
		t.Fatalf("protocol 2 abort parses as %+v, %v", m, err)
	}
	for name, data := range map[string][]byte{
		"protocol 2's abort":  streamAbortMsg(5, 6),
		"abort without time":  streamAbortMsgV4(5, 6, 7, 8)[:17],
		"abort with one more": append(streamAbortMsgV4(5, 6, 7, 8), 0),
	} {
		if _, err := parseStreamMessage(data, false, true); err == nil {
			t.Errorf("%s: accepted on protocol 4", name)
		}
	}
	for _, c := range []struct {
		data     []byte
		inStream bool
	}{{streamStartMsg(5, true), false}, {insertMsg(5, 1, 1), true}, {streamStopMsg(), true}, {streamCommitMsg(5, 1, 2), false}} {
		if _, err := parseStreamMessage(c.data, c.inStream, true); err != nil {
			t.Errorf("message %q refused on protocol 4: %v", c.data[0], err)
		}
	}
}

// pluginArgs asks for protocol 4 only where the server has it, and
// otherwise falls back to protocol 2, or 1.
func TestPluginArgsStreamProtocol(t *testing.T) {
	for _, c := range []struct {
		version, protocol int
		stream            bool
		want              streamMode
		proto, streaming  string
	}{
		{170000, 4, true, streamParallel, "proto_version '4'", "streaming 'parallel'"},
		{160000, 4, true, streamParallel, "proto_version '4'", "streaming 'parallel'"},
		{160000, 2, true, streamOn, "proto_version '2'", "streaming 'on'"},
		{150000, 4, true, streamOn, "proto_version '2'", "streaming 'on'"},
		{140000, 4, true, streamOn, "proto_version '2'", "streaming 'on'"},
		{170000, 4, false, streamOff, "proto_version '1'", ""},
		{130000, 4, true, streamOff, "proto_version '1'", ""},
	} {
		args, mode := pluginArgs(c.version, "pub", c.stream, c.protocol)
		joined := strings.Join(args, ", ")
		if mode != c.want || args[0] != c.proto || !strings.Contains(joined, "streaming") != (c.streaming == "") ||
			c.streaming != "" && !slices.Contains(args, c.streaming) {
			t.Errorf("version %d protocol %d stream %v: %v (%s), want %s with %q", c.version, c.protocol, c.stream, args, mode, c.proto, c.streaming)
		}
	}
}
