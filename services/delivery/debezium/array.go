package debezium

import (
	"bytes"
	"errors"
)

// appendArray writes an array literal ("{1,2,NULL}", "{\"a b\",c}") as a
// JSON array of its elements, each mapped as elem. Debezium's mapping knows
// one dimension; a multi-dimensional array becomes nested JSON arrays,
// whose shape its schema (an array of elem) does not describe. Explicit
// bounds ("[0:1]={...}") are dropped.
func appendArray(dst []byte, elem *columnType, text []byte) ([]byte, error) {
	if text[0] == '[' {
		if _, rest, ok := bytes.Cut(text, []byte("=")); ok {
			text = rest
		}
	}
	if len(text) < 2 || text[0] != '{' || text[len(text)-1] != '}' {
		return dst, errors.New("array literal without braces")
	}
	body := text[1 : len(text)-1]
	dst = append(dst, '[')
	if len(body) == 0 {
		return append(dst, ']'), nil
	}
	var buf []byte
	for i, first := 0, true; i <= len(body); first = false {
		if !first {
			dst = append(dst, ',')
		}
		var quoted, nested bool
		var err error
		buf, quoted, nested, i, err = nextElement(buf[:0], body, i)
		switch {
		case err != nil:
			return dst, err
		case nested:
			dst, err = appendArray(dst, elem, buf)
		case !quoted && string(buf) == "NULL":
			dst = append(dst, "null"...)
		default:
			dst, err = appendValue(dst, elem, buf)
		}
		if err != nil {
			return dst, err
		}
		i++ // past the comma, or past the end
	}
	return append(dst, ']'), nil
}

// nextElement reads the element at body[i:] into buf, unescaped (a
// sub-array as it stands), and returns the index of the comma after it
// (or len(body)).
func nextElement(buf, body []byte, i int) (out []byte, quoted, nested bool, next int, err error) {
	switch {
	case i < len(body) && body[i] == '{':
		depth, inQuote := 0, false
		for j := i; j < len(body); j++ {
			switch c := body[j]; {
			case c == '\\' && inQuote:
				j++
			case c == '"':
				inQuote = !inQuote
			case c == '{' && !inQuote:
				depth++
			case c == '}' && !inQuote:
				if depth--; depth == 0 {
					return append(buf, body[i:j+1]...), false, true, j + 1, nil
				}
			}
		}
		return buf, false, true, i, errors.New("unterminated sub-array")
	case i < len(body) && body[i] == '"':
		for i++; i < len(body) && body[i] != '"'; i++ {
			if body[i] == '\\' {
				i++
			}
			if i < len(body) {
				buf = append(buf, body[i])
			}
		}
		if i >= len(body) {
			return buf, true, false, i, errors.New("unterminated array element")
		}
		return buf, true, false, i + 1, nil
	}
	for ; i < len(body) && body[i] != ','; i++ {
		buf = append(buf, body[i])
	}
	return buf, false, false, i, nil
}
