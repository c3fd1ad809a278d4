package main

import (
	"context"
	"errors"
	"fmt"
	"log"
	"strconv"
	"strings"

	"github.com/hamba/avro/v2"

	taskv1 "github.com/ferry-cdc/ferry/gen/ferry/task/v1"
	"github.com/ferry-cdc/ferry/services/delivery/dtsavro"
)

// combo is one of the task's message formats with one of its codecs, as
// -backlog-combos and -bigtxn-combos name them: "canal/lz4", "avro/zstd".
type combo struct{ format, codec string }

// comboFormats are the formats a combo may name.
var comboFormats = map[string]taskv1.DataFormat{
	"canal":    taskv1.DataFormat_DATA_FORMAT_CANAL_JSON,
	"avro":     taskv1.DataFormat_DATA_FORMAT_DTS_AVRO,
	"debezium": taskv1.DataFormat_DATA_FORMAT_DEBEZIUM_JSON,
}

func (k combo) String() string { return k.format + "/" + k.codec }

// label is the combo as the report names it: "Canal JSON, lz4".
func (k combo) label() string { return formatName(comboFormats[k.format]) + ", " + k.codec }

func (k combo) kafkaOptions() *taskv1.KafkaOptions {
	return &taskv1.KafkaOptions{Format: comboFormats[k.format], Compression: codecs[k.codec],
		ConflictMode: taskv1.ConflictMode_CONFLICT_MODE_IGNORE}
}

// ids is how the audit reads row ids from the combo's messages.
func (k combo) ids() rowIDs {
	switch k.format {
	case "avro":
		return dtsAvroIDs
	case "debezium":
		return debeziumIDs // the reader of Debezium's own topic
	}
	return canalIDs
}

// parseCombos reads a comma-separated list of format/codec pairs.
func parseCombos(flagName, list string) ([]combo, error) {
	var out []combo
	for _, s := range strings.Split(list, ",") {
		f, c, ok := strings.Cut(strings.TrimSpace(s), "/")
		_, fok := comboFormats[f]
		_, cok := codecs[c]
		if !ok || !fok || !cok {
			return nil, fmt.Errorf("%s: %q is not format/codec; formats canal, avro, debezium; codecs lz4, zstd, gzip, snappy", flagName, s)
		}
		out = append(out, combo{format: f, codec: c})
	}
	return out, nil
}

// comboResult is Ferry and the Kafka limit for one format and codec in one
// run, against the same run's source limit and Debezium.
type comboResult struct {
	Combo                   string      `json:"combo"`
	Ferry                   ferryResult `json:"ferry"`
	Kafka                   kafkaResult `json:"kafka"`
	ShareToKafka            float64     `json:"share_to_kafka"`
	ShareToConfirmed        float64     `json:"share_to_confirmed"`
	OverDebeziumToKafka     float64     `json:"ferry_over_debezium_to_kafka,omitempty"`
	OverDebeziumToConfirmed float64     `json:"ferry_over_debezium_confirmed,omitempty"`
}

// measureCombo times Ferry with the combo's format and codec, then the Kafka
// limit replaying Ferry's messages with the same codec.
func measureCombo(ctx context.Context, e *benchEnv, w workload, k combo, run int, src sourceResult) (comboResult, error) {
	r := comboResult{Combo: k.String()}
	log.Printf("%s run %d: Ferry, %s", w.table, run, k)
	fr, audit, err := measureFerry(ctx, e, w, k, run)
	if err != nil {
		return r, fmt.Errorf("run %d, Ferry (%s): %w", run, k, err)
	}
	if audit.Missing > 0 {
		return r, fmt.Errorf("run %d, Ferry (%s): %d of %d rows never reached Kafka", run, k, audit.Missing, w.rows)
	}
	r.Ferry = fr
	log.Printf("%s run %d: Ferry (%s) %.0f rows/s to Kafka, %.0f rows/s confirmed; Kafka limit", w.table, run, k, fr.RowsPerSecToKafka, fr.RowsPerSecToConfirmed)
	kr, err := measureKafkaRun(ctx, e, w, k, run, audit)
	if err != nil {
		return r, fmt.Errorf("run %d, Kafka limit (%s): %w", run, k, err)
	}
	r.Kafka = kr
	limit := min(src.ChangesPerSecond, kr.MessagesPerSecond)
	r.ShareToKafka = fr.RowsPerSecToKafka / limit
	r.ShareToConfirmed = fr.RowsPerSecToConfirmed / limit
	log.Printf("%s run %d: Kafka (%s) %.0f msgs/s; Ferry at %.0f%% (to Kafka) and %.0f%% (confirmed) of the lower limit",
		w.table, run, k, kr.MessagesPerSecond, 100*r.ShareToKafka, 100*r.ShareToConfirmed)
	return r, nil
}

// dtsAvroIDs reads the id of a DTS Avro record's row: the afterImages value
// of the field named "id" (an Integer, its value decimal text); a DDL
// record carries no row. The
// messages are plain Avro of dtsavro's fixed schema: Ferry writes the
// Confluent header only with a schema registry, which the bench's tasks do
// not use.
func dtsAvroIDs(value []byte) ([]int, error) {
	var rec struct {
		Operation   string `avro:"operation"`
		Fields      any    `avro:"fields"`
		AfterImages any    `avro:"afterImages"`
	}
	if err := avro.Unmarshal(dtsavro.Schema(), value, &rec); err != nil {
		return nil, err
	}
	if rec.Operation == "DDL" {
		return nil, nil // the table's definition, which the task writes first
	}
	fields, _ := unionMember(rec.Fields, "array").([]any)
	after, _ := unionMember(rec.AfterImages, "array").([]any)
	for i, f := range fields {
		if m, _ := f.(map[string]any); m["name"] != "id" || i >= len(after) {
			continue
		}
		v, _ := unionMember(after[i], "com.alibaba.dts.formats.avro.Integer").(map[string]any)
		text, _ := v["value"].(string)
		id, err := strconv.Atoi(text)
		if err != nil {
			return nil, fmt.Errorf("the id of a DTS Avro record is %v, not an Integer: %w", after[i], err)
		}
		return []int{id}, nil
	}
	return nil, errors.New("a DTS Avro record without an id in afterImages")
}

// unionMember unwraps a union value as hamba/avro decodes it into any:
// {member name: value}.
func unionMember(v any, name string) any {
	m, _ := v.(map[string]any)
	return m[name]
}

// combos lists a run's formats and codecs, the first one's figures taken
// from the run's own fields.
func (r runResult) combos() []comboResult {
	first := comboResult{Combo: r.Combo, Ferry: r.Ferry, Kafka: r.Kafka, ShareToKafka: r.ShareToKafka,
		ShareToConfirmed: r.ShareToConfirmed, OverDebeziumToKafka: r.OverDebeziumToKafka, OverDebeziumToConfirmed: r.OverDebeziumToConfirmed}
	return append([]comboResult{first}, r.Others...)
}

func pickCombo(runs []runResult, name string, get func(comboResult) float64) []float64 {
	var out []float64
	for _, r := range runs {
		for _, c := range r.combos() {
			if c.Combo == name {
				out = append(out, get(c))
			}
		}
	}
	return out
}

// renderCombos is the table of every format and codec a scenario ran, when
// it ran more than one: each against the same runs' source limit and
// Debezium (whose one format is JSON with lz4).
func renderCombos(b *strings.Builder, runs []runResult) {
	if len(runs) == 0 {
		return
	}
	if k, err := parseCombos("combo", runs[0].Combo); err == nil {
		fmt.Fprintf(b, "\nFerry's format and codec in the table above: %s.\n", k[0].label())
	}
	if len(runs[0].Others) == 0 {
		return
	}
	b.WriteString("\nEvery format and codec, each against the same runs' source limit and Debezium (JSON, lz4):\n")
	b.WriteString("\n| Format, codec | Ferry rows/s to Kafka | Ferry rows/s confirmed | Kafka limit, msgs/s | Ferry / min(source, Kafka), confirmed | Goal | Status | Ferry / Debezium, confirmed | Message, bytes | delivery CPU s per M rows | delivery peak RSS, MB |\n|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, c := range runs[0].combos() {
		get := func(f func(comboResult) float64) []float64 { return pickCombo(runs, c.Combo, f) }
		share := figure{unit: "%", atLeast: 100 * goalShare, format: "%.0f", values: get(func(c comboResult) float64 { return 100 * c.ShareToConfirmed })}
		k, _ := parseCombos("combo", c.Combo)
		dbz := "–"
		if c.OverDebeziumToConfirmed > 0 {
			dbz = cell(get(func(c comboResult) float64 { return c.OverDebeziumToConfirmed }), "%.2f×")
		}
		fmt.Fprintf(b, "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", k[0].label(),
			cell(get(func(c comboResult) float64 { return c.Ferry.RowsPerSecToKafka }), "%.0f"),
			cell(get(func(c comboResult) float64 { return c.Ferry.RowsPerSecToConfirmed }), "%.0f"),
			cell(get(func(c comboResult) float64 { return c.Kafka.MessagesPerSecond }), "%.0f"),
			cell(share.values, "%.0f%%"), share.goal(), share.status(), dbz,
			cell(get(func(c comboResult) float64 { return c.Ferry.Topic.AvgKey + c.Ferry.Topic.AvgValue }), "%.0f"),
			cell(get(func(c comboResult) float64 { return c.Ferry.Processes["delivery"].CPUSecondsPerMillion }), "%.2f"),
			cell(get(func(c comboResult) float64 { return c.Ferry.Processes["delivery"].PeakRSSMB }), "%.0f"))
	}
}
