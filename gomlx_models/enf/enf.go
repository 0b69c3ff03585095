// Package enf assembles the particle E(n) equivariant normalizing flow of the paper (DW4, LJ13,
// QM9 Positional): EGNN velocity field (gomlx_models/dynamics) integrated as a continuous flow
// (gomlx_models/cnf) with the centre-of-gravity-free Gaussian prior. The molecule model with
// atom types and charges is gomlx_models/qm9.
package enf

import (
	"fmt"
	"math/rand/v2"

	"github.com/enflow/enflow/gomlx_models/cnf"
	"github.com/enflow/enflow/gomlx_models/dynamics"
	"github.com/enflow/enflow/gomlx_models/egnn"
	"github.com/enflow/enflow/gomlx_models/prior"
	"github.com/enflow/enflow/gomlx_models/spec"
	"github.com/gomlx/gomlx/backends"
	"github.com/gomlx/gomlx/pkg/core/dtypes"
	"github.com/gomlx/gomlx/pkg/core/tensors"
	"github.com/gomlx/gomlx/pkg/ml/context"
)

// EGNNConfig converts a stored EGNN record to the particle dynamics' EGNN configuration of dtype
// (en_flows egnn_dynamics: one time feature in and out, squared-distance edge attribute).
func EGNNConfig(e spec.EGNN, dtype dtypes.DType) (egnn.Config, error) {
	if e.Hidden <= 0 || e.Layers <= 0 {
		return egnn.Config{}, fmt.Errorf("enf: EGNN hidden %d and layers %d must be positive", e.Hidden, e.Layers)
	}
	cfg := egnn.ParticleConfig()
	cfg.Hidden, cfg.Layers = e.Hidden, e.Layers
	cfg.Attention, cfg.Tanh = e.Attention, e.Tanh
	if r := e.LayerCoordsRange(); r > 0 {
		cfg.CoordsRange = r
	}
	cfg.DType = dtype
	return cfg, nil
}

// CNFConfig converts a stored flow record to cnf.Config of dtype.
func CNFConfig(c spec.CNF, dtype dtypes.DType) cnf.Config {
	return cnf.Config{Solver: c.Solver, RTol: c.RTol, ATol: c.ATol, Steps: c.Steps, Trace: c.Trace, Noise: c.Noise,
		Grad: c.Grad, RegWeight: c.RegWeight, MaxSteps: c.MaxSteps, DType: dtype, ExactTraceMode: c.ExactTraceMode}
}

// New builds the E-NF of nodes × dim configurations over ctx and creates (or binds, from a
// checkpoint) the dynamics' variables at once by one evaluation on a random mean-free
// configuration drawn from seed, so that Variables() is complete before an optimizer is built.
func New(b backends.Backend, ctx *context.Context, e spec.EGNN, c spec.CNF, nodes, dim int, dtype dtypes.DType, seed uint64) (*cnf.Model, error) {
	ecfg, err := EGNNConfig(e, dtype)
	if err != nil {
		return nil, err
	}
	m, err := cnf.New(b, ctx, dynamics.Particle(ecfg), CNFConfig(c, dtype))
	if err != nil {
		return nil, err
	}
	if err := InitVariables(m, nodes, dim, dtype, seed); err != nil {
		return nil, err
	}
	if len(m.Variables()) == 0 {
		return nil, fmt.Errorf("enf: the dynamics has no trainable variables")
	}
	return m, nil
}

// InitVariables runs the flow's dynamics once on one random nodes × dim configuration (seeded),
// which creates its variables and freezes its variable list.
func InitVariables(m *cnf.Model, nodes, dim int, dtype dtypes.DType, seed uint64) error {
	rng := rand.New(rand.NewPCG(seed, 1))
	pos := make([]float64, nodes*dim)
	for i := range pos {
		pos[i] = rng.NormFloat64()
	}
	ones := make([]float64, nodes)
	for i := range ones {
		ones[i] = 1
	}
	x, err := prior.FromFloat64(dtype, pos, 1, nodes, dim)
	if err != nil {
		return err
	}
	mask, err := prior.FromFloat64(dtype, ones, 1, nodes)
	if err != nil {
		return err
	}
	defer func() {
		for _, t := range []*tensors.Tensor{x, mask} {
			_ = t.FinalizeAll()
		}
	}()
	return m.InitVariables(x, mask)
}
