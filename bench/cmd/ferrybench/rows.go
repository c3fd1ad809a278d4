package main

import (
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	cdcv1 "github.com/ferry-cdc/ferry/gen/ferry/cdc/v1"
	deliveryv1 "github.com/ferry-cdc/ferry/gen/ferry/delivery/v1"
	"github.com/ferry-cdc/ferry/services/tuple"
)

// The delivery scenario's rows: one table shaped like the backlog's, plus an
// int, a jsonb and a bool, so that every value kind a typical table carries
// goes through the encoders. Row i is a pure function of (seed, i), so any
// batch can be generated on its own and every run sends the same rows.
const (
	dlvSchema = "public"
	dlvTable  = "bench_delivery"
	dlvOID    = 990_001
	// dlvFirstLSN is where the generated WAL starts; lsnStep is the distance
	// between two changes (about a heap insert record).
	dlvFirstLSN = 0x1_0000_0000
	lsnStep     = 0x80
	// numeric(12,2): ((12 << 16) | 2) + VARHDRSZ.
	numericTypmod = (12<<16 | 2) + 4
)

// PostgreSQL type OIDs of the table's columns.
const (
	oidBool        = 16
	oidInt8        = 20
	oidInt4        = 23
	oidText        = 25
	oidTimestamptz = 1184
	oidNumeric     = 1700
	oidJSONB       = 3802
)

// dlvRelation is the table's definition as capture would send it.
func dlvRelation() *cdcv1.Relation {
	col := func(name string, oid uint32, typeName string, typmod int32, key bool) *cdcv1.Column {
		return &cdcv1.Column{Name: name, TypeOid: oid, TypeName: typeName, TypeModifier: typmod, Key: key,
			BaseTypeOid: oid, BaseTypeKind: cdcv1.TypeKind_TYPE_KIND_BASE}
	}
	return &cdcv1.Relation{
		Oid: dlvOID, Schema: dlvSchema, Table: dlvTable,
		ReplicaIdentity: cdcv1.ReplicaIdentity_REPLICA_IDENTITY_DEFAULT,
		KeyColumns:      []string{"id"},
		Columns: []*cdcv1.Column{
			col("id", oidInt8, "bigint", -1, true),
			col("quantity", oidInt4, "integer", -1, false),
			col("amount", oidNumeric, "numeric(12,2)", numericTypmod, false),
			col("note", oidText, "text", -1, false),
			col("placed_at", oidTimestamptz, "timestamp with time zone", -1, false),
			col("attrs", oidJSONB, "jsonb", -1, false),
			col("paid", oidBool, "boolean", -1, false),
		},
	}
}

// words make notes that compress like text rather than like noise.
var words = strings.Fields(`order shipped customer parcel priority express standard return
	refund warehouse north south east west invoice pending delivered cancelled gift wrap
	fragile oversize weekend morning evening courier locker pickup note door signature`)

// dlvEpoch is the first row's commit time; the generated stream commits one
// row per millisecond after it.
var dlvEpoch = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// dlvEvent generates row i (from 1) as an INSERT. Its LSN and commit LSN are
// its own position: batchLSN is the watermark of the batch that ends at it.
func dlvEvent(seed uint64, i int) *cdcv1.ChangeEvent {
	r := rand.New(rand.NewPCG(seed, uint64(i)))
	var note strings.Builder
	// 8 to 400 bytes: most rows short, some long, as free-text columns are.
	n := 8 + r.IntN(40)
	if r.IntN(10) == 0 {
		n += r.IntN(360)
	}
	for note.Len() < n {
		if note.Len() > 0 {
			note.WriteByte(' ')
		}
		note.WriteString(words[r.IntN(len(words))])
	}
	cents := r.Int64N(100_000_000)
	attrs := fmt.Sprintf(`{"channel": "%s", "items": %d, "tags": ["%s", "%s"]}`,
		words[r.IntN(len(words))], 1+r.IntN(20), words[r.IntN(len(words))], words[r.IntN(len(words))])
	commit := dlvEpoch.Add(time.Duration(i) * time.Millisecond)
	lsn := rowLSN(i)
	return &cdcv1.ChangeEvent{
		Op:          cdcv1.Operation_OPERATION_INSERT,
		RelationOid: dlvOID,
		// PostgreSQL's text output of each column, as capture sends it.
		NewTuple: tuple.Of(
			strconv.Itoa(i),
			strconv.Itoa(r.IntN(1000)),
			fmt.Sprintf("%d.%02d", cents/100, cents%100),
			note.String(),
			time.UnixMicro(dlvEpoch.UnixMicro()-r.Int64N(365*24*3600*1e6)).UTC().Format("2006-01-02 15:04:05.999999")+"+00",
			attrs,
			pgBool(r.IntN(2) == 0),
		),
		Lsn:        lsn,
		CommitLsn:  lsn,
		Xid:        uint32(1000 + i),
		CommitTime: timestamppb.New(commit),
	}
}

// pgBool is boolean's text output.
func pgBool(b bool) string {
	if b {
		return "t"
	}
	return "f"
}

func rowLSN(i int) uint64 { return dlvFirstLSN + uint64(i)*lsnStep }

// dlvBatch is rows first..first+n-1 as one batch ending at a transaction
// boundary, so its watermark is its last row's LSN. withRelation puts the
// table's definition in front, as capture does for a stream's first batch.
func dlvBatch(seed uint64, first, n int, withRelation bool) *cdcv1.ChangeBatch {
	b := &cdcv1.ChangeBatch{Events: make([]*cdcv1.ChangeEvent, 0, n), WatermarkLsn: rowLSN(first + n - 1)}
	if withRelation {
		b.Relations = []*cdcv1.Relation{dlvRelation()}
	}
	for i := first; i < first+n; i++ {
		b.Events = append(b.Events, dlvEvent(seed, i))
	}
	return b
}

// frame encodes a batch as a DeliverRequest, ready to send as is.
func frame(b *cdcv1.ChangeBatch) ([]byte, error) {
	raw, err := proto.Marshal(&deliveryv1.DeliverRequest{Kind: &deliveryv1.DeliverRequest_Batch{Batch: b}})
	if err != nil {
		return nil, fmt.Errorf("encoding a change batch: %w", err)
	}
	return raw, nil
}
