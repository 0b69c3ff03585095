package train

import (
	"fmt"
	"math/rand/v2"

	"github.com/enflow/enflow/gomlx_models/cnf"
	"github.com/enflow/enflow/gomlx_models/dynamics"
	"github.com/enflow/enflow/gomlx_models/egnn"
	"github.com/gomlx/gomlx/backends"
	"github.com/gomlx/gomlx/pkg/core/tensors"
	"github.com/gomlx/gomlx/pkg/ml/context"
)

// ENFKind is the model kind of the E(n) equivariant normalizing flow: EGNN particle dynamics
// (gomlx_models/dynamics) integrated as a CNF (gomlx_models/cnf).
const ENFKind = "enf"

func init() { RegisterModel(ENFKind, newENFModel) }

// enfModel adapts *cnf.Model to Model.
type enfModel struct {
	m *cnf.Model
}

// EGNNConfig converts the spec to the egnn package's configuration.
func (s *ModelSpec) EGNNConfig() (egnn.Config, error) {
	dtype, err := s.GoDType()
	if err != nil {
		return egnn.Config{}, err
	}
	if s.EGNN.Hidden <= 0 || s.EGNN.Layers <= 0 {
		return egnn.Config{}, fmt.Errorf("train: EGNN hidden %d and layers %d must be positive", s.EGNN.Hidden, s.EGNN.Layers)
	}
	cfg := egnn.ParticleConfig()
	cfg.Hidden, cfg.Layers = s.EGNN.Hidden, s.EGNN.Layers
	cfg.Attention, cfg.Tanh = s.EGNN.Attention, s.EGNN.Tanh
	if s.EGNN.CoordsRange > 0 {
		cfg.CoordsRange = s.EGNN.CoordsRange / float64(s.EGNN.Layers)
	}
	cfg.DType = dtype
	return cfg, nil
}

// CNFConfig converts the spec to the cnf package's configuration.
func (s *ModelSpec) CNFConfig() (cnf.Config, error) {
	dtype, err := s.GoDType()
	if err != nil {
		return cnf.Config{}, err
	}
	c := s.CNF
	return cnf.Config{Solver: c.Solver, RTol: c.RTol, ATol: c.ATol, Steps: c.Steps, Trace: c.Trace, Noise: c.Noise,
		Grad: c.Grad, RegWeight: c.RegWeight, MaxSteps: c.MaxSteps, DType: dtype}, nil
}

func newENFModel(b backends.Backend, ctx *context.Context, spec *ModelSpec) (Model, error) {
	ecfg, err := spec.EGNNConfig()
	if err != nil {
		return nil, err
	}
	ccfg, err := spec.CNFConfig()
	if err != nil {
		return nil, err
	}
	m, err := cnf.New(b, ctx, dynamics.Particle(ecfg), ccfg)
	if err != nil {
		return nil, err
	}
	// Create (or load from the checkpoint) the dynamics' variables now, so that Variables() is
	// complete before the optimizer step is compiled: one tiny mean-free batch.
	dtype, _ := spec.GoDType()
	rng := rand.New(rand.NewPCG(spec.Seed, 1))
	pos := make([]float64, spec.Nodes*spec.Dim)
	for i := range pos {
		pos[i] = rng.NormFloat64()
	}
	ones := make([]float64, spec.Nodes)
	for i := range ones {
		ones[i] = 1
	}
	x, err := floatTensor(dtype, pos, 1, spec.Nodes, spec.Dim)
	if err != nil {
		return nil, err
	}
	mask, err := floatTensor(dtype, ones, 1, spec.Nodes)
	if err != nil {
		return nil, err
	}
	defer finalize(x, mask)
	if err := m.InitVariables(x, mask); err != nil {
		return nil, err
	}
	if len(m.Variables()) == 0 {
		return nil, fmt.Errorf("train: the E-NF dynamics has no trainable variables")
	}
	return &enfModel{m: m}, nil
}

func convStats(st cnf.Stats) Stats {
	return Stats{NFEForward: st.Forward.NFE, NFEBackward: st.Backward.NFE}
}

func (e *enfModel) LossAndGrad(x, mask *tensors.Tensor, seed uint64) (loss, nll float64, grads []*tensors.Tensor, st Stats, err error) {
	loss, nll, grads, cst, err := e.m.LossAndGrad(x, mask, seed)
	return loss, nll, grads, convStats(cst), err
}

func (e *enfModel) LogLikelihood(x, mask *tensors.Tensor, seed uint64) ([]float64, Stats, error) {
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
