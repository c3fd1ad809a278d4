package task

import (
	"strings"
)

// ReplicationName derives the slot and publication name from a task ID.
// Slot names allow only [a-z0-9_] and 63 bytes, so the ID is folded into that
// alphabet; task IDs are validated to keep the result unique enough.
func ReplicationName(taskID string) string {
	var b strings.Builder
	b.WriteString("ferry_")
	for _, r := range strings.ToLower(taskID) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '_':
			b.WriteRune(r)
		default:
			b.WriteByte('_')
		}
	}
	s := b.String()
	if len(s) > 63 {
		s = s[:63]
	}
	return s
}
