package bench

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"

	"github.com/gomlx/gomlx/pkg/core/dtypes"
	. "github.com/gomlx/gomlx/pkg/core/graph" //nolint:revive // GoMLX idiom.
	"github.com/gomlx/gomlx/pkg/core/tensors"
	mlctx "github.com/gomlx/gomlx/pkg/ml/context"

	"github.com/enflow/enflow/etl/npy"
	"github.com/enflow/enflow/gomlx_models/cnf"
	"github.com/enflow/enflow/gomlx_models/dynamics"
	"github.com/enflow/enflow/gomlx_models/enf"
	"github.com/enflow/enflow/gomlx_models/optim"
	"github.com/enflow/enflow/gomlx_models/prior"
	"github.com/enflow/enflow/internal/shared"
	"github.com/enflow/enflow/pipeline/train"
)

// System is a particle system of the suite.
type System struct {
	Name      string
	Nodes     int
	Dim       int
	DataFile  string // relative to <shared>/data
	DataScale float64
}

// Systems are the particle systems benchmarked (data files as in the shared folder).
var Systems = []System{
	{Name: "dw4", Nodes: 4, Dim: 2, DataFile: "dw4/DEM_train_split_DW4.npy", DataScale: 1.5},
	{Name: "lj13", Nodes: 13, Dim: 3, DataFile: "lj13/DEM_test_split_LJ13-1000.npy", DataScale: 1.0},
}

// dataCache loads each system's batch once per Run.
type dataCache struct {
	shared string
	mu     sync.Mutex
	flat   map[string][]float64
	source map[string]string
}

// Batch returns the first b configurations of the system (mean removed), float64 flat
// (b·nodes·dim), and where they came from.
func (d *dataCache) Batch(sys System, b int) ([]float64, string, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	key := fmt.Sprintf("%s/%d", sys.Name, b)
	if v, ok := d.flat[key]; ok {
		return v, d.source[key], nil
	}
	if d.flat == nil {
		d.flat, d.source = map[string][]float64{}, map[string]string{}
	}
	dir := d.shared
	if dir == "" {
		dir = shared.Dir()
	}
	f := sys.Nodes * sys.Dim
	var flat []float64
	src := ""
	if dir != "" {
		p := filepath.Join(dir, "data", sys.DataFile)
		if _, err := os.Stat(p); err == nil {
			all, shape, err := npy.ReadFloat64(p, npy.Want{Finite: true})
			if err != nil {
				return nil, "", err
			}
			if len(shape) == 0 || len(all)/shape[0] != f || shape[0] < b {
				return nil, "", fmt.Errorf("bench: %s has shape %v, want (≥%d, %d)", p, shape, b, f)
			}
			flat = append([]float64(nil), all[:b*f]...)
			src = p
		}
	}
	if flat == nil { // synthetic: Gaussian at data scale
		rng := rand.New(rand.NewPCG(7, uint64(f)))
		flat = make([]float64, b*f)
		for i := range flat {
			flat[i] = sys.DataScale * rng.NormFloat64()
		}
		src = "synthetic"
	}
	for s := range b { // remove the mean over particles
		cfg := flat[s*f : (s+1)*f]
		for k := range sys.Dim {
			m := 0.0
			for n := range sys.Nodes {
				m += cfg[n*sys.Dim+k]
			}
			m /= float64(sys.Nodes)
			for n := range sys.Nodes {
				cfg[n*sys.Dim+k] -= m
			}
		}
	}
	d.flat[key], d.source[key] = flat, src
	return flat, src, nil
}

// particleModel builds the E-NF of sys (the training configuration of the paper) over a fresh
// context with initialised variables, plus the inputs x, mask and a Rademacher ε.
type particleSetup struct {
	sys      System
	spec     train.ModelSpec
	ctx      *mlctx.Context
	model    train.Model
	x, eps   *tensors.Tensor
	dynamics dynamics.Func
}

func newParticleSetup(env *caseEnv, sys System, mutate func(*train.ModelSpec)) (*particleSetup, error) {
	b := env.opts.Batch
	flat, src, err := env.data.Batch(sys, b)
	if err != nil {
		return nil, err
	}
	env.logf("inputs: %s (batch %d)", src, b)
	spec := train.DefaultSpec(sys.Name, sys.Nodes, sys.Dim)
	if mutate != nil {
		mutate(&spec)
	}
	ctx := mlctx.New()
	ctx.SetParam(mlctx.ParamInitialSeed, int64(spec.Seed))
	m, err := train.BuildModel(env.b, ctx, &spec)
	if err != nil {
		return nil, err
	}
	ecfg, err := enf.EGNNConfig(spec.EGNN, dtypes.Float32)
	if err != nil {
		return nil, err
	}
	x, err := prior.FromFloat64(dtypes.Float32, flat, b, sys.Nodes, sys.Dim)
	if err != nil {
		return nil, err
	}
	rng := rand.New(rand.NewPCG(11, 13))
	e := make([]float64, len(flat))
	for i := range e {
		e[i] = float64(2*rng.IntN(2) - 1)
	}
	eps, err := prior.FromFloat64(dtypes.Float32, e, b, sys.Nodes, sys.Dim)
	if err != nil {
		return nil, err
	}
	return &particleSetup{sys: sys, spec: spec, ctx: ctx, model: m, x: x, eps: eps, dynamics: dynamics.Particle(ecfg)}, nil
}

func (p *particleSetup) free() {
	for _, t := range []*tensors.Tensor{p.x, p.eps} {
		if t != nil {
			_ = t.FinalizeAll()
		}
	}
}

// trainableParams returns the value nodes of the trainable variables of ctx in g.
func trainableParams(ctx *mlctx.Context, g *Graph) []*Node {
	var out []*Node
	for v := range ctx.IterVariables() {
		if v.Trainable && v.Shape().DType.IsFloat() {
			out = append(out, v.ValueGraph(g))
		}
	}
	return out
}

// graphCase times one compiled graph over the system's batch: mode "forward", "vjp" or
// "adjoint_stage".
func graphCase(sys System, mode string) func(env *caseEnv) (func(int) (opStats, error), func(), error) {
	return func(env *caseEnv) (func(int) (opStats, error), func(), error) {
		p, err := newParticleSetup(env, sys, nil)
		if err != nil {
			return nil, nil, err
		}
		fn := p.dynamics
		exec, err := mlctx.NewExec(env.b, p.ctx, func(ctx *mlctx.Context, in []*Node) []*Node {
			t, x, eps := in[0], in[1], in[2]
			ctx = ctx.Checked(false)
			switch mode {
			case "forward":
				return []*Node{fn(ctx, t, x, nil)}
			case "vjp":
				f := fn(ctx, t, x, nil)
				return []*Node{f, Gradient(ReduceAllSum(Mul(f, eps)), x)[0]}
			}
			return adjointStage(ctx, fn, t, x, eps, in[3], in[4])
		})
		if err != nil {
			p.free()
			return nil, nil, err
		}
		args := []any{float32(0.5), p.x, p.eps}
		var extra []*tensors.Tensor
		if mode == "adjoint_stage" {
			b := env.opts.Batch
			rng := rand.New(rand.NewPCG(3, 5))
			ax := make([]float64, b*sys.Nodes*sys.Dim)
			al := make([]float64, b)
			for i := range ax {
				ax[i] = rng.NormFloat64() / float64(b)
			}
			for i := range al {
				al[i] = 1 / float64(b)
			}
			axT, _ := prior.FromFloat64(dtypes.Float32, ax, b, sys.Nodes, sys.Dim)
			alT, _ := prior.FromFloat64(dtypes.Float32, al, b)
			extra = []*tensors.Tensor{axT, alT}
			args = append(args, axT, alT)
		}
		op := func(int) (opStats, error) {
			out, err := exec.Exec(args...)
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
			p.free()
			for _, t := range extra {
				_ = t.FinalizeAll()
			}
		}
		return op, cleanup, nil
	}
}

// adjointStage is one evaluation of the adjoint system of the CNF (cnf's adjoint ODE function with
// state [x, logp], Hutchinson trace): f, −tr, then −aᵀ∂[f, −tr]/∂x and −aᵀ∂[f, −tr]/∂θ.
func adjointStage(ctx *mlctx.Context, fn dynamics.Func, t, x, eps, ax, al *Node) []*Node {
	f := fn(ctx, t, x, nil)
	v := Gradient(ReduceAllSum(Mul(f, eps)), x)[0]
	negTr := Neg(ReduceSum(Mul(v, eps), 1, 2))
	s := Add(ReduceAllSum(Mul(ax, f)), ReduceAllSum(Mul(al, negTr)))
	wrt := append([]*Node{x}, trainableParams(ctx, x.Graph())...)
	grads := Gradient(s, wrt...)
	out := []*Node{f, negTr}
	for _, gr := range grads {
		out = append(out, Neg(gr))
	}
	return out
}

// trainCase times LossAndGrad (dopri5, adjoint, Rademacher) plus one AdamW (AMSGrad) step.
func trainCase(sys System, tol float64) func(env *caseEnv) (func(int) (opStats, error), func(), error) {
	return func(env *caseEnv) (func(int) (opStats, error), func(), error) {
		p, err := newParticleSetup(env, sys, func(s *train.ModelSpec) {
			s.CNF.RTol, s.CNF.ATol = tol, tol
		})
		if err != nil {
			return nil, nil, err
		}
		p.ctx.SetParam(optim.ParamWeightDecay, 1e-12)
		opt, err := optim.AdamW().FromContext(p.ctx).LearningRate(1e-3).WeightDecay(1e-12).AMSGrad(true).Done()
		if err != nil {
			p.free()
			return nil, nil, err
		}
		stepper, err := optim.NewStepper(env.b, p.ctx, opt, p.model.Variables())
		if err != nil {
			p.free()
			return nil, nil, err
		}
		op := func(rep int) (opStats, error) {
			_, _, grads, st, err := p.model.LossAndGrad(&train.Batch{X: p.x}, uint64(rep+2))
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
			return opStats{nfe: st.NFEForward + st.NFEBackward, nfeFwd: st.NFEForward, nfeBwd: st.NFEBackward}, nil
		}
		return op, p.free, nil
	}
}

// exactCase times the exact-trace log-likelihood of the batch (dopri5 1e-4).
func exactCase(sys System) func(env *caseEnv) (func(int) (opStats, error), func(), error) {
	return func(env *caseEnv) (func(int) (opStats, error), func(), error) {
		p, err := newParticleSetup(env, sys, func(s *train.ModelSpec) { s.CNF.Trace = cnf.TraceExact })
		if err != nil {
			return nil, nil, err
		}
		op := func(rep int) (opStats, error) {
			_, st, err := p.model.LogLikelihood(&train.Batch{X: p.x}, uint64(rep+2))
			if err != nil {
				return opStats{}, err
			}
			return opStats{nfe: st.NFEForward}, nil
		}
		return op, p.free, nil
	}
}

func init() {
	for _, sys := range Systems {
		batch := func(o *Options) int { return o.Batch }
		register(&runner{name: sys.Name + "/forward", unit: "eval", batch: batch, setup: graphCase(sys, "forward")})
		register(&runner{name: sys.Name + "/vjp", unit: "eval", batch: batch, setup: graphCase(sys, "vjp")})
		register(&runner{name: sys.Name + "/adjoint_stage", unit: "eval", batch: batch, setup: graphCase(sys, "adjoint_stage")})
		register(&runner{name: sys.Name + "/train_iter", unit: "iteration", batch: batch, setup: trainCase(sys, 1e-4)})
		if sys.Name == "dw4" { // adjoint memory must be flat in the number of steps: ~2-3× the steps
			register(&runner{name: "dw4/train_iter_tol1e-6", unit: "iteration", batch: batch, setup: trainCase(sys, 1e-6)})
		}
		register(&runner{name: sys.Name + "/exact_eval", unit: "batch", batch: batch, setup: exactCase(sys)})
	}
}
