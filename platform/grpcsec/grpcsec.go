// Package grpcsec secures the gRPC connections between Ferry's processes:
// mutual TLS under one CA for every service, and, for the control API,
// a bearer token or a client certificate. Plaintext needs -insecure, so a
// deployment that forgets its certificates fails at start rather than
// running open.
package grpcsec

import (
	"cmp"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/ferry-cdc/ferry/platform/config"
)

// Settings are one process's transport security, the same flags and
// environment in every binary.
type Settings struct {
	CertFile, KeyFile, CAFile string
	// ServerName is the name a client checks the server's certificate
	// for; empty: the host of the address it dials.
	ServerName string
	// Insecure serves and dials plaintext; it must be asked for.
	Insecure bool
	// PeerNames are the names (common name or DNS name) a client
	// certificate must carry to call catalog, capture or delivery; empty:
	// a name of this process's own certificate, which Ferry's processes
	// share. Other certificates of the same CA (an operator's, for the
	// control API) are refused there.
	PeerNames string
	// Logger hears of a rotated certificate that failed to load; nil: a
	// discarding one.
	Logger *slog.Logger

	insecureErr error // FERRY_INSECURE that is no boolean
}

// Register adds -tls-cert, -tls-key, -tls-ca, -tls-server-name and
// -insecure to fs, defaulting to FERRY_TLS_CERT, FERRY_TLS_KEY,
// FERRY_TLS_CA, FERRY_TLS_SERVER_NAME and FERRY_INSECURE.
func (s *Settings) Register(fs *flag.FlagSet) {
	fs.StringVar(&s.CertFile, "tls-cert", config.Env("FERRY_TLS_CERT", ""), "PEM certificate this process presents, as server and as client (env FERRY_TLS_CERT); re-read when the file changes")
	fs.StringVar(&s.KeyFile, "tls-key", config.Env("FERRY_TLS_KEY", ""), "PEM private key of -tls-cert (env FERRY_TLS_KEY)")
	fs.StringVar(&s.CAFile, "tls-ca", config.Env("FERRY_TLS_CA", ""), "PEM CA bundle that signs the certificates of Ferry's processes (env FERRY_TLS_CA)")
	fs.StringVar(&s.ServerName, "tls-server-name", config.Env("FERRY_TLS_SERVER_NAME", ""), "name to check the servers' certificates for; empty: the host dialled (env FERRY_TLS_SERVER_NAME)")
	fs.StringVar(&s.PeerNames, "peer-names", config.Env("FERRY_TLS_PEER_NAMES", ""), "comma-separated certificate names (common or DNS) that may call catalog, capture and delivery; empty: the names of this process's own certificate (env FERRY_TLS_PEER_NAMES)")
	insecureDefault, err := strconv.ParseBool(config.Env("FERRY_INSECURE", "false"))
	if err != nil {
		s.insecureErr = fmt.Errorf("FERRY_INSECURE=%q is not a boolean: set true or false", os.Getenv("FERRY_INSECURE"))
	}
	fs.BoolVar(&s.Insecure, "insecure", insecureDefault, "serve and dial gRPC in plaintext, without TLS (env FERRY_INSECURE); for a trusted loopback only")
}

// errNoTransport names both ways out, since a process that has neither
// must not start.
var errNoTransport = errors.New("no transport security: set -tls-cert, -tls-key and -tls-ca " +
	"(FERRY_TLS_CERT, FERRY_TLS_KEY, FERRY_TLS_CA) for mutual TLS, or -insecure (FERRY_INSECURE=true) for plaintext")

// Validate reports a configuration that cannot work, before anything
// listens or dials.
func (s Settings) Validate() error {
	if s.insecureErr != nil {
		return s.insecureErr
	}
	files := map[string]string{"-tls-cert": s.CertFile, "-tls-key": s.KeyFile, "-tls-ca": s.CAFile}
	var set, unset []string
	for _, flagName := range []string{"-tls-cert", "-tls-key", "-tls-ca"} {
		if files[flagName] != "" {
			set = append(set, flagName)
		} else {
			unset = append(unset, flagName)
		}
	}
	switch {
	case s.Insecure && len(set) > 0:
		return fmt.Errorf("-insecure is set together with %v: choose plaintext or TLS", set)
	case s.Insecure:
		return nil
	case len(set) == 0:
		return errNoTransport
	case len(unset) > 0:
		return fmt.Errorf("mutual TLS needs %v as well as %v", unset, set)
	}
	return nil
}

// ClientAuth says what a server asks of its clients' certificates.
type ClientAuth int

const (
	// RequireClientCert is for the internal services: only Ferry's own
	// processes, holding a certificate of the CA, may call them.
	RequireClientCert ClientAuth = iota
	// VerifyClientCertIfGiven is for the control API, whose callers may
	// authenticate with a bearer token instead.
	VerifyClientCertIfGiven
)

// ServerOption returns the credentials a server is created with.
func (s Settings) ServerOption(auth ClientAuth) (grpc.ServerOption, error) {
	if err := s.Validate(); err != nil {
		return nil, err
	}
	if s.Insecure {
		return grpc.Creds(insecure.NewCredentials()), nil
	}
	pool, err := s.caPool()
	if err != nil {
		return nil, err
	}
	pair, err := newKeyPair(s.CertFile, s.KeyFile, s.Logger)
	if err != nil {
		return nil, err
	}
	cfg := &tls.Config{
		// Every peer is Go (Ferry's processes, ferryctl, grpcurl).
		MinVersion:     tls.VersionTLS13,
		ClientCAs:      pool,
		ClientAuth:     tls.RequireAndVerifyClientCert,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return pair.get() },
	}
	if auth == VerifyClientCertIfGiven {
		cfg.ClientAuth = tls.VerifyClientCertIfGiven
	} else {
		cfg.VerifyConnection = s.peerCheck(pair)
	}
	return grpc.Creds(credentials.NewTLS(cfg)), nil
}

// peerCheck refuses a client whose certificate, though the CA signed it,
// carries none of the peer names: only Ferry's own processes may stream
// rows or confirm positions.
func (s Settings) peerCheck(pair *keyPair) func(tls.ConnectionState) error {
	listed := splitNames(s.PeerNames)
	return func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 {
			return errors.New("no client certificate")
		}
		allowed := listed
		if len(allowed) == 0 {
			own, err := pair.get()
			if err != nil || own.Leaf == nil {
				return fmt.Errorf("reading this process's own certificate names: %w", cmp.Or(err, errors.New("it has no parsed leaf")))
			}
			allowed = certNames(own.Leaf)
		}
		peer := cs.PeerCertificates[0]
		for _, n := range certNames(peer) {
			if slices.Contains(allowed, n) {
				return nil
			}
		}
		return fmt.Errorf("client certificate %q carries none of the names %v that Ferry's processes use (-peer-names)", peer.Subject.CommonName, allowed)
	}
}

// certNames are a certificate's common name and DNS names.
func certNames(c *x509.Certificate) []string {
	names := slices.Clone(c.DNSNames)
	if c.Subject.CommonName != "" {
		names = append(names, c.Subject.CommonName)
	}
	return names
}

func splitNames(list string) []string {
	var out []string
	for _, n := range strings.Split(list, ",") {
		if n = strings.TrimSpace(n); n != "" {
			out = append(out, n)
		}
	}
	return out
}

// DialOption returns the credentials one of Ferry's processes dials addr
// with: its certificate, checked by the server, and the server's checked.
func (s Settings) DialOption(addr string) (grpc.DialOption, error) {
	if err := s.Validate(); err != nil {
		return nil, err
	}
	return s.dial(addr)
}

// ClientOption is DialOption for a client of the control API, which may
// hold no certificate of its own (it sends a token instead): -tls-ca
// alone checks the server.
func (s Settings) ClientOption(addr string) (grpc.DialOption, error) {
	switch {
	case s.Insecure || s.CertFile != "" || s.KeyFile != "":
		return s.DialOption(addr)
	case s.CAFile == "":
		return nil, fmt.Errorf("no transport security: set -tls-ca (FERRY_TLS_CA) to check the server, " +
			"with -tls-cert and -tls-key to present a certificate, or -insecure for plaintext")
	}
	return s.dial(addr)
}

func (s Settings) dial(addr string) (grpc.DialOption, error) {
	if s.Insecure {
		return grpc.WithTransportCredentials(insecure.NewCredentials()), nil
	}
	pool, err := s.caPool()
	if err != nil {
		return nil, err
	}
	// An empty ServerName lets gRPC check each address's own name: the
	// target's host, or each static address's (fleet).
	cfg := &tls.Config{MinVersion: tls.VersionTLS13, RootCAs: pool, ServerName: s.ServerName}
	if s.CertFile != "" {
		pair, err := newKeyPair(s.CertFile, s.KeyFile, s.Logger)
		if err != nil {
			return nil, err
		}
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return pair.get() }
	}
	return grpc.WithTransportCredentials(credentials.NewTLS(cfg)), nil
}

func (s Settings) caPool() (*x509.CertPool, error) {
	pem, err := os.ReadFile(s.CAFile)
	if err != nil {
		return nil, fmt.Errorf("reading -tls-ca %s: %w", s.CAFile, err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("-tls-ca %s holds no PEM certificate", s.CAFile)
	}
	return pool, nil
}

// HostOf is the host a certificate must name for target: a target such as
// dns:///capture.ferry.svc:7402 names it after the last slash, and a list
// (static:///a:1,b:2) by its first address.
func HostOf(target string) string {
	if i := strings.LastIndexByte(target, '/'); i >= 0 {
		target = target[i+1:]
	}
	target, _, _ = strings.Cut(target, ",")
	if host, _, err := net.SplitHostPort(target); err == nil {
		return host
	}
	return target
}

// FromEnv is what the flags default to: the settings the environment
// gives, for test harnesses and tools that start or call Ferry's processes.
func FromEnv() Settings {
	var s Settings
	s.Register(flag.NewFlagSet("env", flag.ContinueOnError))
	return s
}
