package minimize

import (
	"errors"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"gonum.org/v1/gonum/mat"

	"github.com/enflow/enflow/etl/npy"
	"github.com/enflow/enflow/etl/particles"
	"github.com/enflow/enflow/internal/shared"
)

func newT(t *testing.T, system string) *Minimizer {
	t.Helper()
	m, err := New(system, "", Options{})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// shipped returns the first n rows of a shipped DEM file, mean removed.
func shipped(t *testing.T, sys particles.System, file string, n int) [][]float64 {
	t.Helper()
	path := shared.Require(t, "data", sys.Name, file)
	vals, _, err := npy.ReadFloat64(path, npy.Want{Shape: []int{-1, sys.Flat()}, Finite: true})
	if err != nil {
		t.Fatal(err)
	}
	var out [][]float64
	for r := 0; r < n && (r+1)*sys.Flat() <= len(vals); r++ {
		x := append([]float64(nil), vals[r*sys.Flat():(r+1)*sys.Flat()]...)
		particles.RemoveMean(x, sys.Dim)
		out = append(out, x)
	}
	return out
}

// TestDW4Minima minimises shipped DW4 configurations: each reaches ‖∇u‖ < 1e-6 with
// positive, non-zero Hessian eigenvalues once the 3 rigid-body modes are removed, and the
// removed modes really are (near-)zero modes of the full Hessian.
func TestDW4Minima(t *testing.T) {
	m := newT(t, "dw4")
	xs := shipped(t, particles.DW4, "DEM_test_split_DW4.npy", 40)
	minima := 0
	for i, x0 := range xs {
		r, err := m.Minimize(x0)
		if err != nil {
			t.Fatal(err)
		}
		if !r.Converged || r.GradNorm >= 1e-6 {
			t.Fatalf("row %d: ‖∇u‖ = %.3g after %d iterations (%s)", i, r.GradNorm, r.Iterations, r.Status)
		}
		if r.Energy > r.InitialEnergy {
			t.Errorf("row %d: energy rose %v → %v", i, r.InitialEnergy, r.Energy)
		}
		if r.ZeroModes != 3 || len(r.Eigenvalues) != 5 {
			t.Fatalf("row %d: %d zero modes, %d eigenvalues", i, r.ZeroModes, len(r.Eigenvalues))
		}
		if r.IsMinimum {
			minima++
		}
		if i == 0 {
			t.Logf("row 0: u %.6f → %.10f, ‖∇u‖ %.2e, %d iterations, %d evaluations (%s), eigenvalues %.4g",
				r.InitialEnergy, r.Energy, r.GradNorm, r.Iterations, r.Evaluations, r.Status, r.Eigenvalues)
			if !r.IsMinimum {
				t.Fatalf("row 0 is not a minimum: eigenvalues %v", r.Eigenvalues)
			}
			// The full Hessian has D(D+1)/2 = 3 eigenvalues near zero, the others match.
			full := m.Hessian(r.X)
			vals := symEigen(t, full)
			small := 0
			for _, v := range vals {
				if math.Abs(v) < 1e-4 {
					small++
				}
			}
			if small != 3 {
				t.Errorf("full Hessian has %d near-zero eigenvalues %v, want 3", small, vals)
			}
		}
	}
	t.Logf("%d of %d DW4 samples minimise to a minimum", minima, len(xs))
	if minima < len(xs)*9/10 {
		t.Errorf("only %d of %d samples reach a minimum", minima, len(xs))
	}
}

// TestSaddleIsNotMinimum: a DW4 square of side L is stationary whenever the breathing
// derivative of its energy vanishes (the other gradient components vanish by symmetry).
// Minimize must stop there at once; a stationary square reported as not a minimum must
// really be unstable: nudged and minimised, it ends lower, at a minimum.
func TestSaddleIsNotMinimum(t *testing.T) {
	m := newT(t, "dw4")
	square := func(l float64) []float64 {
		return []float64{-l / 2, -l / 2, l / 2, -l / 2, l / 2, l / 2, -l / 2, l / 2}
	}
	phi := func(l float64) float64 { return particles.DW4Potential.EnergyGrad(square(l), 2, nil) }
	dphi := func(l float64) float64 { const h = 1e-6; return (phi(l+h) - phi(l-h)) / (2 * h) }
	var sawSaddle bool
	for l := 1.0; l < 8; l += 0.01 {
		if dphi(l)*dphi(l+0.01) > 0 {
			continue
		}
		lo, hi := l, l+0.01
		for range 60 {
			mid := (lo + hi) / 2
			if dphi(lo)*dphi(mid) <= 0 {
				hi = mid
			} else {
				lo = mid
			}
		}
		x := square((lo + hi) / 2)
		r, err := m.Minimize(x)
		if err != nil {
			t.Fatal(err)
		}
		curv := (phi(lo+1e-4) - 2*phi(lo) + phi(lo-1e-4)) / 1e-8
		t.Logf("square side %.6f: breathing curvature %.3g, ‖∇u‖ %.2e, %d iterations, eigenvalues %.4g, minimum %v",
			lo, curv, r.GradNorm, r.Iterations, r.Eigenvalues, r.IsMinimum)
		if !r.Converged || r.Iterations > 1 || MaxAbsDiff(SortedPairDistances(r.X, 2), SortedPairDistances(x, 2)) > 1e-6 {
			t.Errorf("side %.6f: the minimiser left the stationary point (%d iterations, ‖∇u‖ %.2e)", lo, r.Iterations, r.GradNorm)
		}
		if !r.IsMinimum {
			// Independent check: a nudge along the reported negative mode, then minimising,
			// must go lower.
			sawSaddle = true
			rng := rand.New(rand.NewPCG(9, 9))
			y := append([]float64(nil), x...)
			for i := range y {
				y[i] += 1e-3 * rng.NormFloat64()
			}
			r2, err := m.Minimize(y)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("  nudged and minimised: %.6f → %.6f (minimum %v)", r.Energy, r2.Energy, r2.IsMinimum)
			if !(r2.Energy < r.Energy-1e-3) || !r2.IsMinimum {
				t.Errorf("side %.6f: reported saddle, but the nudged minimisation ends at %v (minimum %v)", lo, r2.Energy, r2.IsMinimum)
			}
		}
		if r.IsMinimum != (r.Converged && r.Eigenvalues[0] > m.Opts.EigTol) {
			t.Errorf("side %.6f: IsMinimum %v inconsistent with eigenvalues %v", lo, r.IsMinimum, r.Eigenvalues)
		}
	}
	if !sawSaddle {
		t.Fatal("no breathing maximum found")
	}
}

// TestStateCountInvariance: the state counter gives the same states for rotated,
// reflected, translated and permuted copies of the minima.
func TestStateCountInvariance(t *testing.T) {
	for _, tc := range []struct {
		sys  particles.System
		file string
		n    int
	}{
		{particles.DW4, "DEM_test_split_DW4.npy", 60},
		{particles.LJ13, "DEM_test_split_LJ13-1000.npy", 6},
	} {
		t.Run(tc.sys.Name, func(t *testing.T) {
			m := newT(t, tc.sys.Name)
			rng := rand.New(rand.NewPCG(1, 2))
			var points []Point
			for i, x0 := range shipped(t, tc.sys, tc.file, tc.n) {
				r, err := m.Minimize(x0)
				if err != nil {
					t.Fatal(err)
				}
				if !r.Converged {
					t.Fatalf("row %d: not converged, ‖∇u‖ = %.3g (%s)", i, r.GradNorm, r.Status)
				}
				points = append(points, Point{X: r.X, Energy: r.Energy, IsMinimum: r.IsMinimum, MinEigenvalue: r.Eigenvalues[0]})
			}
			states, assign, err := Cluster(points, tc.sys.Dim, ClusterOptions{})
			if err != nil {
				t.Fatal(err)
			}
			for _, s := range states {
				t.Logf("%s state %d: energy %.6f, count %d, minimum %v (λmin %.3g)", tc.sys.Name, s.ID, s.Energy, s.Count, s.IsMinimum, s.MinEigenvalue)
			}
			// Transformed copies: every copy must land in its original's state.
			moved := make([]Point, len(points))
			for i, p := range points {
				q := transform(rng, p.X, tc.sys.Dim)
				moved[i] = Point{X: q, Energy: m.Energy.Host.EnergyGrad(q, tc.sys.Dim, nil), IsMinimum: p.IsMinimum}
			}
			states2, assign2, err := Cluster(moved, tc.sys.Dim, ClusterOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if len(states2) != len(states) {
				t.Fatalf("%d states for the transformed copies, %d for the originals", len(states2), len(states))
			}
			for i := range assign {
				if assign[i] != assign2[i] {
					t.Errorf("point %d: state %d, its copy state %d", i, assign[i], assign2[i])
				}
			}
			// Together: each state doubles.
			both, _, err := Cluster(append(append([]Point(nil), points...), moved...), tc.sys.Dim, ClusterOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if len(both) != len(states) {
				t.Fatalf("%d states for originals + copies, want %d", len(both), len(states))
			}
			for i := range both {
				if both[i].Count != 2*states[i].Count {
					t.Errorf("state %d: count %d, want %d", i, both[i].Count, 2*states[i].Count)
				}
			}
		})
	}
}

// transform applies a random rotation (or reflection), translation and permutation.
func transform(rng *rand.Rand, x []float64, dim int) []float64 {
	n := len(x) / dim
	q := make([][]float64, dim)
	for i := range q {
		q[i] = make([]float64, dim)
		for j := range q[i] {
			q[i][j] = rng.NormFloat64()
		}
		for j := range i {
			d := dot(q[i], q[j])
			for k := range dim {
				q[i][k] -= d * q[j][k]
			}
		}
		nv := norm(q[i])
		for k := range dim {
			q[i][k] /= nv
		}
	}
	perm := rng.Perm(n)
	y := make([]float64, len(x))
	for i, p := range perm {
		for a := range dim {
			v := float64(a) + 0.5 // translation
			for b := range dim {
				v += q[a][b] * x[p*dim+b]
			}
			y[i*dim+a] = v
		}
	}
	return y
}

func TestErrors(t *testing.T) {
	dw4 := newT(t, "dw4")
	tests := []struct {
		name    string
		run     func() error
		wantErr string
	}{
		{"unknown system", func() error { _, err := New("lj55", "", Options{}); return err }, `unknown system "lj55"`},
		{"energy of another system", func() error { _, err := New("dw4", "lj13", Options{}); return err }, `energy "lj13" is for system lj13, not dw4`},
		{"unknown energy", func() error { _, err := New("lj13", "lj13-thrice", Options{}); return err }, `unknown energy "lj13-thrice"`},
		{"wrong dimensions", func() error { _, err := dw4.Minimize(make([]float64, 39)); return err }, "dw4 configuration has 39 coordinates, want 8 (4 particles × 2 dims)"},
		{"NaN coordinate", func() error { _, err := dw4.Minimize([]float64{0, 0, 1, math.NaN(), 3, 3, 4, 4}); return err }, "coordinate 3 is NaN"},
		{"cluster ragged", func() error {
			_, _, err := Cluster([]Point{{X: make([]float64, 8)}, {X: make([]float64, 6)}}, 2, ClusterOptions{})
			return err
		}, "point 1 has 6 coordinates"},
		{"cluster NaN energy", func() error {
			_, _, err := Cluster([]Point{{X: make([]float64, 8), Energy: math.NaN()}}, 2, ClusterOptions{})
			return err
		}, "point 0 has energy NaN"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.run()
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err = %v, want %q", err, tc.wantErr)
			}
		})
	}
	lj := newT(t, "lj13")
	x := make([]float64, 39) // all particles at the origin: LJ energy +Inf
	if _, err := lj.Minimize(x); !errors.Is(err, ErrNonFinite) {
		t.Errorf("coinciding LJ13 particles: err = %v, want ErrNonFinite", err)
	}
}

func symEigen(t *testing.T, h *mat.SymDense) []float64 {
	t.Helper()
	var es mat.EigenSym
	if !es.Factorize(h, false) {
		t.Fatal("eigen-decomposition failed")
	}
	return es.Values(nil)
}
