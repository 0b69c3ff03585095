package cli

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"

	"github.com/enflow/enflow/gomlx_models/backend"
	"github.com/enflow/enflow/pipeline/train"
)

// qm9Defaults applies en_flows main_qm9.py's settings (the published run's args.pickle:
// n_epochs 100, batch 128, lr 2e-4, test_epochs 1, EGNN nf 64 × 6 layers with attention and
// tanh, Gaussian Hutchinson trace, ode_regularization 1e-3, clip_grad with the adaptive queue
// seeded at 3000) to the flags not given explicitly.
func (f *trainFlags) qm9Defaults(set map[string]bool) {
	if f.resume {
		return
	}
	for name, apply := range map[string]func(){
		"epochs":     func() { f.epochs = 100 },
		"test-every": func() { f.testEvery = 1 },
		"batch":      func() { f.batch = 128 },
		"eval-batch": func() { f.evalBatch = 128 },
		"lr":         func() { f.lr = 2e-4 },
		"hidden":     func() { f.hidden = 64 },
		"layers":     func() { f.layers = 6 },
		"noise":      func() { f.noise = "gaussian" },
		"reg":        func() { f.reg = 1e-3 },
	} {
		if !set[name] {
			apply()
		}
	}
	if !set["clip-adaptive"] && !set["clip-grad"] {
		f.clipAdaptive = true
	}
	if f.stabilitySamples == 0 {
		f.stabilitySamples = 100
	}
}

// runTrainMolecules is `enflow train --dataset qm9|molecules`: the molecule E-NF (atom types,
// charges and positions) on molecule tables, from scratch or --init-from a model directory.
func runTrainMolecules(ctx context.Context, env *Env, f *trainFlags, set map[string]bool) error {
	f.qm9Defaults(set)
	if !train.TrainsMolecules(f.model) {
		return fmt.Errorf("%w: --model %s: --dataset %s trains the molecule E-NF only", ErrUsage, f.model, f.dataset)
	}
	if f.jsSamples > 0 {
		return fmt.Errorf("%w: --js-samples is for qm9-positional only", ErrUsage)
	}
	system := f.dataset
	elements, err := train.MoleculeElements(f.data, system)
	if err != nil {
		return err
	}
	var ds [3]*train.MoleculeDataset
	for i, split := range []string{"train", "val", "test"} {
		if ds[i], err = train.LoadMoleculeSplit(f.data, system, split, elements); err != nil {
			return err
		}
	}
	if f.nData <= 0 {
		f.nData = ds[0].Len()
	}
	if f.nData > ds[0].Len() {
		return fmt.Errorf("%w: --n-data %d but %s has %d molecules", ErrUsage, f.nData, ds[0].Path, ds[0].Len())
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
	var spec train.ModelSpec
	switch {
	case f.resume:
		saved, err := train.LoadSpec(f.out)
		if err != nil {
			return err
		}
		spec = *saved
	case f.initFrom != "":
		// Fine-tuning keeps the source's architecture, elements and p(M) (so the first
		// evaluation reproduces its bound); the flow settings given on the command line apply.
		src, err := train.LoadModelSpec(f.initFrom)
		if err != nil {
			return fmt.Errorf("%w: --init-from: %v", ErrUsage, err)
		}
		spec = *src
		spec.Source = nil
		spec.System = system
		if set["dtype"] {
			spec.DType = f.dtype
		}
		applyCNFFlags(&spec.CNF, f, set)
	default:
		sizes, err := train.FitSizes(ds[0])
		if err != nil {
			return err
		}
		spec = train.DefaultQM9Spec(system, elements, sizes)
		if system == train.SystemQM9 {
			spec.Elements = nil // QM9's, recorded implicitly as the published model's
		}
		spec.DType, spec.Seed = f.dtype, f.seed
		spec.EGNN.Hidden, spec.EGNN.Layers = f.hidden, f.layers
		spec.CNF.Solver, spec.CNF.RTol, spec.CNF.ATol, spec.CNF.Steps = f.solver, f.rtol, f.atol, f.steps
		spec.CNF.Trace, spec.CNF.Noise, spec.CNF.Grad, spec.CNF.RegWeight = f.trace, f.noise, f.grad, f.reg
	}
	if f.valTrace == "" {
		f.valTrace = spec.CNF.Trace
	}
	if f.testTrace == "" {
		f.testTrace = spec.CNF.Trace
	}
	sched := train.Schedule{Epochs: f.epochs, TestEvery: f.testEvery, Batch: f.batch}
	b, err := backend.New(f.backendSpec)
	if err != nil {
		return fmt.Errorf("%w: --backend: %v", ErrUsage, err)
	}
	defer b.Finalize()
	logger := newCLILogger(env.Stderr, f.verbose)
	absData, err := filepath.Abs(f.data)
	if err != nil {
		return fmt.Errorf("train: %w", err)
	}
	if err := os.MkdirAll(f.out, 0o755); err != nil {
		return fmt.Errorf("train: %w", err)
	}
	info := &train.RunInfo{Dataset: system, DataDir: absData, NData: f.nData, Schedule: sched, LR: f.lr,
		Seed: f.seed, ValTrace: f.valTrace, TestTrace: f.testTrace, WD: &f.wd, EvalBatch: f.evalBatch,
		EvalN: f.evalN, MaxStepsEpoch: f.maxSteps, Keep: f.keep, ClipAdaptive: f.clipAdaptive,
		InitFrom: f.initFrom, StabilitySamples: max(f.stabilitySamples, 0)}
	if f.clipAdaptive {
		info.ClipQueueInit = 3000 // main_qm9.py seeds the queue with 3000 (REFERENCE §4.6)
	}
	opts := train.Options{
		Backend: b, Spec: spec, Train: ds[0], Val: ds[1], Test: ds[2], OutDir: f.out,
		Schedule: sched, EvalBatch: f.evalBatch, LearningRate: f.lr, WeightDecay: f.wd, Seed: f.seed,
		ValTrace: f.valTrace, TestTrace: f.testTrace, MaxStepsEpoch: f.maxSteps, Keep: f.keep, ClipGrad: f.clipGrad,
		Resume: f.resume, Logger: logger, ClipAdaptive: info.ClipAdaptive, ClipQueueInit: info.ClipQueueInit,
		InitFrom: f.initFrom,
	}
	if info.StabilitySamples > 0 {
		opts.Stability = &train.StabilityEval{N: info.StabilitySamples, Batch: min(100, info.StabilitySamples)}
	}
	res, runErr := startRun(ctx, env, f, info, &opts)
	if res == nil {
		return runErr
	}
	summary := map[string]any{
		"out_dir":        res.OutDir,
		"dataset":        system,
		"n_data":         f.nData,
		"elements":       spec.ElementsOrQM9(),
		"epochs":         res.Epochs,
		"steps":          res.Steps,
		"best_epoch":     res.BestEpoch,
		"best_val_nll":   nanToNil(res.BestValNLL),
		"test_nll":       nanToNil(res.BestTestNLL),
		"last_train_nll": nanToNil(res.LastTrain),
		"mol_stable":     nanToNil(res.BestMolStable),
		"wall_s":         math.Round(res.WallS*1000) / 1000,
		"interrupted":    res.Interrupted,
	}
	if !math.IsNaN(res.InitValNLL) {
		summary["init_val_nll"], summary["init_test_nll"] = res.InitValNLL, res.InitTestNLL
	}
	if err := Summary(env, f.asJSON, summary); err != nil {
		return errors.Join(runErr, err)
	}
	return runErr
}

// applyCNFFlags sets the flow settings given explicitly on the command line.
func applyCNFFlags(c *train.CNFSpec, f *trainFlags, set map[string]bool) {
	if set["solver"] {
		c.Solver = f.solver
	}
	if set["rtol"] {
		c.RTol = f.rtol
	}
	if set["atol"] {
		c.ATol = f.atol
	}
	if set["steps"] {
		c.Steps = f.steps
	}
	if set["trace"] {
		c.Trace = f.trace
	}
	if set["noise"] {
		c.Noise = f.noise
	}
	if set["grad"] {
		c.Grad = f.grad
	}
	if set["reg"] {
		c.RegWeight = f.reg
	}
}
