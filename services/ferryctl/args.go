package ferryctl

import (
	"flag"
	"fmt"
	"strconv"
	"strings"

	taskv1 "github.com/ferry-cdc/ferry/gen/ferry/task/v1"
)

// usageError is a command line that cannot be run; it exits 2 with the
// command's usage.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error {
	return &usageError{msg: fmt.Sprintf(format, args...)}
}

// parseArgs parses flags wherever they stand, so that `stop ID --release`
// works as the usage writes it: the flag package alone stops at the first
// argument that is not a flag. After "--" everything is positional.
func parseArgs(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		if consumed := len(args) - len(rest); consumed > 0 && args[consumed-1] == "--" {
			return append(pos, rest...), nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

// uint32Flag is a uint32 flag that knows whether it was given.
type uint32Flag struct {
	value uint32
	set   bool
}

func (f *uint32Flag) String() string { return strconv.FormatUint(uint64(f.value), 10) }

func (f *uint32Flag) Set(s string) error {
	v, err := strconv.ParseUint(s, 10, 32)
	if err != nil {
		return fmt.Errorf("want a whole number from 0 to %d", uint32(1<<32-1))
	}
	f.value, f.set = uint32(v), true
	return nil
}

// enumFlag parses a short lower-case name into one value of a proto enum,
// listing the names it takes when it is given something else.
type enumFlag struct {
	names  []string
	values map[string]int32
	value  int32
}

func newEnumFlag(values map[string]int32, names ...string) *enumFlag {
	return &enumFlag{names: names, values: values}
}

func (f *enumFlag) String() string {
	for n, v := range f.values {
		if v == f.value && f.value != 0 {
			return n
		}
	}
	return ""
}

func (f *enumFlag) Set(s string) error {
	v, ok := f.values[strings.ToLower(s)]
	if !ok {
		return fmt.Errorf("want one of %s", strings.Join(f.names, ", "))
	}
	f.value = v
	return nil
}

func compressionFlag() *enumFlag {
	return newEnumFlag(map[string]int32{
		"lz4": int32(taskv1.Compression_COMPRESSION_LZ4), "gzip": int32(taskv1.Compression_COMPRESSION_GZIP),
		"snappy": int32(taskv1.Compression_COMPRESSION_SNAPPY), "zstd": int32(taskv1.Compression_COMPRESSION_ZSTD),
	}, "lz4", "gzip", "snappy", "zstd")
}

func acksFlag() *enumFlag {
	return newEnumFlag(map[string]int32{
		"none": int32(taskv1.Acks_ACKS_NONE), "leader": int32(taskv1.Acks_ACKS_LEADER), "all": int32(taskv1.Acks_ACKS_ALL),
	}, "none", "leader", "all")
}

// Output is how responses are printed.
type Output string

const (
	// OutputText is for people.
	OutputText Output = "text"
	// OutputJSON is the response as protojson, for scripts.
	OutputJSON Output = "json"
)

// ParseOutput checks an --output value.
func ParseOutput(s string) (Output, error) {
	switch o := Output(strings.ToLower(s)); o {
	case OutputText, OutputJSON:
		return o, nil
	}
	return "", fmt.Errorf("want text or json, not %q", s)
}
