package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	taskv1 "github.com/ferry-cdc/ferry/gen/ferry/task/v1"
)

// privatePG is a throw-away PostgreSQL of another major than the stack's,
// set up as services/testenv sets up a test's private server (wal_level
// logical, a role "ferry" with REPLICATION and a password that owns
// database "ferry"), for the scenarios that need a version the stack does
// not run. testenv itself needs a *testing.T.
type privatePG struct {
	major        int
	version      string // server_version
	bin, root    string
	port         int
	passwordFile string
}

// startPrivatePG creates and starts PostgreSQL major (binaries from
// `deploy/local/stack.sh pg-bin`, cached after the first fetch) on a free
// loopback port. fsync is off: the server is thrown away, and what is
// measured is decoding, not writing.
func startPrivatePG(ctx context.Context, repoRoot string, major int) (*privatePG, error) {
	out, err := exec.CommandContext(ctx, filepath.Join(repoRoot, "deploy", "local", "stack.sh"), "pg-bin", fmt.Sprint(major)).Output()
	if err != nil {
		return nil, fmt.Errorf("deploy/local/stack.sh pg-bin %d: %w", major, err)
	}
	p := &privatePG{major: major, bin: strings.TrimSpace(string(out))}
	if p.root, err = os.MkdirTemp("", fmt.Sprintf("ferrybench-pg%d-", major)); err != nil {
		return nil, fmt.Errorf("creating the folder of PostgreSQL %d: %w", major, err)
	}
	if p.port, err = freeTCPPort(); err != nil {
		return nil, err
	}
	if err := p.initdb(ctx); err != nil {
		p.remove()
		return nil, err
	}
	if out, err := p.run(ctx, "pg_ctl", "-D", p.data(), "-l", filepath.Join(p.root, "postgres.log"), "-w", "start"); err != nil {
		p.remove()
		return nil, fmt.Errorf("starting PostgreSQL %d: %w: %s", major, err, out)
	}
	if err := p.bootstrap(ctx); err != nil {
		p.stop()
		return nil, err
	}
	return p, nil
}

func (p *privatePG) data() string { return filepath.Join(p.root, "data") }

// run runs one of the server's programs, as the postgres user under root
// (initdb refuses root).
func (p *privatePG) run(ctx context.Context, name string, args ...string) ([]byte, error) {
	path := filepath.Join(p.bin, name)
	cmd := exec.CommandContext(ctx, path, args...)
	if os.Geteuid() == 0 {
		cmd = exec.CommandContext(ctx, "runuser", append([]string{"-u", "postgres", "--", path}, args...)...)
	}
	return cmd.CombinedOutput()
}

func (p *privatePG) initdb(ctx context.Context) error {
	if os.Geteuid() == 0 {
		if out, err := exec.CommandContext(ctx, "chown", "postgres:postgres", p.root).CombinedOutput(); err != nil {
			return fmt.Errorf("chown postgres %s: %w: %s", p.root, err, out)
		}
	}
	if out, err := p.run(ctx, "initdb", "-D", p.data(), "-U", "postgres", "-E", "UTF8", "--locale=C.UTF-8",
		"--auth-local=trust", "--auth-host=scram-sha-256", "--no-sync"); err != nil {
		return fmt.Errorf("initdb of PostgreSQL %d: %w: %s", p.major, err, out)
	}
	hba := "local all all trust\nhost all postgres 127.0.0.1/32 trust\nhost all all 127.0.0.1/32 scram-sha-256\n"
	conf := fmt.Sprintf("listen_addresses = '127.0.0.1'\nport = %d\nunix_socket_directories = ''\n"+
		"wal_level = logical\nmax_replication_slots = 20\nmax_wal_senders = 20\nfsync = off\n", p.port)
	for name, text := range map[string]string{"pg_hba.conf": hba, "postgresql.auto.conf": conf} {
		if err := os.WriteFile(filepath.Join(p.data(), name), []byte(text), 0o600); err != nil {
			return fmt.Errorf("writing %s of PostgreSQL %d: %w", name, p.major, err)
		}
	}
	if os.Geteuid() == 0 {
		if out, err := exec.CommandContext(ctx, "chown", "-R", "postgres:postgres", p.data()).CombinedOutput(); err != nil {
			return fmt.Errorf("chown postgres %s: %w: %s", p.data(), err, out)
		}
	}
	return nil
}

// bootstrap creates the role and database Ferry uses, and writes the
// role's password where a task's source endpoint refers to it.
func (p *privatePG) bootstrap(ctx context.Context) error {
	conn, err := connect(ctx, p.superDSN("postgres"))
	if err != nil {
		return err
	}
	defer func() { _ = conn.Close(context.WithoutCancel(ctx)) }()
	pw := make([]byte, 12)
	_, _ = rand.Read(pw)
	password := hex.EncodeToString(pw)
	p.passwordFile = filepath.Join(p.root, "ferry-password")
	if err := os.WriteFile(p.passwordFile, []byte(password+"\n"), 0o600); err != nil {
		return fmt.Errorf("writing the password of PostgreSQL %d: %w", p.major, err)
	}
	for _, sql := range []string{
		"CREATE ROLE ferry LOGIN REPLICATION PASSWORD '" + password + "'",
		"CREATE DATABASE ferry OWNER ferry",
	} {
		if _, err := conn.Exec(ctx, sql); err != nil {
			return fmt.Errorf("setting up PostgreSQL %d: %w", p.major, err)
		}
	}
	return conn.QueryRow(ctx, "SHOW server_version").Scan(&p.version)
}

func (p *privatePG) superDSN(database string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", p.port, database)
}

// connectFerry connects as the role "ferry" to its database.
func (p *privatePG) connectFerry(ctx context.Context) (*pgx.Conn, error) {
	pw, err := os.ReadFile(p.passwordFile)
	if err != nil {
		return nil, fmt.Errorf("reading the password of PostgreSQL %d: %w", p.major, err)
	}
	return connect(ctx, fmt.Sprintf("postgres://ferry:%s@127.0.0.1:%d/ferry?sslmode=disable", strings.TrimSpace(string(pw)), p.port))
}

func (p *privatePG) source() *taskv1.SourceEndpoint {
	return &taskv1.SourceEndpoint{Host: "127.0.0.1", Port: uint32(p.port), Database: "ferry", User: "ferry",
		Password: &taskv1.SecretRef{Source: &taskv1.SecretRef_File{File: p.passwordFile}}}
}

// stop stops the server and deletes its folder.
func (p *privatePG) stop() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if out, err := p.run(ctx, "pg_ctl", "-D", p.data(), "-m", "immediate", "-w", "stop"); err != nil {
		fmt.Fprintf(os.Stderr, "stopping PostgreSQL %d: %v: %s\n", p.major, err, out)
	}
	p.remove()
}

func (p *privatePG) remove() { _ = os.RemoveAll(p.root) }

func freeTCPPort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("finding a free port: %w", err)
	}
	defer func() { _ = l.Close() }()
	return l.Addr().(*net.TCPAddr).Port, nil
}
