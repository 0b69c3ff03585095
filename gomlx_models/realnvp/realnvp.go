// Package realnvp is the non-equivariant Boltzmann generator (nBG) of Köhler, Klein & Noé: a
// RealNVP flow (Dinh et al. 2017) of affine coupling layers on the flattened coordinates of a
// particle configuration, with a standard normal prior on all N·D coordinates. It has no
// symmetry: it is the baseline that shows why the equivariant flows generalise.
//
// Coordinates x [B, N, D] are flattened to d = N·D values and split into the first ⌈d/2⌉ (part
// A) and the rest (part B). Coupling layer l transforms one part conditioned on the other,
// alternating (even layers transform B given A, odd layers A given B):
//
//	y_T = x_T ⊙ exp(s(x_C)) + t(x_C),   s = S·tanh(MLP_s(x_C)),   log|det| += Σ s,
//
// in the data → latent direction (z = f(x)), with S = Config.ScaleRange bounding each layer's
// log-scale. The MLPs have Config.Hidden units in Config.HiddenLayers tanh layers; their output
// layers start at zero, so a fresh flow is the identity. The log-determinant is exact:
//
//	log q(x) = log N(z; 0, I_d) + Σ_l Σ s_l(x).
//
// The parts are selected and placed by constant 0/1 matrices (no Slice/Concatenate).
// Variables live in the context given to New. A Model is not safe for concurrent use.
package realnvp

import (
	"fmt"
	"math"
	"math/rand/v2"

	"github.com/gomlx/gomlx/backends"
	"github.com/gomlx/gomlx/pkg/core/dtypes"
	. "github.com/gomlx/gomlx/pkg/core/graph" //nolint:revive // GoMLX idiom.
	"github.com/gomlx/gomlx/pkg/core/shapes"
	"github.com/gomlx/gomlx/pkg/core/tensors"
	"github.com/gomlx/gomlx/pkg/ml/context"
	"github.com/gomlx/gomlx/pkg/ml/context/initializers"

	"github.com/enflow/enflow/gomlx_models/energy"
	"github.com/enflow/enflow/gomlx_models/prior"
	"github.com/enflow/enflow/internal/graphutil"
)

// Config configures a RealNVP flow. Zero values take the defaults noted.
type Config struct {
	// Nodes and Dim are N and D of the configurations [B, N, D]; N·D ≥ 2.
	Nodes, Dim int
	// Layers is the number of coupling layers (default 8: four A/B pairs).
	Layers int
	// Hidden is the width of the coupling MLPs (default 64), HiddenLayers their number of
	// hidden tanh layers (default 2).
	Hidden, HiddenLayers int
	// ScaleRange bounds each layer's log-scale: s = ScaleRange·tanh(·) (default 2).
	ScaleRange float64
	// DType is float32 (default) or float64.
	DType dtypes.DType
}

func (c *Config) defaults() error {
	if c.Layers == 0 {
		c.Layers = 8
	}
	if c.Hidden == 0 {
		c.Hidden = 64
	}
	if c.HiddenLayers == 0 {
		c.HiddenLayers = 2
	}
	if c.ScaleRange == 0 {
		c.ScaleRange = 2
	}
	if c.DType == dtypes.InvalidDType {
		c.DType = dtypes.Float32
	}
	switch {
	case c.Nodes < 1 || c.Dim < 1 || c.Nodes*c.Dim < 2:
		return fmt.Errorf("realnvp: need N·D ≥ 2 coordinates, got N=%d D=%d", c.Nodes, c.Dim)
	case c.Layers < 1 || c.Hidden < 1 || c.HiddenLayers < 1:
		return fmt.Errorf("realnvp: layers %d, hidden %d, hidden layers %d must be ≥ 1", c.Layers, c.Hidden, c.HiddenLayers)
	case !(c.ScaleRange > 0) || math.IsInf(c.ScaleRange, 0):
		return fmt.Errorf("realnvp: scale range must be finite and > 0, got %g", c.ScaleRange)
	case c.DType != dtypes.Float32 && c.DType != dtypes.Float64:
		return fmt.Errorf("realnvp: dtype %s not supported (float32 or float64)", c.DType)
	}
	return nil
}

// D is the flattened dimension N·D.
func (c Config) D() int { return c.Nodes * c.Dim }

// parts returns the sizes of parts A (first ⌈d/2⌉ coordinates) and B.
func (c Config) parts() (a, b int) {
	d := c.D()
	return (d + 1) / 2, d / 2
}

// selectors returns the (d, |part|) selection matrices of parts A and B.
func (c Config) selectors(g *Graph) (sa, sb *Node) {
	d := c.D()
	na, nb := c.parts()
	return graphutil.Selection(g, c.DType, d, na, 0, 0), graphutil.Selection(g, c.DType, d, nb, na, 0)
}

// mlp is the conditioner of layer l: x_C [B, in] → (s, t) [B, out] with zero-initialised heads.
func (c Config) mlp(ctx *context.Context, l int, xc *Node, in, out int) (s, t *Node) {
	ctx = ctx.Checked(false).In(fmt.Sprintf("coupling_%d", l)) // shared by every graph of the flow
	h := xc
	width := in
	for k := range c.HiddenLayers {
		h = Tanh(graphutil.Linear(ctx.In(fmt.Sprintf("hidden_%d", k)), c.DType, h, width, c.Hidden, true))
		width = c.Hidden
	}
	zero := ctx.WithInitializer(initializers.Zero)
	head := func(name string) *Node {
		hc := zero.In(name)
		w := hc.VariableWithShape("w", shapes.Make(c.DType, width, out)).ValueGraph(h.Graph())
		b := hc.VariableWithShape("b", shapes.Make(c.DType, out)).ValueGraph(h.Graph())
		return graphutil.AddBias(graphutil.Dense(h, w), b)
	}
	s = MulScalar(Tanh(head("scale")), c.ScaleRange)
	t = head("shift")
	return s, t
}

// layerParts returns, for layer l, the selectors of the conditioning and transformed parts and
// their sizes.
func (c Config) layerParts(g *Graph, l int) (sc, st *Node, nc, nt int) {
	sa, sb := c.selectors(g)
	na, nb := c.parts()
	if l%2 == 0 {
		return sa, sb, na, nb
	}
	return sb, sa, nb, na
}

// Forward maps data x [B, N, D] to latent z [B, d] and returns log|det ∂z/∂x| [B].
func Forward(ctx *context.Context, c Config, x *Node) (z, logdet *Node) {
	b := x.Shape().Dim(0)
	g := x.Graph()
	y := Reshape(x, b, c.D())
	logdet = Zeros(g, shapes.Make(c.DType, b))
	for l := range c.Layers {
		sc, st, nc, nt := c.layerParts(g, l)
		xc, xt := graphutil.Dense(y, sc), graphutil.Dense(y, st)
		s, t := c.mlp(ctx, l, xc, nc, nt)
		yt := Add(Mul(xt, Exp(s)), t)
		y = Add(graphutil.Dense(xc, Transpose(sc, 0, 1)), graphutil.Dense(yt, Transpose(st, 0, 1)))
		logdet = Add(logdet, ReduceSum(s, 1))
	}
	return y, logdet
}

// Invert maps latent z [B, d] to data x [B, N, D] and returns log|det ∂x/∂z| [B].
func Invert(ctx *context.Context, c Config, z *Node) (x, logdet *Node) {
	b := z.Shape().Dim(0)
	g := z.Graph()
	y := z
	logdet = Zeros(g, shapes.Make(c.DType, b))
	for l := c.Layers - 1; l >= 0; l-- {
		sc, st, nc, nt := c.layerParts(g, l)
		yc, yt := graphutil.Dense(y, sc), graphutil.Dense(y, st)
		s, t := c.mlp(ctx, l, yc, nc, nt)
		xt := Mul(Sub(yt, t), Exp(Neg(s)))
		y = Add(graphutil.Dense(yc, Transpose(sc, 0, 1)), graphutil.Dense(xt, Transpose(st, 0, 1)))
		logdet = Sub(logdet, ReduceSum(s, 1))
	}
	return Reshape(y, b, c.Nodes, c.Dim), logdet
}

// StandardNormalLogProb is log N(z; 0, I_d) per row of z [B, d].
func StandardNormalLogProb(z *Node) *Node {
	d := float64(z.Shape().Dim(1))
	return AddScalar(MulScalar(ReduceSum(Square(z), 1), -0.5), -0.5*d*math.Log(2*math.Pi))
}

// LogProb is log q(x) per configuration of x [B, N, D].
func LogProb(ctx *context.Context, c Config, x *Node) *Node {
	z, logdet := Forward(ctx, c, x)
	return Add(StandardNormalLogProb(z), logdet)
}

// Model is a RealNVP flow with compiled graphs.
type Model struct {
	backend backends.Backend
	ctx     *context.Context
	cfg     Config
	vars    []*context.Variable
	target  *energy.Target

	lossExec, llExec, sampleExec, klExec *context.Exec
}

// New creates a flow whose variables live in ctx (created on first use, or by InitVariables;
// the hidden layers' initialisation follows ctx's context.ParamInitialSeed).
func New(b backends.Backend, ctx *context.Context, c Config) (*Model, error) {
	if b == nil {
		return nil, fmt.Errorf("realnvp: backend must be non-nil")
	}
	if err := c.defaults(); err != nil {
		return nil, err
	}
	if ctx == nil {
		ctx = context.New()
	}
	m := &Model{backend: b, ctx: ctx, cfg: c}
	var err error
	if m.lossExec, err = context.NewExec(b, ctx, m.lossGraph); err != nil {
		return nil, fmt.Errorf("realnvp: loss executable: %w", err)
	}
	if m.llExec, err = context.NewExec(b, ctx, func(ctx *context.Context, x *Node) *Node {
		return LogProb(ctx, m.cfg, x)
	}); err != nil {
		return nil, fmt.Errorf("realnvp: log-density executable: %w", err)
	}
	if m.sampleExec, err = context.NewExec(b, ctx, func(ctx *context.Context, z *Node) []*Node {
		x, logdet := Invert(ctx, m.cfg, z)
		return []*Node{x, Sub(StandardNormalLogProb(z), logdet)}
	}); err != nil {
		return nil, fmt.Errorf("realnvp: sampling executable: %w", err)
	}
	for _, e := range []*context.Exec{m.lossExec, m.llExec, m.sampleExec} {
		e.SetMaxCache(-1)
	}
	return m, nil
}

// Config returns the configuration with defaults filled in.
func (m *Model) Config() Config { return m.cfg }

// Context returns the context holding the variables.
func (m *Model) Context() *context.Context { return m.ctx }

// InitVariables creates the variables (by building the log-density once on zeros) and freezes
// the order of Variables.
func (m *Model) InitVariables() error {
	if m.vars != nil {
		return nil
	}
	x := tensors.FromShape(shapes.Make(m.cfg.DType, 1, m.cfg.Nodes, m.cfg.Dim))
	defer graphutil.Free(x)
	out, err := m.llExec.Exec(x)
	if err != nil {
		return fmt.Errorf("realnvp: creating the variables: %w", err)
	}
	graphutil.Free(out...)
	m.vars = []*context.Variable{}
	for v := range m.ctx.IterVariablesInScope() {
		if v.Trainable {
			m.vars = append(m.vars, v)
		}
	}
	return nil
}

// Variables returns the trainable variables in the order of the gradients.
func (m *Model) Variables() []*context.Variable {
	if err := m.InitVariables(); err != nil {
		return nil
	}
	return m.vars
}

func (m *Model) varNodes(g *Graph) []*Node {
	out := make([]*Node, len(m.vars))
	for i, v := range m.vars {
		out[i] = v.ValueGraph(g)
	}
	return out
}

// lossGraph: x → mean NLL and its gradients.
func (m *Model) lossGraph(ctx *context.Context, x *Node) []*Node {
	nll := Neg(ReduceAllMean(LogProb(ctx, m.cfg, x)))
	return append([]*Node{nll}, Gradient(nll, m.varNodes(x.Graph())...)...)
}

func (m *Model) checkX(x *tensors.Tensor) error {
	if x == nil {
		return fmt.Errorf("realnvp: nil positions")
	}
	s := x.Shape()
	if s.Rank() != 3 || s.Dim(1) != m.cfg.Nodes || s.Dim(2) != m.cfg.Dim {
		return fmt.Errorf("realnvp: positions must be [B, %d, %d], got %s", m.cfg.Nodes, m.cfg.Dim, s)
	}
	if s.DType != m.cfg.DType {
		return fmt.Errorf("realnvp: positions have dtype %s, the model is %s", s.DType, m.cfg.DType)
	}
	return nil
}

// LossAndGrad returns the mean NLL of x [B, N, D] and its gradient for every variable.
func (m *Model) LossAndGrad(x *tensors.Tensor) (nll float64, grads []*tensors.Tensor, err error) {
	if err = m.checkX(x); err != nil {
		return 0, nil, err
	}
	if err = m.InitVariables(); err != nil {
		return 0, nil, err
	}
	out, err := m.lossExec.Exec(x)
	if err != nil {
		return 0, nil, fmt.Errorf("realnvp: NLL and gradient: %w", err)
	}
	nll = graphutil.MustFloats(out[0])[0]
	graphutil.Free(out[0])
	return nll, out[1:], nil
}

// LogLikelihood returns log q(x) per configuration (nats, on all N·D coordinates).
func (m *Model) LogLikelihood(x *tensors.Tensor) ([]float64, error) {
	if err := m.checkX(x); err != nil {
		return nil, err
	}
	out, err := m.llExec.Exec(x)
	if err != nil {
		return nil, fmt.Errorf("realnvp: log-density: %w", err)
	}
	defer graphutil.Free(out...)
	return graphutil.MustFloats(out[0]), nil
}

// drawLatent draws z ~ N(0, I_d) [batch, d] from seed.
func (m *Model) drawLatent(batch int, seed uint64) (*tensors.Tensor, error) {
	if batch < 1 {
		return nil, fmt.Errorf("realnvp: batch must be ≥ 1, got %d", batch)
	}
	rng := rand.New(rand.NewPCG(seed, 0x7ea1_0a9b_0000_0003))
	z, err := prior.SampleStandardNormal(rng, m.cfg.DType, batch, m.cfg.D(), 1, nil)
	if err != nil {
		return nil, fmt.Errorf("realnvp: sampling the prior: %w", err)
	}
	defer graphutil.Free(z)
	return graphutil.Tensor(m.cfg.DType, graphutil.MustFloats(z), batch, m.cfg.D())
}

// SampleWithLogDensity draws batch configurations [batch, N, D] with seed and returns them with
// log q(x) per configuration (exact).
func (m *Model) SampleWithLogDensity(batch int, seed uint64) (*tensors.Tensor, []float64, error) {
	z, err := m.drawLatent(batch, seed)
	if err != nil {
		return nil, nil, err
	}
	defer graphutil.Free(z)
	out, err := m.sampleExec.Exec(z)
	if err != nil {
		return nil, nil, fmt.Errorf("realnvp: sampling: %w", err)
	}
	logq := graphutil.MustFloats(out[1])
	graphutil.Free(out[1])
	return out[0], logq, nil
}

// SetTarget sets the energy of KLLossAndGrad.
func (m *Model) SetTarget(t energy.Target) error {
	t, err := t.Normalized()
	if err != nil {
		return fmt.Errorf("realnvp: %w", err)
	}
	if m.klExec != nil {
		m.klExec.Finalize()
		m.klExec = nil
	}
	m.target = &t
	return nil
}

// klGraph: z → KL (the loss), KLPrior, mean energy, and the gradients.
func (m *Model) klGraph(ctx *context.Context, z *Node) []*Node {
	x, logdet := Invert(ctx, m.cfg, z)
	u := m.target.Energy(x)
	kl := ReduceAllMean(Sub(MulScalar(u, 1/m.target.Temperature), logdet))
	klPrior := Add(kl, ReduceAllMean(StandardNormalLogProb(z)))
	out := []*Node{kl, klPrior, ReduceAllMean(u)}
	return append(out, Gradient(kl, m.varNodes(z.Graph())...)...)
}

// KLLossAndGrad draws batch latents with seed and returns the energy-based loss toward the
// target of SetTarget and its reparameterised gradient for every variable.
func (m *Model) KLLossAndGrad(batch int, seed uint64) (res energy.KLResult, grads []*tensors.Tensor, err error) {
	if m.target == nil {
		return res, nil, fmt.Errorf("realnvp: KLLossAndGrad needs a target energy (SetTarget)")
	}
	if err = m.InitVariables(); err != nil {
		return res, nil, err
	}
	if m.klExec == nil {
		if m.klExec, err = context.NewExec(m.backend, m.ctx, m.klGraph); err != nil {
			return res, nil, fmt.Errorf("realnvp: KL executable: %w", err)
		}
		m.klExec.SetMaxCache(-1)
	}
	z, err := m.drawLatent(batch, seed)
	if err != nil {
		return res, nil, err
	}
	defer graphutil.Free(z)
	out, err := m.klExec.Exec(z)
	if err != nil {
		return res, nil, fmt.Errorf("realnvp: KL loss toward %q: %w", m.target.Name, err)
	}
	v := make([]float64, 3)
	for i := range v {
		v[i] = graphutil.MustFloats(out[i])[0]
	}
	graphutil.Free(out[:3]...)
	return energy.KLResult{Loss: v[0], KL: v[0], KLPrior: v[1], MeanEnergy: v[2]}, out[3:], nil
}
