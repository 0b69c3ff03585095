package train

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/enflow/enflow/etl/atomicfile"
	"github.com/enflow/enflow/gomlx_models/energy"
	"github.com/enflow/enflow/gomlx_models/optim"
	"github.com/gomlx/gomlx/backends"
	mlctx "github.com/gomlx/gomlx/pkg/ml/context"
	"github.com/gomlx/gomlx/pkg/ml/context/checkpoints"
	"github.com/gomlx/gomlx/pkg/ml/train/optimizers"
	"github.com/schollz/progressbar/v3"
)

// ErrInterrupted is returned (wrapped) by Run when its context was cancelled: a checkpoint of
// the exact position was written and the run can be resumed.
var ErrInterrupted = errors.New("training interrupted")

// Options configures Run.
type Options struct {
	Backend backends.Backend
	// Spec is the model to train. Ignored when resuming (the run directory's model.json wins).
	Spec ModelSpec
	// Train, Val and Test are the splits; Train should already be cut to the first n_data rows.
	Train, Val, Test Dataset
	// OutDir is the run directory (see the layout in checkpoint.go).
	OutDir string

	Schedule      Schedule
	EvalBatch     int     // validation/test batch size (default 100)
	LearningRate  float64 // default 5e-4
	WeightDecay   float64 // default 1e-12 (a negative value means 0)
	Seed          uint64  // data order and per-step seeds (the model init uses Spec.Seed)
	ValTrace      string  // trace estimator for validation ("" = Spec.CNF.Trace)
	TestTrace     string  // trace estimator for test ("" = Spec.CNF.Trace; DW4 uses "exact")
	MaxStepsEpoch int     // > 0 caps the batches per epoch (quick runs)
	Keep          int     // checkpoints kept besides best (default 3)
	// Resume continues from the last checkpoint of OutDir. Without it, OutDir must not hold
	// checkpoints already.
	Resume bool
	// ClipGrad > 0 clips the global gradient norm to this value (torch clip_grad_norm_). It is
	// stored in the checkpoints, so a resumed run keeps it unless given again.
	ClipGrad float64
	// ClipAdaptive enables en_flows' adaptive clipping instead: max norm = 1.5·mean + 2·std of
	// the last 50 gradient norms, the queue seeded with ClipQueueInit (REFERENCE §4.6: 3000 for
	// QM9, 1e30 for QM9 Positional). Stored in the checkpoints like ClipGrad.
	ClipAdaptive  bool
	ClipQueueInit float64
	// JS, if not nil, draws samples at every evaluation epoch and records the Jensen–Shannon
	// divergence of their relative distances against a reference (QM9 Positional, Table 3).
	JS *JSEval
	// Stability, if not nil, samples molecules at every evaluation epoch and records their atom
	// and molecule stability (molecule kinds; en_flows main_qm9.py samples 1000).
	Stability *StabilityEval
	// InitFrom, if set, is a model directory (an enflow import-torch output, or a run or its
	// best/) whose trainable variables start a fresh run (fine-tuning): Spec must describe the
	// same architecture. The run then evaluates val and test once before the first step
	// (Result.InitValNLL/InitTestNLL) and skips data-dependent initialisation. Ignored when
	// resuming.
	InitFrom string
	// InitWhich picks InitFrom's checkpoint: "best" (default when present) or "last" (the
	// end of the source run, e.g. ML pre-training without early stopping before ML+KL).
	InitWhich string
	// Energy selects the objective (ML on data, reverse KL to a Boltzmann density, or both) and
	// its target (objective.go). The zero value is ML. A resumed run keeps the objective stored
	// in its checkpoint unless Energy.Objective is given.
	Energy EnergyOptions
	// Recovery configures divergence detection and rollback (recovery.go); on by default.
	Recovery RecoveryOptions
	// Progress, if not nil, receives a progress bar (typically os.Stderr).
	Progress io.Writer
	Logger   *slog.Logger
}

// Result summarises a run.
type Result struct {
	OutDir      string  `json:"out_dir"`
	Epochs      int     `json:"epochs"`     // epochs completed
	Steps       int64   `json:"steps"`      // optimizer steps taken
	BestEpoch   int     `json:"best_epoch"` // -1 if never evaluated
	BestValNLL  float64 `json:"best_val_nll"`
	BestTestNLL float64 `json:"test_nll"` // test NLL at the best validation epoch: the reported number
	LastTrain   float64 `json:"last_train_nll"`
	WallS       float64 `json:"wall_s"`
	Interrupted bool    `json:"interrupted"`
	Recoveries  int     `json:"recoveries"` // divergences rolled back (recoveries.csv)
	BestJS      float64 `json:"js_div"`     // sample JS divergence at the best validation epoch (NaN if not computed)
	// InitValNLL and InitTestNLL are the evaluation before the first step of a run started
	// with InitFrom (NaN otherwise).
	InitValNLL  float64 `json:"init_val_nll"`
	InitTestNLL float64 `json:"init_test_nll"`
	// BestMolStable is the sample molecule stability at the best validation epoch (NaN if not
	// computed).
	BestMolStable float64 `json:"mol_stable"`
}

func (o *Options) defaults() {
	if o.EvalBatch <= 0 {
		o.EvalBatch = 100
	}
	if o.LearningRate <= 0 {
		o.LearningRate = 5e-4
	}
	if o.WeightDecay == 0 {
		o.WeightDecay = 1e-12
	} else if o.WeightDecay < 0 {
		o.WeightDecay = 0
	}
	if o.Keep <= 0 {
		o.Keep = 3
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
}

func (o *Options) validate() error {
	switch {
	case o.Backend == nil:
		return fmt.Errorf("train: no backend")
	case o.OutDir == "":
		return fmt.Errorf("train: no output directory")
	case o.Train == nil || o.Val == nil || o.Test == nil:
		return fmt.Errorf("train: train, val and test datasets are required")
	case o.Schedule.Epochs <= 0 || o.Schedule.TestEvery <= 0 || o.Schedule.Batch <= 0:
		return fmt.Errorf("train: schedule %+v: epochs, test-every and batch must be positive", o.Schedule)
	case o.Train.Len() < o.Schedule.Batch:
		return fmt.Errorf("train: %d training examples is fewer than one batch of %d", o.Train.Len(), o.Schedule.Batch)
	}
	return nil
}

// trainer holds the live objects of a run.
type trainer struct {
	opts    Options
	log     *slog.Logger
	ctx     *mlctx.Context
	spec    *ModelSpec
	ckpt    *checkpoints.Handler
	model   Model
	val     Model
	test    Model
	models  []Model // every distinct model built (training first), sharing ctx's variables
	stepper *optim.Stepper
	state   *runState
	target  energy.Target // of Options.Energy when the objective uses KL
	metrics []EpochMetrics
	rec     *recovery
}

// Run trains (or resumes training of) a model, evaluating val/test every Schedule.TestEvery
// epochs, keeping the best-validation checkpoint in OutDir/best, and writing metrics after each
// epoch. When ctx is cancelled it checkpoints the exact position and returns ErrInterrupted.
func Run(ctx context.Context, opts Options) (*Result, error) {
	opts.defaults()
	if err := opts.validate(); err != nil {
		return nil, err
	}
	t := &trainer{opts: opts, log: opts.Logger}
	if err := t.setup(); err != nil {
		return nil, err
	}
	defer t.stepper.Close()
	return t.loop(ctx)
}

func (t *trainer) setup() error {
	o := &t.opts
	if err := os.MkdirAll(o.OutDir, 0o755); err != nil {
		return fmt.Errorf("train: %w", err)
	}
	if err := repairRunDir(o.OutDir, t.log); err != nil {
		return err
	}
	existing, err := listCheckpoints(o.OutDir)
	if err != nil {
		return err
	}
	if o.Resume {
		if len(existing) == 0 {
			return fmt.Errorf("train: --resume: no checkpoint in %s", o.OutDir)
		}
		if t.spec, err = LoadSpec(o.OutDir); err != nil {
			return err
		}
	} else {
		if len(existing) > 0 {
			return fmt.Errorf("train: %s already holds checkpoints: resume it or choose another output directory", o.OutDir)
		}
		spec := o.Spec
		t.spec = &spec
		if err := FillBaselineDefaults(t.spec); err != nil {
			return err
		}
		if err := t.spec.Validate(); err != nil {
			return err
		}
		if err := SaveSpec(o.OutDir, t.spec); err != nil {
			return err
		}
	}

	t.ctx = mlctx.New()
	t.ctx.SetParam(mlctx.ParamInitialSeed, int64(t.spec.Seed))
	t.ctx.SetParam(optimizers.ParamLearningRate, o.LearningRate)
	t.ctx.SetParam(optim.ParamWeightDecay, o.WeightDecay)
	t.ckpt, err = checkpoints.Build(t.ctx).Dir(o.OutDir).Keep(o.Keep).Done()
	if err != nil {
		return fmt.Errorf("train: opening checkpoints in %s: %w", o.OutDir, err)
	}
	if o.ClipGrad > 0 {
		t.ctx.SetParam(optim.ParamClipGradNorm, o.ClipGrad)
	}
	if o.ClipAdaptive {
		t.ctx.SetParam(optim.ParamClipAdaptive, true)
		if o.ClipQueueInit > 0 {
			t.ctx.SetParam(optim.ParamClipQueueInit, o.ClipQueueInit)
		}
	}
	t.rec = newRecovery(o.Recovery, t.log, o.OutDir)
	if err := t.rec.load(t.ctx); err != nil {
		return err
	}
	st, found, err := loadRunState(t.ctx)
	if err != nil {
		return err
	}
	switch {
	case o.Resume && !found:
		return fmt.Errorf("train: the last checkpoint in %s has no driver state", o.OutDir)
	case found:
		t.state = st
		if t.metrics, err = ReadMetricsCSV(o.OutDir); err != nil {
			return err
		}
		kept := t.metrics[:0]
		for _, m := range t.metrics {
			if m.Epoch < st.Epoch {
				kept = append(kept, m)
			}
		}
		t.metrics = kept
		if err := refreshBest(o.OutDir, st, t.log); err != nil {
			return err
		}
		t.log.Info("resuming", "dir", o.OutDir, "epoch", st.Epoch, "batch", st.Batch, "step", st.Step)
	default:
		if t.state, err = newRunState(o.Seed); err != nil {
			return err
		}
	}

	if err := t.resolveEnergy(found); err != nil {
		return err
	}
	fresh := !found
	if fresh && o.InitFrom != "" {
		if err := t.initFrom(o.InitFrom, o.InitWhich); err != nil {
			return err
		}
	}
	// Models: training, and evaluation ones differing only in the trace estimator. All share the
	// variables of t.ctx.
	if t.model, err = BuildModel(o.Backend, t.ctx, t.spec); err != nil {
		return err
	}
	if di, ok := t.model.(DataInitializer); ok && fresh && o.InitFrom == "" {
		idx, seed, err := t.firstBatch()
		if err != nil {
			return err
		}
		b, err := o.Train.Batch(idx)
		if err != nil {
			return fmt.Errorf("train: data-dependent initialisation: %w", err)
		}
		err = di.InitFromData(b, seed)
		b.Finalize()
		if err != nil {
			return fmt.Errorf("train: data-dependent initialisation: %w", err)
		}
		t.log.Info("data-dependent initialisation on the first training batch", "molecules", len(idx))
	}
	built := map[string]Model{t.spec.CNF.Trace: t.model}
	evalModel := func(trace string) (Model, error) {
		if trace == "" {
			trace = t.spec.CNF.Trace
		}
		if m, ok := built[trace]; ok {
			return m, nil
		}
		s := *t.spec
		s.CNF.Trace = trace
		m, err := BuildModel(o.Backend, t.ctx, &s)
		if err != nil {
			return nil, err
		}
		built[trace] = m
		return m, nil
	}
	if t.val, err = evalModel(o.ValTrace); err != nil {
		return err
	}
	if t.test, err = evalModel(o.TestTrace); err != nil {
		return err
	}
	t.models = []Model{t.model}
	for trace, m := range built {
		if trace != t.spec.CNF.Trace {
			t.models = append(t.models, m)
		}
	}
	if err := t.rec.applyTolerances(t); err != nil {
		return err
	}
	if o.Energy.Objective != ObjectiveML {
		em, ok := t.model.(EnergyModel)
		if !ok {
			return fmt.Errorf("train: model kind %q cannot be trained by energy (--objective %s); kinds that can: enf, the baselines, realnvp", t.spec.Kind, o.Energy.Objective)
		}
		if err := em.SetTarget(t.target); err != nil {
			return err
		}
	}

	cfg := optim.AdamW().FromContext(t.ctx).LearningRate(o.LearningRate).WeightDecay(o.WeightDecay).AMSGrad(true)
	if cf, ok := t.model.(ClipFilter); ok {
		cfg = cfg.ClipOnly(cf.ClipVariable)
	}
	opt, err := cfg.Done()
	if err != nil {
		return err
	}
	if t.stepper, err = optim.NewStepper(o.Backend, t.ctx, opt, t.model.Variables()); err != nil {
		return err
	}
	return nil
}

func (t *trainer) loop(ctx context.Context) (*Result, error) {
	o := &t.opts
	st := t.state
	sched := o.Schedule
	t.log.Info("training", "dir", o.OutDir, "kind", t.spec.Kind, "system", t.spec.System,
		"n_train", o.Train.Len(), "epochs", sched.Epochs, "test_every", sched.TestEvery, "batch", sched.Batch,
		"lr", o.LearningRate, "seed", st.Seed)

	if o.InitFrom != "" && st.Step == 0 && st.Epoch == 0 && st.Batch == 0 && st.InitVal == nil {
		if err := t.initialEvaluation(ctx); err != nil {
			return nil, err
		}
	}
	for st.Epoch < sched.Epochs {
		epochStart := time.Now()
		pcg, err := st.rng()
		if err != nil {
			return nil, err
		}
		rng := rand.New(pcg)
		batches := EpochBatches(o.Train.Len(), sched.Batch, rng)
		seeds := make([]uint64, len(batches))
		for i := range seeds {
			seeds[i] = rng.Uint64()
		}
		if o.MaxStepsEpoch > 0 && len(batches) > o.MaxStepsEpoch {
			batches = batches[:o.MaxStepsEpoch]
		}
		bar := t.newBar(len(batches), st.Batch)
		if err := t.rec.epochStart(t); err != nil {
			return nil, err
		}

		interrupt := func(cause error) (*Result, error) {
			st.EpochWallS += time.Since(epochStart).Seconds()
			st.TotalWallS += time.Since(epochStart).Seconds()
			if bar != nil {
				_ = bar.Exit()
			}
			if err := t.checkpoint(); err != nil {
				return nil, errors.Join(cause, err)
			}
			res := t.result(true)
			if err := t.writeResult(res); err != nil {
				t.log.Warn("writing result", "err", err)
			}
			t.log.Warn("interrupted; checkpoint written", "epoch", st.Epoch, "batch", st.Batch, "step", st.Step)
			return res, fmt.Errorf("%w at epoch %d, batch %d (resume with --resume): %w", ErrInterrupted, st.Epoch, st.Batch, cause)
		}

		for st.Batch < len(batches) {
			if err := ctx.Err(); err != nil {
				return interrupt(err)
			}
			if err := t.trainStep(batches[st.Batch], seeds[st.Batch]); err != nil {
				retry, err := t.recoverStep(err)
				if retry { // rolled back to the last good state: replay from st.Batch
					if bar != nil {
						_ = bar.Set(st.Batch)
					}
					continue
				}
				if bar != nil {
					_ = bar.Exit()
				}
				return nil, fmt.Errorf("train: epoch %d, batch %d: %w", st.Epoch, st.Batch, err)
			}
			st.Batch++
			if err := t.rec.good(t); err != nil {
				return nil, err
			}
			if bar != nil {
				bar.Describe(fmt.Sprintf("epoch %d/%d nll %.4f", st.Epoch+1, sched.Epochs, st.SumNLL/float64(st.Batch)))
				_ = bar.Add(1)
			}
		}
		if bar != nil {
			_ = bar.Finish()
		}

		row := EpochMetrics{
			Epoch: st.Epoch, Step: st.Step, ValNLL: math.NaN(), TestNLL: math.NaN(),
			NFEForward: st.NFEForward, NFEBackward: st.NFEBackward, JS: math.NaN(), BestJS: math.NaN(),
			AtomStable: math.NaN(), MolStable: math.NaN(), BestMolStable: math.NaN(),
		}
		if n := float64(len(batches)); n > 0 {
			row.TrainNLL, row.TrainLoss, row.GradNorm = st.SumNLL/n, st.SumLoss/n, st.SumGradNorm/n
		}
		row.TrainKL, row.TrainKLPrior, row.TrainEnergy, row.Lambda = math.NaN(), math.NaN(), math.NaN(), math.NaN()
		if st.NKL > 0 {
			n := float64(st.NKL)
			row.TrainKL, row.TrainKLPrior, row.TrainEnergy = st.SumKL/n, st.SumKLPrior/n, st.SumEnergy/n
		}
		if o.Energy.Objective == ObjectiveMLKL {
			row.Lambda = o.Energy.Lambda.At(st.Epoch, sched.Epochs)
		}
		newBest := false
		if st.Epoch%sched.TestEvery == 0 {
			val, err := Evaluate(ctx, t.val, o.Val, o.EvalBatch, evalSeed(st.Seed, st.Epoch, "val"))
			if err != nil {
				if ctx.Err() != nil {
					return interrupt(ctx.Err())
				}
				return nil, fmt.Errorf("train: epoch %d validation: %w", st.Epoch, err)
			}
			test, err := Evaluate(ctx, t.test, o.Test, o.EvalBatch, evalSeed(st.Seed, st.Epoch, "test"))
			if err != nil {
				if ctx.Err() != nil {
					return interrupt(ctx.Err())
				}
				return nil, fmt.Errorf("train: epoch %d test: %w", st.Epoch, err)
			}
			row.ValNLL, row.TestNLL, row.NFEEval = val.NLL, test.NLL, int64(val.NFE+test.NFE)
			if o.JS != nil {
				js, nfe, err := o.JS.Evaluate(ctx, t.model, t.spec, evalSeed(st.Seed, st.Epoch, "js"))
				if err != nil {
					if ctx.Err() != nil {
						return interrupt(ctx.Err())
					}
					return nil, fmt.Errorf("train: epoch %d sample JS divergence: %w", st.Epoch, err)
				}
				row.JS = js
				row.NFEEval += int64(nfe)
			}
			if o.Stability != nil {
				sr, err := o.Stability.Evaluate(ctx, t.model, evalSeed(st.Seed, st.Epoch, "stability"))
				if err != nil {
					if ctx.Err() != nil {
						return interrupt(ctx.Err())
					}
					return nil, fmt.Errorf("train: epoch %d sample stability: %w", st.Epoch, err)
				}
				row.AtomStable, row.MolStable = sr.AtomStable, sr.MolStable
				row.NFEEval += int64(sr.NFE)
			}
			if st.BestEpoch < 0 || val.NLL < st.BestVal {
				st.BestEpoch, st.BestVal, st.BestTest = st.Epoch, val.NLL, test.NLL
				st.BestJS = nil
				if !math.IsNaN(row.JS) {
					js := row.JS
					st.BestJS = &js
				}
				st.BestMolStable = nil
				if !math.IsNaN(row.MolStable) {
					ms := row.MolStable
					st.BestMolStable = &ms
				}
				newBest = true
			}
		}
		row.BestValNLL, row.BestTestNLL = math.NaN(), math.NaN()
		if st.BestEpoch >= 0 {
			row.BestValNLL, row.BestTestNLL = st.BestVal, st.BestTest
		}
		if st.BestJS != nil {
			row.BestJS = *st.BestJS
		}
		if st.BestMolStable != nil {
			row.BestMolStable = *st.BestMolStable
		}
		row.LR, _ = optim.LearningRate(t.ctx)
		wall := time.Since(epochStart).Seconds()
		row.WallS = st.EpochWallS + wall
		st.TotalWallS += wall

		// Next epoch starts from the RNG state after this epoch's draws.
		if err := st.setRNG(pcg); err != nil {
			return nil, err
		}
		st.Epoch++
		st.Batch = 0
		st.SumNLL, st.SumLoss, st.SumGradNorm, st.NFEForward, st.NFEBackward, st.EpochWallS = 0, 0, 0, 0, 0, 0
		st.SumKL, st.SumKLPrior, st.SumEnergy, st.NKL = 0, 0, 0, 0
		// Metrics first: a kill before the checkpoint redoes this epoch (its row is then
		// dropped on resume); the other order would lose the row for good.
		t.metrics = append(t.metrics, row)
		if err := writeMetrics(o.OutDir, t.metrics); err != nil {
			return nil, err
		}
		if err := t.checkpoint(); err != nil {
			return nil, err
		}
		if newBest {
			if err := copyLatestTo(o.OutDir, filepath.Join(o.OutDir, BestDir)); err != nil {
				return nil, fmt.Errorf("train: saving best checkpoint: %w", err)
			}
		}
		attrs := []any{"epoch", row.Epoch, "step", row.Step, "train_nll", row.TrainNLL, "val_nll", row.ValNLL,
			"test_nll", row.TestNLL, "best_epoch", st.BestEpoch, "best_test_nll", row.BestTestNLL,
			"wall_s", row.WallS, "nfe_fwd", row.NFEForward, "nfe_bwd", row.NFEBackward, "lr", row.LR}
		if o.JS != nil {
			attrs = append(attrs, "js_div", row.JS, "best_js_div", row.BestJS)
		}
		if o.Stability != nil {
			attrs = append(attrs, "atom_stable", row.AtomStable, "mol_stable", row.MolStable)
		}
		if !math.IsNaN(row.TrainKL) {
			attrs = append(attrs, "train_kl", row.TrainKL, "train_kl_prior", row.TrainKLPrior, "train_energy", row.TrainEnergy)
			if !math.IsNaN(row.Lambda) {
				attrs = append(attrs, "lambda", row.Lambda)
			}
		}
		t.log.Info("epoch", attrs...)
	}
	res := t.result(false)
	if err := t.writeResult(res); err != nil {
		return nil, err
	}
	t.log.Info("done", "epochs", res.Epochs, "steps", res.Steps, "best_epoch", res.BestEpoch,
		"best_val_nll", res.BestValNLL, "test_nll", res.BestTestNLL)
	if !math.IsNaN(res.InitValNLL) && !math.IsNaN(res.BestValNLL) && res.BestValNLL > res.InitValNLL {
		// best/ is chosen among the trained epochs; say plainly when none beat the source.
		t.log.Warn("fine-tuning did not improve on the --init-from weights: their validation bound is lower than best/'s (try a smaller --lr)",
			"init_from", o.InitFrom, "init_val_nll", res.InitValNLL, "best_val_nll", res.BestValNLL)
	}
	return res, nil
}

// trainStep runs one optimizer step on the batch idx.
func (t *trainer) trainStep(idx []int, seed uint64) error {
	st := t.state
	if err := t.rec.beforeStep(t); err != nil {
		return err
	}
	b, err := t.opts.Train.Batch(idx)
	if err != nil {
		return err
	}
	if b.X != nil {
		if b.X, err = augmentBatch(t.spec, b.X, seed); err != nil {
			b.Finalize()
			return err
		}
	}
	defer b.Finalize()
	so, err := t.objectiveStep(b, seed)
	if err != nil {
		if d := t.rec.lossAndGradFailed(err); d != nil {
			return d
		}
		return fmt.Errorf("loss and gradients: %w", err)
	}
	loss, nll, grads, stats := so.loss, so.nll, so.grads, so.stats
	defer finalize(grads...)
	if d := t.rec.checkLoss(loss); d != nil { // non-finite loss or loss spike
		return d
	}
	res, err := t.stepper.Step(grads)
	if err != nil {
		return err
	}
	if d := t.rec.checkGradNorm(loss, res.GradNorm); d != nil {
		return d
	}
	t.rec.last = loss
	st.Step++
	st.SumNLL += nll
	st.SumLoss += loss
	if !math.IsNaN(so.kl.KL) {
		st.SumKL += so.kl.KL
		st.SumKLPrior += so.kl.KLPrior
		st.SumEnergy += so.kl.MeanEnergy
		st.NKL++
	}
	st.SumGradNorm += res.GradNorm
	st.NFEForward += int64(stats.NFEForward)
	st.NFEBackward += int64(stats.NFEBackward)
	return nil
}

// checkpoint stores the run state into the context and saves a GoMLX checkpoint.
func (t *trainer) checkpoint() error {
	if err := t.state.store(t.ctx); err != nil {
		return err
	}
	if err := t.rec.store(t.ctx); err != nil {
		return err
	}
	if err := t.ckpt.Save(); err != nil {
		return fmt.Errorf("train: saving checkpoint: %w", err)
	}
	return syncLatestCheckpoint(t.opts.OutDir)
}

func (t *trainer) newBar(total, done int) *progressbar.ProgressBar {
	if t.opts.Progress == nil || total == 0 {
		return nil
	}
	bar := progressbar.NewOptions(total,
		progressbar.OptionSetWriter(t.opts.Progress),
		progressbar.OptionSetDescription(fmt.Sprintf("epoch %d/%d", t.state.Epoch+1, t.opts.Schedule.Epochs)),
		progressbar.OptionShowCount(),
		progressbar.OptionSetItsString("batch"),
		progressbar.OptionShowIts(),
		progressbar.OptionThrottle(200*time.Millisecond),
		progressbar.OptionOnCompletion(func() { fmt.Fprintln(t.opts.Progress) }),
	)
	if done > 0 {
		_ = bar.Set(done)
	}
	return bar
}

func (t *trainer) result(interrupted bool) *Result {
	st := t.state
	r := &Result{
		OutDir: t.opts.OutDir, Epochs: st.Epoch, Steps: st.Step, BestEpoch: st.BestEpoch,
		BestValNLL: math.NaN(), BestTestNLL: math.NaN(), LastTrain: math.NaN(),
		WallS: st.TotalWallS, Interrupted: interrupted, Recoveries: t.rec.state.Events, BestJS: math.NaN(),
		InitValNLL: math.NaN(), InitTestNLL: math.NaN(), BestMolStable: math.NaN(),
	}
	if st.BestMolStable != nil {
		r.BestMolStable = *st.BestMolStable
	}
	if st.InitVal != nil && st.InitTest != nil {
		r.InitValNLL, r.InitTestNLL = *st.InitVal, *st.InitTest
	}
	if st.BestJS != nil {
		r.BestJS = *st.BestJS
	}
	if st.BestEpoch >= 0 {
		r.BestValNLL, r.BestTestNLL = st.BestVal, st.BestTest
	}
	if n := len(t.metrics); n > 0 {
		r.LastTrain = t.metrics[n-1].TrainNLL
	}
	return r
}

// writeResult writes OutDir/result.json atomically (NaN as null).
func (t *trainer) writeResult(r *Result) error {
	m := map[string]any{
		"out_dir": r.OutDir, "epochs": r.Epochs, "steps": r.Steps, "best_epoch": r.BestEpoch,
		"best_val_nll": jsonFloat(r.BestValNLL), "test_nll": jsonFloat(r.BestTestNLL),
		"last_train_nll": jsonFloat(r.LastTrain), "wall_s": r.WallS, "interrupted": r.Interrupted,
		"recoveries": r.Recoveries, "js_div": jsonFloat(r.BestJS),
	}
	if !math.IsNaN(r.BestMolStable) {
		m["mol_stable"] = r.BestMolStable
	}
	if dims := t.spec.DensityDims(); dims > 0 {
		// Both NLL conventions (papers differ): with the Gaussian normaliser (E-NF) and without.
		off := t.spec.GaussianNormaliser()
		m["nll_dims"] = dims
		m["best_val_nll_without_normaliser"] = jsonFloat(r.BestValNLL - off)
		m["test_nll_without_normaliser"] = jsonFloat(r.BestTestNLL - off)
	}
	if !math.IsNaN(r.InitValNLL) {
		m["init_val_nll"], m["init_test_nll"] = jsonFloat(r.InitValNLL), jsonFloat(r.InitTestNLL)
	}
	data, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return fmt.Errorf("train: encoding result: %w", err)
	}
	path := filepath.Join(t.opts.OutDir, ResultFileName)
	return atomicfile.Write(path, func(w io.Writer) error {
		_, err := w.Write(append(data, '\n'))
		return err
	})
}

// jsonFloat maps NaN/Inf to nil so encoding/json accepts it.
func jsonFloat(x float64) any {
	if math.IsNaN(x) || math.IsInf(x, 0) {
		return nil
	}
	return x
}

// firstBatch returns the rows and the step seed of the first training batch of a fresh run
// (the draws loop makes at epoch 0, from a copy of the RNG state).
func (t *trainer) firstBatch() ([]int, uint64, error) {
	pcg, err := t.state.rng()
	if err != nil {
		return nil, 0, err
	}
	rng := rand.New(pcg)
	batches := EpochBatches(t.opts.Train.Len(), t.opts.Schedule.Batch, rng)
	if len(batches) == 0 {
		return nil, 0, fmt.Errorf("train: no training batch")
	}
	seeds := make([]uint64, len(batches))
	for i := range seeds {
		seeds[i] = rng.Uint64()
	}
	return batches[0], seeds[0], nil
}

// initFrom copies the trainable variables of the model in dir into the fresh context (before
// the models are built, which then bind them). The source must be the same kind and
// architecture as the run's spec.
func (t *trainer) initFrom(dir, which string) error {
	lm, err := LoadCheckpointAs(dir, which, t.spec.DType)
	if err != nil {
		return fmt.Errorf("train: --init-from: %w", err)
	}
	if err := sameArchitecture(lm.Spec, t.spec); err != nil {
		return fmt.Errorf("train: --init-from %s: %w", dir, err)
	}
	n := 0
	for v := range lm.Ctx.IterVariables() {
		if !v.Trainable {
			continue
		}
		val, err := v.Value()
		if err != nil {
			return fmt.Errorf("train: --init-from %s: variable %s: %w", dir, v.ScopeAndName(), err)
		}
		clone, err := val.LocalClone()
		if err != nil {
			return fmt.Errorf("train: --init-from %s: variable %s: %w", dir, v.ScopeAndName(), err)
		}
		err = catchPanic(func() error {
			t.ctx.InAbsPath(v.Scope()).Checked(false).VariableWithValue(v.Name(), clone)
			return nil
		})
		if err != nil {
			return fmt.Errorf("train: --init-from %s: variable %s: %w", dir, v.ScopeAndName(), err)
		}
		n++
	}
	if n == 0 {
		return fmt.Errorf("train: --init-from %s: no trainable variables", dir)
	}
	t.log.Info("initialised from a checkpoint", "dir", lm.Dir, "variables", n)
	return nil
}

// sameArchitecture checks that a model of spec src can initialise one of spec dst.
func sameArchitecture(src, dst *ModelSpec) error {
	switch {
	case src.Kind != dst.Kind:
		return fmt.Errorf("model kind %q, the run is %q", src.Kind, dst.Kind)
	case src.EGNN.Hidden != dst.EGNN.Hidden || src.EGNN.Layers != dst.EGNN.Layers || src.EGNN.Attention != dst.EGNN.Attention || src.EGNN.Tanh != dst.EGNN.Tanh:
		return fmt.Errorf("EGNN %+v, the run's is %+v", src.EGNN, dst.EGNN)
	case (src.Dequantizer == nil) != (dst.Dequantizer == nil) || (src.Dequantizer != nil && *src.Dequantizer != *dst.Dequantizer):
		return fmt.Errorf("a different dequantizer EGNN")
	case !slices.Equal(src.ElementsOrQM9(), dst.ElementsOrQM9()) && src.Kind == QM9Kind:
		return fmt.Errorf("elements %v, the run's are %v", src.ElementsOrQM9(), dst.ElementsOrQM9())
	case (src.RealNVP == nil) != (dst.RealNVP == nil) || (src.RealNVP != nil && *src.RealNVP != *dst.RealNVP):
		return fmt.Errorf("a different RealNVP configuration")
	case src.Kind != QM9Kind && (src.Nodes != dst.Nodes || src.Dim != dst.Dim):
		return fmt.Errorf("%d × %d configurations, the run's are %d × %d", src.Nodes, src.Dim, dst.Nodes, dst.Dim)
	}
	return nil
}

// initialEvaluation evaluates val and test before the first step of an --init-from run.
func (t *trainer) initialEvaluation(ctx context.Context) error {
	o, st := &t.opts, t.state
	val, err := Evaluate(ctx, t.val, o.Val, o.EvalBatch, evalSeed(st.Seed, -1, "val"))
	if err != nil {
		return fmt.Errorf("train: initial validation: %w", err)
	}
	test, err := Evaluate(ctx, t.test, o.Test, o.EvalBatch, evalSeed(st.Seed, -1, "test"))
	if err != nil {
		return fmt.Errorf("train: initial test: %w", err)
	}
	st.InitVal, st.InitTest = &val.NLL, &test.NLL
	t.log.Info("initial evaluation (--init-from)", "val_nll", val.NLL, "test_nll", test.NLL, "nfe", val.NFE+test.NFE)
	return nil
}
