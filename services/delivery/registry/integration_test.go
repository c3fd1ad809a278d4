package registry

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/ferry-cdc/ferry/services/delivery/dtsavro"
	"github.com/ferry-cdc/ferry/services/testenv"
)

// realRegistry is a client for the local stack's Apicurio Registry, or fails.
func realRegistry(t *testing.T) *Client {
	t.Helper()
	c, err := New(testenv.SchemaRegistryURL(t), Options{Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.Ping(ctx); err != nil {
		t.Fatalf("the local schema registry is required (start the local stack with `make up`): %v", err)
	}
	return c
}

// schemaByID fetches a schema the way a Confluent deserializer does.
func schemaByID(t *testing.T, base string, id uint32) string {
	t.Helper()
	resp, err := http.Get(base + "/schemas/ids/" + jsonInt(int(id)))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	var out struct{ Schema string }
	if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&out) != nil {
		t.Fatalf("GET /schemas/ids/%d: %s", id, resp.Status)
	}
	return out.Schema
}

func TestRegisterDTSAvroSchemaReal(t *testing.T) {
	c := realRegistry(t)
	ctx := context.Background()
	subject := Subject(testenv.UniqueName("ferry_reg"))
	id, err := c.Register(ctx, subject, dtsavro.SchemaJSON)
	if err != nil {
		t.Fatal(err)
	}
	// A fresh client (no cache) registering again gets the same id.
	again, err := New(testenv.SchemaRegistryURL(t), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if id2, err := again.Register(ctx, subject, dtsavro.SchemaJSON); err != nil || id2 != id {
		t.Fatalf("re-registering = %d, %v; want the same id %d", id2, err, id)
	}
	var got, want any
	if err := json.Unmarshal([]byte(schemaByID(t, c.URL(), id)), &got); err != nil {
		t.Fatal(err)
	}
	_ = json.Unmarshal([]byte(dtsavro.SchemaJSON), &want)
	gb, _ := json.Marshal(got)
	wb, _ := json.Marshal(want)
	if string(gb) != string(wb) {
		t.Fatalf("the registry returns a different schema for id %d:\n%s", id, gb)
	}
}

func TestInvalidSchemaIsRefusedByTheRealRegistry(t *testing.T) {
	c := realRegistry(t)
	subject := Subject(testenv.UniqueName("ferry_reg_bad"))
	_, err := c.Register(context.Background(), subject, `{"type":"record"`)
	var re *Error
	if !errors.As(err, &re) || re.Status/100 != 4 {
		t.Fatalf("err = %v, want a 4xx *Error", err)
	}
	if !strings.Contains(err.Error(), subject) || !strings.Contains(err.Error(), c.URL()) {
		t.Fatalf("error %q must name the subject and the registry", err)
	}
}
