package taskapi

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
)

// maxIdentifier is PostgreSQL's NAMEDATALEN-1: slot and publication names
// longer than it are refused (slots) or silently cut (publications).
const maxIdentifier = 63

// nameHashLen is how many hex digits of the task ID's SHA-256 end a name:
// 48 bits, so two task IDs of one source meet by chance with odds of about
// n²/2^49, for n tasks.
const nameHashLen = 12

// ReplicationName derives the slot and publication name from a task ID. Slot
// names allow only [a-z0-9_], so the ID is folded into that alphabet for the
// readable part; the hash of the exact ID that ends the name keeps IDs the
// folding would merge ("A-b" and "a_b") on slots of their own, so one task
// can never stream from, or release, another's.
func ReplicationName(taskID string) string {
	sum := sha256.Sum256([]byte(taskID))
	suffix := "_" + hex.EncodeToString(sum[:])[:nameHashLen]
	return foldName(taskID, maxIdentifier-len(suffix)) + suffix
}

// LegacyReplicationName is the name tasks started before ReplicationName
// hashed the ID were given; their workflows keep using it so that a running
// task never moves to a new, empty slot.
func LegacyReplicationName(taskID string) string {
	return foldName(taskID, maxIdentifier)
}

// foldName is "ferry_" and the task ID folded into [a-z0-9_], cut to max
// bytes (the folded alphabet is ASCII).
func foldName(taskID string, max int) string {
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
	if len(s) > max {
		s = s[:max]
	}
	return s
}
