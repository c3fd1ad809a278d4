// Package testenv points integration tests at the local stack that
// deploy/local/stack.sh starts. A missing service fails the test with what to
// run. The one skip is the fast tier: under -short every helper here that
// reaches a real service (or starts one) skips its test, so `go test -short`
// needs no stack; without -short nothing skips, so CI cannot pass without
// exercising real services.
package testenv

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	taskv1 "github.com/ferry-cdc/ferry/gen/ferry/task/v1"
	"github.com/ferry-cdc/ferry/platform/config"
	"github.com/ferry-cdc/ferry/services/internal/pgsource"
)

const hint = "start the local stack with `make up` (or run the suite with `make test`)"

// RepoRoot is the repository's top folder, found from this file's location.
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// Integration marks t as needing real services (the local stack, a private
// PostgreSQL or Kafka, a JVM): it skips t under -short, and does nothing
// otherwise, so that without -short a missing service still fails the test.
// Under CI=true nothing is skipped: -short there fails the test, since CI
// must prove every test ran (make test-short runs the fast tier with CI
// unset). The helpers below call it; a test that reaches a service another
// way calls it first.
func Integration(t testing.TB) {
	t.Helper()
	if !testing.Short() {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("CI=true runs every test on real services and skips none; run the fast tier with CI unset (make test-short)")
	}
	t.Skip("needs real services; the -short tier skips it (make test runs it)")
}

// Source is the local PostgreSQL as the non-superuser role "ferry", which has
// REPLICATION and owns the database "ferry".
func Source(t testing.TB) *taskv1.SourceEndpoint {
	t.Helper()
	Integration(t)
	port, _ := strconv.Atoi(config.Env("FERRY_PG_PORT", "55432"))
	return &taskv1.SourceEndpoint{
		Host:     config.Env("FERRY_PG_HOST", "127.0.0.1"),
		Port:     uint32(port),
		Database: config.Env("FERRY_PG_DATABASE", "ferry"),
		User:     config.Env("FERRY_PG_USER", "ferry"),
		Password: &taskv1.SecretRef{Source: &taskv1.SecretRef_File{
			File: config.Env("FERRY_PG_PASSWORD_FILE", filepath.Join(RepoRoot(), ".local", "secrets", "pg-password")),
		}},
	}
}

// KafkaBootstrap is the local Apache Kafka broker.
func KafkaBootstrap(t testing.TB) string {
	t.Helper()
	Integration(t)
	return config.Env("FERRY_KAFKA_BOOTSTRAP", "127.0.0.1:59092")
}

// TemporalAddress is the local Temporal dev server.
func TemporalAddress(t testing.TB) string {
	t.Helper()
	Integration(t)
	return config.Env("FERRY_TEMPORAL_ADDRESS", "127.0.0.1:7233")
}

// PG connects to the local PostgreSQL or fails the test.
func PG(t testing.TB) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgsource.Connect(ctx, Source(t))
	if err != nil {
		t.Fatalf("PostgreSQL is required: %v; %s", err, hint)
	}
	t.Cleanup(func() { _ = conn.Close(context.Background()) })
	return conn
}

// Exec runs statements on conn, failing the test on the first error.
func Exec(t testing.TB, conn *pgx.Conn, stmts ...string) {
	t.Helper()
	for _, s := range stmts {
		if _, err := conn.Exec(context.Background(), s); err != nil {
			t.Fatalf("exec %q: %v", s, err)
		}
	}
}

// UniqueName is a lower-case identifier unique to this test run, safe for
// tables, slots, publications and topics.
func UniqueName(prefix string) string {
	return fmt.Sprintf("%s_%d_%d", prefix, os.Getpid(), time.Now().UnixNano()%1e9)
}

// SchemaRegistryURL is the local Apicurio Registry's Confluent-compatible API.
func SchemaRegistryURL(t testing.TB) string {
	t.Helper()
	Integration(t)
	return config.Env("FERRY_SCHEMA_REGISTRY_URL", "http://127.0.0.1:58081/apis/ccompat/v7")
}

// KafkaSecured is the local broker's listener for sec, with its SCRAM user,
// password file and CA as deploy/local/stack.sh makes them: SCRAM on
// 59094, TLS on 59095, SCRAM over TLS on 59096.
func KafkaSecured(t testing.TB, sec taskv1.KafkaSecurity) *taskv1.KafkaEndpoint {
	t.Helper()
	Integration(t)
	local := filepath.Join(RepoRoot(), ".local")
	bits := "256"
	if strings.HasSuffix(sec.String(), "512") {
		bits = "512"
	}
	user := config.Env("FERRY_KAFKA_SCRAM"+bits+"_USER", "ferry-scram"+bits)
	ep := &taskv1.KafkaEndpoint{Security: sec, SaslUser: user, SaslPassword: &taskv1.SecretRef{Source: &taskv1.SecretRef_File{
		File: config.Env("FERRY_KAFKA_SCRAM"+bits+"_PASSWORD_FILE", filepath.Join(local, "secrets", "kafka-"+user+"-password")),
	}}}
	ca := &taskv1.SecretRef{Source: &taskv1.SecretRef_File{
		File: config.Env("FERRY_KAFKA_TLS_CA_FILE", filepath.Join(local, "kafka", "tls", "ca.pem")),
	}}
	switch sec {
	case taskv1.KafkaSecurity_KAFKA_SECURITY_TLS:
		ep.BootstrapServers, ep.SaslUser, ep.SaslPassword, ep.TlsCa = config.Env("FERRY_KAFKA_TLS_BOOTSTRAP", "127.0.0.1:59095"), "", nil, ca
	case taskv1.KafkaSecurity_KAFKA_SECURITY_SASL_SSL_SCRAM_SHA_256, taskv1.KafkaSecurity_KAFKA_SECURITY_SASL_SSL_SCRAM_SHA_512:
		ep.BootstrapServers, ep.TlsCa = config.Env("FERRY_KAFKA_SASL_SSL_BOOTSTRAP", "127.0.0.1:59096"), ca
	default:
		ep.BootstrapServers = config.Env("FERRY_KAFKA_SASL_BOOTSTRAP", "127.0.0.1:59094")
	}
	return ep
}
