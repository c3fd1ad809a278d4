package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	taskv1 "github.com/ferry-cdc/ferry/gen/ferry/task/v1"
	"github.com/ferry-cdc/ferry/platform/grpccodec"
	"github.com/ferry-cdc/ferry/services/testenv"
)

// TestProcessesSpeakOnlyMutualTLS starts Ferry as the stack configures it
// and knocks on every port the way an intruder on the network would:
// plaintext, and TLS without a certificate. The internal services refuse
// both at the handshake; the control API takes its bearer token or a
// certificate of the CA and nothing else; a process with no transport
// settings does not start.
func TestProcessesSpeakOnlyMutualTLS(t *testing.T) {
	f := startFerry(t)
	sec := testenv.FerryTransport()
	serverOnly := serverOnlyTLS(t, sec.CAFile)
	for _, name := range []string{"catalog", "capture", "delivery"} {
		for what, dial := range map[string]grpc.DialOption{
			"plaintext":                        grpc.WithTransportCredentials(insecure.NewCredentials()),
			"TLS without a client certificate": serverOnly,
		} {
			if code := healthCode(t, f.addrs[name], dial, nil); code != codes.Unavailable {
				t.Errorf("%s over %s: %v, want Unavailable (the handshake refused)", name, what, code)
			}
		}
		if code := healthCode(t, f.addrs[name], ferryDial(t, f.addrs[name]), nil); code != codes.OK {
			t.Errorf("%s with the stack's certificate: %v, want OK", name, code)
		}
	}

	control := f.addrs["control"]
	token := testenv.ControlToken()
	if token == "" {
		t.Fatalf("the control API's token (%s) is missing; %s", testenv.ControlTokenFile(), stackHint)
	}
	bearer := []string{"authorization", "Bearer " + token}
	cases := []struct {
		what string
		dial grpc.DialOption
		md   []string
		want codes.Code
	}{
		{"nothing but TLS", serverOnly, nil, codes.Unauthenticated},
		{"a wrong token", serverOnly, []string{"authorization", "Bearer not-the-token-of-this-stack"}, codes.Unauthenticated},
		{"the token", serverOnly, bearer, codes.OK},
		{"a certificate of the CA", ferryDial(t, control), nil, codes.OK},
		{"the token over plaintext", grpc.WithTransportCredentials(insecure.NewCredentials()), bearer, codes.Unavailable},
	}
	for _, c := range cases {
		if code := listTasksCode(t, control, c.dial, c.md); code != c.want {
			t.Errorf("control API with %s: %v, want %v", c.what, code, c.want)
		}
	}
	if code := healthCode(t, control, serverOnly, nil); code != codes.OK {
		t.Errorf("control's health check with no credentials (probes carry none): %v, want OK", code)
	}
	checkRefusesToStartWithoutTransport(t)
}

func serverOnlyTLS(t *testing.T, caFile string) grpc.DialOption {
	t.Helper()
	pem, err := os.ReadFile(caFile)
	if err != nil {
		t.Fatalf("the stack's CA (FERRY_TLS_CA): %v; %s", err, stackHint)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	return grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}))
}

func healthCode(t *testing.T, addr string, dial grpc.DialOption, md []string) codes.Code {
	t.Helper()
	conn := dialFor(t, addr, dial)
	ctx, cancel := context.WithTimeout(metadata.AppendToOutgoingContext(context.Background(), md...), 5*time.Second)
	defer cancel()
	_, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
	return status.Code(err)
}

func listTasksCode(t *testing.T, addr string, dial grpc.DialOption, md []string) codes.Code {
	t.Helper()
	conn := dialFor(t, addr, dial)
	ctx, cancel := context.WithTimeout(metadata.AppendToOutgoingContext(context.Background(), md...), 10*time.Second)
	defer cancel()
	_, err := taskv1.NewTaskServiceClient(conn).ListTasks(ctx, &taskv1.ListTasksRequest{})
	return status.Code(err)
}

func dialFor(t *testing.T, addr string, dial grpc.DialOption) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(addr, dial, grpccodec.DialOption())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

// checkRefusesToStartWithoutTransport starts capture with neither
// certificates nor -insecure: it must exit at once, naming both ways out.
func checkRefusesToStartWithoutTransport(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(binDir, "capture"), "-listen", "127.0.0.1:0", "-metrics-addr", "")
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "FERRY_TLS_") && !strings.HasPrefix(kv, "FERRY_INSECURE=") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if ctx.Err() != nil || err == nil {
		t.Fatalf("capture without transport settings: %v (deadline: %v), want it to exit with an error; output: %s", err, ctx.Err(), out.String())
	}
	for _, want := range []string{"-tls-cert", "-insecure", "FERRY_TLS_CERT"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("capture's refusal does not name %s: %s", want, out.String())
		}
	}
}
