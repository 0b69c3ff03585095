package train

import (
	"fmt"

	"github.com/enflow/enflow/gomlx_models/cnf"
	"github.com/enflow/enflow/gomlx_models/energy"
	"github.com/enflow/enflow/gomlx_models/enf"
	"github.com/gomlx/gomlx/backends"
	"github.com/gomlx/gomlx/pkg/core/tensors"
	"github.com/gomlx/gomlx/pkg/ml/context"
)

// ENFKind is the model kind of the E(n) equivariant normalizing flow: EGNN particle dynamics
// integrated as a CNF, assembled by gomlx_models/enf.
const ENFKind = "enf"

func init() { RegisterModel(ENFKind, newENFModel) }

// enfModel adapts a particle *cnf.Model (the E-NF and the baselines) to Model.
type enfModel struct {
	m          *cnf.Model
	nodes, dim int // configuration shape (energy-based training draws samples of it)
}

// CNFConfig converts the spec to the cnf package's configuration.
func (s *ModelSpec) CNFConfig() (cnf.Config, error) {
	dtype, err := s.GoDType()
	if err != nil {
		return cnf.Config{}, err
	}
	return enf.CNFConfig(s.CNF, dtype), nil
}

func newENFModel(b backends.Backend, ctx *context.Context, spec *ModelSpec) (Model, error) {
	dtype, err := spec.GoDType()
	if err != nil {
		return nil, err
	}
	m, err := enf.New(b, ctx, spec.EGNN, spec.CNF, spec.Nodes, spec.Dim, dtype, spec.Seed)
	if err != nil {
		return nil, err
	}
	return &enfModel{m: m, nodes: spec.Nodes, dim: spec.Dim}, nil
}

func convStats(st cnf.Stats) Stats {
	return Stats{NFEForward: st.Forward.NFE, NFEBackward: st.Backward.NFE}
}

func particleBatch(b *Batch) (*tensors.Tensor, *tensors.Tensor, error) {
	if b == nil || b.X == nil {
		return nil, nil, fmt.Errorf("train: particle model given a batch without positions")
	}
	return b.X, b.Mask, nil
}

func (e *enfModel) LossAndGrad(b *Batch, seed uint64) (loss, nll float64, grads []*tensors.Tensor, st Stats, err error) {
	x, mask, err := particleBatch(b)
	if err != nil {
		return 0, 0, nil, st, err
	}
	loss, nll, grads, cst, err := e.m.LossAndGrad(x, mask, seed)
	return loss, nll, grads, convStats(cst), err
}

func (e *enfModel) LogLikelihood(b *Batch, seed uint64) ([]float64, Stats, error) {
	x, mask, err := particleBatch(b)
	if err != nil {
		return nil, Stats{}, err
	}
	ll, cst, err := e.m.LogLikelihood(x, mask, seed)
	return ll, convStats(cst), err
}

func (e *enfModel) Sample(batch, nodes, dims int, mask *tensors.Tensor, seed uint64) (*tensors.Tensor, Stats, error) {
	x, cst, err := e.m.Sample(batch, nodes, dims, mask, seed)
	return x, convStats(cst), err
}

func (e *enfModel) Variables() []*context.Variable { return e.m.Variables() }

// Tolerances implements TolerancedModel.
func (e *enfModel) Tolerances() (rtol, atol float64, adaptive bool) {
	c := e.m.Config()
	return c.RTol, c.ATol, e.m.Adaptive()
}

// SetTolerances implements TolerancedModel.
func (e *enfModel) SetTolerances(rtol, atol float64) error { return e.m.SetTolerances(rtol, atol) }

// SetTarget implements EnergyModel.
func (e *enfModel) SetTarget(t energy.Target) error { return e.m.SetTarget(t) }

// KLLossAndGrad implements EnergyModel: n configurations of the model's size from the CoG-free
// prior, mapped to data by the flow (reverse-KL gradients through the solver).
func (e *enfModel) KLLossAndGrad(n int, seed uint64) (energy.KLResult, []*tensors.Tensor, Stats, error) {
	res, grads, cst, err := e.m.KLLossAndGrad(n, e.nodes, e.dim, seed)
	return res, grads, convStats(cst), err
}

// SampleWithLogDensity implements DensitySampler (log q_X in the mean-free subspace).
func (e *enfModel) SampleWithLogDensity(batch, nodes, dims int, seed uint64) (*tensors.Tensor, []float64, Stats, error) {
	x, logq, _, cst, err := e.m.SampleWithLogDensity(batch, nodes, dims, nil, seed)
	return x, logq, convStats(cst), err
}
