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
	spec, err := qm9.SpecFromTorchArgs(ns)
	if err != nil {
		return nil, err
	}
	cfg, err := spec.Config(dtypes.Float32)
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

// qm9DynCase times the QM9 dynamics (mode "forward" or "vjp") on 64 × 29 random states
// (CoG-free positions, standard-normal features: the prior, i.e. the start of sampling).
func qm9DynCase(mode string) func(env *caseEnv) (func(int) (opStats, error), func(), error) {
	return func(env *caseEnv) (func(int) (opStats, error), func(), error) {
		m, err := loadQM9(env)
		if err != nil {
			return nil, nil, err
		}
		b, n, c := qm9DynBatch, qm9DynNodes, qm9.Channels
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
			out, err := exec.Exec(float32(0.5), z, mask, eps)
			if err != nil {
				return opStats{}, err
			}
			for _, o := range out {
				_ = o.FinalizeAll()
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

// qm9SampleCase times qm9.Model.Sample. Batched: all QM9Molecules sizes, molecules of one size
// share a solve (up to 100 per solve). Single: the first QM9SingleMolecules sizes of the same
// draw, one molecule per solve. The warm-up run compiles every shape; ms is per molecule.
func qm9SampleCase(batched bool) func(env *caseEnv) (func(int) (opStats, error), func(), error) {
	return func(env *caseEnv) (func(int) (opStats, error), func(), error) {
		m, err := loadQM9(env)
		if err != nil {
			return nil, nil, err
		}
		sizes := qm9Sizes(env.opts)
		batch := 100
		if !batched {
			sizes = sizes[:min(len(sizes), env.opts.QM9SingleMolecules)]
			batch = 1
		}
		op := func(rep int) (opStats, error) {
			seed := uint64(rep + 2)
			if rep < 0 {
				seed = 1
			}
			res, err := m.Sample(env.ctx, qm9.SampleOptions{Sizes: sizes, Seed: seed, Batch: batch})
			if err != nil {
				return opStats{}, err
			}
			if res.Failed > 0 {
				env.logf("%d of %d molecules failed", res.Failed, len(sizes))
			}
			note := fmt.Sprintf("molecules=%d failed=%d sizes=%s", len(sizes), res.Failed, joinInts(sizes))
			return opStats{nfe: res.NFE, perOp: len(sizes), note: note}, nil
		}
		return op, nil, nil
	}
}

func init() {
	fixed := func(n int) func(*Options) int { return func(*Options) int { return n } }
	register(&runner{name: "qm9/forward", unit: "eval", batch: fixed(qm9DynBatch), setup: qm9DynCase("forward")})
	register(&runner{name: "qm9/vjp", unit: "eval", batch: fixed(qm9DynBatch), setup: qm9DynCase("vjp")})
	register(&runner{name: "qm9/sample_batched", unit: "molecule", batch: fixed(100), setup: qm9SampleCase(true)})
	register(&runner{name: "qm9/sample_single", unit: "molecule", batch: fixed(1), setup: qm9SampleCase(false)})
}

func joinInts(v []int) string {
	parts := make([]string, len(v))
	for i, x := range v {
		parts[i] = strconv.Itoa(x)
	}
	return strings.Join(parts, ",")
}
