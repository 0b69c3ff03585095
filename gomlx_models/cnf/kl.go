package cnf

// Energy-based training (reverse KL, Boltzmann generators) and sampling with the flow's log
// density.
//
// A sample starts at z ~ p_Z at t = 1 and is integrated to x at t = 0 together with the trace:
// with y(1) = [z, 0, (0)], the augmented system of the forward solve gives
//
//	logp(0) = ∫₀¹ tr(∂f/∂x) dt = −log|det ∂x/∂z|,   log q_X(x) = log p_Z(z) + logp(0),
//
// and reg(0) = −∫₀¹ (‖εᵀ∂f/∂x‖² + ‖f‖²) dt ≤ 0. The reverse KL to p(x) ∝ exp(−u(x)/T) is, per
// sample, u(x)/T − log|det ∂x/∂z| (plus log p_Z(z), which does not depend on θ, and log Z_T,
// which is unknown). Its gradient is reparameterised: z is held fixed and the loss is
// differentiated through the solve, by the adjoint (integrated from t = 0 back to t = 1 with
// a_θ(0) = 0, so that ∂L/∂θ = a_θ(1)) or by backprop through the replayed steps, as for the
// maximum-likelihood loss.

import (
	"fmt"
	"math/rand/v2"

	. "github.com/gomlx/gomlx/pkg/core/graph" //nolint:revive // GoMLX idiom.
	"github.com/gomlx/gomlx/pkg/core/tensors"
	"github.com/gomlx/gomlx/pkg/ml/context"

	"github.com/enflow/enflow/gomlx_models/energy"
	"github.com/enflow/enflow/gomlx_models/ode"
	"github.com/enflow/enflow/gomlx_models/prior"
	"github.com/enflow/enflow/internal/graphutil"
)

// SetTarget sets the energy of KLLossAndGrad. Graphs built for a previous target are released.
func (m *Model) SetTarget(t energy.Target) error {
	t, err := t.Normalized()
	if err != nil {
		return fmt.Errorf("cnf: %w", err)
	}
	m.releaseKL()
	m.target = &t
	return nil
}

// Target returns the target set by SetTarget (nil if none).
func (m *Model) Target() *energy.Target { return m.target }

func (m *Model) releaseKL() {
	if m.klTerminal != nil {
		m.klTerminal.Finalize()
		m.klTerminal = nil
	}
	for k, e := range m.replay {
		if k.kl {
			e.Finalize()
			delete(m.replay, k)
		}
	}
}

// drawPrior draws z ~ p_Z (batch, nodes, dims) from seed: the same draw as Sample(…, seed).
func (m *Model) drawPrior(batch, nodes, dims int, mask *tensors.Tensor, seed uint64) (*tensors.Tensor, error) {
	rng := rand.New(rand.NewPCG(seed, 0x5a3b_1e00_0000_0002))
	z, err := prior.SamplePositionFeature(rng, m.cfg.DType, batch, nodes, dims, m.cfg.PosDims, mask)
	if err != nil {
		return nil, fmt.Errorf("cnf: sampling the prior: %w", err)
	}
	return z, nil
}

// SampleWithLogDensity draws z ~ p_Z with seed (the same z as Sample), integrates it to x at t = 0
// with the trace, and returns x, log q_X(x) per sample (nats, in the flow's coordinates: the
// mean-free subspace for the position channels) and log p_Z(z). With a Hutchinson trace the
// density is a stochastic estimate; use an exact or analytic trace for importance weights.
func (m *Model) SampleWithLogDensity(batch, nodes, dims int, mask *tensors.Tensor, seed uint64) (x *tensors.Tensor, logq, logpz []float64, st Stats, err error) {
	z, err := m.drawPrior(batch, nodes, dims, mask, seed)
	if err != nil {
		return nil, nil, nil, st, err
	}
	defer graphutil.Free(z)
	if _, err = m.checkInput(z, mask); err != nil {
		return nil, nil, nil, st, err
	}
	if logpz, err = m.priorLogProb(z, mask); err != nil {
		return nil, nil, nil, st, err
	}
	args, eps, err := m.args(z, mask, seed)
	if err != nil {
		return nil, nil, nil, st, err
	}
	defer graphutil.Free(eps)
	sol, err := m.solveAugmented(1, 0, z, args, batch)
	if err != nil {
		return nil, nil, nil, st, err
	}
	st.Forward = sol.Stats
	dl := graphutil.MustFloats(sol.Y[1])
	graphutil.Free(sol.Y[1:]...)
	logq = make([]float64, batch)
	for i := range logq {
		logq[i] = logpz[i] + dl[i]
	}
	return sol.Y[0], logq, logpz, st, nil
}

// priorLogProb evaluates log p_Z(z) per sample.
func (m *Model) priorLogProb(z, mask *tensors.Tensor) ([]float64, error) {
	if m.logpzExec == nil {
		e, err := context.NewExec(m.backend, m.ctx, func(_ *context.Context, in []*Node) *Node {
			var mk *Node
			if len(in) > 1 {
				mk = in[1]
			}
			return prior.PositionFeatureLogProb(in[0], mk, m.cfg.PosDims)
		})
		if err != nil {
			return nil, fmt.Errorf("cnf: prior log-density executable: %w", err)
		}
		e.SetMaxCache(-1)
		m.logpzExec = e
	}
	out, err := m.logpzExec.Exec(withOptional([]any{z}, mask)...)
	if err != nil {
		return nil, fmt.Errorf("cnf: computing log p_Z(z): %w", err)
	}
	defer graphutil.Free(out...)
	return graphutil.MustFloats(out[0]), nil
}

// klLossGraph builds the energy-based loss from the state at t = 0 and z: per-sample
// u(x)/T + logp(0) (= u/T − log|det ∂x/∂z|), its mean (KL), the mean with log p_Z(z) added
// (KLPrior), the mean energy, the mean regulariser −reg(0) and loss = KL + RegWeight·reg.
func (m *Model) klLossGraph(x0, logp0, reg0, z *Node) (loss, kl, klPrior, meanU, regMean *Node) {
	u := m.target.Energy(x0)
	per := Add(MulScalar(u, 1/m.target.Temperature), logp0)
	kl = ReduceAllMean(per)
	klPrior = Add(kl, StopGradient(ReduceAllMean(prior.PositionFeatureLogProb(z, nil, m.cfg.PosDims))))
	meanU = ReduceAllMean(u)
	loss = kl
	if reg0 != nil {
		regMean = Neg(ReduceAllMean(reg0))
		loss = Add(loss, MulScalar(regMean, m.cfg.RegWeight))
	} else {
		regMean = ScalarZero(x0.Graph(), x0.DType())
	}
	return loss, kl, klPrior, meanU, regMean
}

// klTerminalGraph inputs: x0, logp0, [reg0], z. Outputs: loss, kl, klPrior, meanU, regMean, then
// the adjoint initial conditions ∂loss/∂x0, ∂loss/∂logp0, [∂loss/∂reg0].
func (m *Model) klTerminalGraph(_ *context.Context, in []*Node) []*Node {
	x0, logp0 := in[0], in[1]
	var reg0 *Node
	z := in[2]
	if m.nAug == 3 {
		reg0, z = in[2], in[3]
	}
	loss, kl, klPrior, meanU, regMean := m.klLossGraph(x0, logp0, reg0, z)
	wrt := []*Node{x0, logp0}
	if reg0 != nil {
		wrt = append(wrt, reg0)
	}
	return append([]*Node{loss, kl, klPrior, meanU, regMean}, Gradient(loss, wrt...)...)
}

// KLLossAndGrad draws batch latents z ~ p_Z (nodes, dims) with seed, maps them to x by the flow
// and returns the energy-based loss toward the target of SetTarget (energy.KLResult) and its gradient
// with respect to every trainable variable, in the order of Variables(). The gradient is
// reparameterised (z fixed) and computed by the adjoint or by backprop as Config.Grad says. The
// Hutchinson noise (if any) is drawn from seed and held fixed for the solve and its gradient.
func (m *Model) KLLossAndGrad(batch, nodes, dims int, seed uint64) (res energy.KLResult, grads []*tensors.Tensor, st Stats, err error) {
	if m.target == nil {
		return res, nil, st, fmt.Errorf("cnf: KLLossAndGrad needs a target energy (SetTarget)")
	}
	z, err := m.drawPrior(batch, nodes, dims, nil, seed)
	if err != nil {
		return res, nil, st, err
	}
	defer graphutil.Free(z)
	if err = m.InitVariables(z, nil); err != nil {
		return res, nil, st, err
	}
	args, eps, err := m.args(z, nil, seed)
	if err != nil {
		return res, nil, st, err
	}
	defer graphutil.Free(eps)
	if m.cfg.Grad == GradBackprop {
		return m.klBackprop(z, args, batch)
	}
	return m.klAdjoint(z, args, batch)
}

func (m *Model) klAdjoint(z *tensors.Tensor, args []*tensors.Tensor, b int) (res energy.KLResult, grads []*tensors.Tensor, st Stats, err error) {
	sol, err := m.solveAugmented(1, 0, z, args, b)
	if err != nil {
		return res, nil, st, err
	}
	st.Forward = sol.Stats
	y0 := sol.Y
	if m.klTerminal == nil {
		if m.klTerminal, err = context.NewExec(m.backend, m.ctx, m.klTerminalGraph); err != nil {
			graphutil.Free(y0...)
			return res, nil, st, fmt.Errorf("cnf: KL loss executable: %w", err)
		}
		m.klTerminal.SetMaxCache(-1)
	}
	out, err := m.klTerminal.Exec(append(toAny(y0), z)...)
	if err != nil {
		graphutil.Free(y0...)
		return res, nil, st, fmt.Errorf("cnf: computing the KL loss toward %q: %w", m.target.Name, err)
	}
	res = energy.KLResult{Loss: scalar(out[0]), KL: scalar(out[1]), KLPrior: scalar(out[2]), MeanEnergy: scalar(out[3]), Reg: scalar(out[4])}
	st.Reg = res.Reg
	graphutil.Free(out[:5]...)
	adj0 := out[5:]
	if m.adj == nil {
		if m.adj, err = ode.New(m.backend, m.ctx, m.adjoint, 2*m.nAug+len(m.vars), m.odeOptions()); err != nil {
			graphutil.Free(y0...)
			graphutil.Free(adj0...)
			return res, nil, st, fmt.Errorf("cnf: adjoint solver: %w", err)
		}
	}
	state := append(append([]*tensors.Tensor(nil), y0...), adj0...)
	for _, v := range m.vars {
		state = append(state, tensors.FromShape(v.Shape())) // a_θ(0) = 0
	}
	asol, err := m.adj.Solve(0, 1, state, args)
	graphutil.Free(state...)
	if err != nil {
		return res, nil, st, fmt.Errorf("cnf: KL adjoint solve (t=0→1): %w", err)
	}
	st.Backward = asol.Stats
	graphutil.Free(asol.Y[:2*m.nAug]...)
	return res, asol.Y[2*m.nAug:], st, nil
}

func (m *Model) klBackprop(z *tensors.Tensor, args []*tensors.Tensor, b int) (res energy.KLResult, grads []*tensors.Tensor, st Stats, err error) {
	out, err := m.backpropThrough(1, 0, replayKey{kl: true}, z, args, b, &st)
	if err != nil {
		return res, nil, st, err
	}
	res = energy.KLResult{Loss: scalar(out[0]), KL: scalar(out[1]), KLPrior: scalar(out[2]), MeanEnergy: scalar(out[3]), Reg: scalar(out[4])}
	st.Reg = res.Reg
	graphutil.Free(out[:5]...)
	return res, out[5:], st, nil
}

// klReplayGraph is replayGraph for the energy-based loss: inputs z, [eps], then (t_i, dt_i) of
// the steps from t = 1 to t = 0; outputs loss, kl, klPrior, meanU, regMean and one gradient per
// variable of m.vars.
func (m *Model) klReplayGraph(key replayKey) func(ctx *context.Context, in []*Node) []*Node {
	return func(ctx *context.Context, in []*Node) []*Node {
		z := in[0]
		args, ts, dts := m.splitReplayInputs(key, in)
		g := z.Graph()
		y1 := []*Node{z, ZerosLike(ReduceSum(z, 1, 2))}
		if m.nAug == 3 {
			y1 = append(y1, ZerosLike(ReduceSum(z, 1, 2)))
		}
		y0, _ := ode.Integrate(m.tab, ode.Bind(ctx, m.augmented, args, false), ts, dts, y1)
		var reg0 *Node
		if m.nAug == 3 {
			reg0 = y0[2]
		}
		loss, kl, klPrior, meanU, regMean := m.klLossGraph(y0[0], y0[1], reg0, z)
		out := []*Node{loss, kl, klPrior, meanU, regMean}
		if len(m.vars) > 0 {
			wrt := make([]*Node, len(m.vars))
			for i, v := range m.vars {
				wrt[i] = v.ValueGraph(g)
			}
			out = append(out, Gradient(loss, wrt...)...)
		}
		return out
	}
}
