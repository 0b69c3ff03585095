package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/term"

	"github.com/enflow/enflow/etl/particles"
	"github.com/enflow/enflow/gomlx_models/backend"
	"github.com/enflow/enflow/gomlx_models/cnf"
	"github.com/enflow/enflow/pipeline/train"
)

func init() {
	Register(&Command{
		Name:    "train",
		Summary: "train an E-NF on DW4/LJ13 (checkpoints, best-val model, metrics; --resume)",
		Run:     runTrain,
	})
}

// trainFlags are the flags of "enflow train".
type trainFlags struct {
	dataset, data, out                  string
	nData, epochs, testEvery, batch     int
	evalBatch, maxSteps, keep, evalN    int
	lr, wd, clipGrad, reg               float64
	clipAdaptive                        bool
	jsSamples, stabilitySamples         int
	initFrom, initWhich                 string
	seed                                uint64
	model, dtype                        string
	hidden, layers                      int
	solver, trace, noise, grad          string
	valTrace, testTrace                 string
	rtol, atol                          float64
	steps                               int
	backendSpec                         string
	resume, asJSON, noProgress, verbose bool
	// Boltzmann-generator objectives (particle datasets).
	objective, energyName, lambda string
	temperature, energyCut        float64
	klSamples                     int
}

func runTrain(ctx context.Context, env *Env, args []string) error {
	var f trainFlags
	fs := NewFlagSet(env, "train", "--dataset dw4|lj13|qm9-positional|qm9|molecules --data DIR --out DIR [--n-data N] [flags]  |  --out DIR --resume")
	fs.StringVar(&f.dataset, "dataset", "", "`dataset`: dw4, lj13, qm9-positional (19-atom QM9 molecules, positions only; paper Table 3), "+
		"qm9 (atom types, charges and positions; Table 2) or molecules (your own, from enflow etl molecules)")
	fs.StringVar(&f.data, "data", "", "ETL `directory` holding {dataset}_{train,val,test}.parquet (qm9_positional_, qm9_, molecules_{train,valid,test}.parquet)")
	fs.StringVar(&f.out, "out", "", "run `directory` (checkpoints, best/, metrics.csv/.parquet, result.json)")
	fs.IntVar(&f.nData, "n-data", 0, "train on the first `N` rows of the train split (qm9-positional: default all)")
	fs.IntVar(&f.epochs, "epochs", 0, "`epochs` (default: the paper's sweep value for n-data)")
	fs.IntVar(&f.testEvery, "test-every", 0, "evaluate val/test after epochs e with e % `K` == 0 (default: sweep value)")
	fs.IntVar(&f.batch, "batch", 0, "training batch `size` (default: sweep value, 100 except LJ13 n-data 10)")
	fs.IntVar(&f.evalBatch, "eval-batch", 100, "validation/test batch `size`")
	fs.Float64Var(&f.lr, "lr", 5e-4, "AdamW learning `rate` (qm9-positional: default 2e-4)")
	fs.Float64Var(&f.wd, "wd", 1e-12, "AdamW decoupled weight `decay` (AMSGrad on)")
	fs.Float64Var(&f.clipGrad, "clip-grad", 0, "clip the global gradient norm to `max` (0: off, as the paper's DW4/LJ13 runs; kept on --resume)")
	fs.BoolVar(&f.clipAdaptive, "clip-adaptive", false, "en_flows' adaptive gradient clipping: max norm 1.5·mean + 2·std of the last 50 norms (default on for qm9-positional)")
	fs.Float64Var(&f.reg, "reg", 0, "ODE regulariser `weight` (Frobenius + kinetic) in the loss (default 1e-3 for qm9-positional, else 0)")
	fs.IntVar(&f.jsSamples, "js-samples", 0, "samples `N` drawn at each evaluation for the relative-distance JS divergence (qm9-positional; default 1000; <0 off)")
	fs.IntVar(&f.stabilitySamples, "stability-samples", 0, "molecules `N` sampled at each evaluation for atom/molecule stability (qm9, molecules; default 100, the reference 1000; <0 off)")
	fs.StringVar(&f.initFrom, "init-from", "", "start from the weights of this model `directory` (enflow import-torch output or an enflow qm9/molecules run): fine-tuning; use an lr 10-20× below the from-scratch one (the published QM9 model: --lr 1e-5; its 2e-4 wrecks it at first, see README)")
	fs.StringVar(&f.initWhich, "init-which", "", "`checkpoint` of --init-from: best (default when present) or last (the end of that run)")
	fs.Uint64Var(&f.seed, "seed", 1, "random `seed` (model initialisation, data order, Hutchinson noise)")
	fs.StringVar(&f.model, "model", "enf", "model `kind`: enf, simple, kernel, gnf, gnf-att, gnf-att-aug, realnvp (non-equivariant RealNVP, the nBG; --layers/--hidden set its couplings/width when given), or gaussian (a tiny stand-in for smoke tests)")
	fs.StringVar(&f.dtype, "dtype", "float32", "model `dtype`: float32 or float64")
	fs.IntVar(&f.hidden, "hidden", 32, "EGNN hidden `features` (qm9-positional: default 64)")
	fs.IntVar(&f.layers, "layers", 3, "EGNN `layers` (qm9-positional: default 6)")
	fs.StringVar(&f.solver, "solver", "dopri5", "ODE `solver`: dopri5, rk4 or euler")
	fs.Float64Var(&f.rtol, "rtol", 1e-4, "adaptive solver relative `tolerance`")
	fs.Float64Var(&f.atol, "atol", 1e-4, "adaptive solver absolute `tolerance`")
	fs.IntVar(&f.steps, "steps", 0, "fixed-step solver `steps`")
	fs.StringVar(&f.trace, "trace", cnf.TraceHutchinson, "training trace `estimator`: hutchinson, exact, or analytic (kernel dynamics only)")
	fs.StringVar(&f.noise, "noise", cnf.NoiseRademacher, "Hutchinson `noise`: rademacher or gaussian (qm9-positional: default gaussian)")
	fs.StringVar(&f.grad, "grad", cnf.GradAdjoint, "gradient `method`: adjoint or backprop")
	fs.StringVar(&f.valTrace, "val-trace", "", "validation trace `estimator` (default: exact for dw4, the training trace for lj13)")
	fs.StringVar(&f.testTrace, "test-trace", "", "test trace `estimator` (default: exact for dw4, the training trace for lj13)")
	fs.StringVar(&f.objective, "objective", "", "training `objective` (dw4, lj13): ml (maximum likelihood on data, the default), kl (reverse KL to exp(−u/T) on flow samples: "+
		"energy training) or ml+kl (λ·ML + (1−λ)·KL); a resumed run keeps its own unless given")
	fs.StringVar(&f.energyName, "energy", "", "target `energy` of kl / ml+kl: dw4, lj13 (each pair once) or lj13-twice (each pair twice; the density of the shipped LJ13 data); default the dataset's")
	fs.Float64Var(&f.temperature, "temperature", 1, "target `T` of kl / ml+kl")
	fs.Float64Var(&f.energyCut, "energy-cut", 0, "kl / ml+kl: train on u compressed logarithmically above this `energy` (bgflow's linlogcut; clamped at 1e9), "+
		"for hard-core energies such as LJ13 (default: no cut)")
	fs.IntVar(&f.klSamples, "kl-samples", 0, "flow samples `N` per kl step (default: the batch size)")
	fs.StringVar(&f.lambda, "lambda", "", "ML weight `λ` of ml+kl: a constant (0.5) or start:end linear over the epochs (1.0:0.5, Köhler's kernel-flow script); default 0.5")
	fs.StringVar(&f.backendSpec, "backend", "", "GoMLX `backend` (default $GOMLX_BACKEND, else SimpleGo)")
	fs.BoolVar(&f.resume, "resume", false, "continue the run in --out from its last checkpoint")
	fs.IntVar(&f.maxSteps, "max-steps-per-epoch", 0, "cap the training `batches` per epoch (quick runs)")
	fs.IntVar(&f.evalN, "eval-n", 0, "validate/test on the first `N` rows of val/test only (quick runs; default all)")
	fs.IntVar(&f.keep, "keep", 3, "`checkpoints` to keep besides best")
	fs.BoolVar(&f.noProgress, "no-progress", false, "no progress bar on stderr")
	fs.BoolVar(&f.verbose, "v", false, "debug logging")
	fs.BoolVar(&f.asJSON, "json", false, "print the summary as one JSON object")
	if err := Parse(fs, args); err != nil {
		return err
	}
	set := map[string]bool{}
	fs.Visit(func(fl *flag.Flag) { set[fl.Name] = true })
	if f.out == "" {
		return fmt.Errorf("%w: --out is required", ErrUsage)
	}
	if f.resume {
		info, err := train.LoadRunInfo(f.out)
		if err != nil {
			return fmt.Errorf("%w: --resume: %v", ErrUsage, err)
		}
		f.fillFromRunInfo(info, set)
	}
	switch {
	case f.dataset == "":
		return fmt.Errorf("%w: --dataset is required", ErrUsage)
	case f.data == "":
		return fmt.Errorf("%w: --data is required", ErrUsage)
	}
	if train.IsMoleculeSystem(f.dataset) {
		return runTrainMolecules(ctx, env, &f, set)
	}
	if f.stabilitySamples > 0 {
		return fmt.Errorf("%w: --stability-samples is for --dataset qm9 and molecules", ErrUsage)
	}
	energyOpts, err := f.energyOptions()
	if err != nil {
		return err
	}
	sys, err := particles.SystemByName(f.dataset)
	if err != nil {
		return fmt.Errorf("%w: --dataset: %v", ErrUsage, err)
	}
	if w := f.initWhich; w != "" && w != "best" && w != "last" {
		return fmt.Errorf("%w: --init-which %q: want best or last", ErrUsage, w)
	}
	if f.initWhich != "" && f.initFrom == "" {
		return fmt.Errorf("%w: --init-which needs --init-from", ErrUsage)
	}
	if set["temperature"] && !(f.temperature > 0) { // 0 means "the default" inside EnergyOptions
		return fmt.Errorf("%w: --temperature: temperature must be finite and > 0, got %v", ErrUsage, f.temperature)
	}
	if set["energy-cut"] {
		c := f.energyCut
		energyOpts.EnergyCut = &c
	}
	if strings.TrimSpace(f.objective) != "" || set["temperature"] || set["energy"] || set["energy-cut"] {
		if err := energyOpts.Validate(sys.Name); err != nil {
			return fmt.Errorf("%w: %v", ErrUsage, err)
		}
	}
	positional := sys.Name == particles.QM9Positional.Name
	if positional {
		f.positionalDefaults(set)
	} else {
		if f.nData <= 0 {
			return fmt.Errorf("%w: --n-data must be positive", ErrUsage)
		}
		if f.jsSamples > 0 {
			return fmt.Errorf("%w: --js-samples: the relative-distance JS divergence (against analyzed_19) is for qm9-positional only", ErrUsage)
		}
	}
	sched, exact, err := train.DefaultSchedule(sys.Name, f.nData)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrUsage, err)
	}
	if f.epochs > 0 {
		sched.Epochs = f.epochs
	}
	if f.testEvery > 0 {
		sched.TestEvery = f.testEvery
	}
	if f.batch > 0 {
		sched.Batch = f.batch
	}
	evalTrace := f.trace
	if sys.Name == particles.DW4.Name {
		evalTrace = cnf.TraceExact // en_flows test() switches DW4 to the exact trace for val and test.
	}
	if f.valTrace == "" {
		f.valTrace = evalTrace
	}
	if f.testTrace == "" {
		f.testTrace = evalTrace
	}

	logger := newCLILogger(env.Stderr, f.verbose)
	if !exact && !(set["epochs"] && set["test-every"] && set["batch"]) {
		logger.Warn("n-data is not one of the paper's sweep values; using the schedule of the nearest one",
			"n_data", f.nData, "epochs", sched.Epochs, "test_every", sched.TestEvery, "batch", sched.Batch)
	}

	spec := train.DefaultSpec(sys.Name, sys.Particles, sys.Dim)
	spec.Kind, spec.DType, spec.Seed = f.model, f.dtype, f.seed
	spec.EGNN.Hidden, spec.EGNN.Layers = f.hidden, f.layers
	spec.CNF = train.CNFSpec{Solver: f.solver, RTol: f.rtol, ATol: f.atol, Steps: f.steps, Trace: f.trace,
		Noise: f.noise, Grad: f.grad, RegWeight: f.reg, MaxSteps: spec.CNF.MaxSteps}
	if spec.Kind == train.RealNVPKind {
		rs := train.RealNVPSpec{}
		if set["layers"] {
			rs.Layers = f.layers
		}
		if set["hidden"] {
			rs.Hidden = f.hidden
		}
		spec.RealNVP = &rs
	}
	if f.initFrom != "" && !f.resume {
		// Fine-tuning (e.g. ML initialisation, then ML+KL): the source's architecture.
		src, err := train.LoadSpec(f.initFrom)
		if err != nil {
			return fmt.Errorf("%w: --init-from: %v", ErrUsage, err)
		}
		seed := spec.Seed
		spec = *src
		spec.Seed = seed
	}
	if f.resume {
		saved, err := train.LoadSpec(f.out)
		if err != nil {
			return err
		}
		spec = *saved
	}
	dtype, err := spec.GoDType()
	if err != nil {
		return fmt.Errorf("%w: %v", ErrUsage, err)
	}

	var ds [3]*train.ParticleDataset
	for i, split := range []string{"train", "val", "test"} {
		if ds[i], err = train.LoadParticleSplit(f.data, sys, split, dtype); err != nil {
			return err
		}
	}
	if positional && f.nData <= 0 {
		f.nData = ds[0].Len()
	}
	if f.nData > ds[0].Len() {
		return fmt.Errorf("%w: --n-data %d but %s has %d rows", ErrUsage, f.nData, train.SplitPath(f.data, sys.Name, "train"), ds[0].Len())
	}
	if ds[0], err = ds[0].Head(f.nData); err != nil {
		return err
	}
	if f.evalN > 0 {
		for i := 1; i < 3; i++ {
			if ds[i], err = ds[i].Head(min(f.evalN, ds[i].Len())); err != nil {
				return err
			}
		}
	}

	b, err := backend.New(f.backendSpec)
	if err != nil {
		return fmt.Errorf("%w: --backend: %v", ErrUsage, err)
	}
	defer b.Finalize()

	absData, err := filepath.Abs(f.data)
	if err != nil {
		return fmt.Errorf("train: %w", err)
	}
	if err := os.MkdirAll(f.out, 0o755); err != nil {
		return fmt.Errorf("train: %w", err)
	}
	info := &train.RunInfo{Dataset: sys.Name, DataDir: absData, NData: f.nData, Schedule: sched, LR: f.lr,
		Seed: f.seed, ValTrace: f.valTrace, TestTrace: f.testTrace, WD: &f.wd, EvalBatch: f.evalBatch,
		EvalN: f.evalN, MaxStepsEpoch: f.maxSteps, Keep: f.keep, ClipAdaptive: f.clipAdaptive,
		JSSamples: max(f.jsSamples, 0), InitFrom: f.initFrom, Engine: backend.Name(b)}
	if energyOpts.Objective != "" && energyOpts.Objective != train.ObjectiveML {
		info.Energy = &energyOpts
	}
	if f.clipAdaptive && positional {
		info.ClipQueueInit = 1e30 // main_qm9_pos.py seeds the queue with 1e30 (REFERENCE §4.6)
	}

	opts := train.Options{
		Backend: b, Spec: spec, Train: ds[0], Val: ds[1], Test: ds[2], OutDir: f.out,
		Schedule: sched, EvalBatch: f.evalBatch, LearningRate: f.lr, WeightDecay: f.wd, Seed: f.seed,
		ValTrace: f.valTrace, TestTrace: f.testTrace, MaxStepsEpoch: f.maxSteps, Keep: f.keep, ClipGrad: f.clipGrad,
		Resume: f.resume, Logger: logger, ClipAdaptive: info.ClipAdaptive, ClipQueueInit: info.ClipQueueInit,
		InitFrom: f.initFrom, InitWhich: f.initWhich, Energy: energyOpts,
	}
	if info.JSSamples > 0 {
		opts.JS = &train.JSEval{N: info.JSSamples, Batch: min(f.evalBatch, info.JSSamples)}
	}
	res, runErr := startRun(ctx, env, &f, info, &opts)
	if res == nil {
		return runErr
	}
	if err := Summary(env, f.asJSON, map[string]any{
		"out_dir":                     res.OutDir,
		"dataset":                     sys.Name,
		"n_data":                      f.nData,
		"epochs":                      res.Epochs,
		"steps":                       res.Steps,
		"best_epoch":                  res.BestEpoch,
		"best_val_nll":                nanToNil(res.BestValNLL),
		"test_nll":                    nanToNil(res.BestTestNLL),
		"last_train_nll":              nanToNil(res.LastTrain),
		"wall_s":                      math.Round(res.WallS*1000) / 1000,
		"interrupted":                 res.Interrupted,
		"js_div":                      nanToNil(res.BestJS),
		"engine":                      backend.Name(b),
		"objective":                   objectiveName(energyOpts.Objective),
		"nll_dims":                    spec.DensityDims(),
		"test_nll_without_normaliser": nanToNil(res.BestTestNLL - spec.GaussianNormaliser()),
	}); err != nil {
		return errors.Join(runErr, err)
	}
	return runErr
}

// energyOptions parses the objective flags (the run's stored objective applies on --resume
// when --objective is not given: the trainer restores it from the checkpoint).
func (f *trainFlags) energyOptions() (train.EnergyOptions, error) {
	var e train.EnergyOptions
	if strings.TrimSpace(f.objective) != "" {
		obj, err := train.ParseObjective(f.objective)
		if err != nil {
			return e, fmt.Errorf("%w: --objective: %v", ErrUsage, err)
		}
		e.Objective = obj
	}
	e.Energy, e.Temperature, e.KLSamples = f.energyName, f.temperature, f.klSamples
	if f.lambda != "" {
		l, err := train.ParseLambda(f.lambda)
		if err != nil {
			return e, fmt.Errorf("%w: %v", ErrUsage, err)
		}
		e.Lambda = &l
	}
	if f.klSamples < 0 {
		return e, fmt.Errorf("%w: --kl-samples must be ≥ 0", ErrUsage)
	}
	return e, nil
}

func objectiveName(o string) string {
	if o == "" {
		return train.ObjectiveML
	}
	return o
}

// fillFromRunInfo takes the values of a resumed run for the flags not given explicitly.
func (f *trainFlags) fillFromRunInfo(info *train.RunInfo, set map[string]bool) {
	if !set["dataset"] {
		f.dataset = info.Dataset
	}
	if !set["data"] {
		f.data = info.DataDir
	}
	if !set["n-data"] {
		f.nData = info.NData
	}
	if !set["epochs"] {
		f.epochs = info.Schedule.Epochs
	}
	if !set["test-every"] {
		f.testEvery = info.Schedule.TestEvery
	}
	if !set["batch"] {
		f.batch = info.Schedule.Batch
	}
	if !set["lr"] && info.LR > 0 {
		f.lr = info.LR
	}
	if !set["seed"] {
		f.seed = info.Seed
	}
	if !set["val-trace"] {
		f.valTrace = info.ValTrace
	}
	if !set["test-trace"] {
		f.testTrace = info.TestTrace
	}
	if !set["wd"] && info.WD != nil {
		f.wd = *info.WD
	}
	if !set["eval-batch"] && info.EvalBatch > 0 {
		f.evalBatch = info.EvalBatch
	}
	if !set["eval-n"] && info.EvalN > 0 {
		f.evalN = info.EvalN
	}
	if !set["max-steps-per-epoch"] && info.MaxStepsEpoch > 0 {
		f.maxSteps = info.MaxStepsEpoch
	}
	if !set["keep"] && info.Keep > 0 {
		f.keep = info.Keep
	}
	if !set["clip-adaptive"] {
		f.clipAdaptive = info.ClipAdaptive
	}
	if !set["js-samples"] {
		f.jsSamples = info.JSSamples
		if f.jsSamples == 0 {
			f.jsSamples = -1 // recorded as off: positionalDefaults must not turn it on
		}
	}
	if !set["stability-samples"] {
		f.stabilitySamples = info.StabilitySamples
		if f.stabilitySamples == 0 {
			f.stabilitySamples = -1
		}
	}
	if !set["init-from"] {
		f.initFrom = info.InitFrom
	}
}

// positionalDefaults applies main_qm9_pos.py's settings (REFERENCE §4.6) to the flags not given
// explicitly: EGNN nf 64 × 6 layers, lr 2e-4, Gaussian Hutchinson noise, ODE regulariser 1e-3,
// adaptive gradient clipping, and the JS divergence of 1000 samples at every evaluation.
func (f *trainFlags) positionalDefaults(set map[string]bool) {
	if f.resume { // the run's model.json and run.json hold its settings
		return
	}
	if !set["hidden"] {
		f.hidden = 64
	}
	if !set["layers"] {
		f.layers = 6
	}
	if !set["lr"] {
		f.lr = 2e-4
	}
	if !set["noise"] {
		f.noise = cnf.NoiseGaussian
	}
	if !set["reg"] {
		f.reg = 1e-3
	}
	if !set["clip-adaptive"] && !set["clip-grad"] && !f.resume {
		f.clipAdaptive = true
	}
	if f.jsSamples == 0 {
		f.jsSamples = 1000
	}
}

// newCLILogger logs text records to w (stderr).
func newCLILogger(w io.Writer, verbose bool) *slog.Logger {
	level := slog.LevelInfo
	if verbose {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level}))
}

func trainIsTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// nanToNil maps NaN/Inf to nil so that the JSON summary stays valid.
func nanToNil(x float64) any {
	if math.IsNaN(x) || math.IsInf(x, 0) {
		return nil
	}
	return x
}

// startRun finishes the options shared by every dataset (explicit zero weight decay, progress
// bar), refuses an --out that already holds a run unless resuming (before run.json is
// overwritten), writes run.json and runs the training.
func startRun(ctx context.Context, env *Env, f *trainFlags, info *train.RunInfo, opts *train.Options) (*train.Result, error) {
	if f.wd == 0 {
		opts.WeightDecay = -1 // explicit zero
	}
	if !f.noProgress && trainIsTerminal(env.Stderr) {
		opts.Progress = env.Stderr
	}
	if !f.resume {
		if _, err := train.ResolveCheckpointDir(f.out, "last"); err == nil {
			return nil, fmt.Errorf("%w: %s already holds checkpoints: add --resume or choose another --out", ErrUsage, f.out)
		}
	}
	if err := train.SaveRunInfo(f.out, info); err != nil {
		return nil, err
	}
	return train.Run(ctx, *opts)
}
