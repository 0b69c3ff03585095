package particles

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/enflow/enflow/etl/npy"
	"github.com/enflow/enflow/internal/shared"
)

func TestPairEnergies(t *testing.T) {
	lj := LennardJones{Eps: 1, Rm: 1}
	dMin := 4 + math.Sqrt(20.0/9) // minimum of 0.9u⁴ − 4u²: u² = 4/(2·0.9)
	tests := []struct {
		name string
		pot  Potential
		dim  int
		x    []float64
		want float64
	}{
		{"DW at d0 is zero", DW4Potential, 2, []float64{0, 0, 4, 0}, 0},
		{"DW at d0 in 3D", DW4Potential, 3, []float64{1, 1, 1, 1, 1, 5}, 0},
		{"DW outer minimum", DW4Potential, 2, []float64{0, 0, 0, dMin}, -40.0 / 9},
		{"DW inner minimum", DW4Potential, 2, []float64{0, 0, 8 - dMin, 0}, -40.0 / 9},
		{"DW coinciding", DW4Potential, 2, []float64{1, 1, 1, 1}, 0.9*256 - 4*16},
		{"DW constant c per pair", DoubleWell{A: 0, B: 0, C: 1.5, D0: 4}, 2, []float64{0, 0, 1, 0, 0, 1}, 3 * 1.5},
		{"DW square of side 4: four sides at d0, diagonals", DW4Potential, 2, []float64{0, 0, 4, 0, 0, 4, 4, 4},
			2 * (0.9*math.Pow(4*math.Sqrt2-4, 4) - 4*math.Pow(4*math.Sqrt2-4, 2))},
		{"LJ minimum at rm", lj, 3, []float64{0, 0, 0, 1, 0, 0}, -1},
		{"LJ zero at rm·2^(-1/6)", lj, 3, []float64{0, 0, 0, 0, math.Pow(2, -1.0/6), 0}, 0},
		{"LJ eps and rm scale", LennardJones{Eps: 2.5, Rm: 3}, 3, []float64{0, 0, 0, 0, 0, 3}, -2.5},
		{"LJ coinciding is +Inf", lj, 3, []float64{0, 0, 0, 0, 0, 0}, math.Inf(1)},
		{"harmonic only", LennardJones{Oscillator: 1}, 3, []float64{0, 0, 0, 2, 0, 0}, 0.5 * (1 + 1)},
		// Three particles (0,0), (0,2), (3,1): mean (1,1), squared deviations 2+2+4 = 8.
		{"harmonic scale", LennardJones{Oscillator: 3}, 2, []float64{0, 0, 0, 2, 3, 1}, 3 * 0.5 * 8},
		{"LJ13 = pairs + restraint", LJ13Potential, 3, []float64{0, 0, 0, 1, 0, 0}, -1 + 0.25},
		{"LJ13 sampling counts pairs twice", LJ13SamplingPotential, 3, []float64{0, 0, 0, 1, 0, 0}, -2 + 0.25},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := tc.pot.EnergyGrad(tc.x, tc.dim, nil)
			if math.IsInf(tc.want, 1) {
				if !math.IsInf(got, 1) {
					t.Fatalf("energy = %v, want +Inf", got)
				}
				return
			}
			if math.Abs(got-tc.want) > 1e-12*max(1, math.Abs(tc.want)) {
				t.Fatalf("energy = %.15g, want %.15g", got, tc.want)
			}
		})
	}
}

func TestSystemEnergyErrors(t *testing.T) {
	tests := []struct {
		name    string
		sys     System
		x, grad []float64
		wantErr string
	}{
		{"short x", DW4, make([]float64, 7), nil, "has 7 coordinates, want 8"},
		{"bad grad", LJ13, make([]float64, 39), make([]float64, 3), "gradient buffer has 3"},
		{"unknown system", System{Name: "lj55", Particles: 55, Dim: 3}, make([]float64, 165), nil, "no potential"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tc.sys.EnergyGrad(tc.x, tc.grad)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err = %v, want %q", err, tc.wantErr)
			}
		})
	}
}

// randomConfig returns a configuration with particles spread at typical distances and no
// two particles closer than minDist.
func randomConfig(rng *rand.Rand, s System, scale, minDist float64) []float64 {
	x := make([]float64, s.Flat())
	for i := 0; i < s.Particles; i++ {
	retry:
		for k := range s.Dim {
			x[i*s.Dim+k] = scale * rng.NormFloat64()
		}
		for j := 0; j < i; j++ {
			d2 := 0.0
			for k := range s.Dim {
				d := x[i*s.Dim+k] - x[j*s.Dim+k]
				d2 += d * d
			}
			if d2 < minDist*minDist {
				goto retry
			}
		}
	}
	return x
}

func TestGradientFiniteDifference(t *testing.T) {
	tests := []struct {
		name           string
		sys            System
		pot            Potential
		scale, minDist float64
	}{
		{"DW4", DW4, DW4Potential, 2.5, 0.5},
		{"LJ13", LJ13, LJ13Potential, 1.0, 0.85},
		{"LJ13 sampling", LJ13, LJ13SamplingPotential, 1.0, 0.85},
		{"DW 3D general", System{Name: "x", Particles: 5, Dim: 3}, DoubleWell{A: 0.3, B: -1, C: 2, D0: 2}, 2, 0.3},
		{"LJ 2D general", System{Name: "x", Particles: 6, Dim: 2}, LennardJones{Eps: 0.7, Rm: 1.3, Oscillator: 0.4}, 1.5, 1.0},
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for trial := range 5 {
				x := randomConfig(rng, tc.sys, tc.scale, tc.minDist)
				g := make([]float64, len(x))
				e := tc.pot.EnergyGrad(x, tc.sys.Dim, g)
				if e2 := tc.pot.EnergyGrad(x, tc.sys.Dim, nil); e2 != e {
					t.Fatalf("energy with and without gradient differ: %v vs %v", e, e2)
				}
				sum := make([]float64, tc.sys.Dim)
				for i := range x {
					h := 1e-6
					xp, xm := append([]float64(nil), x...), append([]float64(nil), x...)
					xp[i] += h
					xm[i] -= h
					fd := (tc.pot.EnergyGrad(xp, tc.sys.Dim, nil) - tc.pot.EnergyGrad(xm, tc.sys.Dim, nil)) / (2 * h)
					if math.Abs(fd-g[i]) > 1e-5*max(1, math.Abs(fd)) {
						t.Fatalf("trial %d coord %d: grad %.10g, finite difference %.10g", trial, i, g[i], fd)
					}
					sum[i%tc.sys.Dim] += g[i]
				}
				// Translation invariance: the gradient sums to zero per dimension.
				for k, s := range sum {
					if math.Abs(s) > 1e-8*max(1, math.Abs(e)) {
						t.Fatalf("trial %d: gradient sums to %v in dim %d, want 0", trial, s, k)
					}
				}
			}
		})
	}
}

func TestTranslationInvarianceAndRemoveMean(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for _, sys := range []System{DW4, LJ13} {
		t.Run(sys.Name, func(t *testing.T) {
			x := randomConfig(rng, sys, 1.5, 0.8)
			e0, err := sys.Energy(x)
			if err != nil {
				t.Fatal(err)
			}
			y := append([]float64(nil), x...)
			for i := range y {
				y[i] += float64(i%sys.Dim+1) * 7.25
			}
			RemoveMean(y, sys.Dim)
			for k := range sys.Dim {
				m := 0.0
				for i := 0; i < sys.Particles; i++ {
					m += y[i*sys.Dim+k]
				}
				if math.Abs(m) > 1e-12 {
					t.Fatalf("dim %d mean %v after RemoveMean", k, m)
				}
			}
			e1, _ := sys.Energy(y)
			if math.Abs(e1-e0) > 1e-9*max(1, math.Abs(e0)) {
				t.Fatalf("energy changed under translation: %v → %v", e0, e1)
			}
		})
	}
}

func TestParticleDelta(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	tests := []struct {
		name string
		sys  System
		pot  Potential
	}{
		{"DW4", DW4, DW4Potential},
		{"LJ13", LJ13, LJ13Potential},
		{"LJ13 sampling", LJ13, LJ13SamplingPotential},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			x := randomConfig(rng, tc.sys, 1.5, 0.8)
			e0 := tc.pot.EnergyGrad(x, tc.sys.Dim, nil)
			for i := 0; i < tc.sys.Particles; i++ {
				pos := make([]float64, tc.sys.Dim)
				for k := range pos {
					pos[k] = x[i*tc.sys.Dim+k] + 0.3*rng.NormFloat64()
				}
				de := particleDelta(tc.pot, x, tc.sys.Dim, i, pos)
				y := append([]float64(nil), x...)
				copy(y[i*tc.sys.Dim:], pos)
				want := tc.pot.EnergyGrad(y, tc.sys.Dim, nil) - e0
				if math.Abs(de-want) > 1e-9*max(1, math.Abs(e0)) {
					t.Fatalf("particle %d: delta %v, want %v", i, de, want)
				}
			}
		})
	}
}

// Reference mean energies (System.Energy, BGF convention) of the shipped DEM files, as
// measured: DW4 test −22.4504, val −22.4686; LJ13 test −17.0471, val −16.9691.
const (
	refMeanDW4  = -22.45
	refMeanLJ13 = -17.0
)

func TestShippedMeanEnergies(t *testing.T) {
	tests := []struct {
		sys  System
		file []string
		want float64
	}{
		{DW4, []string{"data", "dw4", "DEM_test_split_DW4.npy"}, refMeanDW4},
		{DW4, []string{"data", "dw4", "DEM_val_split_DW4.npy"}, refMeanDW4},
		{LJ13, []string{"data", "lj13", "DEM_test_split_LJ13-1000.npy"}, refMeanLJ13},
		{LJ13, []string{"data", "lj13", "DEM_val_split_LJ13-1000.npy"}, refMeanLJ13},
	}
	for _, tc := range tests {
		t.Run(tc.file[2], func(t *testing.T) {
			path := shared.Require(t, tc.file...)
			vals, shape, err := npy.ReadFloat64(path, npy.Want{Shape: []int{-1, tc.sys.Flat()}, Finite: true})
			if err != nil {
				t.Fatal(err)
			}
			f := tc.sys.Flat()
			sum := 0.0
			for r := range shape[0] {
				x := append([]float64(nil), vals[r*f:(r+1)*f]...)
				RemoveMean(x, tc.sys.Dim)
				e, err := tc.sys.Energy(x)
				if err != nil {
					t.Fatal(err)
				}
				sum += e
			}
			mean := sum / float64(shape[0])
			t.Logf("%s: %d configurations, mean energy %.4f", path, shape[0], mean)
			if math.Abs(mean-tc.want) > 0.05 {
				t.Fatalf("mean energy %.4f, want %.2f ± 0.05", mean, tc.want)
			}
		})
	}
}
