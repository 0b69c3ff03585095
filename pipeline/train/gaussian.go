package train

import (
	"fmt"
	"math"
	"math/rand/v2"

	"github.com/enflow/enflow/gomlx_models/prior"
	"github.com/gomlx/gomlx/backends"
	"github.com/gomlx/gomlx/pkg/core/dtypes"
	. "github.com/gomlx/gomlx/pkg/core/graph" //nolint:revive // GoMLX idiom.
	"github.com/gomlx/gomlx/pkg/core/shapes"
	"github.com/gomlx/gomlx/pkg/core/tensors"
	"github.com/gomlx/gomlx/pkg/ml/context"
)

// GaussianKind is the model kind of the test stand-in flow.
const GaussianKind = "gaussian"

func init() { RegisterModel(GaussianKind, newGaussianModel) }

// gaussianModel is a tiny, exactly tractable flow used to test the driver without the CNF:
// z = x ⊙ exp(−s) with one learnable log-scale s_d per spatial axis, which keeps the
// configuration mean-free, and a mean-free standard Gaussian prior. Per configuration,
//
//	NLL = ½‖z‖² + (n−1)·Σ_d s_d + ½·(n−1)·D·ln 2π.
//
// To exercise the seed stream like a Hutchinson estimator would, the training loss adds
// noiseScale·u·Σ_d s_d with u ∈ [−1, 1) drawn from the seed (the reported NLL does not).
type gaussianModel struct {
	spec     *ModelSpec
	dtype    dtypes.DType
	logScale *context.Variable
	lossExec *context.Exec
	llExec   *context.Exec
}

const gaussianNoiseScale = 0.1

func newGaussianModel(b backends.Backend, ctx *context.Context, spec *ModelSpec) (Model, error) {
	dtype, err := spec.GoDType()
	if err != nil {
		return nil, err
	}
	m := &gaussianModel{spec: spec, dtype: dtype}
	zeros := tensors.FromShape(shapes.Make(dtype, spec.Dim)) // zeros
	m.logScale = ctx.Checked(false).In("gaussian").VariableWithValue("log_scale", zeros)
	if m.logScale.DType() != dtype {
		return nil, fmt.Errorf("log_scale has dtype %s, spec wants %s", m.logScale.DType(), dtype)
	}
	m.lossExec, err = context.NewExec(b, ctx, func(ctx *context.Context, x, mask, u *Node) []*Node {
		s := m.logScale.ValueGraph(x.Graph())
		nll := ReduceMean(m.nllGraph(s, x, mask), 0)
		loss := Add(nll, Mul(MulScalar(u, gaussianNoiseScale), ReduceAllSum(s)))
		grad := Gradient(loss, s)[0]
		return []*Node{loss, nll, grad}
	})
	if err != nil {
		return nil, err
	}
	m.llExec, err = context.NewExec(b, ctx, func(ctx *context.Context, x, mask *Node) *Node {
		return Neg(m.nllGraph(m.logScale.ValueGraph(x.Graph()), x, mask))
	})
	if err != nil {
		return nil, err
	}
	return m, nil
}

// nllGraph returns the per-configuration NLL [batch].
func (m *gaussianModel) nllGraph(s, x, mask *Node) *Node {
	d := m.spec.Dim
	maskF := ConvertDType(mask, x.DType())
	z := Mul(x, ExpandAxes(Exp(Neg(s)), 0, 1))                     // [B, N, D]
	z = Mul(z, ExpandAxes(maskF, -1))                              // padding nodes out
	sq := ReduceSum(Square(z), 1, 2)                               // [B]
	nMinus1 := AddScalar(ReduceSum(maskF, 1), -1)                  // [B]
	logDet := Mul(nMinus1, ReduceAllSum(s))                        // (n−1)·Σ s_d
	norm := MulScalar(nMinus1, 0.5*float64(d)*math.Log(2*math.Pi)) // ½·(n−1)·D·ln 2π
	return Add(Add(MulScalar(sq, 0.5), logDet), norm)
}

func (m *gaussianModel) Variables() []*context.Variable { return []*context.Variable{m.logScale} }

func (m *gaussianModel) LossAndGrad(b *Batch, seed uint64) (loss, nll float64, grads []*tensors.Tensor, st Stats, err error) {
	x, mask, err := particleBatch(b)
	if err != nil {
		return 0, 0, nil, st, err
	}
	u := rand.New(rand.NewPCG(seed, 0x9e3779b97f4a7c15)).Float64()*2 - 1
	out, err := m.lossExec.Exec(x, mask, tensors.FromAnyValue(shapes.CastAsDType(u, m.dtype)))
	if err != nil {
		return 0, 0, nil, Stats{}, err
	}
	if loss, err = scalarOf(out[0]); err != nil {
		return 0, 0, nil, Stats{}, err
	}
	if nll, err = scalarOf(out[1]); err != nil {
		return 0, 0, nil, Stats{}, err
	}
	_ = out[0].FinalizeAll()
	_ = out[1].FinalizeAll()
	return loss, nll, []*tensors.Tensor{out[2]}, Stats{NFEForward: 1, NFEBackward: 1}, nil
}

func (m *gaussianModel) LogLikelihood(b *Batch, seed uint64) ([]float64, Stats, error) {
	_ = seed
	x, mask, err := particleBatch(b)
	if err != nil {
		return nil, Stats{}, err
	}
	out, err := m.llExec.Exec(x, mask)
	if err != nil {
		return nil, Stats{}, err
	}
	defer func() { _ = out[0].FinalizeAll() }()
	ll, err := floatsOf(out[0])
	return ll, Stats{NFEForward: 1}, err
}

func (m *gaussianModel) Sample(batch, nodes, dims int, mask *tensors.Tensor, seed uint64) (*tensors.Tensor, Stats, error) {
	_ = mask
	if nodes != m.spec.Nodes || dims != m.spec.Dim {
		return nil, Stats{}, fmt.Errorf("gaussian model is %d×%d, asked for %d×%d", m.spec.Nodes, m.spec.Dim, nodes, dims)
	}
	sT, err := m.logScale.Value()
	if err != nil {
		return nil, Stats{}, err
	}
	s, err := floatsOf(sT)
	if err != nil {
		return nil, Stats{}, err
	}
	rng := rand.New(rand.NewPCG(seed, 0x5851f42d4c957f2d))
	out := make([]float64, batch*nodes*dims)
	for b := range batch {
		cfg := out[b*nodes*dims : (b+1)*nodes*dims]
		for i := range cfg {
			cfg[i] = rng.NormFloat64()
		}
		prior.CenterPositions(cfg, nodes, dims, dims)
		for i := range cfg {
			cfg[i] *= math.Exp(s[i%dims])
		}
	}
	t, err := floatTensor(m.dtype, out, batch, nodes, dims)
	return t, Stats{}, err
}
