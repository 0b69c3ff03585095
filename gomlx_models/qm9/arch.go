package qm9

import (
	"fmt"

	"github.com/enflow/enflow/etl/molecule"
	"github.com/enflow/enflow/gomlx_models/cnf"
	"github.com/enflow/enflow/gomlx_models/prior"
	"github.com/enflow/enflow/gomlx_models/spec"
	"github.com/enflow/enflow/gomlx_models/torchimport"
	"github.com/gomlx/gomlx/pkg/core/dtypes"
)

// Arch is the architecture of a molecule E-NF as stored in model.json (pipeline/train's model
// spec holds these records): the dynamics EGNN, the dequantizer EGNN and the flow settings.
type Arch struct {
	Flow        spec.EGNN
	Dequantizer spec.EGNN
	CNF         spec.CNF
}

// DefaultArch is the published en_flows QM9 model (REFERENCE §4.1, args.pickle): dynamics EGNN
// hidden 64 × 6 layers with attention and tanh (coords_range 15), dequantizer EGNN hidden 64 ×
// 4 layers, dopri5 rtol = atol = 1e-4 with the adjoint, a Gaussian Hutchinson trace and the ODE
// regulariser weighted 1e-3 in the training loss.
func DefaultArch() Arch {
	return Arch{
		Flow:        spec.EGNN{Hidden: 64, Layers: 6, Attention: true, Tanh: true, CoordsRange: 15},
		Dequantizer: spec.EGNN{Hidden: 64, Layers: 4, CoordsRange: 15},
		CNF: spec.CNF{Solver: "dopri5", RTol: 1e-4, ATol: 1e-4, Trace: cnf.TraceHutchinson, Noise: cnf.NoiseGaussian, Grad: cnf.GradAdjoint,
			RegWeight: 0.001, MaxSteps: 10000},
	}
}

// ArchFromTorchArgs builds the architecture of an en_flows QM9 run from its args.pickle, refusing
// configurations this port does not implement.
func ArchFromTorchArgs(ns torchimport.Namespace) (Arch, error) {
	a := DefaultArch()
	want := map[string]string{"model": "egnn_dynamics", "dataset": "qm9", "dequantization": "argmax_variational", "x_aggregation": "sum"}
	for k, v := range want {
		got, err := ns.String(k)
		if err != nil {
			return a, err
		}
		if got != v {
			return a, fmt.Errorf("args: %s = %q is not supported (want %q)", k, got, v)
		}
	}
	for _, k := range []string{"actnorm", "condition_time"} {
		b, err := ns.Bool(k)
		if err != nil {
			return a, err
		}
		if !b {
			return a, fmt.Errorf("args: %s = false is not supported", k)
		}
	}
	if c, err := ns.Int("context_node_nf"); err != nil || c != 0 {
		if err != nil {
			return a, err
		}
		return a, fmt.Errorf("args: context_node_nf = %d (conditioning) is not supported", c)
	}
	var err error
	if a.Flow.Layers, err = ns.Int("n_layers"); err != nil {
		return a, err
	}
	if a.Flow.Hidden, err = ns.Int("nf"); err != nil {
		return a, err
	}
	if a.Flow.Attention, err = ns.Bool("attention"); err != nil {
		return a, err
	}
	if a.Flow.Tanh, err = ns.Bool("tanh"); err != nil {
		return a, err
	}
	if a.CNF.RegWeight, err = ns.Float("ode_regularization"); err != nil {
		return a, err
	}
	if tr, err := ns.String("trace"); err == nil && tr == cnf.TraceExact {
		a.CNF.Trace = cnf.TraceExact
	}
	if a.Flow.Layers <= 0 || a.Flow.Hidden <= 0 {
		return a, fmt.Errorf("args: n_layers = %d and nf = %d must be positive", a.Flow.Layers, a.Flow.Hidden)
	}
	return a, nil
}

// QM9Elements are QM9's atomic numbers in en_flows' one-hot order (H, C, N, O, F).
func QM9Elements() []int { return append([]int(nil), molecule.Numbers[:]...) }

// Config converts the architecture to a model configuration of dtype, for a model of the given
// elements (one-hot order; nil = QM9's) and size distribution (zero = QM9's).
func (a Arch) Config(dtype dtypes.DType, elements []int, sizes prior.Sizes) (Config, error) {
	cfg := DefaultConfig(dtype)
	if a.Flow.Hidden <= 0 || a.Flow.Layers <= 0 || a.Dequantizer.Hidden <= 0 || a.Dequantizer.Layers <= 0 {
		return Config{}, fmt.Errorf("qm9: EGNN sizes must be positive (flow %d × %d, dequantizer %d × %d)",
			a.Flow.Hidden, a.Flow.Layers, a.Dequantizer.Hidden, a.Dequantizer.Layers)
	}
	cfg.Flow.Hidden, cfg.Flow.Layers, cfg.Flow.Attention, cfg.Flow.Tanh = a.Flow.Hidden, a.Flow.Layers, a.Flow.Attention, a.Flow.Tanh
	cfg.Flow.CoordsRange = a.Flow.LayerCoordsRange()
	d := a.Dequantizer
	cfg.Dequantizer.Hidden, cfg.Dequantizer.Layers, cfg.Dequantizer.Attention, cfg.Dequantizer.Tanh = d.Hidden, d.Layers, d.Attention, d.Tanh
	cfg.Dequantizer.CoordsRange = d.LayerCoordsRange()
	c := a.CNF
	cfg.CNF.Solver, cfg.CNF.RTol, cfg.CNF.ATol, cfg.CNF.Steps = c.Solver, c.RTol, c.ATol, c.Steps
	cfg.CNF.Trace, cfg.CNF.Noise, cfg.CNF.Grad, cfg.CNF.RegWeight, cfg.CNF.MaxSteps = c.Trace, c.Noise, c.Grad, c.RegWeight, c.MaxSteps
	cfg.CNF.ExactTraceMode = c.ExactTraceMode
	if elements != nil {
		cfg.Elements = append([]int(nil), elements...)
	}
	if len(sizes.Counts) > 0 {
		cfg.Sizes = sizes
	}
	return cfg.withDefaults()
}
