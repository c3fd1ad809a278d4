package delivery

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	deliveryv1 "github.com/ferry-cdc/ferry/gen/ferry/delivery/v1"
	"github.com/ferry-cdc/ferry/services/delivery/dtsavro"
	"github.com/ferry-cdc/ferry/services/delivery/registry"
	"github.com/ferry-cdc/ferry/services/delivery/relation"
)

// subjectsServer is a minimal Confluent API: each subject gets its own id,
// counting from 40, so a wrong subject shows as a wrong id.
func subjectsServer(t *testing.T) (*httptest.Server, func() []string) {
	var mu sync.Mutex
	var seen []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		var body struct{ Schema string }
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil || !strings.Contains(body.Schema, `"Record"`) {
			w.WriteHeader(http.StatusUnprocessableEntity)
			return
		}
		seen = append(seen, strings.TrimSuffix(strings.TrimPrefix(r.URL.Path, "/subjects/"), "/versions"))
		_, _ = io.WriteString(w, `{"id":`+jsonInt(39+len(seen))+`}`)
	}))
	t.Cleanup(srv.Close)
	return srv, func() []string { mu.Lock(); defer mu.Unlock(); return append([]string(nil), seen...) }
}

func jsonInt(n int) string { b, _ := json.Marshal(n); return string(b) }

// TestFramedEncoderPrefixesThePlainRecord checks that framing is the plain
// Record behind a 5-byte header, and that a topic not registered at the
// start is registered when a relation is first routed to it.
func TestFramedEncoderPrefixesThePlainRecord(t *testing.T) {
	srv, seen := subjectsServer(t)
	reg, err := registry.New(srv.URL, registry.Options{})
	if err != nil {
		t.Fatal(err)
	}
	// Two encoders with the same first id write the same bytes for a row.
	opts := dtsavro.Options{SourceDatabase: "shop", IDBase: 1000}
	plain, inner := dtsavro.New(opts), dtsavro.New(opts)
	topic := "early"
	fe := newFramedEncoder(context.Background(), inner, reg, func(uint32) string { return topic }, "ddl")
	if err := fe.registerTopics([]string{"early"}); err != nil {
		t.Fatal(err)
	}
	tab := fe.SetRelation(ordersRelation())
	plain.SetRelation(ordersRelation())
	ev := insert(1, "a", 90)
	want, _ := plain.Encode(nil, tab, ev)
	got, err := fe.Encode([]byte("kept"), tab, ev)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, append([]byte("kept\x00\x00\x00\x00\x28"), want...)) {
		t.Fatalf("framed % x\nwant \"kept\", 00 00000028, then % x", got, want)
	}
	// A new relation routed to a topic seen for the first time.
	topic = "late"
	tab = fe.SetRelation(ordersRelation())
	if got, err = fe.Encode(nil, tab, ev); err != nil || !bytes.Equal(got[:5], []byte{0, 0, 0, 0, 0x29}) {
		t.Fatalf("late topic: % x, %v; want id 41", got[:min(5, len(got))], err)
	}
	// DDL Records go to the DDL topic, framed with its subject's id.
	ddl := relation.DDL{Kind: "CREATE", SQL: "CREATE TABLE x ()", LSN: 90, Commit: commitTime}
	_, _ = plain.Encode(nil, tab, ev) // keeps the plain encoder's ids in step
	wantDDL, _ := plain.EncodeDDL(nil, tab, ddl)
	gotDDL, err := fe.EncodeDDL(nil, tab, ddl)
	if err != nil || !bytes.Equal(gotDDL, append([]byte{0, 0, 0, 0, 0x2a}, wantDDL...)) {
		t.Fatalf("DDL framed % x, %v; want id 42 before the plain DDL Record", gotDDL[:min(5, len(gotDDL))], err)
	}
	if s := strings.Join(seen(), ","); s != "early-value,late-value,ddl-value" {
		t.Fatalf("registered %s, want early-value,late-value,ddl-value", s)
	}
}

func TestFramedEncoderErrorsAreClassified(t *testing.T) {
	srv, _ := subjectsServer(t)
	conflict := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusConflict)
		_, _ = io.WriteString(w, `{"error_code":409,"message":"Schema being registered is incompatible"}`)
	}))
	t.Cleanup(conflict.Close)
	srv.Close() // unreachable from now on
	for _, tc := range []struct {
		url  string
		want codes.Code
		say  string
	}{
		{srv.URL, codes.Unavailable, "unreachable"},
		{conflict.URL, codes.FailedPrecondition, "compatibility to NONE"},
	} {
		reg, _ := registry.New(tc.url, registry.Options{})
		fe := newFramedEncoder(context.Background(), newEncoder(&deliveryv1.StartDelivery{}), reg, nil, "")
		err := fe.registerTopics([]string{"t1"})
		if status.Code(err) != tc.want || !strings.Contains(err.Error(), tc.say) || !strings.Contains(err.Error(), "t1-value") {
			t.Fatalf("%s: err = %v, want %v saying %q and naming t1-value", tc.url, err, tc.want, tc.say)
		}
	}
}
