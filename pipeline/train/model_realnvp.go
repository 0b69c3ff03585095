package train

import (
	"fmt"

	"github.com/enflow/enflow/gomlx_models/energy"
	"github.com/enflow/enflow/gomlx_models/realnvp"
	"github.com/enflow/enflow/gomlx_models/spec"
	"github.com/gomlx/gomlx/backends"
	"github.com/gomlx/gomlx/pkg/core/tensors"
	"github.com/gomlx/gomlx/pkg/ml/context"
)

// RealNVPKind is the model kind of the non-equivariant Boltzmann generator (nBG): RealNVP affine
// couplings on the flattened N·D coordinates with a standard normal prior on all of them. Its
// NLL is a density on N·D dimensions, while the equivariant flows' is on the (N−1)·D mean-free
// subspace: compare train–test gaps, not the values.
const RealNVPKind = "realnvp"

// RealNVPSpec is the RealNVP configuration stored in model.json (ModelSpec.RealNVP).
type RealNVPSpec = spec.RealNVP

func init() { RegisterModel(RealNVPKind, newRealNVPModel) }

type realNVPModel struct {
	m *realnvp.Model
}

func newRealNVPModel(b backends.Backend, ctx *context.Context, s *ModelSpec) (Model, error) {
	dtype, err := s.GoDType()
	if err != nil {
		return nil, err
	}
	var rs RealNVPSpec
	if s.RealNVP != nil {
		rs = *s.RealNVP
	}
	m, err := realnvp.New(b, ctx.In("realnvp"), realnvp.Config{
		Nodes: s.Nodes, Dim: s.Dim, Layers: rs.Layers, Hidden: rs.Hidden, HiddenLayers: rs.HiddenLayers,
		ScaleRange: rs.ScaleRange, DType: dtype,
	})
	if err != nil {
		return nil, err
	}
	if err := m.InitVariables(); err != nil {
		return nil, err
	}
	return &realNVPModel{m: m}, nil
}

func (r *realNVPModel) LossAndGrad(b *Batch, _ uint64) (loss, nll float64, grads []*tensors.Tensor, st Stats, err error) {
	x, _, err := particleBatch(b) // fixed-size configurations: the node mask is all ones
	if err != nil {
		return 0, 0, nil, st, err
	}
	nll, grads, err = r.m.LossAndGrad(x)
	return nll, nll, grads, st, err
}

func (r *realNVPModel) LogLikelihood(b *Batch, _ uint64) ([]float64, Stats, error) {
	x, _, err := particleBatch(b)
	if err != nil {
		return nil, Stats{}, err
	}
	ll, err := r.m.LogLikelihood(x)
	return ll, Stats{}, err
}

func (r *realNVPModel) Variables() []*context.Variable { return r.m.Variables() }

func (r *realNVPModel) checkShape(nodes, dims int) error {
	c := r.m.Config()
	if nodes != c.Nodes || dims != c.Dim {
		return fmt.Errorf("train: the realnvp model samples %d × %d configurations, asked for %d × %d", c.Nodes, c.Dim, nodes, dims)
	}
	return nil
}

// Sample implements ParticleSampler.
func (r *realNVPModel) Sample(batch, nodes, dims int, _ *tensors.Tensor, seed uint64) (*tensors.Tensor, Stats, error) {
	x, _, st, err := r.SampleWithLogDensity(batch, nodes, dims, seed)
	return x, st, err
}

// SampleWithLogDensity implements DensitySampler (exact log q_X on all N·D coordinates).
func (r *realNVPModel) SampleWithLogDensity(batch, nodes, dims int, seed uint64) (*tensors.Tensor, []float64, Stats, error) {
	if err := r.checkShape(nodes, dims); err != nil {
		return nil, nil, Stats{}, err
	}
	x, logq, err := r.m.SampleWithLogDensity(batch, seed)
	return x, logq, Stats{}, err
}

// SetTarget implements EnergyModel.
func (r *realNVPModel) SetTarget(t energy.Target) error { return r.m.SetTarget(t) }

// KLLossAndGrad implements EnergyModel.
func (r *realNVPModel) KLLossAndGrad(n int, seed uint64) (energy.KLResult, []*tensors.Tensor, Stats, error) {
	res, grads, err := r.m.KLLossAndGrad(n, seed)
	return res, grads, Stats{}, err
}
