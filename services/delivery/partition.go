package delivery

import (
	taskv1 "github.com/ferry-cdc/ferry/gen/ferry/task/v1"
)

// JavaHashCode is Java's String.hashCode over the UTF-16 code units of s:
// h = 31*h + unit, in 32-bit two's complement. Characters outside the Basic
// Multilingual Plane count as their two surrogate units. Invalid UTF-8 bytes
// count as U+FFFD, as Java's UTF-8 decoder would make them.
func JavaHashCode(s string) int32 {
	var h int32
	for _, r := range s {
		if r >= 0x10000 {
			r -= 0x10000
			h = 31*h + 0xD800 + (r >> 10)
			h = 31*h + 0xDC00 + (r & 0x3FF)
			continue
		}
		h = 31*h + r
	}
	return h
}

// JavaPartition is Java's Math.abs(s.hashCode()) % n with one correction.
// For the one hash Math.abs cannot negate, Integer.MIN_VALUE (for example
// "polygenelubricants".hashCode()), Java's expression yields
// -(2^31 mod n), which is not a partition; Ferry uses 2^31 mod n, its
// absolute value (0 whenever n is a power of two). Every other hash gives
// exactly Java's result. (Canal's own partitioner makes the same correction:
// Math.abs(Math.abs(h) % n).)
func JavaPartition(s string, n int32) int32 {
	if n <= 0 {
		return 0
	}
	h := JavaHashCode(s)
	if h < 0 {
		h = -h // Math.abs; MIN_VALUE stays MIN_VALUE
	}
	p := h % n
	if p < 0 {
		p = -p
	}
	return p
}

// partitionFor picks the partition for a message under policy. table is
// "schema.table"; key is the primary-key values joined in key order, or nil
// when the table has no key.
func partitionFor(policy taskv1.PartitionPolicy, table string, key []byte, partitions int32) int32 {
	switch policy {
	case taskv1.PartitionPolicy_PARTITION_POLICY_HASH_TABLE:
		return JavaPartition(table, partitions)
	case taskv1.PartitionPolicy_PARTITION_POLICY_HASH_PRIMARY_KEY:
		if key == nil {
			return 0
		}
		return JavaPartition(string(key), partitions)
	default:
		return 0
	}
}
