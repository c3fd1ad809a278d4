package ferryctl

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	cdcv1 "github.com/ferry-cdc/ferry/gen/ferry/cdc/v1"
	taskv1 "github.com/ferry-cdc/ferry/gen/ferry/task/v1"
)

// FormatLSN writes an LSN the way PostgreSQL does (pg_lsn's output): the
// high and low 32 bits in upper-case hex, without padding.
func FormatLSN(lsn uint64) string {
	return fmt.Sprintf("%X/%X", lsn>>32, uint32(lsn))
}

const barWidth = 30

// ProgressBar renders rows read out of an estimated total. The estimate is
// the catalog's (pg_class.reltuples), which may be stale: the bar stops
// short of full until the table is done, and without an estimate only the
// rows are shown.
func ProgressBar(rows, estimated uint64, done bool) string {
	if done {
		return fmt.Sprintf("[%s] done  %d rows", strings.Repeat("#", barWidth), rows)
	}
	if estimated == 0 {
		return fmt.Sprintf("%d rows (no estimate)", rows)
	}
	pct := min(float64(rows)/float64(estimated)*100, 99)
	filled := min(int(float64(barWidth)*float64(rows)/float64(estimated)), barWidth-1)
	return fmt.Sprintf("[%s%s] %3.0f%%  %d/%d rows",
		strings.Repeat("#", filled), strings.Repeat(".", barWidth-filled), pct, rows, estimated)
}

func tableName(schema, table string) string {
	if schema == "" {
		schema = "public"
	}
	return schema + "." + table
}

// writeStatus renders GetTask's answer for a person.
func writeStatus(w io.Writer, res *taskv1.GetTaskResponse) error {
	st := res.GetState()
	cp := newestCheckpoint(res)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	line := func(label, format string, args ...any) {
		_, _ = fmt.Fprintf(tw, "%s:\t%s\n", label, fmt.Sprintf(format, args...))
	}
	line("Task", "%s", res.GetTaskId())
	if name := st.GetSpec().GetName(); name != "" {
		line("Name", "%s", name)
	}
	line("Phase", "%s", st.GetPhase())
	line("Status", "%s", st.GetStatus())
	line("Checkpoint LSN", "%s", FormatLSN(cp.GetConfirmedLsn()))
	if res.GetHeartbeat() != nil {
		line("Rows acked", "%d (%d dead-lettered) in the running attempt", cp.GetAckedEvents(), cp.GetDeadLettered())
	}
	if st.GetPhase() == taskv1.Phase_PHASE_INCREMENTAL && res.GetHeartbeat().GetLatencyMs() > 0 {
		line("Latency", "%s (source commit to Kafka ack)", time.Duration(res.GetHeartbeat().GetLatencyMs())*time.Millisecond)
	}
	if st.GetSlotName() != "" {
		line("Slot", "%s (publication %s)", st.GetSlotName(), st.GetPublicationName())
	}
	if n := st.GetConsecutiveFailures(); n > 0 {
		line("Failures", "%d in a row since %s (%s)", n,
			st.GetFailingSince().AsTime().Format(time.RFC3339), st.GetFailingClass())
	}
	if e := st.GetLastError(); e != "" {
		line("Last error", "%s", e)
	}
	if e := st.GetLastSignalError(); e != "" {
		line("Last signal error", "%s", e)
	}
	line("Prechecks", "%s", precheckSummary(st.GetPrechecks()))
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("writing status: %w", err)
	}
	return writeProgress(w, st, cp)
}

// newestCheckpoint is the running attempt's heartbeat when it is ahead of
// the workflow's copy, which only moves when an attempt ends.
func newestCheckpoint(res *taskv1.GetTaskResponse) *cdcv1.Checkpoint {
	cp := res.GetState().GetCheckpoint()
	if hb := res.GetHeartbeat(); hb != nil && hb.GetConfirmedLsn() >= cp.GetConfirmedLsn() {
		return hb
	}
	return cp
}

func writeProgress(w io.Writer, st *taskv1.TaskState, cp *cdcv1.Checkpoint) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	if st.GetPhase() == taskv1.Phase_PHASE_FULL_SYNC && len(st.GetFullSyncRows()) > 0 {
		_, _ = fmt.Fprintln(tw, "Full sync:")
		for _, t := range st.GetFullSyncRows() {
			_, _ = fmt.Fprintf(tw, "  %s\t%s\n", tableName(t.GetTable().GetSchema(), t.GetTable().GetTable()),
				ProgressBar(t.GetRows(), t.GetEstimatedRows(), t.GetDone()))
		}
	}
	if len(cp.GetBackfills()) > 0 {
		_, _ = fmt.Fprintln(tw, "Backfills:")
		for _, b := range cp.GetBackfills() {
			_, _ = fmt.Fprintf(tw, "  %s\t%s\n", tableName(b.GetSchema(), b.GetTable()),
				ProgressBar(b.GetRows(), b.GetEstimatedRows(), b.GetDone()))
		}
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("writing progress: %w", err)
	}
	return nil
}

// precheckSummary counts the items and names those that are not a pass.
func precheckSummary(items []*taskv1.PrecheckItem) string {
	if len(items) == 0 {
		return "none recorded"
	}
	var pass, acked int
	var warn, fail []string
	for _, it := range items {
		switch it.GetSeverity() {
		case taskv1.Severity_SEVERITY_WARN:
			warn = append(warn, it.GetId())
		case taskv1.Severity_SEVERITY_FAIL:
			fail = append(fail, it.GetId())
		default:
			pass++
			if it.GetAcknowledged() {
				acked++
			}
		}
	}
	s := fmt.Sprintf("%d passed", pass)
	if acked > 0 {
		s += fmt.Sprintf(" (%s acknowledged)", plural(acked, "warning"))
	}
	s += ", " + plural(len(warn), "warning")
	if len(warn) > 0 {
		s += " (" + strings.Join(warn, ", ") + ")"
	}
	s += fmt.Sprintf(", %d failed", len(fail))
	if len(fail) > 0 {
		s += " (" + strings.Join(fail, ", ") + ")"
	}
	return s
}

func severityLabel(it *taskv1.PrecheckItem) string {
	switch it.GetSeverity() {
	case taskv1.Severity_SEVERITY_PASS:
		return "PASS"
	case taskv1.Severity_SEVERITY_WARN:
		return "WARN"
	case taskv1.Severity_SEVERITY_FAIL:
		return "FAIL"
	}
	return it.GetSeverity().String()
}

// writePrechecks prints one line per item, its fix indented below it.
func writePrechecks(w io.Writer, items []*taskv1.PrecheckItem) error {
	for _, it := range items {
		msg := it.GetMessage()
		if it.GetAcknowledged() {
			msg += " (warning acknowledged)"
		}
		if _, err := fmt.Fprintf(w, "%s  %s: %s\n", severityLabel(it), it.GetId(), msg); err != nil {
			return fmt.Errorf("writing prechecks: %w", err)
		}
		if fix := it.GetFix(); fix != "" && it.GetSeverity() != taskv1.Severity_SEVERITY_PASS {
			if _, err := fmt.Fprintf(w, "      fix: %s\n", fix); err != nil {
				return fmt.Errorf("writing prechecks: %w", err)
			}
		}
	}
	_, err := fmt.Fprintf(w, "%s\n", precheckSummary(items))
	return err
}

func writeTaskList(w io.Writer, tasks []*taskv1.TaskSummary) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	_, _ = fmt.Fprintln(tw, "TASK\tNAME\tPHASE\tSTATUS")
	for _, t := range tasks {
		_, _ = fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", t.GetTaskId(), t.GetName(), t.GetPhase(), t.GetStatus())
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("writing tasks: %w", err)
	}
	return nil
}

func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
