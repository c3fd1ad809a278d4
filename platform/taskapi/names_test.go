package taskapi

import (
	"regexp"
	"strings"
	"testing"

	taskv1 "github.com/ferry-cdc/ferry/gen/ferry/task/v1"
)

var slotAlphabet = regexp.MustCompile(`^[a-z0-9_]{1,63}$`)

func TestReplicationNameSeparatesFoldedIDs(t *testing.T) {
	ids := []string{"A-b", "a_b", "a-b", "A_B", "a.b", "ä_b", strings.Repeat("x", 80), strings.Repeat("x", 81)}
	seen := map[string]string{}
	for _, id := range ids {
		n := ReplicationName(id)
		if !slotAlphabet.MatchString(n) {
			t.Errorf("ReplicationName(%q) = %q: not a valid slot name ([a-z0-9_], 63 bytes)", id, n)
		}
		if other, dup := seen[n]; dup {
			t.Errorf("tasks %q and %q share the name %q", other, id, n)
		}
		seen[n] = id
		if again := ReplicationName(id); again != n {
			t.Errorf("ReplicationName(%q) is not stable: %q then %q", id, n, again)
		}
	}
	if n := ReplicationName("Orders_EU"); !strings.HasPrefix(n, "ferry_orders_eu_") {
		t.Errorf("ReplicationName(Orders_EU) = %q; the readable part should stay", n)
	}
}

// Tasks that started before the hash keep their names: these are the names
// their slots have in running sources.
func TestLegacyReplicationName(t *testing.T) {
	for in, want := range map[string]string{"t-1": "ferry_t_1", "Orders_EU": "ferry_orders_eu"} {
		if got := LegacyReplicationName(in); got != want {
			t.Errorf("LegacyReplicationName(%q) = %q, want %q", in, got, want)
		}
	}
	if got := LegacyReplicationName(string(make([]byte, 80))); len(got) != 63 {
		t.Errorf("long names must fit PostgreSQL's 63 bytes, got %d", len(got))
	}
}

func TestAcksItemWarnsOnlyWithoutAcknowledgements(t *testing.T) {
	for acks, want := range map[taskv1.Acks]taskv1.Severity{
		taskv1.Acks_ACKS_NONE:   taskv1.Severity_SEVERITY_WARN,
		taskv1.Acks_ACKS_LEADER: taskv1.Severity_SEVERITY_PASS,
		taskv1.Acks_ACKS_ALL:    taskv1.Severity_SEVERITY_PASS,
	} {
		it := AcksItem(&taskv1.TaskSpec{Kafka: &taskv1.KafkaOptions{Acks: acks}})
		if it.GetId() != AcksID || it.GetSeverity() != want {
			t.Errorf("acks %v: item %s %v, want %s %v", acks, it.GetId(), it.GetSeverity(), AcksID, want)
		}
		if want == taskv1.Severity_SEVERITY_WARN && !strings.Contains(it.GetFix(), "ACKS_ALL") {
			t.Errorf("acks %v: the fix %q should name ACKS_ALL", acks, it.GetFix())
		}
	}
	acked := AcknowledgeWarnings([]*taskv1.PrecheckItem{AcksItem(&taskv1.TaskSpec{Kafka: &taskv1.KafkaOptions{Acks: taskv1.Acks_ACKS_NONE}})}, []string{AcksID})
	if acked[0].GetSeverity() != taskv1.Severity_SEVERITY_PASS || !acked[0].GetAcknowledged() {
		t.Errorf("an acknowledged acks warning should pass, marked acknowledged: %v", acked[0])
	}
}
