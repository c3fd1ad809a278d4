package taskapi

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	commonpb "go.temporal.io/api/common/v1"
	"go.temporal.io/sdk/temporal"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	taskv1 "github.com/ferry-cdc/ferry/gen/ferry/task/v1"
)

func testCodec(t *testing.T, fill byte) *EncryptionCodec {
	t.Helper()
	c, err := NewEncryptionCodec(bytes.Repeat([]byte{fill}, 32))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestEncryptionCodecSealsWholePayloads(t *testing.T) {
	c := testCodec(t, 7)
	dc := DataConverterWith(c)
	in := &taskv1.TaskSpec{Name: "orders", Source: &taskv1.SourceEndpoint{Host: "db.internal.example", User: "replicator"}}
	p, err := dc.ToPayload(in)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := proto.Marshal(p)
	for _, clear := range []string{"db.internal.example", "replicator", "ferry.task.v1.TaskSpec", "json/protobuf"} {
		if bytes.Contains(raw, []byte(clear)) {
			t.Errorf("the sealed payload shows %q", clear)
		}
	}
	var out taskv1.TaskSpec
	if err := dc.FromPayload(p, &out); err != nil || !proto.Equal(&out, in) {
		t.Fatalf("round trip: %v, got %v", err, &out)
	}
	// Two seals of one value differ (a fresh nonce each).
	p2, _ := dc.ToPayload(in)
	if bytes.Equal(p.GetData(), p2.GetData()) {
		t.Error("two encryptions of one payload are equal: the nonce is reused")
	}
}

// `temporal workflow signal --input` without the codec sends clear JSON; it
// must still decode.
func TestEncryptionCodecPassesClearPayloadsThrough(t *testing.T) {
	clear := &commonpb.Payload{Metadata: map[string][]byte{"encoding": []byte("json/plain")}, Data: []byte(`{"compression": "COMPRESSION_ZSTD"}`)}
	var sig taskv1.ModifyObjectsSignal
	if err := DataConverterWith(testCodec(t, 1)).FromPayload(clear, &sig); err != nil || sig.GetCompression() != taskv1.Compression_COMPRESSION_ZSTD {
		t.Fatalf("clear JSON through the codec: %v, %v", err, &sig)
	}
}

func TestEncryptionCodecRefusesOtherKeysAndTampering(t *testing.T) {
	a, b := testCodec(t, 1), testCodec(t, 2)
	sealed, err := a.Encode([]*commonpb.Payload{{Data: []byte("x")}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Decode(sealed); !errors.Is(err, ErrWrongKey) {
		t.Errorf("another key: got %v, want ErrWrongKey", err)
	}
	sealed[0].Data[len(sealed[0].Data)-1] ^= 1
	if _, err := a.Decode(sealed); err == nil {
		t.Error("a tampered payload opened")
	}
}

func TestLoadEncryptionCodecReadsHexAndRaw(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	hexKey := write("hex", []byte(strings.Repeat("ab", 32)+"\n"))
	rawKey := write("raw", bytes.Repeat([]byte{0xab}, 32))
	h, err := LoadEncryptionCodec(hexKey)
	if err != nil {
		t.Fatal(err)
	}
	r, err := LoadEncryptionCodec(rawKey)
	if err != nil {
		t.Fatal(err)
	}
	if h.keyID != r.keyID {
		t.Error("the same key as hex and raw gave different key IDs")
	}
	if _, err := LoadEncryptionCodec(write("short", []byte("too short"))); err == nil || !strings.Contains(err.Error(), "openssl rand -hex 32") {
		t.Errorf("a short key: %v, want an error saying how to make one", err)
	}
}

// The codec server answers Temporal's remote codec protocol, and lets the
// UI's origin call it from a browser.
func TestCodecHandlerDecodesForTheUI(t *testing.T) {
	c := testCodec(t, 3)
	sealed, err := DataConverterWith(c).ToPayload(&taskv1.TaskSpec{Name: "orders"})
	if err != nil {
		t.Fatal(err)
	}
	body, err := protojson.Marshal(&commonpb.Payloads{Payloads: []*commonpb.Payload{sealed}})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(CodecHandler(c, []string{"http://ui.example"}))
	defer srv.Close()
	req, _ := http.NewRequest(http.MethodPost, srv.URL+"/decode", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Origin", "http://ui.example")
	res, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = res.Body.Close() }()
	out, _ := io.ReadAll(res.Body)
	if res.StatusCode != http.StatusOK ||
		res.Header.Get("Access-Control-Allow-Origin") != "http://ui.example" {
		t.Fatalf("decode: %d %s (CORS %q)", res.StatusCode, out, res.Header.Get("Access-Control-Allow-Origin"))
	}
	var decoded commonpb.Payloads
	if err := protojson.Unmarshal(out, &decoded); err != nil {
		t.Fatal(err)
	}
	var spec taskv1.TaskSpec
	if err := DataConverter().FromPayload(decoded.GetPayloads()[0], &spec); err != nil || spec.GetName() != "orders" {
		t.Fatalf("the decoded payload: %v, %v", err, &spec)
	}
	other, _ := http.NewRequest(http.MethodOptions, srv.URL+"/decode", nil)
	other.Header.Set("Origin", "http://evil.example")
	res2, err := srv.Client().Do(other)
	if err != nil {
		t.Fatal(err)
	}
	_ = res2.Body.Close()
	if res2.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Fatal("an origin not listed was allowed")
	}
}

// Failure messages name tables and LSNs; with a key they are sealed too, and
// a process with the key reads them back.
func TestFailureConverterSealsMessages(t *testing.T) {
	if FailureConverterWith(nil) != nil {
		t.Fatal("no codec should keep Temporal's default failure converter")
	}
	fc := FailureConverterWith(testCodec(t, 5))
	f := fc.ErrorToFailure(temporal.NewApplicationError("copying public.orders at LSN 0/16B3748", ErrOther))
	raw, _ := proto.Marshal(f)
	if bytes.Contains(raw, []byte("public.orders")) {
		t.Fatalf("the failure shows its message in clear: %v", f)
	}
	if err := fc.FailureToError(f); !strings.Contains(err.Error(), "public.orders at LSN 0/16B3748") {
		t.Fatalf("read back: %v", err)
	}
}
