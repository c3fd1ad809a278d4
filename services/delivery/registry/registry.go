// Package registry registers schemas with a schema registry that speaks
// Confluent's REST API (Confluent Schema Registry, Apicurio Registry's ccompat
// API, Karapace, Redpanda), and frames messages in Confluent's wire format.
//
// The base URL is the API's root: http://host:8081 for Confluent, or
// http://host:8080/apis/ccompat/v7 for Apicurio. Registering is idempotent on
// the registry's side (the same schema under the same subject returns the
// same id), so the client caches ids per subject and asks again only for a
// subject or schema it has not seen.
package registry

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
)

// DefaultTimeout bounds each request when Options.Timeout is zero.
const DefaultTimeout = 10 * time.Second

// HeaderLen is the size of the Confluent wire-format header.
const HeaderLen = 5

// contentType is the media type Confluent's API documents; Apicurio and the
// others accept it as well as application/json.
const contentType = "application/vnd.schemaregistry.v1+json"

// Options configure a Client.
type Options struct {
	// Timeout bounds each request; zero means DefaultTimeout.
	Timeout time.Duration
	// Transport replaces http.DefaultTransport (tests).
	Transport http.RoundTripper
}

// Client talks to one registry. It is safe for concurrent use.
type Client struct {
	base  string // with credentials, without a trailing slash
	shown string // without credentials, for errors and logs
	http  *http.Client

	mu  sync.Mutex
	ids map[string]cached
}

type cached struct {
	schema string
	id     uint32
}

// New checks rawURL's shape and returns a client for it. Credentials in the
// URL (user:password@) are sent as HTTP basic authentication and never
// appear in errors.
func New(rawURL string, opts Options) (*Client, error) {
	shown, err := CheckURL(rawURL)
	if err != nil {
		return nil, err
	}
	timeout := opts.Timeout
	if timeout == 0 {
		timeout = DefaultTimeout
	}
	return &Client{
		base:  strings.TrimRight(rawURL, "/"),
		shown: shown,
		http:  &http.Client{Timeout: timeout, Transport: opts.Transport},
		ids:   map[string]cached{},
	}, nil
}

// CheckURL reports whether rawURL can be a registry's base URL and returns it
// without credentials, for messages.
func CheckURL(rawURL string) (string, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		// url.Parse quotes the input, which may hold a password.
		return "", errors.New("not a URL; want http(s)://host:port[/path]")
	}
	u.User = nil
	shown := u.String()
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return "", fmt.Errorf("%q: the scheme must be http or https", shown)
	case u.Host == "":
		return "", fmt.Errorf("%q has no host; want http(s)://host:port[/path]", shown)
	case u.RawQuery != "" || u.Fragment != "":
		return "", fmt.Errorf("%q: a base URL has no query or fragment", shown)
	}
	return strings.TrimRight(shown, "/"), nil
}

// URL is the registry's base URL without credentials.
func (c *Client) URL() string { return c.shown }

// Error is a registry's answer other than success.
type Error struct {
	URL     string // the base URL, without credentials
	Subject string // empty for requests about no subject
	Status  int    // the HTTP status
	Code    int    // the registry's error_code, when it sent one
	Message string
}

func (e *Error) Error() string {
	what := "schema registry " + e.URL
	if e.Subject != "" {
		what += " (subject " + e.Subject + ")"
	}
	msg := e.Message
	if msg == "" {
		msg = http.StatusText(e.Status)
	}
	if e.Code != 0 {
		return fmt.Sprintf("%s answered %d, error_code %d: %s", what, e.Status, e.Code, msg)
	}
	return fmt.Sprintf("%s answered %d: %s", what, e.Status, msg)
}

// Incompatible reports whether the subject holds a schema the new one is not
// compatible with (HTTP 409).
func (e *Error) Incompatible() bool { return e.Status == http.StatusConflict }

// Register registers schema (Avro) under subject and returns its id. An id
// already learnt for the same subject and schema is returned without a
// request.
func (c *Client) Register(ctx context.Context, subject, schema string) (uint32, error) {
	c.mu.Lock()
	hit, ok := c.ids[subject]
	c.mu.Unlock()
	if ok && hit.schema == schema {
		return hit.id, nil
	}
	body, err := json.Marshal(struct {
		Schema string `json:"schema"`
	}{schema})
	if err != nil {
		return 0, fmt.Errorf("encoding the schema for subject %s: %w", subject, err)
	}
	var out struct {
		ID *int64 `json:"id"`
	}
	path := "/subjects/" + url.PathEscape(subject) + "/versions"
	if err := c.do(ctx, http.MethodPost, path, subject, body, &out); err != nil {
		return 0, err
	}
	if out.ID == nil || *out.ID < 0 || *out.ID > 1<<32-1 {
		return 0, fmt.Errorf("schema registry %s (subject %s) answered without a valid schema id", c.shown, subject)
	}
	id := uint32(*out.ID)
	c.mu.Lock()
	c.ids[subject] = cached{schema: schema, id: id}
	c.mu.Unlock()
	return id, nil
}

// Ping lists the subjects, which proves the Confluent-compatible API answers
// at the base URL (not just that something listens there).
func (c *Client) Ping(ctx context.Context) error {
	var subjects []string
	return c.do(ctx, http.MethodGet, "/subjects", "", nil, &subjects)
}

func (c *Client) do(ctx context.Context, method, path, subject string, body []byte, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("schema registry %s: building the request: %w", c.shown, redact(err))
	}
	req.Header.Set("Accept", contentType+", application/json")
	if body != nil {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		what := "schema registry " + c.shown
		if subject != "" {
			what += " (subject " + subject + ")"
		}
		return &UnreachableError{What: what, Err: redact(err)}
	}
	defer func() { _ = resp.Body.Close() }()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return &UnreachableError{What: "schema registry " + c.shown + ": reading the answer", Err: redact(err)}
	}
	if resp.StatusCode/100 != 2 {
		e := &Error{URL: c.shown, Subject: subject, Status: resp.StatusCode}
		var msg struct {
			Code    int    `json:"error_code"`
			Message string `json:"message"`
		}
		if json.Unmarshal(data, &msg) == nil {
			e.Code, e.Message = msg.Code, msg.Message
		}
		return e
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("schema registry %s answered %s %s with something other than the Confluent API's JSON: %w", c.shown, method, path, err)
	}
	return nil
}

// UnreachableError means the registry did not answer: a refused connection,
// DNS, TLS, or a timeout. It is worth retrying, unlike most *Error.
type UnreachableError struct {
	What string
	Err  error
}

func (e *UnreachableError) Error() string { return e.What + " is unreachable: " + e.Err.Error() }
func (e *UnreachableError) Unwrap() error { return e.Err }

// redact drops the URL (which may carry credentials) from net/http's errors,
// keeping the cause.
func redact(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// AppendHeader appends the Confluent wire-format header for schema id: the
// magic byte 0, then the id as 4 bytes big-endian. The Avro payload follows.
func AppendHeader(dst []byte, id uint32) []byte {
	return binary.BigEndian.AppendUint32(append(dst, 0), id)
}

// ParseHeader splits a Confluent-framed message into its schema id and
// payload.
func ParseHeader(msg []byte) (id uint32, payload []byte, err error) {
	if len(msg) < HeaderLen || msg[0] != 0 {
		return 0, nil, errors.New("not in the Confluent wire format (magic byte 0 and a 4-byte schema id)")
	}
	return binary.BigEndian.Uint32(msg[1:HeaderLen]), msg[HeaderLen:], nil
}

// Subject is the TopicNameStrategy subject for a topic's values.
func Subject(topic string) string { return topic + "-value" }
