package particles

import (
	"fmt"
	"math"
	"math/rand/v2"
)

// PerturbOptions configures Perturb.
type PerturbOptions struct {
	// N is the number of configurations to draw.
	N int
	// Std is the standard deviation of the isotropic Gaussian noise added to every coordinate
	// (the mean is removed again afterwards, so the noise lives in the mean-free subspace).
	Std float64
	// Seed seeds the PCG stream (second word fixed), so the output depends only on the options.
	Seed uint64
}

// Perturb returns opt.N mean-free copies of the configuration center of system sys, each with
// independent Gaussian noise of standard deviation opt.Std on every coordinate, and their
// energies (System.Energy). It is the training set of the metastable-state discovery
// experiment of Köhler, Klein & Noé (§4.2): one minimum plus tiny noise. IDs are 0..N−1.
func Perturb(sys System, center []float64, opt PerturbOptions) ([]Config, error) {
	switch {
	case len(center) != sys.Flat():
		return nil, fmt.Errorf("particles: perturb: configuration has %d values, %s needs %d", len(center), sys.Name, sys.Flat())
	case opt.N <= 0:
		return nil, fmt.Errorf("particles: perturb: n must be positive, got %d", opt.N)
	case !(opt.Std >= 0) || math.IsInf(opt.Std, 0):
		return nil, fmt.Errorf("particles: perturb: noise std must be finite and ≥ 0, got %v", opt.Std)
	}
	for i, v := range center {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return nil, fmt.Errorf("particles: perturb: coordinate %d is %v", i, v)
		}
	}
	rng := rand.New(rand.NewPCG(opt.Seed, 0x9e3779b97f4a7c15))
	out := make([]Config, opt.N)
	for k := range out {
		x := make([]float64, len(center))
		for i, v := range center {
			x[i] = v + opt.Std*rng.NormFloat64()
		}
		RemoveMean(x, sys.Dim)
		e, err := sys.Energy(x)
		if err != nil {
			return nil, fmt.Errorf("particles: perturb: sample %d: %w", k, err)
		}
		out[k] = Config{ID: int64(k), System: sys.Name, Positions: x, Energy: e}
	}
	return out, nil
}
