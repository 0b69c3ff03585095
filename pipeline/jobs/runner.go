package jobs

import (
	"bufio"
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
	"strconv"
	"strings"
	"time"

	"github.com/enflow/enflow/etl/atomicfile"
	"github.com/enflow/enflow/etl/table"
)

// State directory layout:
//
//	STATE/results/part-<UTC time>-<unit>.parquet  append-only results table (one part per unit)
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
	unitsDirName  = "units"
	runDirName    = "run"
	samplesName   = "samples.parquet"
	attemptsName  = "attempts.jsonl"
	unitFileName  = "unit.json"
	doneFileName  = "done.json"
	logFileName   = "log.txt"
	lockFileName  = "lock"
	resultJSON    = "result.json"
	metricsPQName = "metrics.parquet"
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
}

// UnitReport is one unit's line in a Summary.
type UnitReport struct {
	ID      string  `json:"id"`
	Kind    string  `json:"kind"`
	Dataset string  `json:"dataset"`
	Model   string  `json:"model,omitempty"`
	NData   int     `json:"n_data,omitempty"`
	Seed    int64   `json:"seed"`
	Label   string  `json:"label,omitempty"`
	Parent  string  `json:"parent,omitempty"`
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
}

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
	if err := os.MkdirAll(r.results, 0o755); err != nil {
		return nil, fmt.Errorf("jobs: state directory: %w", err)
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
		rep := UnitReport{ID: u.ID, Kind: u.Kind, Dataset: u.Dataset, Model: u.Model, NData: u.NData, Seed: u.Seed, Label: u.Label}
		if u.Parent != nil {
			rep.Parent = u.Parent.ID
		}
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
	return sum, nil
}

// attempt is one line of attempts.jsonl: each attempt appends a "started" line when it
// begins and a line with its outcome when it ends, so a started line without an end is an
// attempt that was killed.
type attempt struct {
	Attempt int       `json:"attempt"`
	Host    string    `json:"host"`
	PID     int       `json:"pid"`
	Started time.Time `json:"started"`
	Ended   time.Time `json:"ended,omitzero"`
	Outcome string    `json:"outcome"` // started, ok, failed, interrupted
	Resumed bool      `json:"resumed,omitempty"`
	Error   string    `json:"error,omitempty"`
}

// attemptStats summarises attempts.jsonl: attempts started, failures, and killed attempts
// (started, never ended).
func attemptStats(as []attempt) (started, failed, killed int, last *attempt) {
	ended := map[int]bool{}
	for i := range as {
		switch as[i].Outcome {
		case "started":
			started++
		case "failed":
			failed++
			ended[as[i].Attempt] = true
			last = &as[i]
		default:
			ended[as[i].Attempt] = true
		}
	}
	for _, a := range as {
		if a.Outcome == "started" && !ended[a.Attempt] {
			killed++
		}
	}
	return started, failed, killed, last
}

func readAttempts(dir string) ([]attempt, error) {
	f, err := os.Open(filepath.Join(dir, attemptsName))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("jobs: %w", err)
	}
	defer f.Close()
	var out []attempt
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 4*1024*1024)
	for sc.Scan() {
		var a attempt
		if json.Unmarshal(sc.Bytes(), &a) == nil { // a torn last line (crash) is ignored
			out = append(out, a)
		}
	}
	return out, sc.Err()
}

func appendAttempt(dir string, a attempt) error {
	b, err := json.Marshal(a)
	if err != nil {
		return fmt.Errorf("jobs: encoding attempt: %w", err)
	}
	f, err := os.OpenFile(filepath.Join(dir, attemptsName), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return fmt.Errorf("jobs: %w", err)
	}
	if _, err := f.Write(append(b, '\n')); err != nil {
		f.Close()
		return fmt.Errorf("jobs: writing attempt: %w", err)
	}
	return f.Close()
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
		rep.Outcome, rep.Error = OutcomeInterrupted, fmt.Sprintf("interrupted (%v); the next run resumes it", ctx.Err())
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

// unitExec runs one unit's commands.
type unitExec struct {
	r        *runner
	u        *Unit
	dir      string
	log      io.Writer
	lock     *Lock
	resumed  bool
	artifact string
}

func (x *unitExec) call(ctx context.Context, args ...string) ([]byte, error) {
	if b := x.r.o.Spec.Backend; b != "" {
		args = append(args, "--backend", b)
	}
	fmt.Fprintf(x.log, "--- enflow %s\n", strings.Join(args, " "))
	var hold []*os.File
	if f := x.lock.File(); f != nil {
		hold = append(hold, f)
	}
	return x.r.o.Exec.Enflow(ctx, Call{Args: args, Log: x.log, Hold: hold})
}

func (x *unitExec) execute(ctx context.Context) ([]Metric, error) {
	u := x.u
	switch {
	case u.Kind == KindTrain:
		return x.train(ctx)
	case u.Samples != "":
		x.artifact = u.Samples
		return x.evaluateFile(ctx, u.Samples)
	case u.Kind == KindNLL:
		return x.nll(ctx)
	default:
		samples, err := x.sample(ctx)
		if err != nil {
			return nil, err
		}
		return x.evaluateFile(ctx, samples)
	}
}

// trainState inspects a run directory.
func trainState(run string) (complete, resumable bool) {
	if b, err := os.ReadFile(filepath.Join(run, resultJSON)); err == nil {
		var res struct {
			Interrupted *bool `json:"interrupted"`
		}
		if json.Unmarshal(b, &res) == nil && res.Interrupted != nil && !*res.Interrupted {
			return true, false
		}
	}
	m, _ := filepath.Glob(filepath.Join(run, "checkpoint-*.json"))
	return false, len(m) > 0
}

func (x *unitExec) train(ctx context.Context) ([]Metric, error) {
	u := x.u
	run := filepath.Join(x.dir, runDirName)
	x.artifact = run
	args := []string{"train", "--dataset", u.Dataset, "--data", u.DataDir, "--out", run,
		"--n-data", strconv.Itoa(u.NData), "--seed", strconv.FormatInt(u.Seed, 10), "--model", u.Model}
	args = append(args, trainArgs(u.Train)...)
	args = append(args, u.ExtraArgs...)
	args = append(args, "--no-progress", "--json")
	complete, resumable := trainState(run)
	switch {
	case complete:
		x.r.log.Info("training already complete; recording it", "unit", u.ID)
	case resumable:
		x.resumed = true
		x.r.log.Info("resuming training from its last checkpoint", "unit", u.ID, "run", run)
		if _, err := x.call(ctx, append(args, "--resume")...); err != nil {
			if ctx.Err() != nil {
				return nil, err
			}
			// A checkpoint that cannot be resumed (e.g. torn by a crash): restart cleanly,
			// keeping the old directory for inspection.
			aside := run + ".failed-" + time.Now().UTC().Format("20060102T150405Z")
			x.r.log.Warn("resume failed; restarting the unit from scratch", "unit", u.ID, "kept", aside, "err", firstLine(err.Error()))
			if rerr := os.Rename(run, aside); rerr != nil {
				return nil, errors.Join(err, fmt.Errorf("jobs: moving %s aside: %w", run, rerr))
			}
			x.resumed = false
			if _, err := x.call(ctx, args...); err != nil {
				return nil, err
			}
		}
	default:
		if err := os.RemoveAll(run); err != nil {
			return nil, fmt.Errorf("jobs: clearing %s: %w", run, err)
		}
		if _, err := x.call(ctx, args...); err != nil {
			return nil, err
		}
	}
	return trainMetrics(run)
}

// trainMetrics reads result.json and metrics.parquet of a finished run.
func trainMetrics(run string) ([]Metric, error) {
	b, err := os.ReadFile(filepath.Join(run, resultJSON))
	if err != nil {
		return nil, fmt.Errorf("jobs: training result: %w", err)
	}
	var res struct {
		Epochs      *float64 `json:"epochs"`
		Steps       *float64 `json:"steps"`
		BestEpoch   *float64 `json:"best_epoch"`
		BestValNLL  *float64 `json:"best_val_nll"`
		TestNLL     *float64 `json:"test_nll"`
		LastTrain   *float64 `json:"last_train_nll"`
		WallS       *float64 `json:"wall_s"`
		Interrupted bool     `json:"interrupted"`
	}
	if err := json.Unmarshal(b, &res); err != nil {
		return nil, fmt.Errorf("jobs: decoding %s: %w", filepath.Join(run, resultJSON), err)
	}
	if res.Interrupted {
		return nil, fmt.Errorf("jobs: %s says the run was interrupted", filepath.Join(run, resultJSON))
	}
	val := func(p *float64) float64 {
		if p == nil {
			return math.NaN()
		}
		return *p
	}
	curve, err := ReadCurve(filepath.Join(run, metricsPQName))
	if err != nil {
		return nil, err
	}
	return []Metric{
		{Name: "test_nll", Value: val(res.TestNLL)},
		{Name: "best_val_nll", Value: val(res.BestValNLL)},
		{Name: "best_epoch", Value: val(res.BestEpoch)},
		{Name: "last_train_nll", Value: val(res.LastTrain)},
		{Name: "epochs", Value: val(res.Epochs)},
		{Name: "steps", Value: val(res.Steps)},
		{Name: "train_wall_s", Value: val(res.WallS)},
		{Name: "curve", Value: math.NaN(), Detail: curve},
	}, nil
}

// ReadCurve reads the per-epoch metrics.parquet of a run directory (train-metrics/v1).
func ReadCurve(path string) (*Curve, error) {
	c := &Curve{}
	err := table.ScanRecords(path, 0, func(rec arrowRecord) error {
		col := func(name string) int {
			is := rec.Schema().FieldIndices(name)
			if len(is) == 0 {
				return -1
			}
			return is[0]
		}
		ie, is, itr, iv, it, iw := col("epoch"), col("step"), col("train_nll"), col("val_nll"), col("test_nll"), col("wall_s")
		if ie < 0 || itr < 0 {
			return fmt.Errorf("not a train-metrics table (no epoch/train_nll column)")
		}
		opt := func(i, row int) *float64 {
			if i < 0 {
				return nil
			}
			v := floatAt(rec.Column(i), row)
			if math.IsNaN(v) {
				return nil
			}
			return &v
		}
		for row := 0; row < int(rec.NumRows()); row++ {
			c.Epoch = append(c.Epoch, intAt(rec.Column(ie), row, -1))
			if is >= 0 {
				c.Step = append(c.Step, intAt(rec.Column(is), row, -1))
			}
			c.TrainNLL = append(c.TrainNLL, opt(itr, row))
			c.ValNLL = append(c.ValNLL, opt(iv, row))
			c.TestNLL = append(c.TestNLL, opt(it, row))
			c.WallS = append(c.WallS, opt(iw, row))
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("jobs: training curve %s: %w", path, err)
	}
	return c, nil
}

func (x *unitExec) parentRun() string {
	return filepath.Join(x.r.unitDir(x.u.Parent), runDirName)
}

func (x *unitExec) modelArgs(args []string) []string {
	e := x.u.Eval
	if e.Solver != "" {
		args = append(args, "--solver", e.Solver)
	}
	if e.RTol > 0 {
		args = append(args, "--rtol", strconv.FormatFloat(e.RTol, 'g', -1, 64))
	}
	if e.ATol > 0 {
		args = append(args, "--atol", strconv.FormatFloat(e.ATol, 'g', -1, 64))
	}
	if e.Steps > 0 {
		args = append(args, "--steps", strconv.Itoa(e.Steps))
	}
	if e.Batch > 0 {
		args = append(args, "--batch", strconv.Itoa(e.Batch))
	}
	return args
}

func (x *unitExec) nll(ctx context.Context) ([]Metric, error) {
	e := x.u.Eval
	x.artifact = x.parentRun()
	args := []string{"eval", "--checkpoint", x.parentRun(), "--split", e.Split, "--seed", strconv.FormatInt(e.Seed, 10)}
	if e.Trace != "" {
		args = append(args, "--trace", e.Trace)
	}
	args = append(x.modelArgs(args), "--json")
	out, err := x.call(ctx, args...)
	if err != nil {
		return nil, err
	}
	var res struct {
		NLL     *float64 `json:"nll"`
		N       float64  `json:"n"`
		Batches float64  `json:"batches"`
		NFE     float64  `json:"nfe"`
		Trace   string   `json:"trace"`
		Solver  string   `json:"solver"`
		RTol    float64  `json:"rtol"`
		ATol    float64  `json:"atol"`
	}
	if err := json.Unmarshal(lastJSONLine(out), &res); err != nil {
		return nil, fmt.Errorf("jobs: enflow eval output is not JSON: %w: %q", err, string(out))
	}
	nll := math.NaN()
	if res.NLL != nil {
		nll = *res.NLL
	}
	detail := map[string]any{"split": e.Split, "trace": res.Trace, "solver": res.Solver, "rtol": res.RTol, "atol": res.ATol,
		"batches": res.Batches}
	return []Metric{
		{Name: "nll", Value: nll, Detail: detail},
		{Name: "n", Value: res.N},
		{Name: "nfe", Value: res.NFE},
	}, nil
}

// sample draws the evaluation's samples from the parent's best checkpoint into the unit's
// samples.parquet, unless a complete sample file is already there (an earlier attempt).
func (x *unitExec) sample(ctx context.Context) (string, error) {
	e := x.u.Eval
	out := filepath.Join(x.dir, samplesName)
	x.artifact = out
	if n, err := countRows(out); err == nil && n == e.N {
		x.resumed = true
		return out, nil
	}
	args := []string{"sample", "--checkpoint", x.parentRun(), "--n", strconv.Itoa(e.N),
		"--seed", strconv.FormatInt(e.Seed, 10), "--out", out}
	args = append(x.modelArgs(args), "--json")
	if _, err := x.call(ctx, args...); err != nil {
		return "", err
	}
	return out, nil
}

func countRows(path string) (int, error) {
	n := 0
	err := table.ScanRecords(path, 0, func(rec arrowRecord) error {
		n += int(rec.NumRows())
		return nil
	})
	return n, err
}

func (x *unitExec) evaluateFile(ctx context.Context, path string) ([]Metric, error) {
	u, e := x.u, x.u.Eval
	switch u.Kind {
	case KindEnergy:
		return EnergyMetrics(ctx, u.Dataset, path, filepath.Join(u.DataDir, u.Dataset+"_test.parquet"), e.Bins)
	case KindStability:
		return StabilityMetrics(ctx, path, e.N)
	case KindJS:
		return JSMetrics(ctx, path, e.N, e.NAtoms)
	}
	return nil, fmt.Errorf("jobs: cannot evaluate %s on a file", u.Kind)
}

// lastJSONLine returns the last line of out that looks like a JSON object.
func lastJSONLine(out []byte) []byte {
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		if l := strings.TrimSpace(lines[i]); strings.HasPrefix(l, "{") {
			return []byte(l)
		}
	}
	return out
}
