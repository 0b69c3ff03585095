package baselines

import (
	"fmt"
	"math"
	"slices"

	"github.com/enflow/enflow/gomlx_models/dynamics"
	"github.com/gomlx/gomlx/pkg/core/dtypes"
	. "github.com/gomlx/gomlx/pkg/core/graph" //nolint:revive // GoMLX idiom.
	"github.com/gomlx/gomlx/pkg/core/shapes"
	"github.com/gomlx/gomlx/pkg/ml/context"
	"github.com/gomlx/gomlx/pkg/ml/context/initializers"

	"github.com/enflow/enflow/internal/graphutil"
)

// ScopeKernel is the sub-scope of ctx holding the kernel-dynamics variables.
const ScopeKernel = "kernel"

// Kernel-dynamics variable names (en_flows KernelDynamics attribute names without "_").
const (
	VarNegLogGammas     = "neg_log_gammas"      // (K) −log γ_k of the distance RBFs
	VarNegLogGammasTime = "neg_log_gammas_time" // (T) −log γ_τ of the time RBFs
	VarWeights          = "weights"             // (K,T)
	VarBias             = "bias"                // (T)
	VarImportance       = "importance"          // (K)
)

// KernelConfig configures the "kernel dynamics" of Köhler, Klein & Noé (2020) as run by
// en_flows (deprecated/eqnode/dynamics.py::KernelDynamics, configured in
// dw4_experiment/models.py; see KernelConfigDW4 and KernelConfigLJ13).
type KernelConfig struct {
	Mus    []float64 `json:"mus"`    // distance RBF centres μ_k (constants)
	Gammas []float64 `json:"gammas"` // initial distance RBF widths γ_k
	// MusTime and GammasTime are the centres and initial widths of the time RBFs; empty means a
	// time-independent field (one output column).
	MusTime    []float64 `json:"mus_time,omitempty"`
	GammasTime []float64 `json:"gammas_time,omitempty"`
	// TrainGammas / TrainTimeGammas make −log γ trainable (en_flows optimize_d_gammas /
	// optimize_t_gammas, both true).
	TrainGammas     bool `json:"train_gammas"`
	TrainTimeGammas bool `json:"train_time_gammas"`
	// DType of variables and states; zero value means Float32. Not serialised.
	DType dtypes.DType `json:"-"`
}

// KernelConfigDW4 is en_flows' "kernel_dynamics" (used for DW4): 50 distance RBFs at
// linspace(0, 8, 50) with γ = 0.5, 10 time RBFs at linspace(0, 1, 10) with γ = 0.3, both widths
// trained.
func KernelConfigDW4() KernelConfig {
	return KernelConfig{
		Mus: linspace(0, 8, 50), Gammas: constant(0.5, 50),
		MusTime: linspace(0, 1, 10), GammasTime: constant(0.3, 10),
		TrainGammas: true, TrainTimeGammas: true,
	}
}

// KernelConfigLJ13 is en_flows' "kernel_dynamics_lj13" (main_dw4_lj13.py switches to it for
// LJ13): with d_max = 16 and m = linspace(0, 16, 50),
//
//	μ_k = sort(2·((m_k/d_max − 1.5/d_max)/2)²·d_max),   γ_k = 0.3 + 3·((μ_k/d_max − 1.5/d_max)/2)²·d_max,
//	μ_τ = linspace(0, 1, 10),   γ_τ = (0.3 + 2·((μ_τ − 0.5)/2)²)·(1 − 0)/√10   (compute_gammas),
//
// both widths trained.
func KernelConfigLJ13() KernelConfig {
	const dMax = 16.0
	m := linspace(0, dMax, 50)
	mus := make([]float64, len(m))
	for i, v := range m {
		u := (v/dMax - 1.5/dMax) / 2
		mus[i] = 2 * u * u * dMax
	}
	slices.Sort(mus)
	gammas := make([]float64, len(mus))
	for i, v := range mus {
		u := (v/dMax - 1.5/dMax) / 2
		gammas[i] = 0.3 + 3*u*u*dMax
	}
	mt := linspace(0, 1, 10)
	gt := make([]float64, len(mt))
	for i, v := range mt {
		u := (v - 0.5) / 2
		gt[i] = (0.3 + 2*u*u) * (mt[len(mt)-1] - mt[0]) / math.Sqrt(float64(len(mt)))
	}
	return KernelConfig{Mus: mus, Gammas: gammas, MusTime: mt, GammasTime: gt, TrainGammas: true, TrainTimeGammas: true}
}

// KernelPreset returns the en_flows kernel configuration of a particle system: "dw4", "lj13",
// or "qm9_positional" (main_qm9_pos.py builds its kernel dynamics with the DW4 preset).
func KernelPreset(system string) (KernelConfig, error) {
	switch system {
	case "dw4", "qm9_positional":
		return KernelConfigDW4(), nil
	case "lj13":
		return KernelConfigLJ13(), nil
	}
	return KernelConfig{}, fmt.Errorf("baselines: no kernel-dynamics preset for system %q (want dw4, lj13 or qm9_positional)", system)
}

// Validate reports configuration errors.
func (c KernelConfig) Validate() error {
	switch {
	case len(c.Mus) == 0 || len(c.Mus) != len(c.Gammas):
		return fmt.Errorf("baselines: KernelConfig needs as many Gammas as Mus (> 0), got %d and %d", len(c.Mus), len(c.Gammas))
	case len(c.MusTime) != len(c.GammasTime):
		return fmt.Errorf("baselines: KernelConfig needs as many GammasTime as MusTime, got %d and %d", len(c.GammasTime), len(c.MusTime))
	}
	for _, g := range append(slices.Clone(c.Gammas), c.GammasTime...) {
		if !(g > 0) {
			return fmt.Errorf("baselines: KernelConfig widths must be > 0, got %g", g)
		}
	}
	return checkDType(defaultDType(c.DType))
}

// DivergenceFunc is a velocity field that also returns its exact divergence: for state (B,N,D)
// and mask (B,N) or nil it returns v (B,N,D) and div = tr(∂v/∂x) (B), the trace over all N·D
// coordinates (equal to the trace on the mean-free subspace, since v is translation invariant
// and mean-free).
type DivergenceFunc func(ctx *context.Context, t, state, mask *Node) (v, div *Node)

// Kernel returns the kernel-dynamics velocity field (v of KernelWithDivergence), for use with
// the CNF's autodiff traces.
func Kernel(cfg KernelConfig) dynamics.Func {
	k := newKernelField(cfg)
	return func(ctx *context.Context, t, state, mask *Node) *Node {
		v, _ := k.velocity(ctx, t, state, mask, false)
		return v
	}
}

// KernelWithDivergence returns the kernel dynamics with its analytic divergence. With
// r_ij = x_i − x_j, s_ij = ‖r_ij‖², d_ij = √(s_ij + 10⁻⁶) and learned −log γ (ν_k, ν_τ):
//
//	ρ_k(d)  = exp(−(d − μ_k)²·e^{2ν_k}),   κ_k = ρ_k / (10⁻⁶ + Σ_l ρ_l)        (normalised RBFs)
//	f_τ(d)  = Σ_k (κ_k(d) + a_k²)·W_kτ + b_τ                                  (a = importance)
//	w_τ(t)  = q_τ / (10⁻⁶ + Σ_σ q_σ),   q_τ = exp(−(t − μ_τ)²·e^{2ν_τ})        (time RBFs)
//	φ(d, t) = Σ_τ f_τ(d)·w_τ(t)
//	v_i     = Σ_{j≠i} φ(d_ij, t)·r_ij                                          (mean-free: φ symmetric)
//	div     = Σ_i Σ_{j≠i} [ D·φ(d_ij, t) + φ′(d_ij, t)·s_ij/d_ij ]              (= tr ∂v/∂x)
//
// with φ′ = ∂φ/∂d in closed form (κ′_k = ρ′_k/(10⁻⁶+S) − ρ_k·S′/(10⁻⁶+S)², ρ′_k = −2(d−μ_k)e^{2ν_k}ρ_k).
// The velocity has its (zero) per-sample mean removed, as the other dynamics.
//
// Differences from en_flows' KernelDynamics, all O(10⁻⁶) relative: its divergence uses d·φ′
// instead of s/d·φ′ (= d·φ′ − 10⁻⁶·φ′/d), and 10⁻⁶ + S² instead of (10⁻⁶ + S)² in κ′; here the
// divergence is the exact trace of the implemented v, so it matches an autodiff trace to
// rounding. Initialisation as en_flows: W ~ N(0, 1/K), b = 0, a = 0 (so a receives zero
// gradient and stays 0, a quirk of the reference kept for fidelity).
//
// state is (B,N,D), mask (B,N) or nil; padded nodes take no part and get zero velocity.
// Variables live under ctx.In(ScopeKernel).
func KernelWithDivergence(cfg KernelConfig) DivergenceFunc {
	k := newKernelField(cfg)
	return func(ctx *context.Context, t, state, mask *Node) (*Node, *Node) {
		return k.velocity(ctx, t, state, mask, true)
	}
}

type kernelField struct{ cfg KernelConfig }

// newKernelField validates cfg (panicking on errors, as graph constructors do).
func newKernelField(cfg KernelConfig) kernelField {
	cfg.DType = defaultDType(cfg.DType)
	if err := cfg.Validate(); err != nil {
		panic(err)
	}
	return kernelField{cfg}
}

func (k kernelField) velocity(ctx *context.Context, t, state, mask *Node, withDiv bool) (v, div *Node) {
	cfg := k.cfg
	checkState("Kernel", cfg.DType, state)
	ctx = ctx.In(ScopeKernel).Checked(false)
	dims := state.Shape().Dimensions
	b, n, dim := dims[0], dims[1], dims[2]
	nm := graphutil.NodeMask(mask, cfg.DType, b, n)
	x := state
	if nm != nil {
		x = Mul(x, nm)
	}
	r, s, d := pairGeometry(x)
	phi, dphi := kernelForce(ctx, cfg, graphutil.TimeScalar(t, cfg.DType), d)
	pm := graphutil.PairMask(x.Graph(), cfg.DType, n, nm)
	phi = Mul(phi, pm)
	v = graphutil.RemoveMean(pairSum(phi, r), nm)
	if withDiv {
		term := Add(MulScalar(phi, float64(dim)), Mul(Mul(dphi, pm), Div(s, d))) // (B,N,N,1)
		div = ReduceSum(Reshape(term, b, n*n), 1)
	}
	return v, div
}

// KernelForce returns the force magnitude φ(d, t) and ∂φ/∂d, both shaped like d (…,1), with
// the variables of ctx (the ctx given to the Func). t is a scalar. For inspection and tests.
func KernelForce(ctx *context.Context, cfg KernelConfig, t, d *Node) (phi, dphi *Node) {
	cfg.DType = defaultDType(cfg.DType)
	if err := cfg.Validate(); err != nil {
		panic(err)
	}
	return kernelForce(ctx.In(ScopeKernel).Checked(false), cfg, graphutil.TimeScalar(t, cfg.DType), d)
}

// kernelVar creates (or fetches) a variable with a given initial value; trainable as asked.
func kernelVar(ctx *context.Context, dt dtypes.DType, name string, init []float64, trainable bool, dims ...int) *context.Variable {
	v := ctx.VariableWithValue(name, graphutil.MustTensor(dt, init, dims...))
	v.SetTrainable(trainable)
	return v
}

func negLog(xs []float64) []float64 {
	out := make([]float64, len(xs))
	for i, x := range xs {
		out[i] = -math.Log(x)
	}
	return out
}

// normalisedRBF returns κ = ρ/(10⁻⁶ + Σρ) and ∂κ/∂u for ρ_k = exp(−(u − μ_k)²·c_k); u is (P,1),
// mu and c are (1,K). The derivative is skipped (nil) when !withDeriv.
func normalisedRBF(u, mu, c *Node, withDeriv bool) (kappa, dkappa *Node) {
	diff := Sub(u, mu)                                        // (P,K)
	rho := Exp(Neg(Mul(Square(diff), c)))                     // (P,K)
	den := AddScalar(ReduceAndKeep(rho, ReduceSum, -1), 1e-6) // (P,1)
	kappa = Div(rho, den)
	if !withDeriv {
		return kappa, nil
	}
	drho := Mul(MulScalar(Mul(diff, c), -2), rho)
	dsum := ReduceAndKeep(drho, ReduceSum, -1)
	dkappa = Sub(Div(drho, den), Div(Mul(rho, dsum), Square(den)))
	return kappa, dkappa
}

// kernelForce computes φ(d, t) and φ′(d, t) = ∂φ/∂d for d (…,1) and a scalar t.
func kernelForce(ctx *context.Context, cfg KernelConfig, t, d *Node) (phi, dphi *Node) {
	g := d.Graph()
	dt := cfg.DType
	nk, nt := len(cfg.Mus), max(len(cfg.MusTime), 1)
	nlg := kernelVar(ctx, dt, VarNegLogGammas, negLog(cfg.Gammas), cfg.TrainGammas, nk).ValueGraph(g)
	w := ctx.WithInitializer(initializers.RandomNormalFn(ctx, math.Sqrt(1/float64(nk)))).
		VariableWithShape(VarWeights, shapes.Make(dt, nk, nt)).ValueGraph(g)
	bias := kernelVar(ctx, dt, VarBias, make([]float64, nt), true, nt).ValueGraph(g)
	imp := kernelVar(ctx, dt, VarImportance, make([]float64, nk), true, nk).ValueGraph(g)

	dims := d.Shape().Dimensions
	u := Reshape(d, -1, 1)
	mu := Reshape(ConstAsDType(g, dt, cfg.Mus), 1, nk)
	c := Reshape(Exp(MulScalar(nlg, 2)), 1, nk) // inv_gamma² = e^{2ν}
	kappa, dkappa := normalisedRBF(u, mu, c, true)
	f := graphutil.AddBias(graphutil.Dense(Add(kappa, Reshape(Square(imp), 1, nk)), w), bias) // (P,T)
	df := graphutil.Dense(dkappa, w)                                                          // (P,T)
	if len(cfg.MusTime) > 0 {
		nlgt := kernelVar(ctx, dt, VarNegLogGammasTime, negLog(cfg.GammasTime), cfg.TrainTimeGammas, nt).ValueGraph(g)
		muT := Reshape(ConstAsDType(g, dt, cfg.MusTime), 1, nt)
		cT := Reshape(Exp(MulScalar(nlgt, 2)), 1, nt)
		wt, _ := normalisedRBF(Reshape(t, 1, 1), muT, cT, false) // (1,T)
		wt = Reshape(wt, nt, 1)
		f, df = graphutil.Dense(f, wt), graphutil.Dense(df, wt)
	}
	return Reshape(f, dims...), Reshape(df, dims...)
}
