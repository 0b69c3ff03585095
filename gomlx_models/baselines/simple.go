package baselines

import (
	"fmt"

	"github.com/enflow/enflow/gomlx_models/dynamics"
	"github.com/gomlx/gomlx/pkg/core/dtypes"
	. "github.com/gomlx/gomlx/pkg/core/graph" //nolint:revive // GoMLX idiom.
	"github.com/gomlx/gomlx/pkg/ml/context"

	"github.com/enflow/enflow/internal/graphutil"
)

// ScopeSimple is the sub-scope of ctx holding the simple-dynamics MLP ("dense_k/{w,b}").
const ScopeSimple = "simple"

// SimpleConfig configures the "simple dynamics" of Köhler, Klein & Noé (2020) as run by
// en_flows (deprecated/eqnode/dynamics.py::SimpleEqDynamics, configured in
// dw4_experiment/models.py for both DW4 and LJ13).
type SimpleConfig struct {
	// Mus are the RBF centres μ_k (en_flows: linspace(0, 8, 50)); fixed, not trained.
	Mus []float64 `json:"mus"`
	// Gamma is the shared RBF width γ (en_flows: 0.5); fixed, not trained.
	Gamma float64 `json:"gamma"`
	// Hidden are the widths of the tanh MLP's hidden layers (en_flows: DenseNet([50, 64, 32, 1])).
	Hidden []int `json:"hidden"`
	// DType of variables and states; zero value means Float32. Not serialised (the model spec
	// holds the dtype).
	DType dtypes.DType `json:"-"`
}

// DefaultSimpleConfig is the en_flows configuration (the same for DW4 and LJ13).
func DefaultSimpleConfig() SimpleConfig {
	return SimpleConfig{Mus: linspace(0, 8, 50), Gamma: 0.5, Hidden: []int{64, 32}}
}

// Validate reports configuration errors.
func (c SimpleConfig) Validate() error {
	if len(c.Mus) == 0 {
		return fmt.Errorf("baselines: SimpleConfig needs at least one RBF centre")
	}
	if !(c.Gamma > 0) {
		return fmt.Errorf("baselines: SimpleConfig.Gamma must be > 0, got %g", c.Gamma)
	}
	for _, h := range c.Hidden {
		if h <= 0 {
			return fmt.Errorf("baselines: SimpleConfig.Hidden widths must be > 0, got %v", c.Hidden)
		}
	}
	return checkDType(defaultDType(c.DType))
}

// Simple returns the simple-dynamics velocity field: the negative gradient of a learned pairwise
// potential, which is an E(n)-equivariant radial field. With r_ij = x_i − x_j and the smoothed
// distance d_ij = √(‖r_ij‖² + 10⁻⁶),
//
//	ρ_k(d) = (exp(−(d − μ_k)²/γ²) + 10⁻⁶) / Σ_l (exp(−(d − μ_l)²/γ²) + 10⁻⁶)   (normalised RBFs)
//	g(d)   = W₃·tanh(W₂·tanh(W₁·ρ(d) + b₁) + b₂) + b₃                        (DenseNet, tanh)
//	U(x)   = Σ_{i≠j} g(d_ij)                                                  (ordered pairs)
//	v_i    = −∂U/∂x_i = Σ_{j≠i} φ(d_ij)·r_ij,   φ(d) = −2·g′(d)/d
//
// followed by removing the per-sample mean over nodes (analytically zero already, as φ is
// symmetric in i, j). As in en_flows, the field does not depend on t. g′ is computed in closed
// form by forward-mode differentiation of the MLP (no Gradient inside the dynamics), so the CNF
// can take the usual first and second derivatives of v. The trace of ∂v/∂x is left to the CNF
// (autodiff, exact or Hutchinson), as in en_flows, which wraps this model in FFJORD.
//
// state is (B,N,D), mask (B,N) or nil; padded nodes take no part and get zero velocity.
// Variables live under ctx.In(ScopeSimple).
func Simple(cfg SimpleConfig) dynamics.Func {
	cfg.DType = defaultDType(cfg.DType)
	if err := cfg.Validate(); err != nil {
		panic(err)
	}
	return func(ctx *context.Context, t, state, mask *Node) *Node {
		_ = t // time-independent, as SimpleEqDynamics
		checkState("Simple", cfg.DType, state)
		ctx = ctx.In(ScopeSimple).Checked(false)
		dims := state.Shape().Dimensions
		b, n := dims[0], dims[1]
		nm := graphutil.NodeMask(mask, cfg.DType, b, n)
		x := state
		if nm != nil {
			x = Mul(x, nm)
		}
		r, _, d := pairGeometry(x)
		_, dg := simplePotential(ctx, cfg, d) // g′(d_ij)
		phi := Mul(MulScalar(Div(dg, d), -2), graphutil.PairMask(x.Graph(), cfg.DType, n, nm))
		return graphutil.RemoveMean(pairSum(phi, r), nm)
	}
}

// simplePotential returns g(d) and g′(d), both shaped like d (…,1), for the tanh MLP on the
// normalised RBF encoding of d (forward-mode derivative: ρ̇ = ∂ρ/∂d, ȧ = W·ρ̇, ḣ = (1 − h²)⊙ȧ).
func simplePotential(ctx *context.Context, cfg SimpleConfig, d *Node) (val, deriv *Node) {
	g := d.Graph()
	dt := cfg.DType
	k := len(cfg.Mus)
	mu := Reshape(ConstAsDType(g, dt, cfg.Mus), 1, k) // (1,K)
	dims := d.Shape().Dimensions
	d2 := Reshape(d, -1, 1) // (P,1)
	diff := Sub(d2, mu)     // (P,K)
	inv := 1 / (cfg.Gamma * cfg.Gamma)
	e := Exp(MulScalar(Square(diff), -inv))  // exp part
	de := Mul(MulScalar(diff, -2*inv), e)    // ∂e/∂d
	eps := AddScalar(e, distEps)             // rbfs + 1e-6 (kernelize_with_rbf)
	sum := ReduceAndKeep(eps, ReduceSum, -1) // (P,1)
	dsum := ReduceAndKeep(de, ReduceSum, -1) // (P,1)
	rho := Div(eps, sum)                     // (P,K)
	drho := Sub(Div(de, sum), Div(Mul(eps, dsum), Square(sum)))
	h, dh := rho, drho
	in := k
	for l, width := range cfg.Hidden {
		c := ctx.In(fmt.Sprintf("dense_%d", l))
		w := graphutil.Param(c, g, dt, "w", in, in, width)
		bias := graphutil.Param(c, g, dt, "b", in, width)
		h = Tanh(graphutil.AddBias(graphutil.Dense(h, w), bias))
		dh = Mul(OneMinus(Square(h)), graphutil.Dense(dh, w))
		in = width
	}
	c := ctx.In(fmt.Sprintf("dense_%d", len(cfg.Hidden)))
	w := graphutil.Param(c, g, dt, "w", in, in, 1)
	bias := graphutil.Param(c, g, dt, "b", in, 1)
	val = Reshape(graphutil.AddBias(graphutil.Dense(h, w), bias), dims...)
	deriv = Reshape(graphutil.Dense(dh, w), dims...)
	return val, deriv
}

// SimplePotential returns the learned pair potential g(d) and its derivative g′(d) for
// distances d of any shape ending in a unit axis (…,1), using the variables of ctx (the same ctx
// given to the Func returned by Simple). For inspection and tests.
func SimplePotential(ctx *context.Context, cfg SimpleConfig, d *Node) (g, dg *Node) {
	cfg.DType = defaultDType(cfg.DType)
	if err := cfg.Validate(); err != nil {
		panic(err)
	}
	if d.DType() != cfg.DType {
		panic(fmt.Sprintf("baselines.SimplePotential: d has dtype %s, config %s", d.DType(), cfg.DType))
	}
	return simplePotential(ctx.In(ScopeSimple).Checked(false), cfg, d)
}
