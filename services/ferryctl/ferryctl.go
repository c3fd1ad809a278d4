// Package ferryctl is Ferry's command-line client for the control API,
// ferry.task.v1.TaskService. Each command is one RPC; its answer is printed
// for a person, or as protojson for scripts.
package ferryctl

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	taskv1 "github.com/ferry-cdc/ferry/gen/ferry/task/v1"
	"github.com/ferry-cdc/ferry/platform/grpccodec"
	"github.com/ferry-cdc/ferry/platform/grpcsec"
)

// Config is what the global flags set.
type Config struct {
	// Server is the control API's host:port.
	Server string
	// Timeout bounds a whole command, every RPC it makes included.
	Timeout time.Duration
	Output  Output
	// Transport is TLS to the control API (a client certificate is
	// optional there), or -insecure.
	Transport grpcsec.Settings
	// TokenFile holds the control API's bearer token; empty: none sent.
	TokenFile string
}

// Exit codes.
const (
	ExitOK      = 0
	ExitFailure = 1
	ExitUsage   = 2
)

// session is one command's connection and output.
type session struct {
	cfg    Config
	client taskv1.TaskServiceClient
	stdout io.Writer
}

type action func(ctx context.Context, s *session, pos []string) error

type command struct {
	name    string
	args    string // the positional arguments' synopsis
	nargs   int
	summary string
	// details follow the summary in the command's own usage.
	details string
	// setup registers the command's flags and returns what runs once they
	// are parsed.
	setup func(fs *flag.FlagSet) action
}

// Run runs the command args names and returns the process's exit code. Any
// error goes to stderr as one line: the server's status code and message are
// kept whole.
func Run(ctx context.Context, cfg Config, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		_, _ = fmt.Fprintln(stderr, "ferryctl: no command given")
		WriteUsage(stderr)
		return ExitUsage
	}
	if args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		return help(args[1:], stdout, stderr)
	}
	cmd, ok := findCommand(args[0])
	if !ok {
		_, _ = fmt.Fprintf(stderr, "ferryctl: unknown command %q\n", args[0])
		WriteUsage(stderr)
		return ExitUsage
	}
	if cfg.Timeout <= 0 {
		// Every call has a deadline: a server that never answers must not
		// hang a script.
		_, _ = fmt.Fprintf(stderr, "ferryctl: --timeout must be above zero, not %s\n", cfg.Timeout)
		return ExitUsage
	}
	fs := flag.NewFlagSet(cmd.name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	act := cmd.setup(fs)
	pos, err := parseArgs(fs, args[1:])
	switch {
	case errors.Is(err, flag.ErrHelp):
		writeCommandUsage(stdout, cmd, fs)
		return ExitOK
	case err != nil:
		return usageFailure(stderr, cmd, fs, err.Error())
	case len(pos) > cmd.nargs && cmd.nargs == 0:
		return usageFailure(stderr, cmd, fs, fmt.Sprintf("unexpected argument %q", pos[0]))
	case len(pos) != cmd.nargs:
		return usageFailure(stderr, cmd, fs, fmt.Sprintf("want the task ID, got %d arguments", len(pos)))
	}
	for _, p := range pos {
		if p == "" {
			return usageFailure(stderr, cmd, fs, "an empty argument names nothing")
		}
	}
	err = runAction(ctx, cfg, act, pos, stdout)
	var ue *usageError
	switch {
	case err == nil:
		return ExitOK
	case errors.As(err, &ue):
		return usageFailure(stderr, cmd, fs, ue.msg)
	}
	_, _ = fmt.Fprintf(stderr, "ferryctl: %s: %s\n", cmd.name, oneLine(err.Error()))
	return ExitFailure
}

func runAction(ctx context.Context, cfg Config, act action, pos []string, stdout io.Writer) error {
	opts, err := dialOptions(cfg)
	if err != nil {
		return err
	}
	conn, err := grpc.NewClient(cfg.Server, opts...)
	if err != nil {
		return fmt.Errorf("control server address %q: %w", cfg.Server, err)
	}
	defer func() { _ = conn.Close() }()
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	return act(ctx, &session{cfg: cfg, client: taskv1.NewTaskServiceClient(conn), stdout: stdout}, pos)
}

// dialOptions are the control API's credentials: TLS, with the client
// certificate when the settings name one, and the token when one is set.
func dialOptions(cfg Config) ([]grpc.DialOption, error) {
	creds, err := cfg.Transport.ClientOption(cfg.Server)
	if err != nil {
		return nil, err
	}
	opts := []grpc.DialOption{creds, grpccodec.DialOption()}
	if cfg.TokenFile != "" {
		token, err := grpcsec.BearerToken(cfg.TokenFile, cfg.Transport)
		if err != nil {
			return nil, err
		}
		opts = append(opts, token)
	}
	return opts, nil
}

func usageFailure(w io.Writer, cmd command, fs *flag.FlagSet, msg string) int {
	_, _ = fmt.Fprintf(w, "ferryctl: %s: %s\n", cmd.name, oneLine(msg))
	writeCommandUsage(w, cmd, fs)
	return ExitUsage
}

func oneLine(s string) string {
	return strings.Join(strings.Fields(strings.ReplaceAll(s, "\n", " ")), " ")
}

func help(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		WriteUsage(stdout)
		return ExitOK
	}
	cmd, ok := findCommand(args[0])
	if !ok {
		_, _ = fmt.Fprintf(stderr, "ferryctl: unknown command %q\n", args[0])
		WriteUsage(stderr)
		return ExitUsage
	}
	fs := flag.NewFlagSet(cmd.name, flag.ContinueOnError)
	cmd.setup(fs)
	writeCommandUsage(stdout, cmd, fs)
	return ExitOK
}

// WriteUsage lists the commands.
func WriteUsage(w io.Writer) {
	var b bytes.Buffer
	b.WriteString("usage: ferryctl [--server host:port] [--timeout d] [--output text|json] COMMAND [ARGS]\n\ncommands:\n")
	for _, c := range commands() {
		fmt.Fprintf(&b, "  %-10s %s\n", c.name, c.summary)
	}
	b.WriteString("\nRun `ferryctl help COMMAND` for a command's flags, `ferryctl -h` for the global flags.\n")
	_, _ = w.Write(b.Bytes())
}

func writeCommandUsage(w io.Writer, cmd command, fs *flag.FlagSet) {
	var b bytes.Buffer
	fmt.Fprintf(&b, "usage: ferryctl [global flags] %s", cmd.name)
	if cmd.args != "" {
		b.WriteString(" " + cmd.args)
	}
	hasFlags := false
	fs.VisitAll(func(*flag.Flag) { hasFlags = true })
	fmt.Fprintf(&b, "\n\n%s\n", cmd.summary)
	if cmd.details != "" {
		fmt.Fprintf(&b, "%s\n", cmd.details)
	}
	if hasFlags {
		b.WriteString("\nflags:\n")
		fs.SetOutput(&b)
		fs.PrintDefaults()
		fs.SetOutput(io.Discard)
	}
	_, _ = w.Write(b.Bytes())
}

func findCommand(name string) (command, bool) {
	for _, c := range commands() {
		if c.name == name {
			return c, true
		}
	}
	return command{}, false
}

// print writes a response as protojson or, for people, with text.
func (s *session) print(m proto.Message, text func(w io.Writer) error) error {
	if s.cfg.Output == OutputJSON {
		b, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(m)
		if err != nil {
			return fmt.Errorf("encoding %s as JSON: %w", m.ProtoReflect().Descriptor().FullName(), err)
		}
		// protojson varies its spacing on purpose; re-indenting makes the
		// output the same from run to run.
		var out bytes.Buffer
		if err := json.Indent(&out, b, "", "  "); err != nil {
			return fmt.Errorf("indenting %s: %w", m.ProtoReflect().Descriptor().FullName(), err)
		}
		out.WriteByte('\n')
		_, err = s.stdout.Write(out.Bytes())
		return err
	}
	return text(s.stdout)
}

func (s *session) printf(m proto.Message, format string, args ...any) error {
	return s.print(m, func(w io.Writer) error {
		_, err := fmt.Fprintf(w, format, args...)
		return err
	})
}

// rpcError keeps the server's code and message, naming the server when it
// could not be reached.
func (s *session) rpcError(err error) error {
	st, ok := status.FromError(err)
	if !ok {
		return err
	}
	msg := fmt.Sprintf("%s: %s", st.Code(), st.Message())
	switch st.Code() {
	case codes.Unavailable:
		msg += fmt.Sprintf(" (control server %s; set --server or FERRY_CONTROL_ADDRESS)", s.cfg.Server)
	case codes.DeadlineExceeded:
		msg += fmt.Sprintf(" (after --timeout %s)", s.cfg.Timeout)
	}
	return errors.New(msg)
}
