package pgsource

import (
	"slices"
	"strings"
	"testing"

	taskv1 "github.com/ferry-cdc/ferry/gen/ferry/task/v1"
)

func TestFailoverSlotDecision(t *testing.T) {
	for _, tc := range []struct {
		name    string
		s       SlotSync
		asked   bool
		want    bool
		wantErr string
	}{
		{"16 unasked", SlotSync{Version: 160004}, false, false, ""},
		{"16 asked", SlotSync{Version: 160004}, true, false, "PostgreSQL 16"},
		{"17 quiet primary", SlotSync{Version: 170002}, false, false, ""},
		{"17 asked", SlotSync{Version: 170002}, true, true, ""},
		{"17 waits for standbys", SlotSync{Version: 170002, StandbySlots: []string{"standby1"}}, false, true, ""},
		{"17 set up like its standbys", SlotSync{Version: 170002, SyncSlots: true}, false, true, ""},
		{"17 standby unasked", SlotSync{Version: 170002, Standby: true, SyncSlots: true}, false, false, ""},
		{"17 standby asked", SlotSync{Version: 170002, Standby: true}, true, false, "is a standby"},
	} {
		got, err := FailoverSlot(&taskv1.SourceEndpoint{FailoverSlot: tc.asked}, tc.s)
		if got != tc.want || (tc.wantErr == "") != (err == nil) || err != nil && !strings.Contains(err.Error(), tc.wantErr) {
			t.Errorf("%s: FailoverSlot = %v, %v; want %v and an error naming %q", tc.name, got, err, tc.want, tc.wantErr)
		}
	}
}

func TestSplitSlotList(t *testing.T) {
	if got := splitSlotList(` a, "b" ,,c `); !slices.Equal(got, []string{"a", "b", "c"}) {
		t.Errorf("splitSlotList = %q", got)
	}
	if got := splitSlotList(""); got != nil {
		t.Errorf("splitSlotList of nothing = %q", got)
	}
}
