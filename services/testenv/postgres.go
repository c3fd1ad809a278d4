package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	taskv1 "github.com/ferry-cdc/ferry/gen/ferry/task/v1"
	"github.com/ferry-cdc/ferry/platform/config"
	"github.com/ferry-cdc/ferry/services/internal/pgsource"
)

// Postgres is a PostgreSQL cluster private to one test (15 unless
// StartPostgresVersion asked for another major), set up as
// deploy/local/stack.sh sets up the shared one (wal_level=logical, a role
// "ferry" with REPLICATION and a password that owns database "ferry"). Unlike
// the shared server it may be stopped, restarted and reconfigured, to test
// faults.
type Postgres struct {
	t        testing.TB
	bin      string
	dir      string // the data directory
	port     int
	pwFile   string
	settings map[string]string
	running  bool
	// Major is the server's major version (12 to 17).
	Major int
	// InitTime is how long initdb took; StartTime how long the last start
	// took until the server accepted connections.
	InitTime, StartTime time.Duration
}

// pgStartTimeout bounds pg_ctl start; start-up takes well under a second,
// but crash recovery after an immediate stop can take longer.
const pgStartTimeout = 60

// pgInstallHint is what to do when the binaries are missing.
const pgInstallHint = "install the PostgreSQL 15 server binaries (apt-get install postgresql-15) or set FERRY_PG_BIN to their folder; other majors come from `deploy/local/stack.sh pg-bin MAJOR`"

// StartPostgres creates and starts a private PostgreSQL 15 cluster (Debian's,
// or FERRY_PG_BIN) in t.TempDir() on a free loopback port; t.Cleanup stops
// it. Missing binaries fail the test.
func StartPostgres(t testing.TB) *Postgres {
	t.Helper()
	p := startPostgres(t, config.Env("FERRY_PG_BIN", "/usr/lib/postgresql/15/bin"))
	if m, err := strconv.Atoi(os.Getenv("FERRY_PG_MAJOR")); err == nil {
		p.Major = m
	}
	return p
}

// SupportedMajors are the PostgreSQL majors Ferry supports and tests.
var SupportedMajors = []int{12, 13, 14, 15, 16, 17}

// StartPostgresVersion is StartPostgres for another supported major (12 to
// 17): its binaries come from `deploy/local/stack.sh pg-bin MAJOR`, which
// fetches them from Maven Central once and caches them, unless
// FERRY_PG<MAJOR>_BIN names a folder.
func StartPostgresVersion(t testing.TB, major int) *Postgres {
	t.Helper()
	Integration(t)
	if major == 15 {
		return StartPostgres(t)
	}
	bin, err := PostgresBin(major)
	if err != nil {
		t.Fatalf("PostgreSQL %d is required: %v", major, err)
	}
	p := startPostgres(t, bin)
	p.Major = major
	return p
}

// PostgresBin is the folder of PostgreSQL major's server binaries.
func PostgresBin(major int) (string, error) {
	if bin := os.Getenv(fmt.Sprintf("FERRY_PG%d_BIN", major)); bin != "" {
		return bin, nil
	}
	if major == 15 {
		return config.Env("FERRY_PG_BIN", "/usr/lib/postgresql/15/bin"), nil
	}
	cmd := exec.Command(filepath.Join(RepoRoot(), "deploy", "local", "stack.sh"), "pg-bin", fmt.Sprint(major))
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("deploy/local/stack.sh pg-bin %d: %w: %s", major, err, strings.TrimSpace(stderr.String()))
	}
	return strings.TrimSpace(string(out)), nil
}

func startPostgres(t testing.TB, bin string) *Postgres {
	t.Helper()
	Integration(t)
	for _, b := range []string{"initdb", "pg_ctl", "postgres"} {
		if _, err := os.Stat(filepath.Join(bin, b)); err != nil {
			t.Fatalf("a private PostgreSQL needs %s: %v; %s", filepath.Join(bin, b), err, pgInstallHint)
		}
	}
	p := &Postgres{t: t, bin: bin, port: freePort(t), settings: map[string]string{}, Major: 15}
	root := t.TempDir()
	p.dir, p.pwFile = filepath.Join(root, "data"), filepath.Join(root, "ferry-password")
	if err := p.initdb(root); err != nil {
		t.Fatalf("creating a private PostgreSQL in %s: %v", p.dir, err)
	}
	t.Cleanup(p.kill)
	p.Start()
	if err := p.bootstrap(); err != nil {
		t.Fatalf("creating role and database ferry in the private PostgreSQL: %v; log:\n%s", err, p.logTail())
	}
	return p
}

// initdb creates the cluster as stack.sh's pg_init does: owned by the
// postgres user when run as root (initdb refuses root), local trust, and
// scram-sha-256 over TCP except for the superuser, whom tests use freely.
func (p *Postgres) initdb(root string) error {
	if err := p.ownByPostgres(root); err != nil {
		return err
	}
	password := make([]byte, 12)
	_, _ = rand.Read(password)
	if err := os.WriteFile(p.pwFile, []byte(hex.EncodeToString(password)+"\n"), 0o600); err != nil {
		return err
	}
	begun := time.Now()
	// --no-sync: the cluster is thrown away; fsync stays on while it runs,
	// since tests check what survives a restart.
	if out, err := p.run(filepath.Join(p.bin, "initdb"), "-D", p.dir, "-U", "postgres", "-E", "UTF8",
		"--locale=C.UTF-8", "--auth-local=trust", "--auth-host=scram-sha-256", "--no-sync"); err != nil {
		return fmt.Errorf("initdb: %w: %s", err, out)
	}
	p.InitTime = time.Since(begun)
	hba := "local all all trust\nhost all postgres 127.0.0.1/32 trust\nhost all all 127.0.0.1/32 scram-sha-256\n"
	if err := p.writeOwned(filepath.Join(p.dir, "pg_hba.conf"), hba); err != nil {
		return err
	}
	if err := appendFile(filepath.Join(p.dir, "postgresql.conf"), "include_if_exists = 'ferry.conf'\n"); err != nil {
		return err
	}
	return p.writeConf()
}

// ownByPostgres lets the postgres user, as whom the server runs under root,
// reach and own root (t.TempDir() is private to the test's user).
func (p *Postgres) ownByPostgres(root string) error {
	if os.Geteuid() != 0 {
		return nil
	}
	for d := root; d != filepath.Dir(d) && strings.HasPrefix(d, os.TempDir()) && d != os.TempDir(); d = filepath.Dir(d) {
		if err := os.Chmod(d, 0o711); err != nil {
			return err
		}
	}
	return p.chown(root)
}

func (p *Postgres) chown(path string) error {
	if os.Geteuid() != 0 {
		return nil
	}
	if out, err := exec.Command("chown", "postgres:postgres", path).CombinedOutput(); err != nil {
		return fmt.Errorf("chown postgres %s: %w: %s", path, err, out)
	}
	return nil
}

// run runs a PostgreSQL binary as the cluster's owner.
func (p *Postgres) run(name string, args ...string) ([]byte, error) {
	cmd := exec.Command(name, args...)
	if os.Geteuid() == 0 {
		cmd = exec.Command("runuser", append([]string{"-u", "postgres", "--", name}, args...)...)
	}
	return cmd.CombinedOutput()
}

func (p *Postgres) writeOwned(path, content string) error {
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		return err
	}
	return p.chown(path)
}

func appendFile(path, line string) error {
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	_, err = f.WriteString(line)
	return errors.Join(err, f.Close())
}

// writeConf mirrors stack.sh's pg_write_conf, then applies the test's
// settings. Unix sockets are off: t.TempDir() paths can exceed their limit.
func (p *Postgres) writeConf() error {
	conf := map[string]string{
		"listen_addresses": "'127.0.0.1'", "port": fmt.Sprint(p.port), "unix_socket_directories": "''",
		"wal_level": "logical", "max_replication_slots": "20", "max_wal_senders": "20", "fsync": "on",
	}
	for k, v := range p.settings {
		conf[k] = v
	}
	keys := make([]string, 0, len(conf))
	for k := range conf {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "%s = %s\n", k, conf[k])
	}
	return p.writeOwned(filepath.Join(p.dir, "ferry.conf"), b.String())
}

// bootstrap mirrors stack.sh's pg_bootstrap.
func (p *Postgres) bootstrap() error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, p.superDSN("postgres"))
	if err != nil {
		return err
	}
	defer func() { _ = conn.Close(context.Background()) }()
	password, err := os.ReadFile(p.pwFile)
	if err != nil {
		return err
	}
	for _, sql := range []string{
		fmt.Sprintf("CREATE ROLE ferry LOGIN REPLICATION PASSWORD '%s'", strings.TrimSpace(string(password))),
		"CREATE DATABASE ferry OWNER ferry",
		"GRANT CREATE, CONNECT ON DATABASE ferry TO ferry",
	} {
		if _, err := conn.Exec(ctx, sql); err != nil {
			return fmt.Errorf("%s: %w", strings.SplitN(sql, " PASSWORD", 2)[0], err)
		}
	}
	return nil
}

func (p *Postgres) superDSN(database string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", p.port, database)
}

// Port is the server's TCP port on 127.0.0.1.
func (p *Postgres) Port() int { return p.port }

// Source is the private server as the role "ferry", like Source() for the
// shared one.
func (p *Postgres) Source() *taskv1.SourceEndpoint {
	return &taskv1.SourceEndpoint{
		Host: "127.0.0.1", Port: uint32(p.port), Database: "ferry", User: "ferry",
		Password: &taskv1.SecretRef{Source: &taskv1.SecretRef_File{File: p.pwFile}},
	}
}

// Conn connects as "ferry" to database "ferry"; t.Cleanup closes it.
func (p *Postgres) Conn(t testing.TB) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgsource.Connect(ctx, p.Source())
	if err != nil {
		t.Fatalf("connecting to the private PostgreSQL as ferry: %v", err)
	}
	t.Cleanup(func() { _ = conn.Close(context.Background()) })
	return conn
}

// SuperConn connects as the superuser to database "ferry"; t.Cleanup closes it.
func (p *Postgres) SuperConn(t testing.TB) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, p.superDSN("ferry"))
	if err != nil {
		t.Fatalf("connecting to the private PostgreSQL as postgres: %v", err)
	}
	t.Cleanup(func() { _ = conn.Close(context.Background()) })
	return conn
}

// Start starts the server on its data directory and waits until it accepts
// connections, failing the test otherwise.
func (p *Postgres) Start() {
	p.t.Helper()
	if err := p.TryStart(); err != nil {
		p.t.Fatal(err)
	}
}

// TryStart starts the server and returns why it did not come up, with the
// end of its log, for tests that expect a start to fail.
func (p *Postgres) TryStart() error {
	begun := time.Now()
	out, err := p.run(filepath.Join(p.bin, "pg_ctl"), "-D", p.dir, "-l", p.logPath(), "-w",
		"-t", fmt.Sprint(pgStartTimeout), "start")
	if err != nil {
		return fmt.Errorf("starting the private PostgreSQL in %s: %w: %s; log:\n%s", p.dir, err, out, p.logTail())
	}
	p.running = true
	p.StartTime = time.Since(begun)
	return nil
}

// Stop shuts the server down cleanly (fast mode: sessions are ended, a
// shutdown checkpoint is written), as an administrator's restart does.
// PostgreSQL waits for every walsender's client to confirm all WAL sent, so
// a logical stream with unacknowledged changes holds the shutdown up.
func (p *Postgres) Stop() {
	p.t.Helper()
	if err := p.TryStop(pgStartTimeout * time.Second); err != nil {
		p.t.Fatal(err)
	}
}

// TryStop is Stop, giving up after timeout (whole seconds); the shutdown
// then goes on in the background.
func (p *Postgres) TryStop(timeout time.Duration) error {
	out, err := p.run(filepath.Join(p.bin, "pg_ctl"), "-D", p.dir, "-m", "fast", "-w",
		"-t", fmt.Sprint(int(max(timeout.Seconds(), 1))), "stop")
	if err != nil {
		return fmt.Errorf("stopping the private PostgreSQL: %w: %s; log:\n%s", err, out, p.logTail())
	}
	p.running = false
	return nil
}

// Crash stops the server at once (immediate mode: no checkpoint, crash
// recovery on the next start), as a power loss or a killed postmaster does.
func (p *Postgres) Crash() {
	p.t.Helper()
	if out, err := p.run(filepath.Join(p.bin, "pg_ctl"), "-D", p.dir, "-m", "immediate", "-w", "stop"); err != nil {
		p.t.Fatalf("crashing the private PostgreSQL: %v: %s; log:\n%s", err, out, p.logTail())
	}
	p.running = false
}

// Configure sets "name=value" settings for the next start, e.g.
// "wal_level=replica"; they replace earlier values of the same settings.
func (p *Postgres) Configure(settings ...string) {
	p.t.Helper()
	for _, s := range settings {
		name, value, ok := strings.Cut(s, "=")
		if !ok {
			p.t.Fatalf("setting %q is not name=value", s)
		}
		p.settings[strings.TrimSpace(name)] = strings.TrimSpace(value)
	}
	if err := p.writeConf(); err != nil {
		p.t.Fatalf("writing the private PostgreSQL's settings: %v", err)
	}
}

// Restart stops the server, applies settings (see Configure) and starts it.
func (p *Postgres) Restart(settings ...string) {
	p.t.Helper()
	p.Stop()
	p.Configure(settings...)
	p.Start()
}

// kill ends a server still running when the test ends; immediate mode,
// since its data is thrown away.
func (p *Postgres) kill() {
	if _, err := os.Stat(filepath.Join(p.dir, "postmaster.pid")); err != nil && !p.running {
		return
	}
	if out, err := p.run(filepath.Join(p.bin, "pg_ctl"), "-D", p.dir, "-m", "immediate", "-w", "stop"); err != nil && p.running {
		p.t.Errorf("stopping the private PostgreSQL: %v: %s", err, out)
	}
}

func (p *Postgres) logPath() string { return filepath.Join(filepath.Dir(p.dir), "postgres.log") }

// Log is the server's log so far.
func (p *Postgres) Log() string {
	b, _ := os.ReadFile(p.logPath())
	return string(b)
}

func (p *Postgres) logTail() string {
	lines := strings.Split(strings.TrimRight(p.Log(), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-20):], "\n")
}

// AsShared points the settings that name the shared server (FERRY_PG_*)
// at this one until t ends, so that tests written for the shared server
// run unchanged on this server's version; the private servers they start
// (StartPostgres) are of this version too. t must not be parallel.
func (p *Postgres) AsShared(t *testing.T) {
	t.Helper()
	t.Setenv("FERRY_PG_BIN", p.bin)
	t.Setenv("FERRY_PG_MAJOR", fmt.Sprint(p.Major))
	t.Setenv("FERRY_PG_HOST", "127.0.0.1")
	t.Setenv("FERRY_PG_PORT", fmt.Sprint(p.port))
	t.Setenv("FERRY_PG_DATABASE", "ferry")
	t.Setenv("FERRY_PG_USER", "ferry")
	t.Setenv("FERRY_PG_PASSWORD_FILE", p.pwFile)
	t.Setenv("FERRY_PG_DSN", p.superDSN("ferry"))
	// The private server trusts its superuser over TCP.
	t.Setenv("FERRY_PG_SUPERUSER_PASSWORD", "postgres")
}

// NewStandby makes a streaming standby of p, a PostgreSQL 17 or later for
// slot synchronization, and starts it; t.Cleanup stops it. The standby
// streams through a physical slot on p named slot, with
// hot_standby_feedback and, from PostgreSQL 17 on, sync_replication_slots,
// so p's failover slots are synchronized to it. p restarts on the way: the
// cached binaries have no pg_basebackup (and Debian's refuses newer
// servers), so the standby is a copy of p's data directory taken while p
// is cleanly stopped. p's synchronized_standby_slots is left to the test.
func (p *Postgres) NewStandby(t testing.TB, slot string) *Postgres {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, p.superDSN("postgres"))
	if err != nil {
		t.Fatalf("connecting to the primary: %v", err)
	}
	_, err = conn.Exec(ctx, "SELECT pg_create_physical_replication_slot($1, true)", slot)
	_ = conn.Close(ctx)
	if err != nil {
		t.Fatalf("creating physical slot %s for the standby: %v", slot, err)
	}
	if err := appendFile(filepath.Join(p.dir, "pg_hba.conf"), "host replication postgres 127.0.0.1/32 trust\n"); err != nil {
		t.Fatal(err)
	}
	p.Stop()
	s := &Postgres{t: t, bin: p.bin, port: freePort(t), pwFile: p.pwFile, settings: map[string]string{}, Major: p.Major}
	root := t.TempDir()
	s.dir = filepath.Join(root, "data")
	if err := s.cloneFrom(root, p.dir); err != nil {
		t.Fatalf("copying the primary's data directory: %v", err)
	}
	p.Start()
	for k, v := range p.settings {
		s.settings[k] = v
	}
	s.settings["primary_conninfo"] = fmt.Sprintf("'host=127.0.0.1 port=%d user=postgres dbname=ferry application_name=%s'", p.port, slot)
	s.settings["primary_slot_name"] = "'" + slot + "'"
	s.settings["hot_standby_feedback"] = "on"
	// A standby waits for no other standby; a promoted one must not wait
	// for the old primary's slot list either.
	s.settings["synchronized_standby_slots"] = "''"
	if s.Major >= 17 {
		s.settings["sync_replication_slots"] = "on"
	}
	if err := s.writeConf(); err != nil {
		t.Fatal(err)
	}
	if err := s.writeOwned(filepath.Join(s.dir, "standby.signal"), ""); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.kill)
	s.Start()
	return s
}

// cloneFrom copies a stopped cluster's data directory into root/data,
// leaving out what pg_basebackup leaves out: the primary's slots and
// its pid file.
func (s *Postgres) cloneFrom(root, from string) error {
	if err := s.ownByPostgres(root); err != nil {
		return err
	}
	if out, err := exec.Command("cp", "-a", from, s.dir).CombinedOutput(); err != nil {
		return fmt.Errorf("cp -a %s %s: %w: %s", from, s.dir, err, out)
	}
	slots, err := filepath.Glob(filepath.Join(s.dir, "pg_replslot", "*"))
	if err != nil {
		return err
	}
	for _, path := range append(slots, filepath.Join(s.dir, "postmaster.pid")) {
		if err := os.RemoveAll(path); err != nil {
			return err
		}
	}
	return nil
}

// Promote ends the standby's recovery and waits until it accepts writes.
func (p *Postgres) Promote() {
	p.t.Helper()
	if out, err := p.run(filepath.Join(p.bin, "pg_ctl"), "-D", p.dir, "-w", "-t", fmt.Sprint(pgStartTimeout), "promote"); err != nil {
		p.t.Fatalf("promoting the standby: %v: %s; log:\n%s", err, out, p.logTail())
	}
}
