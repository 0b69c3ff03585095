package particles

import (
	"fmt"
	"math"
)

// Potential is an energy function of a flattened configuration x (particle-major, len n·dim).
type Potential interface {
	// EnergyGrad returns the energy of x. When grad is non-nil (len(x)) it is overwritten
	// with ∂E/∂x. x and grad must have length n·dim for some n ≥ 1; callers check this.
	EnergyGrad(x []float64, dim int, grad []float64) float64
}

// DoubleWell is the multi double-well pair potential: every unordered pair of particles at
// Euclidean distance d contributes A·(d−D0)⁴ + B·(d−D0)² + C (temperature 1).
type DoubleWell struct {
	A, B, C, D0 float64
}

// LennardJones is the Lennard-Jones cluster potential with a harmonic restraint: every
// unordered pair at distance d contributes Eps·((Rm/d)¹² − 2·(Rm/d)⁶) (Rm is the distance of
// the minimum), plus Oscillator·½·Σᵢ‖xᵢ − mean(x)‖².
type LennardJones struct {
	Eps, Rm, Oscillator float64
}

// DW4Potential and LJ13Potential are the energies of the paper's systems (REFERENCE §1.1,
// §1.2; BGF conventions, each pair counted once, exact distances).
var (
	DW4Potential  = DoubleWell{A: 0.9, B: -4, C: 0, D0: 4}
	LJ13Potential = LennardJones{Eps: 1, Rm: 1, Oscillator: 1}
)

// LJ13SamplingPotential is the density the LJ13 data were drawn from: the Köhler et al. /
// en_flows LennardJonesPotential (deprecated/eqnode/test_systems.py) sums the pair term over
// all ordered pairs without halving, i.e. every pair counts twice, plus the same harmonic
// restraint. Sampling exp(−LJ13SamplingPotential) reproduces the shipped LJ13 files (mean
// LJ13Potential energy −16.96 vs −17.0, std 4.03 vs 4.1); sampling exp(−LJ13Potential) gives
// a dilute, gas-like cluster with mean energy ≈ +0.7.
var LJ13SamplingPotential = LennardJones{Eps: 2, Rm: 1, Oscillator: 1}

// Potential returns the potential of s, or nil for an unknown system. This is the energy
// stored in Config.Energy (BGF convention: every pair counted once).
func (s System) Potential() Potential {
	switch s.Name {
	case DW4.Name:
		return DW4Potential
	case LJ13.Name:
		return LJ13Potential
	}
	return nil
}

// SamplingPotential returns U such that s's reference data are distributed as exp(−U):
// DW4Potential for DW4 and LJ13SamplingPotential for LJ13. Nil for an unknown system.
func (s System) SamplingPotential() Potential {
	if s.Name == LJ13.Name {
		return LJ13SamplingPotential
	}
	return s.Potential()
}

// Energy returns the energy of the flattened configuration x under s's potential.
func (s System) Energy(x []float64) (float64, error) {
	return s.EnergyGrad(x, nil)
}

// EnergyGrad returns the energy of x and, when grad is non-nil, stores ∂E/∂x in grad.
func (s System) EnergyGrad(x, grad []float64) (float64, error) {
	p := s.Potential()
	if p == nil {
		return 0, fmt.Errorf("particles: no potential for system %q", s.Name)
	}
	if len(x) != s.Flat() {
		return 0, fmt.Errorf("particles: %s configuration has %d coordinates, want %d", s.Name, len(x), s.Flat())
	}
	if grad != nil && len(grad) != len(x) {
		return 0, fmt.Errorf("particles: %s gradient buffer has %d entries, want %d", s.Name, len(grad), len(x))
	}
	return p.EnergyGrad(x, s.Dim, grad), nil
}

// EnergyGrad implements Potential.
func (p DoubleWell) EnergyGrad(x []float64, dim int, grad []float64) float64 {
	n := len(x) / dim
	if grad != nil {
		clear(grad)
	}
	e := 0.0
	for i := 0; i < n; i++ {
		xi := x[i*dim : (i+1)*dim]
		for j := i + 1; j < n; j++ {
			xj := x[j*dim : (j+1)*dim]
			d2 := 0.0
			for k := range dim {
				t := xi[k] - xj[k]
				d2 += t * t
			}
			d := math.Sqrt(d2)
			u := d - p.D0
			u2 := u * u
			e += p.A*u2*u2 + p.B*u2 + p.C
			if grad != nil && d > 0 {
				// dE/dd · ∂d/∂xi, with ∂d/∂xi = (xi−xj)/d.
				s := (4*p.A*u2*u + 2*p.B*u) / d
				gi, gj := grad[i*dim:(i+1)*dim], grad[j*dim:(j+1)*dim]
				for k := range dim {
					g := s * (xi[k] - xj[k])
					gi[k] += g
					gj[k] -= g
				}
			}
		}
	}
	return e
}

// EnergyGrad implements Potential. Coinciding particles give +Inf (never NaN).
func (p LennardJones) EnergyGrad(x []float64, dim int, grad []float64) float64 {
	n := len(x) / dim
	if grad != nil {
		clear(grad)
	}
	var e float64
	if dim == 3 {
		e = p.pairs3(x[:3*n], grad)
	} else {
		e = p.pairsN(x, dim, grad)
	}
	if p.Oscillator != 0 {
		var mean [8]float64 // dim ≤ 8 on the stack; larger dims allocate
		m := mean[:0]
		if dim <= len(mean) {
			m = mean[:dim]
		} else {
			m = make([]float64, dim)
		}
		for i := 0; i < n; i++ {
			for k := range dim {
				m[k] += x[i*dim+k]
			}
		}
		for k := range dim {
			m[k] /= float64(n)
		}
		h := 0.0
		for i := 0; i < n; i++ {
			for k := range dim {
				t := x[i*dim+k] - m[k]
				h += t * t
				if grad != nil {
					// ∂/∂x_ik of ½Σ‖x−m‖² is (x_ik − m_k): the mean's own term sums to zero.
					grad[i*dim+k] += p.Oscillator * t
				}
			}
		}
		e += p.Oscillator * 0.5 * h
	}
	return e
}

// RemoveMean subtracts, in place, the mean over particles of each spatial coordinate.
func RemoveMean(x []float64, dim int) {
	n := len(x) / dim
	if n == 0 {
		return
	}
	for k := 0; k < dim; k++ {
		m := 0.0
		for i := 0; i < n; i++ {
			m += x[i*dim+k]
		}
		m /= float64(n)
		for i := 0; i < n; i++ {
			x[i*dim+k] -= m
		}
	}
}

// pairs3 is the pair sum for dim = 3, unrolled (the LJ13 hot path of the samplers).
func (p LennardJones) pairs3(x, grad []float64) float64 {
	n := len(x) / 3
	rm2 := p.Rm * p.Rm
	e := 0.0
	for i := 0; i < n; i++ {
		xi, yi, zi := x[3*i], x[3*i+1], x[3*i+2]
		var gxi, gyi, gzi float64
		for j := i + 1; j < n; j++ {
			dx, dy, dz := xi-x[3*j], yi-x[3*j+1], zi-x[3*j+2]
			d2 := dx*dx + dy*dy + dz*dz
			s2 := rm2 / d2 // (rm/d)²; +Inf when d = 0
			s6 := s2 * s2 * s2
			e += s6 * (s6 - 2)
			if grad != nil && d2 > 0 {
				// dE/dd = 12·eps·(s⁶ − s¹²)/d; times (xi−xj)/d.
				s := 12 * p.Eps * s6 * (1 - s6) / d2
				gx, gy, gz := s*dx, s*dy, s*dz
				gxi += gx
				gyi += gy
				gzi += gz
				grad[3*j] -= gx
				grad[3*j+1] -= gy
				grad[3*j+2] -= gz
			}
		}
		if grad != nil {
			grad[3*i] += gxi
			grad[3*i+1] += gyi
			grad[3*i+2] += gzi
		}
	}
	return p.Eps * e
}

// pairsN is the pair sum for any dimension.
func (p LennardJones) pairsN(x []float64, dim int, grad []float64) float64 {
	n := len(x) / dim
	rm2 := p.Rm * p.Rm
	e := 0.0
	for i := 0; i < n; i++ {
		xi := x[i*dim : (i+1)*dim]
		for j := i + 1; j < n; j++ {
			xj := x[j*dim : (j+1)*dim]
			d2 := 0.0
			for k := range dim {
				t := xi[k] - xj[k]
				d2 += t * t
			}
			s2 := rm2 / d2
			s6 := s2 * s2 * s2
			e += s6 * (s6 - 2)
			if grad != nil && d2 > 0 {
				s := 12 * p.Eps * s6 * (1 - s6) / d2
				gi, gj := grad[i*dim:(i+1)*dim], grad[j*dim:(j+1)*dim]
				for k := range dim {
					g := s * (xi[k] - xj[k])
					gi[k] += g
					gj[k] -= g
				}
			}
		}
	}
	return p.Eps * e
}
