package catalog

import (
	"log/slog"
	"strings"
	"testing"

	taskv1 "github.com/ferry-cdc/ferry/gen/ferry/task/v1"
	"github.com/ferry-cdc/ferry/services/internal/pgsource"
	"github.com/ferry-cdc/ferry/services/testenv"
)

func TestStandbySlotsItem(t *testing.T) {
	ok := standbySlot{name: "s1", exists: true, physical: true, active: true, feedback: true}
	for _, tc := range []struct {
		name  string
		named []string
		slots []standbySlot
		sev   taskv1.Severity
		want  string
	}{
		{"unset", nil, nil, sevWarn, "is empty"},
		{"unset, standbys streaming", nil, []standbySlot{ok}, sevWarn, "is empty"},
		{"missing", []string{"s1", "gone"}, []standbySlot{ok, {name: "gone"}}, sevFail, "names gone, which is missing"},
		{"logical", []string{"lg"}, []standbySlot{{name: "lg", exists: true}}, sevFail, "wait for it forever"},
		{"invalidated", []string{"s1"}, []standbySlot{{name: "s1", exists: true, physical: true, invalidation: "wal_removed"}}, sevFail, "invalidated"},
		{"idle", []string{"s1"}, []standbySlot{{name: "s1", exists: true, physical: true}}, sevWarn, "no standby streams through s1"},
		{"good", []string{"s1"}, []standbySlot{ok}, sevPass, "names s1"},
	} {
		it := standbySlotsItem(tc.named, tc.slots)
		if it.GetSeverity() != tc.sev || !strings.Contains(it.GetMessage(), tc.want) || tc.sev != sevPass && it.GetFix() == "" {
			t.Errorf("%s: %v, want %v naming %q with a fix", tc.name, it, tc.sev, tc.want)
		}
	}
	if it := standbySlotsItem(nil, []standbySlot{ok}); !strings.Contains(it.GetFix(), "standbys stream now through s1") {
		t.Errorf("the fix does not suggest the streaming standby's slot: %v", it)
	}
}

func TestFeedbackItem(t *testing.T) {
	on := standbySlot{name: "s1", exists: true, physical: true, active: true, feedback: true}
	off := standbySlot{name: "s2", exists: true, physical: true, active: true}
	idle := standbySlot{name: "s3", exists: true, physical: true}
	for _, tc := range []struct {
		name  string
		slots []standbySlot
		sev   taskv1.Severity
		want  string
	}{
		{"none", nil, sevWarn, "cannot see"},
		{"only idle", []standbySlot{idle}, sevWarn, "cannot see"},
		{"one off", []standbySlot{on, off, idle}, sevWarn, "physical slots s2 send no hot_standby_feedback"},
		{"all on", []standbySlot{on, idle}, sevPass, "physical slots s1 send hot_standby_feedback"},
	} {
		it := feedbackItem(tc.slots)
		if it.GetSeverity() != tc.sev || !strings.Contains(it.GetMessage(), tc.want) {
			t.Errorf("%s: %v, want %v naming %q", tc.name, it, tc.sev, tc.want)
		}
	}
}

func TestFailoverSlotItem(t *testing.T) {
	one := &taskv1.SourceEndpoint{Host: "db", FailoverSlot: true}
	two := &taskv1.SourceEndpoint{Hosts: []*taskv1.HostPort{{Host: "a"}, {Host: "b"}}, FailoverSlot: true}
	v17 := pgsource.SlotSync{Version: 170002}
	for _, tc := range []struct {
		name string
		src  *taskv1.SourceEndpoint
		s    pgsource.SlotSync
		sev  taskv1.Severity
		want string
	}{
		{"asked on 16", two, pgsource.SlotSync{Version: 160004}, sevFail, "PostgreSQL 16"},
		{"asked on a standby", two, pgsource.SlotSync{Version: 170002, Standby: true}, sevFail, "is a standby"},
		{"asked, one host", one, v17, sevWarn, "names one server"},
		{"asked, two hosts", two, v17, sevPass, "source.failover_slot asks for it"},
		{"standbys named", &taskv1.SourceEndpoint{Hosts: two.Hosts}, pgsource.SlotSync{Version: 170002, StandbySlots: []string{"s1"}}, sevPass, "synchronized_standby_slots names s1"},
		{"not asked on 17", &taskv1.SourceEndpoint{Host: "db"}, v17, sevPass, "without FAILOVER"},
		{"not asked on 15", &taskv1.SourceEndpoint{Host: "db"}, pgsource.SlotSync{Version: 150010}, sevPass, "came with PostgreSQL 17"},
	} {
		it := failoverSlotItem(tc.src, tc.s)
		if it.GetSeverity() != tc.sev || !strings.Contains(it.GetMessage(), tc.want) || tc.sev != sevPass && it.GetFix() == "" {
			t.Errorf("%s: %v, want %v naming %q with a fix", tc.name, it, tc.sev, tc.want)
		}
	}
}

// On a PostgreSQL 17 primary with a standby that synchronizes slots, the
// failover items read the standby's physical slot; a slot name in
// synchronized_standby_slots that names no slot fails.
func TestPrecheckFailoverOn17(t *testing.T) {
	primary := testenv.StartPostgresVersion(t, 17)
	standby := primary.NewStandby(t, "standby1")
	super := primary.SuperConn(t)
	testenv.Exec(t, super, "ALTER SYSTEM SET synchronized_standby_slots = 'standby1'", "SELECT pg_reload_conf()")
	src := primary.Source()
	src.Hosts = []*taskv1.HostPort{{Host: "127.0.0.1", Port: uint32(standby.Port())}, {Host: "127.0.0.1", Port: uint32(primary.Port())}}
	src.Host, src.Port, src.FailoverSlot = "", 0, true
	sel := &taskv1.ObjectSelection{Schemas: []*taskv1.SchemaSelection{{Schema: "public"}}}
	s := NewServer(slog.Default())
	var items map[string]*taskv1.PrecheckItem
	// The standby's feedback reaches its slot shortly after it connects.
	pollItem(t, func() *taskv1.PrecheckItem {
		items = precheckItems(t, s, src, sel)
		return items["hot_standby_feedback"]
	}, func(it *taskv1.PrecheckItem) bool { return it.GetSeverity() == sevPass })
	expect(t, items, "connectivity", sevPass, []string{"127.0.0.1"})
	expect(t, items, "hot_standby_feedback", sevPass, []string{"standby1"})
	expect(t, items, "synchronized_standby_slots", sevPass, []string{"standby1"})
	expect(t, items, "sync_replication_slots", sevPass, []string{"standby1", "SHOW sync_replication_slots"})
	expect(t, items, "failover_slot", sevPass, []string{"with FAILOVER", "source.failover_slot"})

	testenv.Exec(t, super, "ALTER SYSTEM SET synchronized_standby_slots = 'standby1, gone'", "SELECT pg_reload_conf()")
	pollItem(t, func() *taskv1.PrecheckItem {
		items = precheckItems(t, s, src, sel)
		return items["synchronized_standby_slots"]
	}, func(it *taskv1.PrecheckItem) bool { return it.GetSeverity() == sevFail })
	expect(t, items, "synchronized_standby_slots", sevFail, []string{"names gone", "forever"})
}

// Below PostgreSQL 17 a task asking for a failover slot fails the precheck.
func TestPrecheckFailoverSlotBefore17(t *testing.T) {
	src := testenv.Source(t)
	src.FailoverSlot = true
	items := precheckItems(t, NewServer(slog.Default()), src, &taskv1.ObjectSelection{Schemas: []*taskv1.SchemaSelection{{Schema: "public"}}})
	expect(t, items, "failover_slot", sevFail, []string{"failover slots came with PostgreSQL 17"})
	expect(t, items, "synchronized_standby_slots", sevPass, []string{"does not apply"})
}
