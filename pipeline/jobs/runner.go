package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/enflow/enflow/etl/atomicfile"
)

// State directory layout:
//
//	STATE/results/part-<UTC time>-<unit>.parquet  append-only results table (one part per unit)
//	STATE/manifests/<spec>.json       the units of the spec's latest expansion (manifest.go)
//	STATE/pruned/<UTC time>/          stale units moved aside by Prune (results/, units/)
//	STATE/units/<unit>/unit.json      identity document: normalized spec, inputs, code version
//	STATE/units/<unit>/lock           the unit's lock (see LockMode)
//	STATE/units/<unit>/attempts.jsonl one line per attempt (start, end, host, outcome, error)
//	STATE/units/<unit>/log.txt        stderr of the enflow commands the unit ran
//	STATE/units/<unit>/run/           training units: the enflow train run directory
//	STATE/units/<unit>/samples.parquet evaluations that sample: the samples
//	STATE/units/<unit>/done.json      written after the results part (informational)
//
// A unit is finished exactly when a results part for it exists: the part is written
// atomically before anything else records completion, and a unit is re-checked for a part
// after its lock is taken, so a unit's rows are never written twice.
const (
	unitsDirName = "units"
	runDirName   = "run"
	samplesName  = "samples.parquet"
	attemptsName = "attempts.jsonl"
	unitFileName = "unit.json"
	doneFileName = "done.json"
	logFileName  = "log.txt"
	lockFileName = "lock"
)

// Outcomes of a unit in a run (Summary) and states in Status.
const (
	OutcomeDone         = "done"          // finished before (results exist): skipped
	OutcomeRan          = "ran"           // run to completion now
	OutcomeBusy         = "busy"          // locked by another scheduler: skipped
	OutcomeFailed       = "failed"        // this attempt failed
	OutcomeGaveUp       = "gave-up"       // failed max_attempts times: skipped (--retry-failed)
	OutcomeBlocked      = "blocked"       // its training unit is not finished
	OutcomeUnsupported  = "unsupported"   // this build cannot run it (dataset or model)
	OutcomeMissingInput = "missing-input" // an input file is missing
	OutcomeInterrupted  = "interrupted"   // cancelled (SIGINT/SIGTERM); resumable
	OutcomeNotRun       = "not-run"       // --max-units reached or run interrupted before it
)

// Options configures Run and StatusOf.
type Options struct {
	Spec     *Spec
	StateDir string // default: the spec's state_dir, else out/jobs/<name>
	DataDir  string // overrides the spec's data_dir
	Shard    Shard
	Exec     Executor
	Caps     Capabilities
	Code     CodeInfo
	// RetryFailed runs units that already failed max_attempts times.
	RetryFailed bool
	// MaxUnits > 0 stops after running that many units.
	MaxUnits int
	Lock     LockOptions // Mode and StaleAfter (Holder is filled in)
	Logger   *slog.Logger
	// ChildLog, if not nil, also receives the stderr of the enflow commands.
	ChildLog io.Writer
	// BackendName is recorded in the results (default: the spec's backend, else
	// $GOMLX_BACKEND, else "default").
	BackendName string
	// Budget > 0 bounds the run's wall time: when it is spent, the unit in progress is
	// interrupted as by SIGTERM (training checkpoints; the unit stays resumable) and no
	// further unit starts. Summary.BudgetReached tells.
	Budget time.Duration
}

// UnitReport is one unit's line in a Summary.
type UnitReport struct {
	UnitRef
	Outcome string  `json:"outcome"`
	Resumed bool    `json:"resumed,omitempty"`
	WallS   float64 `json:"wall_s,omitempty"`
	Part    string  `json:"part,omitempty"`
	Error   string  `json:"error,omitempty"`
}

// Summary is the outcome of Run.
type Summary struct {
	Spec     string         `json:"spec"`
	SpecPath string         `json:"spec_path"`
	StateDir string         `json:"state_dir"`
	DataDir  string         `json:"data_dir"`
	Shard    string         `json:"shard"`
	Code     string         `json:"code_version"`
	Units    int            `json:"units"`
	InShard  int            `json:"in_shard"`
	Counts   map[string]int `json:"counts"`
	Reports  []UnitReport   `json:"unit_reports"`
	WallS    float64        `json:"wall_s"`
	// Budget of the run (Options.Budget) in seconds, and whether it was spent before every
	// unit of the shard was finished.
	BudgetS       float64 `json:"budget_s,omitempty"`
	BudgetReached bool    `json:"budget_reached,omitempty"`
	// Finished units of the shard (done or ran) and the rest.
	Finished int `json:"finished"`
	Left     int `json:"left"`
}

// ErrBudget is the cause of the interruption of a run whose Options.Budget was spent.
var ErrBudget = errors.New("time budget spent")

// Count returns how many units had the outcome.
func (s *Summary) Count(outcome string) int { return s.Counts[outcome] }

type runner struct {
	o        Options
	plan     *Plan
	state    string
	results  string
	log      *slog.Logger
	host     string
	finished map[string]string // unit ID → part file
}

func newRunner(o Options) (*runner, error) {
	if o.Spec == nil {
		return nil, fmt.Errorf("jobs: no spec")
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if o.Shard.Count == 0 {
		o.Shard = Shard{0, 1}
	}
	state := o.StateDir
	if state == "" {
		state = o.Spec.StateDir
	}
	if state == "" {
		state = filepath.Join("out", "jobs", o.Spec.Name)
	}
	state, err := filepath.Abs(ExpandPath(state))
	if err != nil {
		return nil, fmt.Errorf("jobs: state directory: %w", err)
	}
	if o.BackendName == "" {
		o.BackendName = o.Spec.Backend
	}
	if o.BackendName == "" {
		o.BackendName = os.Getenv("GOMLX_BACKEND")
	}
	if o.BackendName == "" {
		o.BackendName = "default"
	}
	plan, err := Expand(o.Spec, PlanOptions{DataDir: o.DataDir, Caps: o.Caps, Code: o.Code})
	if err != nil {
		return nil, err
	}
	host, _ := os.Hostname()
	r := &runner{o: o, plan: plan, state: state, results: filepath.Join(state, ResultsDirName), log: o.Logger, host: host}
	if _, r.finished, err = ListParts(r.results); err != nil {
		return nil, err
	}
	return r, nil
}

// Plan returns the expanded units of o (without running anything).
func PlanOf(o Options) (*Plan, string, error) {
	r, err := newRunner(o)
	if err != nil {
		return nil, "", err
	}
	return r.plan, r.state, nil
}

func (r *runner) unitDir(u *Unit) string { return filepath.Join(r.state, unitsDirName, u.ID) }

// Run executes the units of the spec that belong to the shard and are not finished, in plan
// order, one at a time. Units locked by another scheduler are skipped. It returns the summary
// and an error only for problems of the run itself (state directory, spec); unit failures are
// in the summary.
func Run(ctx context.Context, o Options) (*Summary, error) {
	start := time.Now()
	r, err := newRunner(o)
	if err != nil {
		return nil, err
	}
	if o.Exec == nil {
		return nil, fmt.Errorf("jobs: no executor")
	}
	if o.Budget > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeoutCause(ctx, o.Budget, ErrBudget)
		defer cancel()
	}
	if err := os.MkdirAll(r.results, 0o755); err != nil {
		return nil, fmt.Errorf("jobs: state directory: %w", err)
	}
	// The units of this expansion of the whole spec (every shard writes the same manifest):
	// units of the spec not in it are stale, and enflow report leaves them out. An expansion
	// with missing input files is incomplete (those units' identities hash their inputs; a
	// wrong --data would make every unit look new): it keeps the previous manifest.
	if missing := r.plan.missingInputs(); missing > 0 {
		r.log.Info("manifest not updated: units lack input files", "units", missing, "manifest", ManifestPath(r.state, o.Spec.Name))
	} else if err := WriteManifest(r.state, ManifestOf(r.plan)); err != nil {
		return nil, err
	}
	sum := &Summary{Spec: o.Spec.Name, SpecPath: o.Spec.Path, StateDir: r.state, DataDir: r.plan.DataDir,
		Shard: r.o.Shard.String(), Code: o.Code.Version, Units: len(r.plan.Units), Counts: map[string]int{}}
	outcome := map[string]string{}
	ran := 0
	r.log.Info("jobs run", "spec", o.Spec.Name, "state", r.state, "units", len(r.plan.Units), "shard", r.o.Shard.String(),
		"code", o.Code.Version)
	for _, u := range r.plan.Units {
		if !r.o.Shard.Contains(u) {
			continue
		}
		sum.InShard++
		rep := UnitReport{UnitRef: u.Ref()}
		switch {
		case u.Unsupported != "":
			rep.Outcome, rep.Error = OutcomeUnsupported, u.Unsupported
		case u.InputErr != nil:
			rep.Outcome, rep.Error = OutcomeMissingInput, u.InputErr.Error()
		case r.finished[u.ID] != "":
			rep.Outcome, rep.Part = OutcomeDone, r.finished[u.ID]
		case u.Parent != nil && r.finishedNow(u.Parent.ID) == "":
			rep.Outcome = OutcomeBlocked
			if po := outcome[u.Parent.ID]; po != "" {
				rep.Error = "training unit " + u.Parent.ID + ": " + po
			}
		case ctx.Err() != nil:
			rep.Outcome = OutcomeNotRun
		case r.o.MaxUnits > 0 && ran >= r.o.MaxUnits:
			rep.Outcome = OutcomeNotRun
		default:
			ran++
			r.runUnit(ctx, u, &rep)
		}
		if rep.Outcome != OutcomeDone && rep.Outcome != OutcomeRan {
			lvl := slog.LevelInfo
			if rep.Outcome == OutcomeFailed || rep.Outcome == OutcomeMissingInput || rep.Outcome == OutcomeUnsupported {
				lvl = slog.LevelWarn
			}
			r.log.Log(ctx, lvl, "unit "+rep.Outcome, "unit", u.ID, "kind", u.Kind, "dataset", u.Dataset, "model", u.Model,
				"n_data", u.NData, "seed", u.Seed, "error", rep.Error)
		}
		outcome[u.ID] = rep.Outcome
		sum.Counts[rep.Outcome]++
		sum.Reports = append(sum.Reports, rep)
	}
	sum.WallS = time.Since(start).Seconds()
	sum.Finished = sum.Count(OutcomeDone) + sum.Count(OutcomeRan)
	sum.Left = sum.InShard - sum.Finished
	if o.Budget > 0 {
		sum.BudgetS = o.Budget.Seconds()
		sum.BudgetReached = errors.Is(context.Cause(ctx), ErrBudget) && sum.Left > 0
		if sum.BudgetReached {
			r.log.Info("budget spent", "budget", o.Budget, "finished", sum.Finished, "left", sum.Left, "shard", r.o.Shard.String())
		}
	}
	return sum, nil
}

// finishedNow returns the results part of unit id, looking on disk when it was not finished
// at the start of the run (another scheduler may have finished it since).
func (r *runner) finishedNow(id string) string {
	if p := r.finished[id]; p != "" {
		return p
	}
	if p := r.partFor(id); p != "" {
		r.finished[id] = p
		return p
	}
	return ""
}

// partFor looks for a results part of unit id on disk.
func (r *runner) partFor(id string) string {
	m, _ := filepath.Glob(filepath.Join(r.results, "part-*-"+id+".parquet"))
	if len(m) > 0 {
		return m[0]
	}
	return ""
}

func (r *runner) runUnit(ctx context.Context, u *Unit, rep *UnitReport) {
	dir := r.unitDir(u)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		rep.Outcome, rep.Error = OutcomeFailed, fmt.Sprintf("creating unit directory: %v", err)
		return
	}
	lo := r.o.Lock
	lo.Holder = Holder{Host: r.host, PID: os.Getpid(), Started: time.Now().UTC(), Unit: u.ID}
	lock, err := TryLock(filepath.Join(dir, lockFileName), lo)
	if err != nil {
		if errors.Is(err, ErrLocked) {
			rep.Outcome, rep.Error = OutcomeBusy, err.Error()
		} else {
			rep.Outcome, rep.Error = OutcomeFailed, err.Error()
		}
		return
	}
	defer func() {
		if err := lock.Unlock(); err != nil {
			r.log.Warn("releasing unit lock", "unit", u.ID, "err", err)
		}
	}()
	// Another scheduler may have finished the unit between our listing and our lock.
	if p := r.partFor(u.ID); p != "" {
		r.finished[u.ID] = p
		rep.Outcome, rep.Part = OutcomeDone, p
		return
	}
	prev, err := readAttempts(dir)
	if err != nil {
		rep.Outcome, rep.Error = OutcomeFailed, err.Error()
		return
	}
	started, failed, _, last := attemptStats(prev)
	if failed >= r.o.Spec.MaxAttempts && !r.o.RetryFailed {
		rep.Outcome = OutcomeGaveUp
		rep.Error = fmt.Sprintf("failed %d times (max_attempts %d; --retry-failed tries again); last: %s",
			failed, r.o.Spec.MaxAttempts, firstLine(last.Error))
		return
	}
	if err := r.writeUnitFile(u, dir); err != nil {
		rep.Outcome, rep.Error = OutcomeFailed, err.Error()
		return
	}
	a := attempt{Attempt: started + 1, Host: r.host, PID: os.Getpid(), Started: time.Now().UTC(), Outcome: "started"}
	if err := appendAttempt(dir, a); err != nil {
		rep.Outcome, rep.Error = OutcomeFailed, err.Error()
		return
	}
	r.log.Info("unit start", "unit", u.ID, "kind", u.Kind, "dataset", u.Dataset, "model", u.Model, "n_data", u.NData,
		"seed", u.Seed, "label", u.Label, "attempt", a.Attempt)

	logf, err := os.OpenFile(filepath.Join(dir, logFileName), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		rep.Outcome, rep.Error = OutcomeFailed, fmt.Sprintf("unit log: %v", err)
		return
	}
	defer logf.Close()
	fmt.Fprintf(logf, "=== attempt %d on %s pid %d at %s\n", a.Attempt, r.host, os.Getpid(), a.Started.Format(time.RFC3339))
	var childLog io.Writer = logf
	if r.o.ChildLog != nil {
		childLog = io.MultiWriter(logf, r.o.ChildLog)
	}
	ex := &unitExec{r: r, u: u, dir: dir, log: childLog, lock: lock}
	ms, err := ex.execute(ctx)
	a.Ended = time.Now().UTC()
	a.Resumed = ex.resumed
	rep.Resumed = ex.resumed
	rep.WallS = a.Ended.Sub(a.Started).Seconds()
	if err == nil {
		var part string
		part, err = r.record(u, ex, ms, a)
		if err == nil {
			r.finished[u.ID] = part
			rep.Part = part
		}
	}
	switch {
	case err == nil:
		a.Outcome = "ok"
		rep.Outcome = OutcomeRan
		r.log.Info("unit done", "unit", u.ID, "kind", u.Kind, "model", u.Model, "n_data", u.NData, "wall_s",
			math.Round(rep.WallS*100)/100, "resumed", ex.resumed, "part", filepath.Base(rep.Part))
	case ctx.Err() != nil:
		a.Outcome, a.Error = "interrupted", err.Error()
		rep.Outcome, rep.Error = OutcomeInterrupted, fmt.Sprintf("interrupted (%v); the next run resumes it", context.Cause(ctx))
	default:
		a.Outcome, a.Error = "failed", err.Error()
		rep.Outcome, rep.Error = OutcomeFailed, err.Error()
	}
	if err := appendAttempt(dir, a); err != nil {
		r.log.Warn("recording attempt", "unit", u.ID, "err", err)
	}
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

// unitDoc is unit.json.
type unitDoc struct {
	Schema   string         `json:"schema"`
	ID       string         `json:"id"`
	Hash     string         `json:"hash"`
	Spec     string         `json:"spec"`
	SpecPath string         `json:"spec_path"`
	Unit     map[string]any `json:"unit"`
	Inputs   []Input        `json:"inputs"`
	Code     CodeInfo       `json:"code"`
	Parent   string         `json:"parent,omitempty"`
}

func (r *runner) writeUnitFile(u *Unit, dir string) error {
	doc := unitDoc{Schema: identitySchema, ID: u.ID, Hash: u.Hash, Spec: r.o.Spec.Name, SpecPath: r.o.Spec.Path,
		Unit: u.Norm, Inputs: u.Inputs, Code: r.o.Code}
	if u.Parent != nil {
		doc.Parent = u.Parent.ID
	}
	b, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		return fmt.Errorf("jobs: encoding unit.json: %w", err)
	}
	if err := atomicfile.WriteFile(filepath.Join(dir, unitFileName), append(b, '\n')); err != nil {
		return fmt.Errorf("jobs: writing unit.json: %w", err)
	}
	return nil
}

// record writes the unit's results part (atomically) and done.json.
func (r *runner) record(u *Unit, ex *unitExec, ms []Metric, a attempt) (string, error) {
	now := time.Now().UTC()
	base := Row{
		Unit: u.ID, UnitHash: u.Hash, SpecName: r.o.Spec.Name, SpecPath: r.o.Spec.Path, UnitKind: u.Kind,
		Dataset: u.Dataset, Model: u.Model, NData: int64(u.NData), Seed: u.Seed, Label: u.Label,
		UnitSpec: u.NormJSON(), Code: r.o.Code.Version, GitRev: r.o.Code.GitRev, GoVersion: runtime.Version(),
		Backend: r.o.BackendName, Host: r.host, StartedAt: a.Started, EndedAt: a.Ended,
		WallS: a.Ended.Sub(a.Started).Seconds(), Attempt: int64(a.Attempt), Resumed: ex.resumed, RecordedAt: now,
	}
	if u.Parent != nil {
		base.ParentUnit = u.Parent.ID
	}
	if ex.artifact != "" {
		if rel, err := filepath.Rel(r.state, ex.artifact); err == nil && !strings.HasPrefix(rel, "..") {
			base.Artifact = rel
		} else {
			base.Artifact = ex.artifact
		}
	}
	rows := make([]Row, 0, len(ms))
	for _, m := range ms {
		row := base
		row.Metric, row.Value = m.Name, m.Value
		d, err := detailJSON(m.Detail)
		if err != nil {
			return "", err
		}
		row.Detail = d
		rows = append(rows, row)
	}
	if len(rows) == 0 {
		return "", fmt.Errorf("jobs: unit %s produced no metrics", u.ID)
	}
	part := filepath.Join(r.results, PartName(now, u.ID))
	if err := WriteResults(part, rows); err != nil {
		return "", fmt.Errorf("jobs: writing results part: %w", err)
	}
	done := map[string]any{"unit": u.ID, "part": filepath.Base(part), "rows": len(rows), "recorded_at": now}
	if b, err := json.MarshalIndent(done, "", "  "); err == nil {
		if err := atomicfile.WriteFile(filepath.Join(r.unitDir(u), doneFileName), append(b, '\n')); err != nil {
			r.log.Warn("writing done.json", "unit", u.ID, "err", err)
		}
	}
	return part, nil
}
