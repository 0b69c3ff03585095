package cnf

// Go-side drivers: noise, solves, loss and gradients.

import (
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/gomlx/gomlx/pkg/core/tensors"
	"github.com/gomlx/gomlx/pkg/ml/context"

	"github.com/enflow/enflow/gomlx_models/ode"
	"github.com/enflow/enflow/gomlx_models/prior"
	"github.com/enflow/enflow/internal/graphutil"
)

func withOptional(in []any, ts ...*tensors.Tensor) []any {
	for _, t := range ts {
		if t != nil {
			in = append(in, t)
		}
	}
	return in
}

// checkInput validates x (B, N, C) and mask (B, N), returning B.
func (m *Model) checkInput(x, mask *tensors.Tensor) (int, error) {
	if x == nil {
		return 0, fmt.Errorf("cnf: x is nil")
	}
	if x.Rank() != 3 {
		return 0, fmt.Errorf("cnf: x must be (B, N, C), got %s", x.Shape())
	}
	if x.DType() != m.cfg.DType {
		return 0, fmt.Errorf("cnf: x has dtype %s, the model is configured for %s", x.DType(), m.cfg.DType)
	}
	dims := x.Shape().Dimensions
	if mask != nil {
		md := mask.Shape().Dimensions
		if len(md) != 2 || md[0] != dims[0] || md[1] != dims[1] {
			return 0, fmt.Errorf("cnf: mask must be (%d, %d), got %s", dims[0], dims[1], mask.Shape())
		}
		if mask.DType() != m.cfg.DType {
			return 0, fmt.Errorf("cnf: mask has dtype %s, want %s", mask.DType(), m.cfg.DType)
		}
	}
	return dims[0], nil
}

// noise draws the Hutchinson noise ε (B, N, C), masked, from seed: one draw per solve.
func (m *Model) noise(x, mask *tensors.Tensor, seed uint64) (*tensors.Tensor, error) {
	dims := x.Shape().Dimensions
	B, N, C := dims[0], dims[1], dims[2]
	rng := rand.New(rand.NewPCG(seed, 0x5eed_cafe_f00d_0001))
	if m.cfg.Noise == NoiseGaussian {
		return prior.SampleStandardNormal(rng, m.cfg.DType, B, N, C, mask)
	}
	mv, err := prior.MaskValues(mask, B, N)
	if err != nil {
		return nil, err
	}
	data := make([]float64, B*N*C)
	for i := range data {
		if mv[i/C] != 0 { // Rademacher: ±1 with probability ½ each
			data[i] = float64(2*rng.IntN(2) - 1)
		}
	}
	return prior.FromFloat64(m.cfg.DType, data, B, N, C)
}

// args returns the constant ODE inputs [mask], [eps] and whether eps was allocated.
func (m *Model) args(x, mask *tensors.Tensor, seed uint64) ([]*tensors.Tensor, *tensors.Tensor, error) {
	var args []*tensors.Tensor
	if mask != nil {
		args = append(args, mask)
	}
	var eps *tensors.Tensor
	if m.needNoise {
		var err error
		if eps, err = m.noise(x, mask, seed); err != nil {
			return nil, nil, fmt.Errorf("cnf: drawing Hutchinson noise: %w", err)
		}
		args = append(args, eps)
	}
	return args, eps, nil
}

func (m *Model) zeros(b int) (*tensors.Tensor, error) {
	return prior.FromFloat64(m.cfg.DType, make([]float64, b), b)
}

// solveAugmented solves the augmented system [y, logp, (reg)] from t0 to t1, starting from y
// with the log-density (and regulariser) channels at zero: t = 0→1 encodes data, t = 1→0
// decodes a prior draw. The final state is owned by the caller.
func (m *Model) solveAugmented(t0, t1 float64, y *tensors.Tensor, args []*tensors.Tensor, b int) (*ode.Solution, error) {
	y0 := []*tensors.Tensor{y}
	for range m.nAug - 1 {
		zt, err := m.zeros(b)
		if err != nil {
			graphutil.Free(y0[1:]...)
			return nil, err
		}
		y0 = append(y0, zt)
	}
	sol, err := m.fwd.Solve(t0, t1, y0, args)
	graphutil.Free(y0[1:]...)
	if err != nil {
		return nil, fmt.Errorf("cnf: solve with the trace (t=%g→%g): %w", t0, t1, err)
	}
	return sol, nil
}

// Encode maps data x (B, N, C) at t = 0 to the latent z at t = 1, returning z and the integrated
// trace Δ_b = ∫₀¹ tr(∂f/∂x) dt per sample (so log p(x) = log p_Z(z) + Δ). seed draws the Hutchinson
// noise.
func (m *Model) Encode(x, mask *tensors.Tensor, seed uint64) (z *tensors.Tensor, deltaLogp []float64, st Stats, err error) {
	b, err := m.checkInput(x, mask)
	if err != nil {
		return nil, nil, st, err
	}
	args, eps, err := m.args(x, mask, seed)
	if err != nil {
		return nil, nil, st, err
	}
	defer graphutil.Free(eps)
	sol, err := m.solveAugmented(0, 1, x, args, b)
	if err != nil {
		return nil, nil, st, err
	}
	st.Forward = sol.Stats
	lp := graphutil.MustFloats(sol.Y[1])
	for i := range lp {
		lp[i] = -lp[i]
	}
	graphutil.Free(sol.Y[1:]...)
	return sol.Y[0], lp, st, nil
}

// LogLikelihood returns the per-sample log p(x) (nats) = log p_Z(z) + ∫₀¹ tr(∂f/∂x) dt for x
// (B, N, C) at t = 0 (mask may be nil), and the solve statistics. seed draws the Hutchinson noise.
func (m *Model) LogLikelihood(x, mask *tensors.Tensor, seed uint64) ([]float64, Stats, error) {
	var st Stats
	b, err := m.checkInput(x, mask)
	if err != nil {
		return nil, st, err
	}
	args, eps, err := m.args(x, mask, seed)
	if err != nil {
		return nil, st, err
	}
	defer graphutil.Free(eps)
	sol, err := m.solveAugmented(0, 1, x, args, b)
	if err != nil {
		return nil, st, err
	}
	st.Forward = sol.Stats
	defer graphutil.Free(sol.Y...)
	out, err := m.terminalExec.Exec(withOptional(toAny(sol.Y), mask)...)
	if err != nil {
		return nil, st, fmt.Errorf("cnf: computing log p(x): %w", err)
	}
	defer graphutil.Free(out...)
	st.Reg = scalar(out[2])
	return graphutil.MustFloats(out[3]), st, nil
}

// LossAndGrad returns the mean NLL plus RegWeight times the mean regulariser (loss), the mean NLL
// alone (nll), and the gradient of loss with respect to every trainable variable of ctx, in the
// order of m.Variables(). Variables are created (by InitVariables) on the first call. seed draws
// the Hutchinson noise (one draw for the whole solve; the backward pass uses the same draw).
func (m *Model) LossAndGrad(x, mask *tensors.Tensor, seed uint64) (loss, nll float64, grads []*tensors.Tensor, st Stats, err error) {
	loss, nll, grads, _, st, err = m.lossAndGrad(x, mask, seed, false)
	return loss, nll, grads, st, err
}

// LossAndGradInput is LossAndGrad that also returns dx = ∂loss/∂x, the gradient with respect to
// the flow's input (B, N, C), so that a model that computes x from parameters of its own (the
// QM9 dequantizer and ActNorm) can back-propagate the loss into them. With Grad "adjoint" dx is
// the adjoint state a_x(0) of the same backward solve (no extra cost); with "backprop" it is one
// more output of the replayed graph.
func (m *Model) LossAndGradInput(x, mask *tensors.Tensor, seed uint64) (loss, nll float64, grads []*tensors.Tensor, dx *tensors.Tensor, st Stats, err error) {
	return m.lossAndGrad(x, mask, seed, true)
}

func (m *Model) lossAndGrad(x, mask *tensors.Tensor, seed uint64, wantDx bool) (loss, nll float64, grads []*tensors.Tensor, dx *tensors.Tensor, st Stats, err error) {
	b, err := m.checkInput(x, mask)
	if err != nil {
		return 0, 0, nil, nil, st, err
	}
	if err = m.InitVariables(x, mask); err != nil {
		return 0, 0, nil, nil, st, err
	}
	args, eps, err := m.args(x, mask, seed)
	if err != nil {
		return 0, 0, nil, nil, st, err
	}
	defer graphutil.Free(eps)
	if m.cfg.Grad == GradBackprop {
		return m.lossAndGradBackprop(x, mask, args, b, wantDx)
	}
	return m.lossAndGradAdjoint(x, mask, args, b, wantDx)
}

func (m *Model) lossAndGradAdjoint(x, mask *tensors.Tensor, args []*tensors.Tensor, b int, wantDx bool) (loss, nll float64, grads []*tensors.Tensor, dx *tensors.Tensor, st Stats, err error) {
	sol, err := m.solveAugmented(0, 1, x, args, b)
	if err != nil {
		return 0, 0, nil, nil, st, err
	}
	st.Forward = sol.Stats
	yT := sol.Y
	out, err := m.terminalExec.Exec(withOptional(toAny(yT), mask)...)
	if err != nil {
		graphutil.Free(yT...)
		return 0, 0, nil, nil, st, fmt.Errorf("cnf: computing the loss: %w", err)
	}
	loss, nll, st.Reg = scalar(out[0]), scalar(out[1]), scalar(out[2])
	graphutil.Free(out[:4]...)
	adjT := out[4:] // ∂L/∂z, ∂L/∂logp1, [∂L/∂reg1]

	if m.adj == nil {
		if m.adj, err = ode.New(m.backend, m.ctx, m.adjoint, 2*m.nAug+len(m.vars), m.odeOptions()); err != nil {
			graphutil.Free(yT...)
			graphutil.Free(adjT...)
			return 0, 0, nil, nil, st, fmt.Errorf("cnf: adjoint solver: %w", err)
		}
	}
	state := append(append([]*tensors.Tensor(nil), yT...), adjT...)
	for _, v := range m.vars {
		state = append(state, tensors.FromShape(v.Shape())) // zero-initialized a_θ(1)
	}
	asol, err := m.adj.Solve(1, 0, state, args)
	graphutil.Free(state...)
	if err != nil {
		return 0, 0, nil, nil, st, fmt.Errorf("cnf: adjoint solve (t=1→0): %w", err)
	}
	st.Backward = asol.Stats
	if wantDx {
		dx = asol.Y[m.nAug] // a_x(0) = ∂loss/∂x
		asol.Y[m.nAug] = nil
	}
	graphutil.Free(asol.Y[:2*m.nAug]...)
	return loss, nll, asol.Y[2*m.nAug:], dx, st, nil
}

func (m *Model) lossAndGradBackprop(x, mask *tensors.Tensor, args []*tensors.Tensor, b int, wantDx bool) (loss, nll float64, grads []*tensors.Tensor, dx *tensors.Tensor, st Stats, err error) {
	key := replayKey{hasMask: mask != nil, inputGrad: wantDx}
	out, err := m.backpropThrough(0, 1, key, x, args, b, &st)
	if err != nil {
		return 0, 0, nil, nil, st, err
	}
	loss, nll, st.Reg = scalar(out[0]), scalar(out[1]), scalar(out[2])
	graphutil.Free(out[:3]...)
	grads = out[3:]
	if wantDx {
		dx = grads[len(grads)-1]
		grads = grads[:len(grads)-1]
	}
	return loss, nll, grads, dx, st, nil
}

// Decode maps latent z (B, N, C) at t = 1 to data at t = 0 by integrating dx/dt = f backward
// (no trace). mask may be nil.
func (m *Model) Decode(z, mask *tensors.Tensor) (*tensors.Tensor, Stats, error) {
	var st Stats
	if _, err := m.checkInput(z, mask); err != nil {
		return nil, st, err
	}
	var args []*tensors.Tensor
	if mask != nil {
		args = append(args, mask)
	}
	sol, err := m.sample.Solve(1, 0, []*tensors.Tensor{z}, args)
	if err != nil {
		return nil, st, fmt.Errorf("cnf: reverse solve (t=1→0): %w", err)
	}
	st.Forward = sol.Stats
	return sol.Y[0], st, nil
}

// Sample draws z ~ p_Z (CoG-free Gaussian on the position channels, standard normal on the others,
// masked) of shape (batch, nodes, dims) with seed, and integrates it from t = 1 to t = 0 without
// the trace (REFERENCE.md §4.6).
func (m *Model) Sample(batch, nodes, dims int, mask *tensors.Tensor, seed uint64) (*tensors.Tensor, Stats, error) {
	rng := rand.New(rand.NewPCG(seed, 0x5a3b_1e00_0000_0002))
	z, err := prior.SamplePositionFeature(rng, m.cfg.DType, batch, nodes, dims, m.cfg.PosDims, mask)
	if err != nil {
		return nil, Stats{}, fmt.Errorf("cnf: sampling the prior: %w", err)
	}
	x, st, err := m.Decode(z, mask)
	if x != z {
		graphutil.Free(z)
	}
	return x, st, err
}

// backpropThrough runs the unrolled backprop graph of key from t0 to t1 on the start state y:
// an adaptive solver first solves forward (recording st.Forward) to fix the accepted steps, a
// fixed-step one uses its uniform grid. It returns the graph's outputs (owned by the caller) and
// records the replay in st.Backward (and st.Forward for fixed steps, where it is the only solve).
func (m *Model) backpropThrough(t0, t1 float64, key replayKey, y *tensors.Tensor, args []*tensors.Tensor, b int, st *Stats) ([]*tensors.Tensor, error) {
	var times, steps []float64
	if m.tab.Adaptive() {
		sol, err := m.solveAugmented(t0, t1, y, args, b)
		if err != nil {
			return nil, err
		}
		st.Forward = sol.Stats
		graphutil.Free(sol.Y...)
		times, steps = sol.Times, sol.Steps
	} else {
		h := (t1 - t0) / float64(m.cfg.Steps)
		for i := range m.cfg.Steps {
			t := t0 + float64(i)*h
			times = append(times, t)
			if i == m.cfg.Steps-1 {
				steps = append(steps, t1-t) // land exactly on t1
			} else {
				steps = append(steps, h)
			}
		}
	}
	key.steps = len(steps)
	e, err := m.replayExec(key)
	if err != nil {
		return nil, err
	}
	in := make([]any, 0, 1+len(args)+2*len(steps))
	in = append(in, y)
	for _, a := range args {
		in = append(in, a)
	}
	for i := range steps {
		in = append(in, times[i], steps[i])
	}
	start := time.Now()
	out, err := e.Exec(in...)
	if err != nil {
		what := "backprop"
		if key.kl {
			what = "KL backprop"
		}
		return nil, fmt.Errorf("cnf: %s through %d %s steps: %w", what, len(steps), m.tab.Name, err)
	}
	nfe := len(steps) * m.tab.NFEPerStep()
	if m.tab.FSAL {
		nfe++
	}
	st.Backward = ode.Stats{NFE: nfe, Accepted: len(steps), Wall: time.Since(start)}
	if !m.tab.Adaptive() {
		st.Forward = st.Backward
	}
	return out, nil
}

// replayExec returns the cached unrolled backprop graph of key, building it on first use.
func (m *Model) replayExec(key replayKey) (*context.Exec, error) {
	if e, ok := m.replay[key]; ok {
		return e, nil
	}
	if len(m.replay) >= maxReplayGraphs {
		for k, old := range m.replay {
			old.Finalize()
			delete(m.replay, k)
		}
	}
	build, name := m.replayGraph(key), "cnf_backprop_%d_steps"
	if key.kl {
		build, name = m.klReplayGraph(key), "cnf_kl_backprop_%d_steps"
	}
	e, err := context.NewExec(m.backend, m.ctx, build)
	if err != nil {
		return nil, fmt.Errorf("cnf: creating the backprop graph: %w", err)
	}
	e.WithName(fmt.Sprintf(name, key.steps))
	m.replay[key] = e
	return e, nil
}

func toAny(ts []*tensors.Tensor) []any {
	out := make([]any, len(ts))
	for i, t := range ts {
		out[i] = t
	}
	return out
}

func scalar(t *tensors.Tensor) float64 { return graphutil.MustFloats(t)[0] }
