package qm9

import (
	"fmt"
	"math"
	"math/rand/v2"
	"sync"

	"github.com/enflow/enflow/gomlx_models/cnf"
	"github.com/enflow/enflow/gomlx_models/dynamics"
	"github.com/enflow/enflow/gomlx_models/egnn"
	"github.com/enflow/enflow/gomlx_models/prior"
	"github.com/enflow/enflow/internal/graphutil"
	"github.com/gomlx/gomlx/backends"
	"github.com/gomlx/gomlx/pkg/core/dtypes"
	. "github.com/gomlx/gomlx/pkg/core/graph" //nolint:revive // GoMLX idiom.
	"github.com/gomlx/gomlx/pkg/core/tensors"
	"github.com/gomlx/gomlx/pkg/ml/context"
)

// Config configures the QM9 E-NF, or the same model for molecules of other elements.
type Config struct {
	// DType of variables, data and ODE state: Float32 (default) or Float64.
	DType dtypes.DType
	// Flow is the dynamics EGNN; InNodeF, OutNodeF and EdgeAttrF are set by dynamics.QM9Config
	// (K+1 features + time, squared-distance edge attribute).
	Flow egnn.Config
	// Dequantizer is the dequantizer EGNN (K+1 → 2(K+1) features, no edge attribute).
	Dequantizer egnn.Config
	// CNF configures the continuous flow; PosDims is forced to 3 and DType to DType.
	CNF cnf.Config
	// Elements are the atomic numbers of the K one-hot channels, in channel order (default
	// QM9Elements(): H, C, N, O, F). A molecule with another element is an error.
	Elements []int
	// Sizes is p(M), the distribution of molecule sizes (default prior.QM9Sizes(), the QM9
	// train histogram): the log p(M) term of the bound and the sizes drawn by Sample.
	Sizes prior.Sizes
}

// DefaultConfig is the published en_flows QM9 model (REFERENCE §4.1): dynamics EGNN hidden 64,
// 6 layers, attention, tanh with coords_range 15/6; dequantizer EGNN hidden 64, 4 layers;
// dopri5 with rtol = atol = 1e-4 and a Gaussian Hutchinson trace; QM9's elements and sizes.
func DefaultConfig(dtype dtypes.DType) Config {
	return Config{
		DType:       dtype,
		Flow:        egnn.QM9Config(),
		Dequantizer: egnn.DequantizerConfig(),
		CNF:         cnf.Config{Solver: "dopri5", RTol: 1e-4, ATol: 1e-4, Trace: cnf.TraceHutchinson, Noise: cnf.NoiseGaussian},
		Elements:    QM9Elements(),
		Sizes:       prior.QM9Sizes(),
	}
}

// withDefaults fills derived fields.
func (c Config) withDefaults() (Config, error) {
	if c.DType == dtypes.InvalidDType {
		c.DType = dtypes.Float32
	}
	if c.DType != dtypes.Float32 && c.DType != dtypes.Float64 {
		return c, fmt.Errorf("qm9: dtype %s not supported (float32 or float64)", c.DType)
	}
	if len(c.Elements) == 0 {
		c.Elements = QM9Elements()
	}
	seen := map[int]bool{}
	for _, z := range c.Elements {
		if z < 1 || z > 118 || seen[z] {
			return c, fmt.Errorf("qm9: elements %v: atomic numbers must be distinct and in 1..118", c.Elements)
		}
		seen[z] = true
	}
	if len(c.Sizes.Counts) == 0 {
		c.Sizes = prior.QM9Sizes()
	}
	if err := c.Sizes.Validate(); err != nil {
		return c, fmt.Errorf("qm9: %w", err)
	}
	feats := len(c.Elements) + 1
	c.Flow.DType, c.Dequantizer.DType, c.CNF.DType = c.DType, c.DType, c.DType
	c.Flow = dynamics.QM9Config(c.Flow, PosDims+feats)
	c.Dequantizer.InNodeF, c.Dequantizer.OutNodeF, c.Dequantizer.EdgeAttrF = feats, 2*feats, 0
	c.Dequantizer = c.Dequantizer.WithDefaults()
	if err := c.Flow.Validate(); err != nil {
		return c, fmt.Errorf("qm9: flow EGNN: %w", err)
	}
	if err := c.Dequantizer.Validate(); err != nil {
		return c, fmt.Errorf("qm9: dequantizer EGNN: %w", err)
	}
	c.CNF.PosDims = PosDims
	return c, nil
}

// Types is the number K of one-hot atom-type channels (len(Elements)).
func (c Config) Types() int { return len(c.Elements) }

// Features is the number of feature channels, K + 1 (one-hot + integer charge).
func (c Config) Features() int { return len(c.Elements) + 1 }

// Channels is the width of the flow state, 3 + K + 1.
func (c Config) Channels() int { return PosDims + len(c.Elements) + 1 }

// Model is the QM9 E-NF: dequantizer → ActNorm → CNF with EGNN dynamics, and the size
// distribution p(N). Not safe for concurrent use, except that Sample runs its own solves
// concurrently (SampleOptions.Workers).
type Model struct {
	backend backends.Backend
	ctx     *context.Context
	cfg     Config
	flow    *cnf.Model
	encExec *context.Exec
	decExec *context.Exec
	// decBuild serialises the building of decodeGraph for new shapes: GoMLX's
	// Context.VariableWithShape writes to the variable even when it exists.
	decBuild sync.Mutex

	// Training (train.go): the encoder's variables (ActNorm, dequantizer) in gradient order, the
	// compiled encoder vector–Jacobian product and the dequantizer-only pass of ActNorm's
	// data-dependent initialisation.
	encVars []*context.Variable
	encGrad *context.Exec
	deqExec *context.Exec
}

// New builds the model over ctx (variables are created on first use, or come from a checkpoint
// or ImportTorch).
func New(b backends.Backend, ctx *context.Context, cfg Config) (*Model, error) {
	if b == nil {
		return nil, fmt.Errorf("qm9: nil backend")
	}
	if ctx == nil {
		ctx = context.New()
	}
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	m := &Model{backend: b, ctx: ctx, cfg: cfg}
	if m.flow, err = cnf.New(b, ctx.In(ScopeFlow), m.Dynamics(), cfg.CNF); err != nil {
		return nil, fmt.Errorf("qm9: %w", err)
	}
	if m.encExec, err = context.NewExec(b, ctx, m.encodeGraph); err != nil {
		return nil, fmt.Errorf("qm9: encoder: %w", err)
	}
	if m.decExec, err = context.NewExec(b, ctx, m.decodeGraph); err != nil {
		return nil, fmt.Errorf("qm9: decoder: %w", err)
	}
	// One graph per (molecules, atoms) shape: molecule sizes vary.
	m.encExec.SetMaxCache(-1)
	m.decExec.SetMaxCache(-1)
	return m, nil
}

// Config returns the configuration with derived fields filled in.
func (m *Model) Config() Config { return m.cfg }

// Context returns the root context of the model's variables.
func (m *Model) Context() *context.Context { return m.ctx }

// Flow returns the CNF (variables under ScopeFlow).
func (m *Model) Flow() *cnf.Model { return m.flow }

// Dynamics returns the velocity field of the CNF, EGNN_dynamics_QM9 (REFERENCE §4.5). It must be
// called with ctx.In(ScopeFlow) of the model's root context.
func (m *Model) Dynamics() dynamics.Func { return dynamics.QM9(m.cfg.Flow) }

// encodeGraph: (x, oneHot, charge, mask, eps) → (y, logQ, actNormLogDet, mu, logSigma).
func (m *Model) encodeGraph(ctx *context.Context, in []*Node) []*Node {
	x, oneHot, charge, mask, eps := in[0], in[1], in[2], in[3], in[4]
	xh, d := m.dequantizeGraph(ctx, x, oneHot, charge, mask, eps)
	y, ldj := ActNormForward(ctx, xh, mask)
	return []*Node{y, d.LogQ, ldj, d.Mu, d.LogSigma}
}

// dequantizeGraph returns the ActNorm input xh = [x·mask, v] (B,N,3+K+1) and the dequantizer
// outputs.
func (m *Model) dequantizeGraph(ctx *context.Context, x, oneHot, charge, mask, eps *Node) (*Node, Dequantized) {
	d := Dequantize(ctx, m.cfg.Dequantizer, x, oneHot, charge, mask, eps)
	ch := m.cfg.Channels()
	xh := Add(place(Mul(x, mask3(mask, x.DType())), ch, 0), place(d.V, ch, PosDims))
	return xh, d
}

// decodeGraph: (y, mask) → ActNorm⁻¹(y).
func (m *Model) decodeGraph(ctx *context.Context, in []*Node) *Node {
	m.decBuild.Lock()
	defer m.decBuild.Unlock()
	return ActNormReverse(ctx, in[0], in[1])
}

// Terms are the per-molecule terms of the variational bound (nats):
//
//	log p(x,h,N) ≥ LogPZ + DeltaLogP + ActNorm − LogQ + LogPN = LogP.
type Terms struct {
	ID        int64
	NAtoms    int
	LogPZ     float64 // log p_z(z_x) (CoG-free) + log p_z(z_h) (standard normal)
	DeltaLogP float64 // ∫₀¹ tr(∂f/∂y) dt
	ActNorm   float64 // ActNorm log-determinant
	LogQ      float64 // log q(v | x, h) of the dequantizer
	LogPN     float64 // log p(N) of the model's size histogram (QM9's train split by default)
	LogP      float64 // the bound; NLL = −LogP
}

// Intermediates are the dequantizer and ActNorm outputs of a batch (for checks against the
// reference implementation).
type Intermediates struct {
	Y             *tensors.Tensor // ActNorm output (B,N,3+K+1), the CNF input
	LogQ, ActNorm []float64       // (B)
	Mu, LogSigma  []float64       // (B·N·(K+1))
}

// EvalOptions configure LogLikelihood.
type EvalOptions struct {
	// Deterministic sets the dequantizer noise ε = 0 (u = mu).
	Deterministic bool
	// Seed draws ε (unless Deterministic) and the Hutchinson noise.
	Seed uint64
}

// tensors of a batch in the model dtype.
func (m *Model) batchTensors(b *Batch, eps []float64) ([]*tensors.Tensor, error) {
	dt := m.cfg.DType
	if b.K != m.cfg.Types() {
		return nil, fmt.Errorf("qm9: batch has %d atom types, the model %d (%v)", b.K, m.cfg.Types(), m.cfg.Elements)
	}
	nf := b.K + 1
	var out []*tensors.Tensor
	for _, a := range []struct {
		data []float64
		dims []int
	}{
		{b.X, []int{b.B, b.N, PosDims}}, {b.OneHot, []int{b.B, b.N, b.K}}, {b.Charge, []int{b.B, b.N, 1}},
		{b.Mask, []int{b.B, b.N}}, {eps, []int{b.B, b.N, nf}},
	} {
		t, err := prior.FromFloat64(dt, a.data, a.dims...)
		if err != nil {
			freeAll(out)
			return nil, err
		}
		out = append(out, t)
	}
	return out, nil
}

// noise draws the dequantizer ε (masked standard normal), or zeros when deterministic.
func noise(b *Batch, o EvalOptions) []float64 {
	nf := b.K + 1
	eps := make([]float64, b.B*b.N*nf)
	if o.Deterministic {
		return eps
	}
	rng := rand.New(rand.NewPCG(o.Seed, 0x6465_7175_616e_7469)) // "dequanti"
	for i := range eps {
		if b.Mask[i/nf] != 0 {
			eps[i] = rng.NormFloat64()
		}
	}
	return eps
}

// Encode runs the dequantizer and ActNorm on a batch.
func (m *Model) Encode(b *Batch, o EvalOptions) (*Intermediates, error) {
	in, err := m.batchTensors(b, noise(b, o))
	if err != nil {
		return nil, err
	}
	defer freeAll(in)
	out, err := m.encExec.Exec(in[0], in[1], in[2], in[3], in[4])
	if err != nil {
		return nil, fmt.Errorf("qm9: dequantizer/ActNorm: %w", err)
	}
	defer freeAll(out[1:])
	return &Intermediates{Y: out[0], LogQ: floats(out[1]), ActNorm: floats(out[2]), Mu: floats(out[3]), LogSigma: floats(out[4])}, nil
}

// LogLikelihood returns the per-molecule terms of the bound for a batch and the CNF statistics.
func (m *Model) LogLikelihood(b *Batch, o EvalOptions) ([]Terms, cnf.Stats, error) {
	inter, err := m.Encode(b, o)
	if err != nil {
		return nil, cnf.Stats{}, err
	}
	mask, err := prior.FromFloat64(m.cfg.DType, b.Mask, b.B, b.N)
	if err != nil {
		freeAll([]*tensors.Tensor{inter.Y})
		return nil, cnf.Stats{}, err
	}
	z, delta, st, err := m.flow.Encode(inter.Y, mask, o.Seed^0x68_7574_6368) // "hutch"
	freeAll([]*tensors.Tensor{inter.Y, mask})
	if err != nil {
		return nil, st, fmt.Errorf("qm9: %w", err)
	}
	zv := floats(z)
	freeAll([]*tensors.Tensor{z})
	ch, nf := m.cfg.Channels(), m.cfg.Features()
	out := make([]Terms, b.B)
	for i := range b.B {
		n := b.NAtoms[i]
		lpn, err := m.cfg.Sizes.LogProb(n)
		if err != nil {
			return nil, st, fmt.Errorf("qm9: molecule %d: %w", b.IDs[i], err)
		}
		r2x, r2h := 0.0, 0.0
		for a := range b.N {
			if b.Mask[i*b.N+a] == 0 {
				continue
			}
			for c := range ch {
				v := zv[(i*b.N+a)*ch+c]
				if c < PosDims {
					r2x += v * v
				} else {
					r2h += v * v
				}
			}
		}
		logPZ := -0.5*r2x - 0.5*float64((n-1)*PosDims)*log2Pi - 0.5*r2h - 0.5*float64(n*nf)*log2Pi
		t := Terms{ID: b.IDs[i], NAtoms: n, LogPZ: logPZ, DeltaLogP: delta[i], ActNorm: inter.ActNorm[i], LogQ: inter.LogQ[i], LogPN: lpn}
		t.LogP = t.LogPZ + t.DeltaLogP + t.ActNorm - t.LogQ + t.LogPN
		out[i] = t
	}
	return out, st, nil
}

// Decode maps CNF samples y (B,N,3+K+1) at t = 0 through ActNorm⁻¹ and returns the positions
// (B·N·3), atom-type indices (argmax of the K categorical channels; index into Config.Elements)
// and integer charges (floor of the charge channel) (ENF ArgmaxAndVariationalDequantizer.reverse);
// finite[a] is false when any channel of node a is NaN or infinite.
func (m *Model) Decode(y, mask *tensors.Tensor) (pos []float64, types, charges []int, finite []bool, err error) {
	out, err := m.decExec.Exec(y, mask)
	if err != nil {
		return nil, nil, nil, nil, fmt.Errorf("qm9: ActNorm reverse: %w", err)
	}
	xh := floats(out[0])
	freeAll(out)
	ch, k := m.cfg.Channels(), m.cfg.Types()
	nodes := len(xh) / ch
	pos = make([]float64, nodes*PosDims)
	types = make([]int, nodes)
	charges = make([]int, nodes)
	finite = make([]bool, nodes)
	for a := range nodes {
		row := xh[a*ch : (a+1)*ch]
		finite[a] = true
		for _, v := range row {
			if math.IsNaN(v) || math.IsInf(v, 0) {
				finite[a] = false
			}
		}
		copy(pos[a*PosDims:], row[:PosDims])
		best := 0
		for t := 1; t < k; t++ {
			if row[PosDims+t] > row[PosDims+best] {
				best = t
			}
		}
		types[a] = best
		c := math.Floor(row[PosDims+k])
		if math.IsNaN(c) || c > math.MaxInt32 || c < math.MinInt32 {
			c = 0
		}
		charges[a] = int(c)
	}
	return pos, types, charges, finite, nil
}

// freeAll releases tensors (nil entries are skipped).
func freeAll(ts []*tensors.Tensor) { graphutil.Free(ts...) }

// floats copies a Float32/Float64 tensor to float64.
func floats(t *tensors.Tensor) []float64 { return graphutil.MustFloats(t) }
