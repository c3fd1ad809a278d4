package grpcsec

import (
	"context"
	"crypto/subtle"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"os"
	"slices"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/ferry-cdc/ferry/platform/config"
)

// AuthSettings say who may call the control API: the holder of a bearer
// token, or a client certificate of the CA (optionally only some names).
type AuthSettings struct {
	TokenFile string
	// ClientNames limits the client certificates accepted to those whose
	// common name or a DNS name is listed; empty accepts any of the CA.
	ClientNames string
}

// Register adds -token-file and -client-names, defaulting to
// FERRY_CONTROL_TOKEN_FILE and FERRY_CONTROL_CLIENT_NAMES.
func (a *AuthSettings) Register(fs *flag.FlagSet) {
	fs.StringVar(&a.TokenFile, "token-file", config.Env("FERRY_CONTROL_TOKEN_FILE", ""),
		"file holding the bearer token callers send as 'authorization: Bearer <token>' (env FERRY_CONTROL_TOKEN_FILE); empty: client certificates only")
	fs.StringVar(&a.ClientNames, "client-names", config.Env("FERRY_CONTROL_CLIENT_NAMES", ""),
		"comma-separated certificate names (common name or DNS name) allowed to call; empty: any certificate the -tls-ca signed (env FERRY_CONTROL_CLIENT_NAMES)")
}

// Authenticator checks each call's credentials. Health checks pass
// without any, since probes carry none.
type Authenticator struct {
	token []byte
	names []string
	// open is plaintext with no token: anyone who reaches the port may
	// call, which -insecure asked for.
	open bool
}

// NewAuthenticator reads the token once; a rotated token takes a restart.
func NewAuthenticator(a AuthSettings, transport Settings) (*Authenticator, error) {
	auth := &Authenticator{}
	for _, n := range strings.Split(a.ClientNames, ",") {
		if n = strings.TrimSpace(n); n != "" {
			auth.names = append(auth.names, n)
		}
	}
	if a.TokenFile != "" {
		b, err := os.ReadFile(a.TokenFile)
		if err != nil {
			return nil, fmt.Errorf("reading -token-file %s: %w", a.TokenFile, err)
		}
		if auth.token = []byte(strings.TrimSpace(string(b))); len(auth.token) < 16 {
			return nil, fmt.Errorf("-token-file %s holds %d characters; use a random token of at least 16 (for example: openssl rand -hex 32)", a.TokenFile, len(auth.token))
		}
	}
	if transport.Insecure && len(auth.names) > 0 {
		return nil, errors.New("-client-names needs TLS, which -insecure turns off: drop -insecure, or use -token-file instead")
	}
	auth.open = transport.Insecure && auth.token == nil
	return auth, nil
}

// Open reports whether every caller is let in (plaintext, no token).
func (a *Authenticator) Open() bool { return a.open }

// ServerOptions are the interceptors that enforce the check.
func (a *Authenticator) ServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.ChainUnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			if err := a.check(ctx, info.FullMethod); err != nil {
				return nil, err
			}
			return h(ctx, req)
		}),
		grpc.ChainStreamInterceptor(func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
			if err := a.check(ss.Context(), info.FullMethod); err != nil {
				return err
			}
			return h(srv, ss)
		}),
	}
}

func (a *Authenticator) check(ctx context.Context, method string) error {
	if a.open || strings.HasPrefix(method, "/grpc.health.v1.Health/") {
		return nil
	}
	if leaf := verifiedClient(ctx); leaf != nil {
		if a.allowed(leaf) {
			return nil
		}
		return status.Errorf(codes.PermissionDenied, "control API: the client certificate %q is not in -client-names", leaf.Subject.CommonName)
	}
	if a.token != nil && a.tokenMatches(ctx) {
		return nil
	}
	how := "a client certificate signed by -tls-ca"
	if a.token != nil {
		how = "'authorization: Bearer <token>' with the token of -token-file, or " + how
	}
	return status.Error(codes.Unauthenticated, "control API: send "+how)
}

func (a *Authenticator) tokenMatches(ctx context.Context) bool {
	md, _ := metadata.FromIncomingContext(ctx)
	for _, v := range md.Get("authorization") {
		// The scheme is case-insensitive (RFC 9110, 11.1).
		scheme, got, ok := strings.Cut(v, " ")
		if ok && strings.EqualFold(scheme, "Bearer") && subtle.ConstantTimeCompare([]byte(strings.TrimSpace(got)), a.token) == 1 {
			return true
		}
	}
	return false
}

func (a *Authenticator) allowed(leaf *x509.Certificate) bool {
	if len(a.names) == 0 {
		return true
	}
	if slices.Contains(a.names, leaf.Subject.CommonName) {
		return true
	}
	return slices.ContainsFunc(leaf.DNSNames, func(n string) bool { return slices.Contains(a.names, n) })
}

// verifiedClient is the caller's certificate when TLS verified it against
// the CA, else nil.
func verifiedClient(ctx context.Context) *x509.Certificate {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return nil
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(info.State.VerifiedChains) == 0 || len(info.State.VerifiedChains[0]) == 0 {
		return nil
	}
	return info.State.VerifiedChains[0][0]
}

// BearerToken is a client's per-call credential: the token in tokenFile,
// sent as 'authorization: Bearer <token>'. grpc refuses to send it over
// plaintext unless the transport is -insecure.
func BearerToken(tokenFile string, transport Settings) (grpc.DialOption, error) {
	b, err := os.ReadFile(tokenFile)
	if err != nil {
		return nil, fmt.Errorf("reading -token-file %s: %w", tokenFile, err)
	}
	return grpc.WithPerRPCCredentials(bearer{token: strings.TrimSpace(string(b)), secure: !transport.Insecure}), nil
}

type bearer struct {
	token  string
	secure bool
}

func (b bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + b.token}, nil
}

func (b bearer) RequireTransportSecurity() bool { return b.secure }
