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
	if len(args) >= 2 && args[0] == "help" { // enflow help jobs → enflow jobs --help
		args = append(args[1:len(args):len(args)], "--help")
	}
	if len(args) == 0 || isHelp(args[0]) || args[0] == "help" {
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
		return groupOrUnknown(args, stderr)
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

func isHelp(a string) bool { return a == "-h" || a == "--help" || a == "-help" }

// groupOrUnknown handles arguments that name no command: a command group ("jobs", "etl
// qm9x" …) answers --help (and a bare group) with its subcommands; anything else is an
// unknown command. It returns the exit code.
func groupOrUnknown(args []string, stderr io.Writer) int {
	// The longest prefix of args that is a group (a proper prefix of some command names).
	for n := min(len(args), 2); n >= 1; n-- {
		group := strings.Join(args[:n], " ")
		subs := subcommands(group)
		if len(subs) == 0 {
			continue
		}
		rest := args[n:]
		if len(rest) == 0 || isHelp(rest[0]) || rest[0] == "help" {
			groupUsage(stderr, group, subs)
			if len(rest) == 0 {
				return 2
			}
			return 0
		}
		fmt.Fprintf(stderr, "enflow %s: unknown subcommand %q", group, rest[0])
		if s := nearest(rest[0], subNames(group, subs)); s != "" {
			fmt.Fprintf(stderr, " (did you mean %q?)", s)
		}
		fmt.Fprint(stderr, "\n\n")
		groupUsage(stderr, group, subs)
		return 2
	}
	fmt.Fprintf(stderr, "enflow: unknown command %q", strings.Join(args, " "))
	if s := nearest(args[0], topNames()); s != "" {
		fmt.Fprintf(stderr, " (did you mean %q?)", s)
	}
	fmt.Fprint(stderr, "\n\n")
	usage(stderr)
	return 2
}

// subcommands returns the sorted names of the commands in group ("jobs" → "jobs run", …).
func subcommands(group string) []string {
	var out []string
	for n := range commands {
		if strings.HasPrefix(n, group+" ") {
			out = append(out, n)
		}
	}
	sort.Strings(out)
	return out
}

// subNames returns the first word after group of each subcommand.
func subNames(group string, subs []string) []string {
	out := make([]string, 0, len(subs))
	for _, s := range subs {
		out = append(out, strings.Fields(strings.TrimPrefix(s, group+" "))[0])
	}
	return out
}

// topNames returns the first word of every command.
func topNames() []string {
	seen := map[string]bool{}
	var out []string
	for n := range commands {
		w := strings.Fields(n)[0]
		if !seen[w] {
			seen[w] = true
			out = append(out, w)
		}
	}
	sort.Strings(out)
	return out
}

func groupUsage(w io.Writer, group string, subs []string) {
	fmt.Fprintf(w, "Usage: enflow %s <subcommand> [flags]   (enflow %s <subcommand> --help for its flags)\n", group, group)
	fmt.Fprintln(w, "\nSubcommands:")
	for _, n := range subs {
		fmt.Fprintf(w, "  %-22s %s\n", strings.TrimPrefix(n, group+" "), commands[n].Summary)
	}
}

// levenshtein is the edit distance between a and b (insertions, deletions, substitutions).
func levenshtein(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	prev := make([]int, len(rb)+1)
	cur := make([]int, len(rb)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(ra); i++ {
		cur[0] = i
		for j := 1; j <= len(rb); j++ {
			c := prev[j-1]
			if ra[i-1] != rb[j-1] {
				c++
			}
			cur[j] = min(c, prev[j]+1, cur[j-1]+1)
		}
		prev, cur = cur, prev
	}
	return prev[len(rb)]
}

// maxSuggestDistance is the largest edit distance for which a suggestion is offered.
const maxSuggestDistance = 2

// nearest returns the candidate closest to s within maxSuggestDistance (the first in
// sorted order on ties), or "".
func nearest(s string, candidates []string) string {
	best, bestD := "", maxSuggestDistance+1
	sorted := append([]string(nil), candidates...)
	sort.Strings(sorted)
	for _, c := range sorted {
		if d := levenshtein(s, c); d < bestD {
			best, bestD = c, d
		}
	}
	return best
}

// suggestFlag extends the flag package's "flag provided but not defined: -x" error with the
// nearest defined flag, e.g. "(did you mean --epochs?)".
func suggestFlag(fs *flag.FlagSet, err error) error {
	const prefix = "flag provided but not defined: -"
	msg := err.Error()
	if !strings.HasPrefix(msg, prefix) {
		return err
	}
	name := strings.TrimLeft(strings.TrimPrefix(msg, prefix), "-")
	var names []string
	fs.VisitAll(func(f *flag.Flag) { names = append(names, f.Name) })
	if s := nearest(name, names); s != "" {
		return fmt.Errorf("%v (did you mean --%s?)", err, s)
	}
	return err
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
		return fmt.Errorf("%w: %v", ErrUsage, suggestFlag(fs, err))
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
