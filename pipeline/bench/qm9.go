package bench

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/gomlx/gomlx/pkg/core/dtypes"
	. "github.com/gomlx/gomlx/pkg/core/graph" //nolint:revive // GoMLX idiom.
	"github.com/gomlx/gomlx/pkg/core/tensors"
	mlctx "github.com/gomlx/gomlx/pkg/ml/context"

	"github.com/enflow/enflow/etl/molecule"
	etlqm9 "github.com/enflow/enflow/etl/qm9"
	"github.com/enflow/enflow/gomlx_models/optim"
	"github.com/enflow/enflow/gomlx_models/prior"
	"github.com/enflow/enflow/gomlx_models/qm9"
	"github.com/enflow/enflow/gomlx_models/torchimport"
	"github.com/enflow/enflow/internal/shared"
	"github.com/enflow/enflow/pipeline/metrics"
)

// QM9 dynamics cases: 64 molecules × 29 atoms (the largest QM9 size), as in
// docs/reference-timings.md.
const (
	qm9DynBatch = 64
	qm9DynNodes = 29
)

func (o *Options) qm9Dir() string {
	if o.QM9Dir != "" {
		return o.QM9Dir
	}
	dir := o.Shared
	if dir == "" {
		dir = shared.Dir()
	}
	if dir == "" {
		return ""
	}
	return filepath.Join(dir, "data", "pretrained", "en_flows_qm9")
}

// loadQM9 builds the QM9 E-NF with the published weights (float32), imported directly from the
// en_flows files (flow.npy, dequantizer.npy, args.pickle).
func loadQM9(env *caseEnv) (*qm9.Model, error) {
	dir := env.opts.qm9Dir()
	if dir == "" {
		return nil, fmt.Errorf("bench: no shared folder: cannot find the published QM9 checkpoint")
	}
	if _, err := os.Stat(filepath.Join(dir, "flow.npy")); err != nil {
		return nil, fmt.Errorf("bench: published QM9 checkpoint: %w", err)
	}
	ns, err := torchimport.LoadNamespace(filepath.Join(dir, "args.pickle"))
	if err != nil {
		return nil, err
	}
	arch, err := qm9.ArchFromTorchArgs(ns)
	if err != nil {
		return nil, err
	}
	cfg, err := arch.Config(dtypes.Float32, nil, prior.Sizes{})
	if err != nil {
		return nil, err
	}
	flow, err := torchimport.LoadStateDict(filepath.Join(dir, "flow.npy"))
	if err != nil {
		return nil, err
	}
	deq, err := torchimport.LoadStateDict(filepath.Join(dir, "dequantizer.npy"))
	if err != nil {
		return nil, err
	}
	ctx := mlctx.New()
	if err := qm9.ImportTorch(ctx, cfg, flow, deq); err != nil {
		return nil, err
	}
	return qm9.New(env.b, ctx, cfg)
}

// qm9DynCase times the QM9 dynamics (mode "forward" or "vjp") on b × n random states
// (CoG-free positions, standard-normal features: the prior, i.e. the start of sampling).
// With calls > 0 an op is calls evaluations and times are per molecule (per b·calls).
func qm9DynCase(mode string, b, n, calls int) func(env *caseEnv) (func(int) (opStats, error), func(), error) {
	return func(env *caseEnv) (func(int) (opStats, error), func(), error) {
		m, err := loadQM9(env)
		if err != nil {
			return nil, nil, err
		}
		c := qm9.Channels
		rng := rand.New(rand.NewPCG(5, 7))
		z, err := prior.SamplePositionFeature(rng, dtypes.Float32, b, n, c, qm9.PosDims, nil)
		if err != nil {
			return nil, nil, err
		}
		ones := make([]float64, b*n)
		for i := range ones {
			ones[i] = 1
		}
		mask, _ := prior.FromFloat64(dtypes.Float32, ones, b, n)
		eps, _ := prior.SampleStandardNormal(rng, dtypes.Float32, b, n, c, nil)
		fn := m.Dynamics()
		fctx := m.Context().In(qm9.ScopeFlow)
		exec, err := mlctx.NewExec(env.b, fctx, func(ctx *mlctx.Context, in []*Node) []*Node {
			t, x, mk, e := in[0], in[1], in[2], in[3]
			ctx = ctx.Checked(false)
			f := fn(ctx, t, x, mk)
			if mode == "forward" {
				return []*Node{f}
			}
			return []*Node{f, Gradient(ReduceAllSum(Mul(f, e)), x)[0]}
		})
		if err != nil {
			return nil, nil, err
		}
		op := func(int) (opStats, error) {
			for range max(calls, 1) {
				out, err := exec.Exec(float32(0.5), z, mask, eps)
				if err != nil {
					return opStats{}, err
				}
				for _, o := range out {
					_ = o.FinalizeAll()
				}
			}
			if calls > 0 {
				return opStats{nfe: 1, perOp: b * calls}, nil
			}
			return opStats{nfe: 1}, nil
		}
		cleanup := func() {
			exec.Finalize()
			for _, t := range []*tensors.Tensor{z, mask, eps} {
				_ = t.FinalizeAll()
			}
		}
		return op, cleanup, nil
	}
}

// qm9Sizes draws the molecule sizes of the sampling cases from p(N) (the QM9 train histogram).
func qm9Sizes(o *Options) []int { return metrics.NewNodeSampler(42).SampleN(o.QM9Molecules) }

// QM9 sampling modes.
const (
	sampleBatched  = "batched"  // molecules of one size share a solve (up to 100 per solve)
	sampleSingle   = "single"   // one molecule per solve
	sampleBucketed = "bucketed" // sizes merged into QM9Buckets padded ranges, up to 100 per solve
)

// qm9SampleCase times qm9.Model.Sample on the QM9Molecules sizes of qm9Sizes (the one-at-a-time
// case: the first QM9SingleMolecules of them). Repeat r uses seed r+2 in every mode, and a
// molecule's prior draw depends only on (seed, index, size), so the modes integrate the same
// z. The warm-up run (seed 1) compiles every shape; ms is per molecule.
func qm9SampleCase(mode string) func(env *caseEnv) (func(int) (opStats, error), func(), error) {
	return func(env *caseEnv) (func(int) (opStats, error), func(), error) {
		m, err := loadQM9(env)
		if err != nil {
			return nil, nil, err
		}
		sizes := qm9Sizes(env.opts)
		o := qm9.SampleOptions{Sizes: sizes, Batch: 100, Workers: env.opts.QM9Workers}
		workers := o.Workers
		if workers <= 0 {
			workers = qm9.DefaultSampleWorkers
		}
		switch mode {
		case sampleSingle:
			sizes = sizes[:min(len(sizes), env.opts.QM9SingleMolecules)]
			o.Sizes, o.Batch = sizes, 1
		case sampleBucketed:
			o.Buckets = env.opts.QM9Buckets
		}
		shapes := map[[2]int]bool{}
		for _, g := range qm9.PlanSampleBatches(o.Sizes, o.Batch, o.Buckets) {
			shapes[[2]int{len(g.Indices), g.Atoms}] = true
		}
		op := func(rep int) (opStats, error) {
			o.Seed = uint64(rep + 2)
			if rep < 0 {
				o.Seed = 1
			}
			res, err := m.Sample(env.ctx, o)
			if err != nil {
				return opStats{}, err
			}
			if res.Failed > 0 {
				env.logf("%d of %d molecules failed", res.Failed, len(sizes))
			}
			note := fmt.Sprintf("failed=%d workers=%d sizes=%s", res.Failed, workers, joinInts(sizes))
			if o.Buckets > 0 {
				note = fmt.Sprintf("buckets=%d %s", o.Buckets, note)
			}
			return opStats{nfe: res.NFE, perOp: len(sizes), note: note, molecules: len(sizes), solves: res.Solves,
				shapes: len(shapes), moleculeNFE: res.MoleculeNFE}, nil
		}
		return op, nil, nil
	}
}

func init() {
	fixed := func(n int) func(*Options) int { return func(*Options) int { return n } }
	register(&runner{name: "qm9/forward", unit: "eval", batch: fixed(qm9DynBatch), setup: qm9DynCase("forward", qm9DynBatch, qm9DynNodes, 0)})
	register(&runner{name: "qm9/vjp", unit: "eval", batch: fixed(qm9DynBatch), setup: qm9DynCase("vjp", qm9DynBatch, qm9DynNodes, 0)})
	// The dynamics of 18-atom molecules (the typical QM9 size), 64 calls of one molecule vs one
	// call of 64, times per molecule: how much batching can save per evaluation at all
	// (interleaved; speedup vs one per call).
	const dyn1 = "qm9/forward_18atoms_b1"
	register(&runner{name: dyn1, unit: "molecule-eval", batch: fixed(1), setup: qm9DynCase("forward", 1, 18, 64), group: "qm9/forward_18atoms"})
	register(&runner{name: "qm9/forward_18atoms_b64", unit: "molecule-eval", batch: fixed(64), setup: qm9DynCase("forward", 64, 18, 1),
		group: "qm9/forward_18atoms", baseline: dyn1})
	const group, single = "qm9/sample", "qm9/sample_single"
	register(&runner{name: "qm9/sample_batched", unit: "molecule", batch: fixed(100), setup: qm9SampleCase(sampleBatched),
		group: group, baseline: single})
	register(&runner{name: single, unit: "molecule", batch: fixed(1), setup: qm9SampleCase(sampleSingle), group: group})
	register(&runner{name: "qm9/sample_bucketed", unit: "molecule", batch: fixed(100), setup: qm9SampleCase(sampleBucketed),
		group: group, baseline: single})
}

func joinInts(v []int) string {
	parts := make([]string, len(v))
	for i, x := range v {
		parts[i] = strconv.Itoa(x)
	}
	return strings.Join(parts, ",")
}

// qm9TrainBatch is the batch of the QM9 training-iteration case: the first molecules of the
// shipped test split in file order, padded to the largest of them (en_flows' collate). The
// reference trains with 128; 32 keeps one iteration in seconds on a CPU.
const qm9TrainBatch = 32

// qm9TrainMolecules reads the first n molecules of the shipped QM9 test split.
func qm9TrainMolecules(o *Options, n int) ([]molecule.Molecule, error) {
	dir := o.Shared
	if dir == "" {
		dir = shared.Dir()
	}
	if dir == "" {
		return nil, fmt.Errorf("bench: no shared folder: cannot find the QM9 test split")
	}
	mols, err := etlqm9.ReadNPZ(filepath.Join(dir, "data", "qm9", "cormorant_qm9_test.npz"), "test")
	if err != nil {
		return nil, err
	}
	if len(mols) < n {
		return nil, fmt.Errorf("bench: the QM9 test split has %d molecules, want %d", len(mols), n)
	}
	return mols[:n], nil
}

// qm9TrainCase times one training iteration of the QM9 E-NF with the published weights and
// hyperparameters (args.pickle: dopri5 rtol = atol = 1e-4 with the adjoint, Gaussian Hutchinson
// trace, ODE regulariser 1e-3, AdamW lr 2e-4 with AMSGrad, en_flows' adaptive clipping of the
// flow's gradients): dequantizer + ActNorm + CNF loss, all gradients (adjoint for the flow,
// encoder VJP), optimizer step. Repeat r draws its noise from seed r+2.
func qm9TrainCase(env *caseEnv) (func(int) (opStats, error), func(), error) {
	m, err := loadQM9(env)
	if err != nil {
		return nil, nil, err
	}
	mols, err := qm9TrainMolecules(env.opts, qm9TrainBatch)
	if err != nil {
		return nil, nil, err
	}
	b, err := qm9.NewBatch(mols)
	if err != nil {
		return nil, nil, err
	}
	if err := m.InitVariables(b); err != nil {
		return nil, nil, err
	}
	ctx := m.Context()
	ctx.SetParam(optim.ParamClipAdaptive, true)
	ctx.SetParam(optim.ParamClipQueueInit, 3000.0)
	opt, err := optim.AdamW().FromContext(ctx).LearningRate(2e-4).WeightDecay(1e-12).AMSGrad(true).ClipOnly(m.IsFlowVariable).Done()
	if err != nil {
		return nil, nil, err
	}
	stepper, err := optim.NewStepper(env.b, ctx, opt, m.Variables())
	if err != nil {
		return nil, nil, err
	}
	op := func(rep int) (opStats, error) {
		_, _, grads, st, err := m.LossAndGrad(b, uint64(rep+2))
		if err != nil {
			return opStats{}, err
		}
		_, err = stepper.Step(grads)
		for _, g := range grads {
			_ = g.FinalizeAll()
		}
		if err != nil {
			return opStats{}, err
		}
		return opStats{nfe: st.Forward.NFE + st.Backward.NFE, nfeFwd: st.Forward.NFE, nfeBwd: st.Backward.NFE,
			note: fmt.Sprintf("molecules=%d padded_atoms=%d", b.B, b.N)}, nil
	}
	return op, stepper.Close, nil
}

func init() {
	register(&runner{name: "qm9/train_iter", unit: "iteration", batch: func(*Options) int { return qm9TrainBatch }, setup: qm9TrainCase, slow: true})
}
