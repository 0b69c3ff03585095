package cli

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/enflow/enflow/etl/particles"
	"github.com/enflow/enflow/gomlx_models/backend"
	"github.com/enflow/enflow/pipeline/jobs"
	"github.com/enflow/enflow/pipeline/train"
)

func init() {
	Register(&Command{
		Name:    "jobs run",
		Summary: "run a job spec (TOML): idempotent, resumable, shardable batch training and evaluation",
		Run:     runJobsRun,
	})
	Register(&Command{
		Name:    "jobs status",
		Summary: "list the units of a job spec and their state (done, running, partial, failed, pending, …)",
		Run:     runJobsStatus,
	})
	Register(&Command{
		Name:    "jobs prune",
		Summary: "move the stale units of a job spec (left by earlier versions of it) out of its state directory",
		Run:     runJobsPrune,
	})
}

// jobsCommon are the flags shared by jobs run and jobs status.
type jobsCommon struct {
	state, data, shard, lockMode string
	staleAfter                   time.Duration
	asJSON, verbose              bool
}

func (c *jobsCommon) register(fs interface {
	StringVar(*string, string, string, string)
	DurationVar(*time.Duration, string, time.Duration, string)
	BoolVar(*bool, string, bool, string)
}) {
	fs.StringVar(&c.state, "state", "", "state `directory` (default: the spec's state_dir, else out/jobs/<name>)")
	fs.StringVar(&c.data, "data", "", "ETL data `directory` (default: the spec's data_dir)")
	fs.StringVar(&c.shard, "shard", "", "run only shard `i/n` (units assigned by hash; e.g. $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT)")
	fs.StringVar(&c.lockMode, "lock", "", "unit lock `mode`: flock, excl (lock files with heartbeat) or empty (flock, else excl)")
	fs.DurationVar(&c.staleAfter, "stale-after", jobs.DefaultStaleAfter, "excl locks: heartbeat `age` after which a lock is stale")
	fs.BoolVar(&c.asJSON, "json", false, "print the summary as one JSON object")
	fs.BoolVar(&c.verbose, "v", false, "debug logging, and the enflow commands' logs on stderr")
}

// parse reads the flags of a jobs subcommand (registered on fs, with c.register among them)
// and loads the spec into its options; a missing spec file prints the usage.
func (c *jobsCommon) parse(ctx context.Context, env *Env, fs *flag.FlagSet, specPath string, rest []string) (jobs.Options, error) {
	if err := Parse(fs, rest); err != nil {
		return jobs.Options{}, err
	}
	if specPath == "" {
		fs.Usage()
		return jobs.Options{}, fmt.Errorf("%w: the spec file is required", ErrUsage)
	}
	return c.options(ctx, env, specPath)
}

func (c *jobsCommon) options(ctx context.Context, env *Env, specPath string) (jobs.Options, error) {
	spec, err := jobs.LoadSpec(specPath)
	if err != nil {
		return jobs.Options{}, err
	}
	shard, err := jobs.ParseShard(c.shard)
	if err != nil {
		return jobs.Options{}, fmt.Errorf("%w: --shard: %v", ErrUsage, err)
	}
	mode := jobs.LockMode(c.lockMode)
	switch mode {
	case jobs.LockAuto, jobs.LockFlock, jobs.LockExclusive:
	default:
		return jobs.Options{}, fmt.Errorf("%w: --lock %q: want flock or excl", ErrUsage, c.lockMode)
	}
	o := jobs.Options{
		Spec: spec, StateDir: c.state, DataDir: c.data, Shard: shard, Caps: JobCapabilities(),
		Code:   jobs.DetectCode(ctx, ""),
		Lock:   jobs.LockOptions{Mode: mode, StaleAfter: c.staleAfter},
		Logger: newCLILogger(env.Stderr, c.verbose),
	}
	// The engine the enflow commands resolve (recorded with every result): the same binary
	// and environment make the children pick the same one.
	choice, err := backend.Resolve(spec.Backend)
	if err != nil {
		return jobs.Options{}, fmt.Errorf("%w: backend of %s: %v", ErrUsage, specPath, err)
	}
	o.BackendName = choice.Engine
	if c.verbose {
		o.ChildLog = env.Stderr
	}
	return o, nil
}

// JobCapabilities tells the job runner what enflow train supports in this build: DW4, LJ13,
// QM9 Positional, QM9 and a user's molecules, the registered model kinds (train.ModelKinds;
// the --model values of enflow train are expected to be registered kinds), and on the two
// molecule datasets with atom types the molecule E-NF only.
func JobCapabilities() jobs.Capabilities {
	return jobs.Capabilities{
		Dataset: func(ds string) error {
			if train.IsMoleculeSystem(ds) {
				return nil
			}
			if _, err := particles.SystemByName(ds); err != nil {
				return fmt.Errorf("enflow train supports dw4, lj13, qm9-positional, qm9 and molecules")
			}
			return nil
		},
		Train: func(ds, model string) error {
			if train.IsMoleculeSystem(ds) && !train.TrainsMolecules(model) {
				return fmt.Errorf("enflow train --dataset %s trains the molecule E-NF only (model enf); "+
					"the paper's GNF-att/GNF-att-aug rows for QM9 with atom types are not built", ds)
			}
			return nil
		},
		Model: func(m string) error {
			kinds := train.ModelKinds()
			for _, k := range kinds {
				if k == m {
					return nil
				}
			}
			return fmt.Errorf("enflow train has no model %q in this build (known: %s)", m, strings.Join(kinds, ", "))
		},
	}
}

// jobsSpecArg takes the spec path: the first argument (flags follow it), or the last one when
// it ends in .toml (flags precede it).
func jobsSpecArg(args []string) (string, []string, error) {
	if n := len(args); n > 1 && strings.HasPrefix(args[0], "-") && strings.HasSuffix(args[n-1], ".toml") &&
		!strings.HasPrefix(args[n-1], "-") {
		return args[n-1], args[:n-1], nil
	}
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		for _, a := range args {
			if a == "-h" || a == "--help" || a == "-help" {
				return "", args, nil
			}
		}
		return "", nil, fmt.Errorf("%w: the spec file is required: enflow jobs run|status|prune SPEC.toml [flags]", ErrUsage)
	}
	return args[0], args[1:], nil
}

func runJobsRun(ctx context.Context, env *Env, args []string) error {
	specPath, rest, err := jobsSpecArg(args)
	if err != nil {
		return err
	}
	var c jobsCommon
	var (
		retryFailed, skipUnsupported, inProcess bool
		maxUnits                                int
		budget                                  time.Duration
		exe                                     string
	)
	fs := NewFlagSet(env, "jobs run", "SPEC.toml [--shard i/n] [--state DIR] [--data DIR] [--json]")
	c.register(fs)
	fs.BoolVar(&retryFailed, "retry-failed", false, "also run units that failed max_attempts times")
	fs.BoolVar(&skipUnsupported, "skip-unsupported", false, "exit 0 even if some units are unsupported by this build")
	fs.IntVar(&maxUnits, "max-units", 0, "stop after running `N` units (0 = all)")
	fs.DurationVar(&budget, "budget", 0, "stop after this wall `time` (e.g. 80m): the unit in progress is interrupted as by SIGTERM (training checkpoints) and resumes next run; exit 0 (0 = no limit)")
	fs.BoolVar(&inProcess, "in-process", false, "run enflow train/eval/sample inside this process instead of as child processes")
	fs.StringVar(&exe, "enflow", "", "enflow `binary` for the child processes (default: this executable)")
	o, err := c.parse(ctx, env, fs, specPath, rest)
	if err != nil {
		return err
	}
	if budget < 0 {
		return fmt.Errorf("%w: --budget %v: want a positive duration", ErrUsage, budget)
	}
	o.RetryFailed, o.MaxUnits, o.Budget = retryFailed, maxUnits, budget
	if inProcess {
		o.Exec = inProcessExec{}
	} else {
		o.Exec = &jobs.Subprocess{Path: exe}
	}
	sum, err := jobs.Run(ctx, o)
	if err != nil {
		return err
	}
	if c.asJSON {
		if err := WriteJSON(env.Stdout, sum); err != nil {
			return err
		}
	} else {
		printRunSummary(env.Stdout, sum)
	}
	var problems []string
	for _, k := range []string{jobs.OutcomeFailed, jobs.OutcomeGaveUp, jobs.OutcomeMissingInput, jobs.OutcomeInterrupted} {
		if k == jobs.OutcomeInterrupted && sum.BudgetReached && ctx.Err() == nil {
			continue // the budget interrupted it: resumable, not a problem
		}
		if n := sum.Count(k); n > 0 {
			problems = append(problems, fmt.Sprintf("%d %s", n, k))
		}
	}
	if n := sum.Count(jobs.OutcomeUnsupported); n > 0 && !skipUnsupported {
		reasons := map[string]bool{}
		for _, r := range sum.Reports {
			if r.Outcome == jobs.OutcomeUnsupported {
				reasons[r.Error] = true
			}
		}
		list := make([]string, 0, len(reasons))
		for r := range reasons {
			list = append(list, r)
		}
		sort.Strings(list)
		problems = append(problems, fmt.Sprintf("%d unsupported by this build (%s; --skip-unsupported to accept)", n, strings.Join(list, "; ")))
	}
	if ctx.Err() != nil {
		return fmt.Errorf("jobs run interrupted (%v); run it again to resume", ctx.Err())
	}
	if len(problems) > 0 {
		return fmt.Errorf("%s: %s (details: enflow jobs status %s; per-unit logs in %s/units/<unit>/log.txt)",
			sum.Spec, strings.Join(problems, ", "), specPath, sum.StateDir)
	}
	return nil
}

func printRunSummary(w io.Writer, s *jobs.Summary) {
	fmt.Fprintf(w, "spec %s: %d units, %d in shard %s; state %s\n", s.Spec, s.Units, s.InShard, s.Shard, s.StateDir)
	tw := tabwriter.NewWriter(w, 0, 2, 2, ' ', 0)
	fmt.Fprintln(tw, "UNIT\tKIND\tDATASET\tMODEL\tN_DATA\tSEED\tOUTCOME\tWALL_S\tNOTE")
	for _, r := range s.Reports {
		note := jobsNote(r.Error)
		if r.Resumed {
			note = strings.TrimSpace("resumed " + note)
		}
		model := r.Model
		if model == "" {
			model = r.Label
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\t%s\n", r.ID, r.Kind, r.Dataset, jobsDash(model), jobsInt(r.NData),
			r.Seed, r.Outcome, jobsFloat(r.WallS), note)
	}
	tw.Flush()
	keys := make([]string, 0, len(s.Counts))
	for k := range s.Counts {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s %d", k, s.Counts[k])
	}
	fmt.Fprintf(w, "%s (%.1f s)\n", strings.Join(parts, ", "), s.WallS)
	if s.BudgetReached {
		fmt.Fprintf(w, "budget %v spent: %d units finished, %d left in shard %s; run again to continue\n",
			time.Duration(s.BudgetS*float64(time.Second)).Round(time.Second), s.Finished, s.Left, s.Shard)
	}
}

func runJobsStatus(ctx context.Context, env *Env, args []string) error {
	specPath, rest, err := jobsSpecArg(args)
	if err != nil {
		return err
	}
	var c jobsCommon
	fs := NewFlagSet(env, "jobs status", "SPEC.toml [--state DIR] [--shard i/n] [--json]")
	c.register(fs)
	o, err := c.parse(ctx, env, fs, specPath, rest)
	if err != nil {
		return err
	}
	rep, err := jobs.StatusOf(ctx, o)
	if err != nil {
		return err
	}
	if c.asJSON {
		return WriteJSON(env.Stdout, rep)
	}
	w := env.Stdout
	fmt.Fprintf(w, "spec %s (%s)\nstate %s\ndata %s\ncode %s\n", rep.Spec, rep.SpecPath, rep.StateDir, rep.DataDir, rep.Code)
	tw := tabwriter.NewWriter(w, 0, 2, 2, ' ', 0)
	fmt.Fprintln(tw, "UNIT\tKIND\tDATASET\tMODEL\tN_DATA\tSEED\tSTATE\tATTEMPTS\tRESULT / DETAIL")
	for _, u := range rep.Units {
		model := u.Model
		if model == "" {
			model = u.Label
		}
		state := u.State
		if o.Shard.Count > 1 && !u.InShard {
			state += " (other shard)"
		}
		detail := jobsFirstLine(u.Detail)
		if len(u.Values) > 0 {
			keys := make([]string, 0, len(u.Values))
			for k := range u.Values {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			var parts []string
			for _, k := range keys {
				parts = append(parts, fmt.Sprintf("%s=%.4g", k, u.Values[k]))
			}
			detail = strings.Join(parts, " ")
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%s\t%d\t%s\n", u.ID, u.Kind, u.Dataset, jobsDash(model), jobsInt(u.NData),
			u.Seed, state, u.Attempts, detail)
	}
	tw.Flush()
	keys := make([]string, 0, len(rep.Counts))
	for k := range rep.Counts {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s %d", k, rep.Counts[k])
	}
	fmt.Fprintf(w, "%d units: %s\n", len(rep.Units), strings.Join(parts, ", "))
	printStaleUnits(w, rep.Stale, specPath)
	return nil
}

// printStaleUnits lists the units of earlier expansions of the spec found in the state
// directory (jobs status).
func printStaleUnits(w io.Writer, stale []jobs.StaleUnit, specPath string) {
	if len(stale) == 0 {
		return
	}
	prunable := 0
	fmt.Fprintf(w, "\n%d stale unit(s): in the state directory but not in this expansion of the spec (the spec, its data or the code changed)\n", len(stale))
	tw := tabwriter.NewWriter(w, 0, 2, 2, ' ', 0)
	fmt.Fprintln(tw, "UNIT\tKIND\tDATASET\tMODEL\tN_DATA\tSEED\tRESULTS\tREPORT")
	for _, u := range stale {
		model := u.Model
		if model == "" {
			model = u.Label
		}
		rows := "–"
		if len(u.Parts) > 0 {
			rows = fmt.Sprintf("%d rows", u.Rows)
		}
		report := "left out"
		if u.InManifest {
			report = "shown (in the latest jobs run)"
		} else {
			prunable++
		}
		seed := "–"
		if u.Seed >= 0 {
			seed = fmt.Sprint(u.Seed)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", u.ID, u.Kind, jobsDash(u.Dataset), jobsDash(model), jobsInt(u.NData),
			seed, rows, report)
	}
	tw.Flush()
	if prunable > 0 {
		fmt.Fprintf(w, "enflow jobs prune %s moves the %d left out of the report aside (STATE/%s/<time>/)\n", specPath, prunable, jobs.PrunedDirName)
	}
}

func runJobsPrune(ctx context.Context, env *Env, args []string) error {
	specPath, rest, err := jobsSpecArg(args)
	if err != nil {
		return err
	}
	var c jobsCommon
	var dryRun bool
	fs := NewFlagSet(env, "jobs prune", "SPEC.toml [--state DIR] [--data DIR] [--dry-run] [--json]")
	c.register(fs)
	fs.BoolVar(&dryRun, "dry-run", false, "list the units that would be moved, move nothing")
	o, err := c.parse(ctx, env, fs, specPath, rest)
	if err != nil {
		return err
	}
	rep, err := jobs.Prune(ctx, o, dryRun)
	if err != nil {
		return err
	}
	if c.asJSON {
		return WriteJSON(env.Stdout, rep)
	}
	w := env.Stdout
	verb := "moved"
	if dryRun {
		verb = "would move"
	}
	for _, u := range rep.Pruned {
		fmt.Fprintf(w, "%s %s %s %s %s (%d results parts)\n", verb, u.ID, u.Kind, jobsDash(u.Dataset), jobsDash(u.Model), len(u.Parts))
	}
	for _, u := range rep.Kept {
		fmt.Fprintf(w, "kept %s %s: %s\n", u.ID, u.Kind, u.Reason)
	}
	switch {
	case len(rep.Pruned) == 0:
		fmt.Fprintf(w, "spec %s: no stale units to prune in %s\n", rep.Spec, rep.StateDir)
	case dryRun:
		fmt.Fprintf(w, "spec %s: %d stale units would be moved to %s/%s/<time>/\n", rep.Spec, len(rep.Pruned), rep.StateDir, jobs.PrunedDirName)
	default:
		fmt.Fprintf(w, "spec %s: %d stale units moved to %s (delete it when you no longer need them)\n", rep.Spec, len(rep.Pruned), rep.Dest)
	}
	return nil
}

// inProcessExec runs enflow subcommands through Main in this process (--in-process).
type inProcessExec struct{}

func (inProcessExec) Enflow(ctx context.Context, c jobs.Call) ([]byte, error) {
	var out bytes.Buffer
	log := c.Log
	if log == nil {
		log = io.Discard
	}
	if code := Main(ctx, c.Args, &out, log); code != 0 {
		err := fmt.Errorf("exit code %d", code)
		if ctx.Err() != nil {
			err = errors.Join(ctx.Err(), err)
		}
		return out.Bytes(), &jobs.ExecError{Args: c.Args, ExitCode: code, Err: err}
	}
	return out.Bytes(), nil
}

// jobsNote shortens a unit error for a table: the last line of a multi-line error (the
// command's last stderr line), else the error itself.
func jobsNote(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return jobsFirstLine(lines[len(lines)-1])
}

func jobsFirstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	if len(s) > 160 {
		s = s[:157] + "..."
	}
	return s
}

func jobsDash(s string) string {
	if s == "" {
		return "–"
	}
	return s
}

func jobsInt(n int) string {
	if n == 0 {
		return "–"
	}
	return fmt.Sprint(n)
}

func jobsFloat(x float64) string {
	if x == 0 || math.IsNaN(x) {
		return "–"
	}
	return fmt.Sprintf("%.1f", x)
}
