// Package canaltest decodes Canal JSON strictly, for tests: unknown keys,
// missing keys and keys out of order all fail the test.
package canaltest

import (
	"bytes"
	"encoding/json"
	"testing"
)

// Message is the strict shape of a Canal JSON message.
type Message struct {
	ID        *int64               `json:"id"`
	Database  *string              `json:"database"`
	Table     *string              `json:"table"`
	PkNames   []string             `json:"pkNames"`
	IsDdl     *bool                `json:"isDdl"`
	Type      *string              `json:"type"`
	Es        *int64               `json:"es"`
	Ts        *int64               `json:"ts"`
	SQL       *string              `json:"sql"`
	SQLType   map[string]int       `json:"sqlType"`
	MysqlType map[string]string    `json:"mysqlType"`
	Data      []map[string]*string `json:"data"`
	Old       []map[string]*string `json:"old"`
}

// KeyOrder is the order of keys in every message.
var KeyOrder = []string{"id", "database", "table", "pkNames", "isDdl", "type", "es", "ts", "sql", "sqlType", "mysqlType", "data", "old"}

// Decode parses b strictly: no unknown keys, every key present, in order.
func Decode(t testing.TB, b []byte) Message {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var m Message
	if err := dec.Decode(&m); err != nil {
		t.Fatalf("strict decode of %s: %v", b, err)
	}
	if dec.More() {
		t.Fatalf("trailing data after message %s", b)
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil {
		t.Fatal(err)
	}
	if len(raw) != len(KeyOrder) {
		t.Fatalf("message has %d keys, want %d: %s", len(raw), len(KeyOrder), b)
	}
	// Key order, from the token stream.
	dec = json.NewDecoder(bytes.NewReader(b))
	if tok, _ := dec.Token(); tok != json.Delim('{') {
		t.Fatalf("not an object: %s", b)
	}
	for i := 0; dec.More(); i++ {
		tok, err := dec.Token()
		if err != nil {
			t.Fatal(err)
		}
		if i >= len(KeyOrder) || tok != KeyOrder[i] {
			t.Fatalf("key %d is %v, want order %v", i, tok, KeyOrder)
		}
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			t.Fatal(err)
		}
	}
	return m
}
