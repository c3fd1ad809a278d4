package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"
)

// checkSmoke is bench-smoke's verdict on a report read back from its
// latest.json: every scenario ran, none recorded an error, and every row
// arrived, through Ferry and through Debezium where it ran. It checks what
// the report says against the report's own parameters, so it holds for any
// sizes the Makefile asks for.
func checkSmoke(path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("reading the report: %w", err)
	}
	var rep report
	if err := json.Unmarshal(b, &rep); err != nil {
		return fmt.Errorf("decoding %s: %w", path, err)
	}
	var problems []string
	for _, check := range []func(*report) []string{
		smokeBacklog, smokeDelivery, smokeMixed, smokeLatency, smokeFullSync, smokeBigTxn, smokeDecode, smokeStreamProto, smokeTables10k,
	} {
		problems = append(problems, check(&rep)...)
	}
	if len(problems) > 0 {
		return errors.New("bench-smoke: " + strings.Join(problems, "; "))
	}
	return nil
}

func smokeBacklog(rep *report) []string {
	var p []string
	if rep.Error != "" || len(rep.Runs) == 0 {
		return []string{fmt.Sprintf("backlog: %d runs, error %q", len(rep.Runs), rep.Error)}
	}
	for _, r := range rep.Runs {
		p = appendMissing(p, fmt.Sprintf("backlog run %d, Ferry", r.Run), r.Ferry.Topic.Distinct, rep.Rows)
		if r.Debezium == nil {
			p = append(p, fmt.Sprintf("backlog run %d: Debezium did not run", r.Run))
			continue
		}
		p = appendMissing(p, fmt.Sprintf("backlog run %d, Debezium", r.Run), r.Debezium.Topic.Distinct, rep.Rows)
	}
	return p
}

func smokeDelivery(rep *report) []string {
	d := rep.Delivery
	if d == nil || d.Error != "" || len(d.Runs) == 0 {
		return []string{"delivery: did not run" + errText(d != nil, func() string { return d.Error })}
	}
	var p []string
	for _, r := range d.Runs {
		// Every format under every codec, and the paced latency of each.
		if want := len(dlvFormats) * len(d.Codecs); len(r.Throughput) != want || len(r.Latency) == 0 {
			p = append(p, fmt.Sprintf("delivery run %d: %d throughput figures (want %d) and %d latency figures", r.Run, len(r.Throughput), want, len(r.Latency)))
		}
	}
	return p
}

func smokeMixed(rep *report) []string {
	m := rep.Mixed
	if m == nil || m.Error != "" || len(m.Runs) == 0 {
		return []string{"mixed: did not run" + errText(m != nil, func() string { return m.Error })}
	}
	var p []string
	for _, r := range m.Runs {
		for _, op := range []string{opInsert, opUpdate, opDelete} {
			p = appendMissing(p, fmt.Sprintf("mixed run %d, Ferry's %ss", r.Run, op), r.Ferry.Messages[op], m.Counts[op])
			if r.Debezium == nil {
				p = append(p, fmt.Sprintf("mixed run %d: Debezium did not run", r.Run))
				break
			}
			p = appendMissing(p, fmt.Sprintf("mixed run %d, Debezium's %ss", r.Run, op), r.Debezium.Messages[op], m.Counts[op])
		}
	}
	return p
}

func smokeLatency(rep *report) []string {
	l := rep.Latency
	if l == nil || l.Error != "" || len(l.Runs) == 0 {
		return []string{"latency: did not run" + errText(l != nil, func() string { return l.Error })}
	}
	measured, err1 := time.ParseDuration(l.Measured)
	warmup, err2 := time.ParseDuration(l.Warmup)
	if err := errors.Join(err1, err2); err != nil {
		return []string{fmt.Sprintf("latency: the report's durations: %v", err)}
	}
	// Paced rows: the rate over the measured window, and over the warm-up
	// too for the messages.
	rows := int(float64(l.Rate) * measured.Seconds())
	messages := int(float64(l.Rate) * (measured + warmup).Seconds())
	var p []string
	for _, r := range l.Runs {
		p = appendMissing(p, fmt.Sprintf("latency run %d, Ferry's measured rows", r.Run), r.Ferry.Rows, rows)
		p = appendMissing(p, fmt.Sprintf("latency run %d, Ferry's messages", r.Run), r.Ferry.MessagesN, messages)
		if r.Debezium == nil {
			p = append(p, fmt.Sprintf("latency run %d: Debezium did not run", r.Run))
			continue
		}
		p = appendMissing(p, fmt.Sprintf("latency run %d, Debezium's measured rows", r.Run), r.Debezium.Rows, rows)
		p = appendMissing(p, fmt.Sprintf("latency run %d, Debezium's messages", r.Run), r.Debezium.MessagesN, messages)
	}
	return p
}

func smokeFullSync(rep *report) []string {
	f := rep.FullSync
	if f == nil || f.Error != "" || len(f.Parts) == 0 {
		return []string{"fullsync: did not run" + errText(f != nil, func() string { return f.Error })}
	}
	var p []string
	for _, part := range f.Parts {
		if len(part.Runs) == 0 {
			p = append(p, fmt.Sprintf("fullsync %s: no run", part.Name))
		}
		for _, r := range part.Runs {
			what := fmt.Sprintf("fullsync %s run %d", part.Name, r.Run)
			p = appendMissing(p, what+", Ferry", r.Ferry.Topic.Distinct, part.Rows)
			if r.Debezium == nil {
				p = append(p, what+": Debezium did not run")
				continue
			}
			if !r.Debezium.Capped {
				p = appendMissing(p, what+", Debezium's snapshot", r.Debezium.Rows, part.Rows)
			}
			p = appendMissing(p, what+", Debezium", r.Debezium.Topic.Distinct, r.Debezium.Rows)
		}
	}
	return p
}

func smokeBigTxn(rep *report) []string {
	t := rep.BigTxn
	if t == nil || t.Error != "" || len(t.Runs) == 0 {
		return []string{"bigtxn: did not run" + errText(t != nil, func() string { return t.Error })}
	}
	var p []string
	for _, r := range t.Runs {
		p = appendMissing(p, fmt.Sprintf("bigtxn run %d, Ferry", r.Run), r.Ferry.Topic.Distinct, t.Rows)
	}
	return p
}

func smokeDecode(rep *report) []string {
	d := rep.Decode
	if d == nil || d.Error != "" || len(d.Runs) == 0 {
		return []string{"decode: did not run" + errText(d != nil, func() string { return d.Error })}
	}
	var p []string
	for _, r := range d.Runs {
		shapes := map[string]bool{}
		for _, s := range r.Shapes {
			shapes[s.Shape] = true
			p = appendMissing(p, fmt.Sprintf("decode run %d, %s events", r.Run, s.Shape), s.Capture.Events, s.Rows)
		}
		if !shapes["backlog"] || !shapes["bigtxn"] {
			p = append(p, fmt.Sprintf("decode run %d: shapes %v, want backlog and bigtxn", r.Run, shapes))
		}
	}
	return p
}

func smokeStreamProto(rep *report) []string {
	s := rep.StreamProto
	if s == nil || s.Error != "" || len(s.Runs) == 0 {
		return []string{"streamproto: did not run" + errText(s != nil, func() string { return s.Error })}
	}
	var p []string
	for _, r := range s.Runs {
		for _, sh := range r.Shapes {
			// Both protocols decode every committed row.
			p = appendMissing(p, fmt.Sprintf("streamproto run %d, %s on protocol 2", r.Run, sh.Shape), sh.V2.Events, sh.Committed)
			p = appendMissing(p, fmt.Sprintf("streamproto run %d, %s on protocol 4", r.Run, sh.Shape), sh.V4.Events, sh.Committed)
		}
		if len(r.Shapes) != 2 {
			p = append(p, fmt.Sprintf("streamproto run %d: %d shapes, want one session and concurrent ones", r.Run, len(r.Shapes)))
		}
	}
	return p
}

func smokeTables10k(rep *report) []string {
	t := rep.Tables10k
	if t == nil || t.Error != "" || len(t.Runs) == 0 {
		return []string{"tables10k: did not run" + errText(t != nil, func() string { return t.Error })}
	}
	var p []string
	for _, r := range t.Runs {
		p = appendMissing(p, fmt.Sprintf("tables10k run %d, full sync rows", r.Run), int(r.FullSyncRows), t.Tables*t.Rows)
		p = appendMissing(p, fmt.Sprintf("tables10k run %d, tables done", r.Run), r.FullSyncTablesDone, t.Tables)
	}
	return p
}

// appendMissing adds a problem when got is not want, or when nothing was
// wanted: a scenario that measured no rows proves nothing.
func appendMissing(p []string, what string, got, want int) []string {
	if want <= 0 {
		return append(p, fmt.Sprintf("%s: the report expects %d rows", what, want))
	}
	if got != want {
		return append(p, fmt.Sprintf("%s: %d of %d", what, got, want))
	}
	return p
}

// errText is ", error …" for a report that ran and recorded an error.
func errText(ran bool, text func() string) string {
	if !ran || text() == "" {
		return ""
	}
	return ", error: " + text()
}
