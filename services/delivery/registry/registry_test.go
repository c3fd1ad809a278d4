package registry

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

const schemaA = `{"type":"record","name":"A","fields":[{"name":"x","type":"int"}]}`

// fakeRegistry answers POST /subjects/{subject}/versions like Confluent's API,
// handing out one id per distinct schema, and records what it was sent.
type fakeRegistry struct {
	posts atomic.Int32

	mu       sync.Mutex
	ids      map[string]int
	lastPath string
	lastType string
	lastAuth string
}

func (f *fakeRegistry) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lastPath, f.lastType = r.URL.EscapedPath(), r.Header.Get("Content-Type")
	if u, p, ok := r.BasicAuth(); ok {
		f.lastAuth = u + ":" + p
	}
	if r.Method == http.MethodGet && r.URL.Path == "/api/subjects" {
		_, _ = io.WriteString(w, `["a-value"]`)
		return
	}
	if r.Method != http.MethodPost || !strings.HasSuffix(r.URL.Path, "/versions") {
		w.WriteHeader(http.StatusNotFound)
		_, _ = io.WriteString(w, `{"error_code":40401,"message":"Subject not found."}`)
		return
	}
	f.posts.Add(1)
	var body struct{ Schema string }
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil || body.Schema == "" {
		w.WriteHeader(http.StatusUnprocessableEntity)
		_, _ = io.WriteString(w, `{"error_code":42201,"message":"Invalid schema"}`)
		return
	}
	if _, ok := f.ids[body.Schema]; !ok {
		f.ids[body.Schema] = len(f.ids) + 7
	}
	_, _ = io.WriteString(w, `{"id":`+jsonInt(f.ids[body.Schema])+`}`)
}

func jsonInt(n int) string { b, _ := json.Marshal(n); return string(b) }

func newFake(t *testing.T) (*fakeRegistry, *httptest.Server) {
	f := &fakeRegistry{ids: map[string]int{}}
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	return f, srv
}

func TestRegisterReturnsTheIDAndCachesItPerSubject(t *testing.T) {
	f, srv := newFake(t)
	c, err := New(srv.URL+"/api/", Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	id, err := c.Register(ctx, "orders-value", schemaA)
	if err != nil || id != 7 {
		t.Fatalf("Register = %d, %v; want 7", id, err)
	}
	if f.lastPath != "/api/subjects/orders-value/versions" || f.lastType != contentType {
		t.Fatalf("request went to %s as %q", f.lastPath, f.lastType)
	}
	if id2, err := c.Register(ctx, "orders-value", schemaA); err != nil || id2 != id || f.posts.Load() != 1 {
		t.Fatalf("second Register = %d, %v after %d posts; want the cached id and no request", id2, err, f.posts.Load())
	}
	// Another subject is a registration of its own, even for the same schema.
	if _, err := c.Register(ctx, "users-value", schemaA); err != nil || f.posts.Load() != 2 {
		t.Fatalf("other subject: %v after %d posts; want a request", err, f.posts.Load())
	}
	// A changed schema under a known subject is not answered from the cache.
	schemaB := strings.Replace(schemaA, `"x"`, `"y"`, 1)
	if id3, err := c.Register(ctx, "orders-value", schemaB); err != nil || id3 != 8 || f.posts.Load() != 3 {
		t.Fatalf("changed schema = %d, %v after %d posts; want a new id from a request", id3, err, f.posts.Load())
	}
}

func TestSubjectIsPathEscaped(t *testing.T) {
	f, srv := newFake(t)
	c, _ := New(srv.URL, Options{})
	if _, err := c.Register(context.Background(), "a/b c-value", schemaA); err != nil {
		t.Fatal(err)
	}
	if f.lastPath != "/subjects/a%2Fb%20c-value/versions" {
		t.Fatalf("path = %s", f.lastPath)
	}
}

func TestRegistryErrorsNameURLAndSubjectButNotCredentials(t *testing.T) {
	f, srv := newFake(t)
	withCreds := strings.Replace(srv.URL, "http://", "http://alice:s3cret@", 1)
	c, err := New(withCreds, Options{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Register(context.Background(), "orders-value", "")
	var re *Error
	if !errors.As(err, &re) || re.Status != http.StatusUnprocessableEntity || re.Code != 42201 {
		t.Fatalf("err = %v, want the registry's 422/42201", err)
	}
	for _, want := range []string{srv.URL, "orders-value", "42201", "Invalid schema"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
	if strings.Contains(err.Error(), "s3cret") || strings.Contains(c.URL(), "s3cret") {
		t.Fatalf("credentials leaked: %v / %s", err, c.URL())
	}
	if f.lastAuth != "alice:s3cret" {
		t.Fatalf("basic auth = %q, want the URL's user and password", f.lastAuth)
	}
}

func TestUnreachableRegistryIsTypedAndRedacted(t *testing.T) {
	_, srv := newFake(t)
	addr := srv.URL
	srv.Close() // nothing listens there now
	c, _ := New(strings.Replace(addr, "http://", "http://bob:hunter2@", 1), Options{Timeout: 2 * time.Second})
	_, err := c.Register(context.Background(), "orders-value", schemaA)
	var ue *UnreachableError
	if !errors.As(err, &ue) {
		t.Fatalf("err = %v (%T), want *UnreachableError", err, err)
	}
	if !strings.Contains(err.Error(), addr) || !strings.Contains(err.Error(), "orders-value") || strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("error %q must name %s and the subject, and not the password", err, addr)
	}
}

func TestRequestsTimeOut(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(release) })
	c, _ := New(srv.URL, Options{Timeout: 200 * time.Millisecond})
	start := time.Now()
	err := c.Ping(context.Background())
	var ue *UnreachableError
	if !errors.As(err, &ue) || time.Since(start) > 5*time.Second {
		t.Fatalf("Ping = %v after %s, want an UnreachableError after about 200ms", err, time.Since(start))
	}
}

func TestPingWantsTheConfluentAPI(t *testing.T) {
	_, srv := newFake(t)
	good, _ := New(srv.URL+"/api", Options{})
	if err := good.Ping(context.Background()); err != nil {
		t.Fatalf("Ping at the API root: %v", err)
	}
	wrong, _ := New(srv.URL, Options{})
	var re *Error
	if err := wrong.Ping(context.Background()); !errors.As(err, &re) || re.Status != http.StatusNotFound {
		t.Fatalf("Ping at the wrong root = %v, want a 404 *Error", err)
	}
}

func TestCheckURL(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"http://r:8081", ""},
		{"https://u:pw@r:8081/apis/ccompat/v7/", ""},
		{"r:8081", "scheme"},
		{"127.0.0.1:8081", "not a URL"},
		{"ftp://r", "scheme"},
		{"http://", "no host"},
		{"http://r:8081/?x=1", "query"},
	} {
		_, err := CheckURL(tc.in)
		if (tc.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("CheckURL(%q) = %v, want %q", tc.in, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), "pw") {
			t.Errorf("CheckURL(%q) leaks the password: %v", tc.in, err)
		}
	}
}

func TestHeaderRoundTrip(t *testing.T) {
	msg := AppendHeader([]byte{}, 0x01020304)
	msg = append(msg, 'p')
	if string(msg[:HeaderLen]) != "\x00\x01\x02\x03\x04" {
		t.Fatalf("header = % x", msg[:HeaderLen])
	}
	id, payload, err := ParseHeader(msg)
	if err != nil || id != 0x01020304 || string(payload) != "p" {
		t.Fatalf("ParseHeader = %d, %q, %v", id, payload, err)
	}
	if _, _, err := ParseHeader([]byte{1, 0, 0, 0, 1}); err == nil {
		t.Fatal("a wrong magic byte must be refused")
	}
}
