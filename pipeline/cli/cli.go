// Package cli implements the enflow command line: a registry of subcommands, each in its own
// file, dispatched by Main. Subcommands that produce a summary accept --json and then print
// exactly one JSON object on stdout; human-readable progress goes to stderr.
package cli

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"sort"
	"strings"
)

// Env is what a subcommand sees of the outside world.
type Env struct {
	Stdout io.Writer
	Stderr io.Writer
}

// Command is one subcommand. Name may contain a space for nested commands ("etl qm9").
type Command struct {
	Name    string
	Summary string
	// Run parses args (everything after the command name) and does the work.
	Run func(ctx context.Context, env *Env, args []string) error
}

var commands = map[string]*Command{}

// Register adds a subcommand; it is called from init functions in this package.
func Register(c *Command) {
	if _, dup := commands[c.Name]; dup {
		panic("cli: duplicate command " + c.Name)
	}
	commands[c.Name] = c
}

// ErrUsage marks an error caused by bad command-line usage (exit code 2).
var ErrUsage = errors.New("usage error")

// Main runs the command line and returns the process exit code.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	env := &Env{Stdout: stdout, Stderr: stderr}
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stderr)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	// Longest match: "etl qm9" before "etl".
	var cmd *Command
	var rest []string
	for n := min(len(args), 3); n >= 1; n-- {
		if c, ok := commands[strings.Join(args[:n], " ")]; ok {
			cmd, rest = c, args[n:]
			break
		}
	}
	if cmd == nil {
		fmt.Fprintf(stderr, "enflow: unknown command %q\n\n", strings.Join(args, " "))
		usage(stderr)
		return 2
	}
	if err := cmd.Run(ctx, env, rest); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintf(stderr, "enflow %s: %v\n", cmd.Name, err)
		if errors.Is(err, ErrUsage) {
			return 2
		}
		return 1
	}
	return 0
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "enflow: E(n) equivariant normalizing flows in Go.")
	fmt.Fprintln(w, "\nUsage: enflow <command> [flags]   (enflow <command> --help for its flags)")
	fmt.Fprintln(w, "\nCommands:")
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-22s %s\n", n, commands[n].Summary)
	}
}

// NewFlagSet returns a flag set for a subcommand whose errors are returned, not fatal.
func NewFlagSet(env *Env, name, synopsis string) *flag.FlagSet {
	fs := flag.NewFlagSet("enflow "+name, flag.ContinueOnError)
	fs.SetOutput(env.Stderr)
	fs.Usage = func() {
		fmt.Fprintf(env.Stderr, "Usage: enflow %s %s\n\nFlags:\n", name, synopsis)
		fs.PrintDefaults()
	}
	return fs
}

// Parse parses args and wraps a parse failure as ErrUsage.
func Parse(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return fmt.Errorf("%w: %v", ErrUsage, err)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: unexpected arguments %q", ErrUsage, fs.Args())
	}
	return nil
}

// WriteJSON prints v as one JSON object on a line.
func WriteJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	return enc.Encode(v)
}

// Summary prints v as JSON when asJSON is set, else as "key: value" lines.
func Summary(env *Env, asJSON bool, v map[string]any) error {
	if asJSON {
		return WriteJSON(env.Stdout, v)
	}
	keys := make([]string, 0, len(v))
	for k := range v {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(env.Stdout, "%-16s %v\n", k+":", v[k])
	}
	return nil
}

// listFlag collects a repeatable, comma-separated flag.
type listFlag struct{ vals *[]string }

func (f listFlag) String() string {
	if f.vals == nil {
		return ""
	}
	return strings.Join(*f.vals, ",")
}

func (f listFlag) Set(s string) error {
	for _, v := range strings.Split(s, ",") {
		if v = strings.TrimSpace(v); v != "" {
			*f.vals = append(*f.vals, v)
		}
	}
	return nil
}
