package taskapi

import (
	"fmt"
	"slices"

	"google.golang.org/protobuf/proto"

	taskv1 "github.com/ferry-cdc/ferry/gen/ferry/task/v1"
)

// The workflow applies these to its state and the control API to the spec
// it shows or checks, so both read a task the same way.

// ModifiedSpec is spec with a modification applied: the new objects whole,
// and compression and acks where the modification sets them.
func ModifiedSpec(spec *taskv1.TaskSpec, sig *taskv1.ModifyObjectsSignal) *taskv1.TaskSpec {
	out := proto.Clone(spec).(*taskv1.TaskSpec)
	out.Objects = sig.GetObjects()
	if out.Kafka == nil {
		out.Kafka = &taskv1.KafkaOptions{}
	}
	if c := sig.GetCompression(); c != taskv1.Compression_COMPRESSION_UNSPECIFIED {
		out.Kafka.Compression = c
	}
	if a := sig.GetAcks(); a != taskv1.Acks_ACKS_UNSPECIFIED {
		out.Kafka.Acks = a
	}
	return out
}

// AcknowledgeWarnings turns the warnings the spec acknowledges into passes
// marked acknowledged, keeping their message and fix so the state still says
// what was accepted. Failures stay failures: they cannot be acknowledged.
func AcknowledgeWarnings(items []*taskv1.PrecheckItem, acked []string) []*taskv1.PrecheckItem {
	if len(acked) == 0 {
		return items
	}
	out := make([]*taskv1.PrecheckItem, len(items))
	for i, it := range items {
		out[i] = it
		if it.GetSeverity() == taskv1.Severity_SEVERITY_WARN && slices.Contains(acked, it.GetId()) {
			out[i] = &taskv1.PrecheckItem{
				Id: it.GetId(), Severity: taskv1.Severity_SEVERITY_PASS, Message: it.GetMessage(), Fix: it.GetFix(), Acknowledged: true,
			}
		}
	}
	return out
}

// FailedPrechecks lists the failed items, empty when none failed; only they
// block a task, warnings (acknowledged or not) never do. The workflow and
// the modify activity word the refusal alike.
func FailedPrechecks(items []*taskv1.PrecheckItem) string {
	msg := ""
	for _, it := range items {
		if it.GetSeverity() == taskv1.Severity_SEVERITY_FAIL {
			if msg != "" {
				msg += "; "
			}
			msg += fmt.Sprintf("%s: %s (fix: %s)", it.GetId(), it.GetMessage(), it.GetFix())
		}
	}
	return msg
}

// AcksID is the precheck item on the producer's acknowledgements.
const AcksID = "acks"

// AcksItem judges the task's acks: with acks 0 the producer counts a message
// sent once it is written to the socket, so Ferry would confirm LSNs to
// PostgreSQL that Kafka never acknowledged, and a broker that drops them
// loses those changes for good. That breaks Ferry's promise, so it warns
// (the option exists for users who accept that).
func AcksItem(spec *taskv1.TaskSpec) *taskv1.PrecheckItem {
	switch spec.GetKafka().GetAcks() {
	case taskv1.Acks_ACKS_NONE:
		return &taskv1.PrecheckItem{Id: AcksID, Severity: taskv1.Severity_SEVERITY_WARN,
			Message: "kafka.acks is ACKS_NONE: Kafka acknowledges nothing, so Ferry confirms each change to PostgreSQL once it is sent, and a change the broker never stores is lost with no retry",
			Fix:     `set kafka.acks to ACKS_ALL (the default) so a change is confirmed only after Kafka stored it, or list "acks" in acknowledged_warnings to accept possible loss`}
	case taskv1.Acks_ACKS_LEADER:
		return &taskv1.PrecheckItem{Id: AcksID, Severity: taskv1.Severity_SEVERITY_PASS,
			Message: "kafka.acks is ACKS_LEADER: a change is confirmed once the partition leader stored it; a leader that fails before its followers copy it can still lose it (ACKS_ALL cannot)"}
	}
	return &taskv1.PrecheckItem{Id: AcksID, Severity: taskv1.Severity_SEVERITY_PASS,
		Message: "kafka.acks is ACKS_ALL: a change is confirmed to PostgreSQL only after every in-sync replica stored it"}
}
