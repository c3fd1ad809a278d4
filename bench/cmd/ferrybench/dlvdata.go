package main

import (
	"fmt"

	deliveryv1 "github.com/ferry-cdc/ferry/gen/ferry/delivery/v1"
	taskv1 "github.com/ferry-cdc/ferry/gen/ferry/task/v1"
)

// dlvSeed fixes the generated rows; change it and every figure changes.
const dlvSeed = 20_261_124

// The formats, in report order.
var dlvFormats = []taskv1.DataFormat{taskv1.DataFormat_DATA_FORMAT_CANAL_JSON, taskv1.DataFormat_DATA_FORMAT_DTS_AVRO,
	taskv1.DataFormat_DATA_FORMAT_DEBEZIUM_JSON}

// codecs maps the -codecs names to the task option.
var codecs = map[string]taskv1.Compression{
	"lz4":    taskv1.Compression_COMPRESSION_LZ4,
	"zstd":   taskv1.Compression_COMPRESSION_ZSTD,
	"gzip":   taskv1.Compression_COMPRESSION_GZIP,
	"snappy": taskv1.Compression_COMPRESSION_SNAPPY,
}

func formatName(f taskv1.DataFormat) string {
	switch f {
	case taskv1.DataFormat_DATA_FORMAT_DTS_AVRO:
		return "DTS Avro"
	case taskv1.DataFormat_DATA_FORMAT_DEBEZIUM_JSON:
		return "Debezium JSON"
	}
	return "Canal JSON"
}

// dlvData is everything the delivery scenario sends, prepared once per
// invocation before any clock runs: the throughput stream as DeliverRequest
// frames and, per format, the same rows encoded for the baseline; and the
// paced stream of the latency measurement.
type dlvData struct {
	rows      int      // rows in the throughput stream, after the warm-up row
	warm      []byte   // row 1 with the relation: starts every stream
	frames    [][]byte // rows 2..rows+1 in batches
	lastLSN   uint64   // the last throughput batch's watermark
	encoded   map[taskv1.DataFormat]*encoded
	paced     [][]byte // the latency stream: rows 2.. in small batches
	pacedWM   []uint64 // each paced batch's watermark
	pacedRows int      // rows per paced batch
}

// startFor is the StartDelivery of a benchmark stream: one table on one
// topic, every option at its default but the format and the codec.
func startFor(taskID, topic, bootstrap string, format taskv1.DataFormat, codec taskv1.Compression) *deliveryv1.StartDelivery {
	return &deliveryv1.StartDelivery{
		TaskId:         taskID,
		Kafka:          &taskv1.KafkaEndpoint{BootstrapServers: bootstrap, Topic: topic},
		Options:        &taskv1.KafkaOptions{Format: format, Compression: codec},
		Objects:        &taskv1.ObjectSelection{Tables: []*taskv1.TableSelection{{Schema: dlvSchema, Table: dlvTable}}},
		SourceDatabase: "ferry",
	}
}

func prepareDelivery(c *config) (*dlvData, error) {
	d := &dlvData{rows: c.dlvRows, encoded: map[taskv1.DataFormat]*encoded{}}
	encs := map[taskv1.DataFormat]*baselineEncoder{}
	for _, f := range dlvFormats {
		encs[f] = newBaselineEncoder(startFor("", "", "", f, 0))
	}
	warm := dlvBatch(dlvSeed, 1, 1, true)
	var err error
	if d.warm, err = frame(warm); err != nil {
		return nil, err
	}
	// Message 0 of every baseline is the warm-up row.
	for _, f := range dlvFormats {
		if err := encs[f].add(warm.GetEvents()[0]); err != nil {
			return nil, err
		}
	}
	for first := 2; first <= c.dlvRows+1; first += c.dlvBatch {
		b := dlvBatch(dlvSeed, first, min(c.dlvBatch, c.dlvRows+2-first), false)
		for _, ev := range b.GetEvents() {
			for _, f := range dlvFormats {
				if err := encs[f].add(ev); err != nil {
					return nil, err
				}
			}
		}
		raw, err := frame(b)
		if err != nil {
			return nil, err
		}
		d.frames = append(d.frames, raw)
		d.lastLSN = b.GetWatermarkLsn()
	}
	for _, f := range dlvFormats {
		d.encoded[f] = &encs[f].out
	}
	return d, d.preparePaced(c)
}

// preparePaced cuts the latency stream into one batch per pacing tick: a
// batch every 10 ms carries rate/100 rows, like capture's batches of a busy
// table (it sends one at least every 20 ms).
func (d *dlvData) preparePaced(c *config) error {
	d.pacedRows = max(1, c.latencyRate/pacedBatchesPerSecond)
	total := int((c.latencyWarmup + c.latencyFor).Seconds() * pacedBatchesPerSecond)
	if total <= 0 {
		return fmt.Errorf("-latency-warmup plus -latency-for must be positive")
	}
	for k := 0; k < total; k++ {
		b := dlvBatch(dlvSeed, 2+k*d.pacedRows, d.pacedRows, false)
		raw, err := frame(b)
		if err != nil {
			return err
		}
		d.paced = append(d.paced, raw)
		d.pacedWM = append(d.pacedWM, b.GetWatermarkLsn())
	}
	return nil
}

const pacedBatchesPerSecond = 100
