package main

import (
	"context"
	"fmt"
	"log"
	"os"
	"os/exec"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"

	capturev1 "github.com/ferry-cdc/ferry/gen/ferry/capture/v1"
	taskv1 "github.com/ferry-cdc/ferry/gen/ferry/task/v1"
)

// The capture-alone measurement's own slot and publication.
const (
	fsCapSlot = "bench_fs_cap_slot"
	fsCapPub  = "bench_fs_cap_pub"
)

// fsCaptureResult is capture's ReadSnapshot alone: its exported-snapshot
// read of every table, driven by a client that discards the batches.
type fsCaptureResult struct {
	Seconds     float64   `json:"seconds"`
	Rows        uint64    `json:"rows"`        // from the final progress
	FrameBytes  int64     `json:"frame_bytes"` // the batches' protobuf bytes
	RowsPerSec  float64   `json:"rows_per_second"`
	OverCopy    float64   `json:"over_copy"` // rows/s over the same run's COPY
	Process     procUsage `json:"process"`
	Parallelism int       `json:"parallelism"` // capture's default
}

// measureCaptureAlone starts a capture process of its own (so that its CPU
// and peak RSS are this read's) and times ReadSnapshot from the call to the
// progress message that says every table is read.
func measureCaptureAlone(ctx context.Context, e *benchEnv, p fsPart) (res fsCaptureResult, err error) {
	logDir, err := os.MkdirTemp("", "ferrybench-capture-")
	if err != nil {
		return res, fmt.Errorf("creating the log folder: %w", err)
	}
	addr, err := freePort()
	if err != nil {
		return res, err
	}
	f := &ferry{binDir: e.binDir, logDir: logDir, temporal: e.c.temporalAddress,
		addrs: map[string]string{"capture": addr}, procs: map[string]*exec.Cmd{}, env: ferryEnv(e.c)}
	defer func() {
		f.stop()
		if cerr := dropSlotAndPublication(context.WithoutCancel(ctx), e.super, fsCapSlot, fsCapPub); cerr != nil {
			log.Printf("cleanup: %v", cerr)
		}
		if err != nil {
			log.Printf("capture's log is in %s", logDir)
			return
		}
		_ = os.RemoveAll(logDir)
	}()
	if err = dropSlotAndPublication(ctx, e.super, fsCapSlot, fsCapPub); err != nil {
		return res, err
	}
	if _, err = e.super.Exec(ctx, fmt.Sprintf("CREATE PUBLICATION %s FOR TABLE %s", fsCapPub, qualified(p.tables))); err != nil {
		return res, fmt.Errorf("creating publication %s: %w", fsCapPub, err)
	}
	if err = f.start(ctx, "capture"); err != nil {
		return res, err
	}
	before, err := f.sample()
	if err != nil {
		return res, err
	}
	res, err = readSnapshot(ctx, e.c, addr, p)
	if err != nil {
		return res, err
	}
	after, err := f.sample()
	if err != nil {
		return res, err
	}
	res.Process = usage(before, after, p.total())["capture"]
	return res, nil
}

func qualified(tables []string) string {
	q := make([]string, len(tables))
	for i, t := range tables {
		q[i] = "public." + t
	}
	return strings.Join(q, ", ")
}

func tableRefs(tables []string) []*taskv1.TableRef {
	refs := make([]*taskv1.TableRef, len(tables))
	for i, t := range tables {
		refs[i] = &taskv1.TableRef{Schema: "public", Table: t}
	}
	return refs
}

// readSnapshot calls ReadSnapshot as the worker does (default batch size,
// parallelism and no throttle) and reads its stream to the end.
func readSnapshot(ctx context.Context, c *config, addr string, p fsPart) (fsCaptureResult, error) {
	res := fsCaptureResult{Parallelism: min(fsCopyConnections, len(p.tables))}
	conn, err := dialFerry(addr)
	if err != nil {
		return res, fmt.Errorf("dialing capture: %w", err)
	}
	defer func() { _ = conn.Close() }()
	ctx, cancel := context.WithTimeout(ctx, c.ferryTimeout)
	defer cancel()
	req := &capturev1.ReadSnapshotRequest{
		Source: &taskv1.SourceEndpoint{Host: c.pgHost, Port: uint32(c.pgPort), Database: c.pgDatabase, User: "ferry",
			Password: &taskv1.SecretRef{Source: &taskv1.SecretRef_File{File: c.pgPasswordFile}}},
		SlotName: fsCapSlot, PublicationName: fsCapPub, Tables: tableRefs(p.tables),
	}
	start := time.Now()
	s, err := conn.NewStream(ctx, &grpc.StreamDesc{ServerStreams: true}, capturev1.CaptureService_ReadSnapshot_FullMethodName,
		grpc.ForceCodecV2(discardCodec{}))
	if err != nil {
		return res, fmt.Errorf("calling ReadSnapshot: %w", err)
	}
	if err := s.SendMsg(req); err != nil {
		return res, fmt.Errorf("sending the ReadSnapshot request: %w", err)
	}
	if err := s.CloseSend(); err != nil {
		return res, fmt.Errorf("closing the ReadSnapshot request: %w", err)
	}
	for {
		var fr snapFrame
		if err := s.RecvMsg(&fr); err != nil {
			return res, fmt.Errorf("reading the snapshot after %d batch bytes: %w", res.FrameBytes, err)
		}
		res.FrameBytes += int64(fr.batchBytes)
		if prog := fr.resp.GetProgress(); prog.GetDone() {
			for _, t := range prog.GetTables() {
				res.Rows += t.GetRows()
			}
			break
		}
	}
	res.Seconds = time.Since(start).Seconds()
	if res.Rows != uint64(p.total()) {
		return res, fmt.Errorf("ReadSnapshot read %d rows of %d", res.Rows, p.total())
	}
	res.RowsPerSec = float64(res.Rows) / res.Seconds
	return res, nil
}

// snapFrame is one ReadSnapshotResponse: a batch is only measured, the
// rest (started, progress) is decoded.
type snapFrame struct {
	batchBytes int
	resp       *capturev1.ReadSnapshotResponse
}

// discardCodec is the proto codec, except that it never decodes a change
// batch: the client stands for a consumer that costs nothing, as COPY's
// /dev/null does.
type discardCodec struct{}

var _ encoding.CodecV2 = discardCodec{}

func (discardCodec) Name() string { return "proto" }

func (discardCodec) Marshal(v any) (mem.BufferSlice, error) {
	b, err := proto.Marshal(v.(proto.Message))
	if err != nil {
		return nil, fmt.Errorf("marshalling %T: %w", v, err)
	}
	return mem.BufferSlice{mem.SliceBuffer(b)}, nil
}

// batchTag is ReadSnapshotResponse.batch's tag: field 1, wire type LEN.
const batchTag = 1<<3 | 2

func (discardCodec) Unmarshal(data mem.BufferSlice, v any) error {
	fr := v.(*snapFrame)
	if len(data) > 0 && len(data[0].ReadOnlyData()) > 0 && data[0].ReadOnlyData()[0] == batchTag {
		fr.batchBytes = data.Len()
		return nil
	}
	fr.resp = &capturev1.ReadSnapshotResponse{}
	if err := proto.Unmarshal(data.Materialize(), fr.resp); err != nil {
		return fmt.Errorf("decoding a ReadSnapshotResponse: %w", err)
	}
	return nil
}
