package grpcsec

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ferry-cdc/ferry/platform/grpcsec/grpcsectest"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"
)

// testCA is grpcsectest's CA with Settings for a certificate.
type testCA struct{ *grpcsectest.CA }

func newTestCA(t *testing.T) testCA { return testCA{grpcsectest.NewCA(t)} }

func (ca testCA) issue(name string, hosts ...string) int64 { return ca.Issue(name, hosts...) }

func (ca testCA) settings(name string) Settings {
	cert, key, caFile := ca.Files(name)
	return Settings{CertFile: cert, KeyFile: key, CAFile: caFile}
}

const echoMethod = "/ferry.test.Echo/Echo"

// serve runs a server with health and one unary method on loopback.
func serve(t *testing.T, opts ...grpc.ServerOption) string {
	t.Helper()
	s := grpc.NewServer(opts...)
	healthpb.RegisterHealthServer(s, health.NewServer())
	s.RegisterService(&grpc.ServiceDesc{
		ServiceName: "ferry.test.Echo", HandlerType: (*any)(nil),
		Methods: []grpc.MethodDesc{{MethodName: "Echo", Handler: echoHandler}},
	}, struct{}{})
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = s.Serve(lis) }()
	t.Cleanup(s.Stop)
	return lis.Addr().String()
}

func echoHandler(_ any, ctx context.Context, dec func(any) error, ic grpc.UnaryServerInterceptor) (any, error) {
	in := new(emptypb.Empty)
	if err := dec(in); err != nil {
		return nil, err
	}
	if ic == nil {
		return in, nil
	}
	return ic(ctx, in, &grpc.UnaryServerInfo{FullMethod: echoMethod}, func(_ context.Context, req any) (any, error) { return req, nil })
}

// call makes one Echo call (or a health check) and returns its code.
func call(t *testing.T, addr string, dial grpc.DialOption, healthOnly bool, md ...string) codes.Code {
	t.Helper()
	conn, err := grpc.NewClient(addr, dial)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close() }()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ctx = metadata.AppendToOutgoingContext(ctx, md...)
	if healthOnly {
		_, err = healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
	} else {
		err = conn.Invoke(ctx, echoMethod, &emptypb.Empty{}, &emptypb.Empty{})
	}
	return status.Code(err)
}

func mustDial(t *testing.T, s Settings, addr string) grpc.DialOption {
	t.Helper()
	d, err := s.DialOption(addr)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func mustServe(t *testing.T, s Settings, auth ClientAuth) grpc.ServerOption {
	t.Helper()
	o, err := s.ServerOption(auth)
	if err != nil {
		t.Fatal(err)
	}
	return o
}

func TestValidateNamesTheWayOut(t *testing.T) {
	cases := []struct {
		s    Settings
		want string // "" for valid
	}{
		{Settings{}, "-insecure"},
		{Settings{Insecure: true}, ""},
		{Settings{CertFile: "c", KeyFile: "k", CAFile: "a"}, ""},
		{Settings{CertFile: "c"}, "needs [-tls-key -tls-ca]"},
		{Settings{Insecure: true, CAFile: "a"}, "choose plaintext or TLS"},
	}
	for _, c := range cases {
		err := c.s.Validate()
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%+v: %v, want valid", c.s, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%+v: %v, want an error with %q", c.s, err, c.want)
		}
	}
}

// Internal services take only Ferry's own processes: a certificate of the
// CA that carries a name of theirs. An operator's certificate from the same
// CA (for the control API) is refused, unless -peer-names lists it.
func TestMutualTLSRefusesEveryOtherClient(t *testing.T) {
	ca, other := newTestCA(t), newTestCA(t)
	ca.issue("ferry") // what every Ferry process presents
	ca.issue("operator")
	other.issue("ferry")
	addr := serve(t, mustServe(t, ca.settings("ferry"), RequireClientCert))

	if got := call(t, addr, mustDial(t, ca.settings("ferry"), addr), false); got != codes.OK {
		t.Fatalf("a Ferry process: %v, want OK", got)
	}
	pool := x509.NewCertPool()
	caPEM, _ := os.ReadFile(ca.settings("").CAFile)
	pool.AppendCertsFromPEM(caPEM)
	noCert := grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS13}))
	otherCert := other.settings("ferry")
	otherCert.CAFile = ca.settings("").CAFile
	refused := map[string]grpc.DialOption{
		"no client certificate":                noCert,
		"another CA's certificate":             mustDial(t, otherCert, addr),
		"plaintext":                            grpc.WithTransportCredentials(insecure.NewCredentials()),
		"a client trusting another CA":         mustDial(t, other.settings("ferry"), addr),
		"the CA's certificate of another name": mustDial(t, ca.settings("operator"), addr),
	}
	for what, dial := range refused {
		if got := call(t, addr, dial, true); got != codes.Unavailable {
			t.Errorf("%s: health check %v, want Unavailable (the handshake fails)", what, got)
		}
	}
	listed := ca.settings("ferry")
	listed.PeerNames = "operator, ferry"
	addr = serve(t, mustServe(t, listed, RequireClientCert))
	if got := call(t, addr, mustDial(t, ca.settings("operator"), addr), false); got != codes.OK {
		t.Errorf("a certificate -peer-names lists: %v, want OK", got)
	}
}

// The control API takes a bearer token or a client certificate; health
// checks need neither.
func TestControlAuthTokenOrCertificate(t *testing.T) {
	ca := newTestCA(t)
	ca.issue("control")
	ca.issue("ferryctl")
	ca.issue("capture")
	tokenFile := filepath.Join(ca.Dir, "token")
	if err := os.WriteFile(tokenFile, []byte("0123456789abcdef0123\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	auth, err := NewAuthenticator(AuthSettings{TokenFile: tokenFile, ClientNames: "ferryctl"}, ca.settings("control"))
	if err != nil {
		t.Fatal(err)
	}
	addr := serve(t, append(auth.ServerOptions(), mustServe(t, ca.settings("control"), VerifyClientCertIfGiven))...)
	pool := x509.NewCertPool()
	caPEM, _ := os.ReadFile(ca.settings("control").CAFile)
	pool.AppendCertsFromPEM(caPEM)
	serverOnly := grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}))

	cases := []struct {
		what   string
		dial   grpc.DialOption
		health bool
		md     []string
		want   codes.Code
	}{
		{"nothing", serverOnly, false, nil, codes.Unauthenticated},
		{"a health check with nothing", serverOnly, true, nil, codes.OK},
		{"the token", serverOnly, false, []string{"authorization", "Bearer 0123456789abcdef0123"}, codes.OK},
		{"a wrong token", serverOnly, false, []string{"authorization", "Bearer 0123456789abcdef0124"}, codes.Unauthenticated},
		{"the token, scheme in lower case", serverOnly, false, []string{"authorization", "bearer 0123456789abcdef0123"}, codes.OK},
		{"a listed certificate", mustDial(t, ca.settings("ferryctl"), addr), false, nil, codes.OK},
		{"a certificate not listed", mustDial(t, ca.settings("capture"), addr), false, nil, codes.PermissionDenied},
	}
	for _, c := range cases {
		if got := call(t, addr, c.dial, c.health, c.md...); got != c.want {
			t.Errorf("%s: %v, want %v", c.what, got, c.want)
		}
	}
}

func TestClientNamesNeedTLS(t *testing.T) {
	if _, err := NewAuthenticator(AuthSettings{ClientNames: "ferryctl"}, Settings{Insecure: true}); err == nil || !strings.Contains(err.Error(), "-insecure") {
		t.Fatalf("-client-names with -insecure: %v, want a refusal, since no certificate would be checked", err)
	}
}

func TestUnreadableInsecureSettingIsAnError(t *testing.T) {
	t.Setenv("FERRY_INSECURE", "yes please")
	if err := FromEnv().Validate(); err == nil || !strings.Contains(err.Error(), "FERRY_INSECURE") {
		t.Fatalf("FERRY_INSECURE=%q: %v, want an error naming it", "yes please", err)
	}
}

func TestShortTokenIsRefused(t *testing.T) {
	f := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(f, []byte("short"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := NewAuthenticator(AuthSettings{TokenFile: f}, Settings{Insecure: true}); err == nil || !strings.Contains(err.Error(), "at least 16") {
		t.Fatalf("a 5-character token: %v, want a refusal naming the minimum", err)
	}
}

// A certificate rewritten in place is served to the next connection.
func TestRotatedCertificateIsServed(t *testing.T) {
	ca := newTestCA(t)
	first := ca.issue("capture")
	ca.issue("worker")
	pair, err := newKeyPair(ca.settings("capture").CertFile, ca.settings("capture").KeyFile, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := servedSerial(t, pair); got != first {
		t.Fatalf("serial %d, want %d", got, first)
	}
	second := ca.issue("capture")
	future := time.Now().Add(time.Minute) // the file times must change
	for _, f := range []string{pair.certFile, pair.keyFile} {
		if err := os.Chtimes(f, future, future); err != nil {
			t.Fatal(err)
		}
	}
	pair.checked = time.Time{} // as if recheckEvery had passed
	if got := servedSerial(t, pair); got != second {
		t.Fatalf("after rotation serial %d, want %d", got, second)
	}
}

// A certificate file caught half-written keeps the last good pair served.
func TestBrokenRotationKeepsTheLastGoodCertificate(t *testing.T) {
	ca := newTestCA(t)
	first := ca.issue("capture")
	pair, err := newKeyPair(ca.settings("capture").CertFile, ca.settings("capture").KeyFile, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(pair.certFile, []byte("-----BEGIN CERTIFICATE-----\nhalf"), 0o600); err != nil {
		t.Fatal(err)
	}
	future := time.Now().Add(time.Minute)
	if err := os.Chtimes(pair.certFile, future, future); err != nil {
		t.Fatal(err)
	}
	pair.checked = time.Time{}
	if got := servedSerial(t, pair); got != first {
		t.Fatalf("after a broken rotation serial %d, want the last good %d", got, first)
	}
}

func servedSerial(t *testing.T, k *keyPair) int64 {
	t.Helper()
	c, err := k.get()
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(c.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	return leaf.SerialNumber.Int64()
}

func TestHostOf(t *testing.T) {
	for in, want := range map[string]string{
		"127.0.0.1:7402": "127.0.0.1", "dns:///capture.ferry.svc:7402": "capture.ferry.svc", "capture": "capture", "[::1]:7402": "::1",
		"static:///127.0.0.1:7402,127.0.0.1:7412": "127.0.0.1",
	} {
		if got := HostOf(in); got != want {
			t.Errorf("HostOf(%q) = %q, want %q", in, got, want)
		}
	}
}
