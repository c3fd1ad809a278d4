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
