package jobs

// The commands a unit runs (enflow train / eval / sample) and the reading of their outputs.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/enflow/enflow/etl/table"
	"github.com/enflow/enflow/pipeline/train"
)

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
	return x.callPlain(ctx, args...)
}

// callPlain runs an enflow command that takes no --backend (metrics ess, minimize).
func (x *unitExec) callPlain(ctx context.Context, args ...string) ([]byte, error) {
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
	if b, err := os.ReadFile(filepath.Join(run, train.ResultFileName)); err == nil {
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

// Run directories of a training unit: stage 1 (every training unit) and stage 2 (units of an
// experiment with finetune).
const finetuneDirName = "finetune"

// finalRun is the run directory of a training unit's final stage (the one its attached
// evaluations evaluate), given the unit directory.
func finalRun(u *Unit, unitDir string) string {
	if u.Finetune != nil {
		return filepath.Join(unitDir, finetuneDirName)
	}
	return filepath.Join(unitDir, runDirName)
}

func (x *unitExec) trainCommand(run string, over map[string]any, initFrom string) []string {
	u := x.u
	args := []string{"train", "--dataset", u.Dataset, "--data", u.DataDir, "--out", run,
		"--n-data", strconv.Itoa(u.NData), "--seed", strconv.FormatInt(u.Seed, 10), "--model", u.Model}
	if initFrom != "" {
		args = append(args, "--init-from", initFrom)
	}
	args = append(args, trainArgs(over)...)
	args = append(args, u.ExtraArgs...)
	return append(args, "--no-progress", "--json")
}

func (x *unitExec) train(ctx context.Context) ([]Metric, error) {
	u := x.u
	run := filepath.Join(x.dir, runDirName)
	x.artifact = run
	ran, err := x.trainStage(ctx, run, x.trainCommand(run, u.Train, ""))
	if err != nil {
		return nil, err
	}
	ms, err := trainMetrics(run)
	if err != nil || u.Finetune == nil {
		return ms, err
	}
	// Stage 2: fine-tune from stage 1's weights (its best checkpoint).
	ft := filepath.Join(x.dir, finetuneDirName)
	x.artifact = ft
	if ran {
		// Stage 1 (re)ran in this attempt: a stage-2 directory can only be left over from
		// an older stage 1 (e.g. one moved aside), so it must not be resumed.
		if err := os.RemoveAll(ft); err != nil {
			return nil, fmt.Errorf("jobs: clearing %s: %w", ft, err)
		}
	}
	if _, err := x.trainStage(ctx, ft, x.trainCommand(ft, u.Finetune, run)); err != nil {
		return nil, err
	}
	final, err := trainMetrics(ft)
	if err != nil {
		return nil, err
	}
	out := final
	for _, m := range ms {
		m.Name = Stage1Prefix + m.Name
		out = append(out, m)
	}
	out = append(out, Metric{Name: "stages", Value: 2, Detail: []StageInfo{
		stageInfo(1, runDirName, u.Train, ms), stageInfo(2, finetuneDirName, u.Finetune, final)}})
	return out, nil
}

// Stage1Prefix prefixes the metrics of the first stage of a two-stage (finetune) training
// unit: stage1_test_nll, stage1_curve, …; the unprefixed metrics are the final stage's.
const Stage1Prefix = "stage1_"

// StageInfo is one element of the detail of the stages metric of a two-stage training unit.
type StageInfo struct {
	Stage       int     `json:"stage"`
	Run         string  `json:"run"`       // run directory inside the unit directory
	Objective   string  `json:"objective"` // ml, kl or ml+kl
	Lambda      string  `json:"lambda,omitempty"`
	Energy      string  `json:"energy,omitempty"`
	Temperature float64 `json:"temperature,omitempty"`
	Epochs      float64 `json:"epochs"`
	TestNLL     float64 `json:"test_nll"`
}

func stageInfo(stage int, run string, over map[string]any, ms []Metric) StageInfo {
	si := StageInfo{Stage: stage, Run: run, Objective: train.ObjectiveML, TestNLL: math.NaN(), Epochs: math.NaN()}
	if v, ok := over["objective"].(string); ok && v != "" {
		si.Objective = v
	}
	si.Lambda, _ = over["lambda"].(string)
	si.Energy, _ = over["energy"].(string)
	si.Temperature, _ = over["temperature"].(float64)
	for _, m := range ms {
		switch m.Name {
		case "test_nll":
			si.TestNLL = m.Value
		case "epochs":
			si.Epochs = m.Value
		}
	}
	if math.IsNaN(si.TestNLL) {
		si.TestNLL = 0 // JSON has no NaN; epochs/test_nll are also separate metrics
	}
	if math.IsNaN(si.Epochs) {
		si.Epochs = 0
	}
	return si
}

// trainStage brings one run directory to completion: nothing if it is complete, resume from
// its last checkpoint if it has one (a checkpoint that cannot be resumed is moved aside and
// the run restarts), else a fresh run. ran reports whether a training command ran.
func (x *unitExec) trainStage(ctx context.Context, run string, args []string) (ran bool, err error) {
	u := x.u
	complete, resumable := trainState(run)
	switch {
	case complete:
		x.r.log.Info("training already complete; recording it", "unit", u.ID, "run", filepath.Base(run))
		return false, nil
	case resumable:
		x.resumed = true
		x.r.log.Info("resuming training from its last checkpoint", "unit", u.ID, "run", run)
		if _, err := x.call(ctx, append(args, "--resume")...); err != nil {
			if ctx.Err() != nil {
				return true, err
			}
			// A checkpoint that cannot be resumed (e.g. torn by a crash): restart cleanly,
			// keeping the old directory for inspection.
			aside := run + ".failed-" + time.Now().UTC().Format("20060102T150405Z")
			x.r.log.Warn("resume failed; restarting the unit from scratch", "unit", u.ID, "kept", aside, "err", firstLine(err.Error()))
			if rerr := os.Rename(run, aside); rerr != nil {
				return true, errors.Join(err, fmt.Errorf("jobs: moving %s aside: %w", run, rerr))
			}
			x.resumed = false
			if _, err := x.call(ctx, args...); err != nil {
				return true, err
			}
		}
	default:
		if err := os.RemoveAll(run); err != nil {
			return false, fmt.Errorf("jobs: clearing %s: %w", run, err)
		}
		if _, err := x.call(ctx, args...); err != nil {
			return true, err
		}
	}
	return true, nil
}

// trainMetrics reads result.json and metrics.parquet of a finished run.
func trainMetrics(run string) ([]Metric, error) {
	b, err := os.ReadFile(filepath.Join(run, train.ResultFileName))
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
		NLLDims     *float64 `json:"nll_dims"`
		TestNoNorm  *float64 `json:"test_nll_without_normaliser"`
		ValNoNorm   *float64 `json:"best_val_nll_without_normaliser"`
		Interrupted bool     `json:"interrupted"`
	}
	if err := json.Unmarshal(b, &res); err != nil {
		return nil, fmt.Errorf("jobs: decoding %s: %w", filepath.Join(run, train.ResultFileName), err)
	}
	if res.Interrupted {
		return nil, fmt.Errorf("jobs: %s says the run was interrupted", filepath.Join(run, train.ResultFileName))
	}
	curve, err := ReadCurve(filepath.Join(run, train.MetricsParquet))
	if err != nil {
		return nil, err
	}
	var dims []Metric
	if res.NLLDims != nil {
		// The dimension the NLL is over: N·D for the non-equivariant RealNVP (nBG), (N−1)·D
		// for the mean-free flows.
		dims = append(dims, Metric{Name: "nll_dims", Value: *res.NLLDims})
		// Both conventions (bgflow-based work drops the Gaussian prior's normaliser).
		dims = append(dims,
			Metric{Name: "test_nll_without_normaliser", Value: val(res.TestNoNorm)},
			Metric{Name: "best_val_nll_without_normaliser", Value: val(res.ValNoNorm)})
	}
	return append(dims, []Metric{
		{Name: "test_nll", Value: val(res.TestNLL)},
		{Name: "best_val_nll", Value: val(res.BestValNLL)},
		{Name: "best_epoch", Value: val(res.BestEpoch)},
		{Name: "last_train_nll", Value: val(res.LastTrain)},
		{Name: "epochs", Value: val(res.Epochs)},
		{Name: "steps", Value: val(res.Steps)},
		{Name: "train_wall_s", Value: val(res.WallS)},
		{Name: "curve", Value: math.NaN(), Detail: curve},
	}...), nil
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

// parentRun is the run directory of the parent's final stage.
func (x *unitExec) parentRun() string {
	return finalRun(x.u.Parent, x.r.unitDir(x.u.Parent))
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
	if x.u.Kind == KindESS {
		args = append(args, "--log-weights")
		if e.Trace != "" {
			args = append(args, "--trace", e.Trace)
		}
	}
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
	case KindESS:
		return x.ess(ctx, path)
	case KindStates:
		return x.states(ctx, path)
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
