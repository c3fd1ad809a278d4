package ferryctl

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"gopkg.in/yaml.v3"
)

// LoadMessage reads a YAML or JSON file into m, using protojson's field names
// (the proto names or their lowerCamelCase forms). A file named *.json is
// read by protojson itself, whose errors carry the JSON's line and column; any
// other file is YAML, checked against m's descriptor first so that a typo is
// reported with its YAML line and path rather than as a position in the JSON
// the YAML is turned into.
func LoadMessage(path string, m proto.Message) error {
	data, err := os.ReadFile(path)
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return fmt.Errorf("reading %s: %w", path, err)
	}
	if strings.EqualFold(filepath.Ext(path), ".json") {
		if err := unmarshalJSON(data, m); err != nil {
			// "line 2:18: unknown field" reads as the YAML errors do.
			if pos, msg := cutJSONPosition(err.Error()); pos != "" {
				return fmt.Errorf("%s: line %s: %s", path, pos, msg)
			}
			return fmt.Errorf("%s: %w", path, err)
		}
		return nil
	}
	if err := unmarshalYAML(data, m); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

func unmarshalJSON(data []byte, m proto.Message) error {
	// DiscardUnknown stays false: a misspelt field must fail, not vanish.
	if err := (protojson.UnmarshalOptions{DiscardUnknown: false}).Unmarshal(data, m); err != nil {
		return errors.New(trimProtoPrefix(err.Error()))
	}
	return nil
}

// trimProtoPrefix drops protobuf-go's "proto:" prefix, which it follows with
// a space or, at random, a no-break space.
func trimProtoPrefix(msg string) string {
	if rest, ok := strings.CutPrefix(msg, "proto:"); ok {
		return strings.TrimLeft(rest, " \u00a0")
	}
	return msg
}

var jsonPosition = regexp.MustCompile(`\s*\(line (\d+:\d+)\):\s*`)

// cutJSONPosition takes protojson's "(line L:C): " out of msg.
func cutJSONPosition(msg string) (pos, rest string) {
	loc := jsonPosition.FindStringSubmatchIndex(msg)
	if loc == nil {
		return "", msg
	}
	sep := ""
	if loc[0] > 0 {
		sep = ": "
	}
	return msg[loc[2]:loc[3]], msg[:loc[0]] + sep + msg[loc[1]:]
}

func unmarshalYAML(data []byte, m proto.Message) error {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc, next yaml.Node
	if err := dec.Decode(&doc); errors.Is(err, io.EOF) {
		return errors.New("the file is empty")
	} else if err != nil {
		return errors.New(strings.TrimPrefix(err.Error(), "yaml: "))
	}
	if err := dec.Decode(&next); !errors.Is(err, io.EOF) {
		return fmt.Errorf("line %d: a second YAML document; the file must hold one", next.Line)
	}
	if len(doc.Content) == 0 {
		return errors.New("the file is empty")
	}
	v, err := messageJSON(doc.Content[0], m.ProtoReflect().Descriptor(), "")
	if err != nil {
		return err
	}
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("converting to JSON: %w", err)
	}
	if err := unmarshalJSON(b, m); err != nil {
		// The position is in JSON the user never saw.
		_, msg := cutJSONPosition(err.Error())
		return errors.New(msg)
	}
	return nil
}

// yamlError is a problem at one node of the YAML file.
func yamlError(n *yaml.Node, path, format string, args ...any) error {
	where := fmt.Sprintf("line %d", n.Line)
	if path != "" {
		where += ": " + path
	}
	return fmt.Errorf("%s: %s", where, fmt.Sprintf(format, args...))
}

func resolve(n *yaml.Node) *yaml.Node {
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	return n
}

func isNull(n *yaml.Node) bool { return n.Kind == yaml.ScalarNode && n.Tag == "!!null" }

// messageJSON turns a YAML mapping into the JSON object of message md,
// refusing fields md does not have.
func messageJSON(n *yaml.Node, md protoreflect.MessageDescriptor, path string) (any, error) {
	n = resolve(n)
	if isNull(n) {
		return nil, nil
	}
	if strings.HasPrefix(string(md.FullName()), "google.protobuf.") {
		// Well-known types have JSON forms of their own; protojson checks them.
		return plainJSON(n, path)
	}
	if n.Kind != yaml.MappingNode {
		return nil, yamlError(n, path, "want a mapping of %s fields, got %s", md.Name(), kindName(n))
	}
	obj := make(map[string]any, len(n.Content)/2)
	seen := map[protoreflect.FieldNumber]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		key, val := resolve(n.Content[i]), n.Content[i+1]
		if key.Tag == "!!merge" {
			return nil, yamlError(key, path, "merge keys (<<) are not supported; write the fields out")
		}
		fd := fieldByName(md, key.Value)
		if fd == nil {
			return nil, yamlError(key, path, "unknown field %q in %s%s", key.Value, md.FullName(), suggest(md, key.Value))
		}
		if seen[fd.Number()] {
			// YAML keeps the last of two equal keys; the first would be lost.
			return nil, yamlError(key, path, "field %s is given twice", fd.Name())
		}
		seen[fd.Number()] = true
		v, err := fieldJSON(val, fd, joinPath(path, string(fd.Name())))
		if err != nil {
			return nil, err
		}
		obj[key.Value] = v
	}
	return obj, nil
}

// fieldByName accepts what protojson accepts: the proto name or the JSON name.
func fieldByName(md protoreflect.MessageDescriptor, name string) protoreflect.FieldDescriptor {
	if fd := md.Fields().ByName(protoreflect.Name(name)); fd != nil {
		return fd
	}
	return md.Fields().ByJSONName(name)
}

func fieldJSON(n *yaml.Node, fd protoreflect.FieldDescriptor, path string) (any, error) {
	n = resolve(n)
	if isNull(n) {
		return nil, nil
	}
	switch {
	case fd.IsMap():
		if n.Kind != yaml.MappingNode {
			return nil, yamlError(n, path, "want a mapping, got %s", kindName(n))
		}
		obj := make(map[string]any, len(n.Content)/2)
		for i := 0; i+1 < len(n.Content); i += 2 {
			key := resolve(n.Content[i])
			v, err := singularJSON(n.Content[i+1], fd.MapValue(), path+"."+key.Value)
			if err != nil {
				return nil, err
			}
			obj[key.Value] = v
		}
		return obj, nil
	case fd.IsList():
		if n.Kind != yaml.SequenceNode {
			return nil, yamlError(n, path, "want a list, got %s", kindName(n))
		}
		list := make([]any, 0, len(n.Content))
		for i, e := range n.Content {
			v, err := singularJSON(e, fd, fmt.Sprintf("%s[%d]", path, i))
			if err != nil {
				return nil, err
			}
			list = append(list, v)
		}
		return list, nil
	}
	return singularJSON(n, fd, path)
}

func singularJSON(n *yaml.Node, fd protoreflect.FieldDescriptor, path string) (any, error) {
	n = resolve(n)
	switch fd.Kind() {
	case protoreflect.MessageKind, protoreflect.GroupKind:
		return messageJSON(n, fd.Message(), path)
	case protoreflect.EnumKind:
		return enumJSON(n, fd.Enum(), path)
	}
	if n.Kind != yaml.ScalarNode {
		return nil, yamlError(n, path, "want a %s value, got %s", fd.Kind(), kindName(n))
	}
	switch fd.Kind() {
	case protoreflect.StringKind:
		// `topic: 2024` means the text 2024: YAML's typing of a bare
		// scalar must not make a string field fail.
		return n.Value, nil
	case protoreflect.BoolKind:
		if n.Tag != "!!bool" {
			return nil, yamlError(n, path, "want true or false, got %q", n.Value)
		}
	case protoreflect.FloatKind, protoreflect.DoubleKind:
		if n.Tag != "!!float" && n.Tag != "!!int" {
			return nil, yamlError(n, path, "want a number, got %q", n.Value)
		}
	case protoreflect.BytesKind:
	default:
		return integerJSON(n, fd, path)
	}
	return scalarJSON(n, path)
}

// integerJSON checks an integer against its field's range here, where the
// YAML line is known.
func integerJSON(n *yaml.Node, fd protoreflect.FieldDescriptor, path string) (any, error) {
	bits, signed := integerRange(fd.Kind())
	var err error
	if n.Tag != "!!int" {
		err = errors.New("not a whole number")
	} else if signed {
		var v int64
		if n.Decode(&v) != nil || v < -1<<(bits-1) || v > 1<<(bits-1)-1 {
			err = errors.New("out of range")
		}
	} else {
		var v uint64
		if n.Decode(&v) != nil || (bits < 64 && v > 1<<bits-1) {
			err = errors.New("out of range")
		}
	}
	if err != nil {
		return nil, yamlError(n, path, "want a %s, got %q (%v)", fd.Kind(), n.Value, err)
	}
	return scalarJSON(n, path)
}

func integerRange(k protoreflect.Kind) (bits uint, signed bool) {
	switch k {
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind:
		return 32, true
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
		return 32, false
	case protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		return 64, false
	}
	return 64, true
}

func enumJSON(n *yaml.Node, ed protoreflect.EnumDescriptor, path string) (any, error) {
	if n.Kind != yaml.ScalarNode {
		return nil, yamlError(n, path, "want one of %s, got %s", enumNames(ed), kindName(n))
	}
	if n.Tag == "!!int" {
		return scalarJSON(n, path)
	}
	if ed.Values().ByName(protoreflect.Name(n.Value)) == nil {
		return nil, yamlError(n, path, "unknown value %q; use one of %s", n.Value, enumNames(ed))
	}
	return n.Value, nil
}

func enumNames(ed protoreflect.EnumDescriptor) string {
	names := make([]string, 0, ed.Values().Len())
	for i := range ed.Values().Len() {
		if v := ed.Values().Get(i); v.Number() != 0 {
			names = append(names, string(v.Name()))
		}
	}
	return strings.Join(names, ", ")
}

// scalarJSON keeps YAML's resolved type: a number stays a JSON number and
// quoted text stays a string, so protojson applies its own rules to each.
func scalarJSON(n *yaml.Node, path string) (any, error) {
	switch n.Tag {
	case "!!null":
		return nil, nil
	case "!!bool":
		var b bool
		if err := n.Decode(&b); err != nil {
			return nil, yamlError(n, path, "%v", err)
		}
		return b, nil
	case "!!int":
		// YAML also writes integers in hex, octal and with underscores;
		// JSON only in decimal.
		var i any
		if err := n.Decode(&i); err != nil {
			return nil, yamlError(n, path, "%v", err)
		}
		return json.Number(fmt.Sprint(i)), nil
	case "!!float":
		var f float64
		if err := n.Decode(&f); err != nil {
			return nil, yamlError(n, path, "%v", err)
		}
		switch {
		case math.IsNaN(f):
			return "NaN", nil
		case math.IsInf(f, 1):
			return "Infinity", nil
		case math.IsInf(f, -1):
			return "-Infinity", nil
		}
		return json.Number(strconv.FormatFloat(f, 'g', -1, 64)), nil
	}
	return n.Value, nil
}

// plainJSON converts YAML to JSON without a descriptor to check against.
func plainJSON(n *yaml.Node, path string) (any, error) {
	n = resolve(n)
	switch n.Kind {
	case yaml.MappingNode:
		obj := make(map[string]any, len(n.Content)/2)
		for i := 0; i+1 < len(n.Content); i += 2 {
			key := resolve(n.Content[i]).Value
			v, err := plainJSON(n.Content[i+1], joinPath(path, key))
			if err != nil {
				return nil, err
			}
			obj[key] = v
		}
		return obj, nil
	case yaml.SequenceNode:
		list := make([]any, 0, len(n.Content))
		for i, e := range n.Content {
			v, err := plainJSON(e, fmt.Sprintf("%s[%d]", path, i))
			if err != nil {
				return nil, err
			}
			list = append(list, v)
		}
		return list, nil
	}
	return scalarJSON(n, path)
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		return fmt.Sprintf("%q", n.Value)
	}
	return "nothing"
}

func joinPath(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}

// suggest names the field a typo most likely meant.
func suggest(md protoreflect.MessageDescriptor, name string) string {
	best, bestDist := "", 4
	var known []string
	for i := range md.Fields().Len() {
		fn := string(md.Fields().Get(i).Name())
		known = append(known, fn)
		if d := editDistance(strings.ToLower(name), fn); d < bestDist {
			best, bestDist = fn, d
		}
	}
	if best != "" {
		return fmt.Sprintf("; did you mean %q?", best)
	}
	return "; its fields are " + strings.Join(known, ", ")
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
