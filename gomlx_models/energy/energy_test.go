package energy

import (
	"math"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"

	"github.com/gomlx/gomlx/backends"
	"github.com/gomlx/gomlx/pkg/core/dtypes"
	. "github.com/gomlx/gomlx/pkg/core/graph" //nolint:revive // GoMLX idiom.
	"github.com/gomlx/gomlx/pkg/core/shapes"
	"github.com/gomlx/gomlx/pkg/core/tensors"

	"github.com/enflow/enflow/etl/npy"
	"github.com/enflow/enflow/etl/particles"
	"github.com/enflow/enflow/gomlx_models/backend"
	"github.com/enflow/enflow/internal/shared"
)

var testBackend = sync.OnceValues(func() (backends.Backend, error) { return backend.New("") })

func backendT(t testing.TB) backends.Backend {
	t.Helper()
	b, err := testBackend()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func evaluator(t *testing.T, s System, T float64) *Evaluator {
	t.Helper()
	ev, err := NewEvaluator(backendT(t), s, T)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ev.Close)
	return ev
}

// shippedRows returns the first n mean-free rows of a shipped DEM file.
func shippedRows(t *testing.T, s System, file string, n int) []float64 {
	t.Helper()
	path := shared.Require(t, "data", s.Data.Name, file)
	vals, _, err := npy.ReadFloat64(path, npy.Want{Shape: []int{-1, s.Data.Flat()}, Finite: true})
	if err != nil {
		t.Fatal(err)
	}
	flat := s.Data.Flat()
	n = min(n, len(vals)/flat)
	x := vals[:n*flat]
	for r := range n {
		particles.RemoveMean(x[r*flat:(r+1)*flat], s.Dim)
	}
	return x
}

func relErr(got, want float64) float64 { return math.Abs(got-want) / max(1, math.Abs(want)) }

// TestMatchesHostOnShippedData compares graph energies and gradients (float64) with the
// host energies of etl/particles on the shipped DW4 and LJ13 test files.
func TestMatchesHostOnShippedData(t *testing.T) {
	tests := []struct {
		energy, file string
		rows         int
	}{
		{"dw4", "DEM_test_split_DW4.npy", 10000},
		{"lj13", "DEM_test_split_LJ13-1000.npy", 10000},
		{"lj13-twice", "DEM_test_split_LJ13-1000.npy", 10000},
	}
	for _, tc := range tests {
		t.Run(tc.energy, func(t *testing.T) {
			s, err := ByName(tc.energy)
			if err != nil {
				t.Fatal(err)
			}
			x := shippedRows(t, s, tc.file, tc.rows)
			u, grad, err := evaluator(t, s, 1).Eval(x)
			if err != nil {
				t.Fatal(err)
			}
			flat := s.Data.Flat()
			hg := make([]float64, flat)
			var worstE, worstG, mean float64
			for r := range len(u) {
				xr := x[r*flat : (r+1)*flat]
				want := s.Host.EnergyGrad(xr, s.Dim, hg)
				mean += want / float64(len(u))
				worstE = max(worstE, relErr(u[r], want))
				var gn, dn float64
				for k := range flat {
					gn += hg[k] * hg[k]
					dn += (grad[r*flat+k] - hg[k]) * (grad[r*flat+k] - hg[k])
				}
				worstG = max(worstG, math.Sqrt(dn)/max(1, math.Sqrt(gn)))
			}
			t.Logf("%s: %d rows, mean energy %.4f, worst relative energy error %.2e, gradient %.2e", s.Name, len(u), mean, worstE, worstG)
			if worstE > 1e-9 {
				t.Errorf("energy differs from the host by %.3e relative", worstE)
			}
			if worstG > 1e-9 {
				t.Errorf("gradient differs from the host by %.3e relative", worstG)
			}
		})
	}
}

// randomConfig spreads n particles so that no two are closer than minDist.
func randomConfig(rng *rand.Rand, n, dim int, scale, minDist float64) []float64 {
	x := make([]float64, n*dim)
	for i := 0; i < n; {
		for k := range dim {
			x[i*dim+k] = scale * rng.NormFloat64()
		}
		ok := true
		for j := range i {
			d2 := 0.0
			for k := range dim {
				t := x[i*dim+k] - x[j*dim+k]
				d2 += t * t
			}
			ok = ok && d2 > minDist*minDist
		}
		if ok {
			i++
		}
	}
	return x
}

// TestGradientFiniteDifferences checks the graph gradient of u/T against central finite
// differences of the graph energy itself.
func TestGradientFiniteDifferences(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for _, name := range Names() {
		for _, T := range []float64{1, 2.5} {
			s, _ := ByName(name)
			ev := evaluator(t, s, T)
			scale := map[int]float64{2: 2, 3: 0.7}[s.Dim]
			x := randomConfig(rng, s.Particles, s.Dim, scale, 0.9)
			_, grad, err := ev.Eval(x)
			if err != nil {
				t.Fatal(err)
			}
			const h = 1e-5
			// All ±h perturbations in one batch.
			flat := len(x)
			batch := make([]float64, 0, 2*flat*flat)
			for k := range flat {
				for _, sgn := range []float64{1, -1} {
					xp := append([]float64(nil), x...)
					xp[k] += sgn * h
					batch = append(batch, xp...)
				}
			}
			u, _, err := ev.Eval(batch)
			if err != nil {
				t.Fatal(err)
			}
			worst := 0.0
			for k := range flat {
				fd := (u[2*k] - u[2*k+1]) / (2 * h)
				worst = max(worst, math.Abs(fd-grad[k])/max(1, math.Abs(grad[k])))
			}
			t.Logf("%s T=%g: worst |FD − grad| relative %.2e", name, T, worst)
			if worst > 1e-6 {
				t.Errorf("%s T=%g: gradient differs from finite differences by %.3e", name, T, worst)
			}
		}
	}
}

// TestSecondOrderFinite differentiates the gradient again (a Hessian-vector product, as a
// reverse-KL loss through a flow needs no more than this) and checks it is finite and equal to
// finite differences of the host gradient: the masked diagonal pairs must not give NaN.
func TestSecondOrderFinite(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	for _, name := range Names() {
		s, _ := ByName(name)
		x := randomConfig(rng, s.Particles, s.Dim, map[int]float64{2: 2, 3: 0.7}[s.Dim], 0.9)
		v := make([]float64, len(x))
		for k := range v {
			v[k] = rng.NormFloat64()
		}
		xt := tensors.FromFlatDataAndDimensions(append([]float64(nil), x...), 1, s.Particles, s.Dim)
		vt := tensors.FromFlatDataAndDimensions(append([]float64(nil), v...), 1, s.Particles, s.Dim)
		out, err := ExecOnce(backendT(t), func(x, v *Node) *Node {
			g := Gradient(ReduceAllSum(s.Energy(x)), x)[0]
			return Gradient(ReduceAllSum(Mul(g, v)), x)[0]
		}, xt, vt)
		if err != nil {
			t.Fatal(err)
		}
		hv := tensors.MustCopyFlatData[float64](out)
		const h = 1e-6
		gp, gm := make([]float64, len(x)), make([]float64, len(x))
		xp, xm := append([]float64(nil), x...), append([]float64(nil), x...)
		for k := range x {
			xp[k] += h * v[k]
			xm[k] -= h * v[k]
		}
		s.Host.EnergyGrad(xp, s.Dim, gp)
		s.Host.EnergyGrad(xm, s.Dim, gm)
		worst := 0.0
		for k := range x {
			if math.IsNaN(hv[k]) || math.IsInf(hv[k], 0) {
				t.Fatalf("%s: Hessian-vector product has %v at %d", name, hv[k], k)
			}
			fd := (gp[k] - gm[k]) / (2 * h)
			worst = max(worst, math.Abs(fd-hv[k])/max(1, math.Abs(fd)))
		}
		t.Logf("%s: worst |H·v − FD| relative %.2e", name, worst)
		if worst > 1e-5 {
			t.Errorf("%s: H·v differs from finite differences by %.3e", name, worst)
		}
	}
}

// TestCoincidentParticlesNoNaN puts two DW4 particles on top of each other: the energy is
// the host's and the gradient is finite (the host's gradient of a zero-length pair is 0).
func TestCoincidentParticlesNoNaN(t *testing.T) {
	s, _ := ByName("dw4")
	x := []float64{0, 0, 0, 0, 3, 1, -1, 4}
	u, g, err := evaluator(t, s, 1).Eval(x)
	if err != nil {
		t.Fatal(err)
	}
	hg := make([]float64, len(x))
	want := s.Host.EnergyGrad(x, s.Dim, hg)
	if relErr(u[0], want) > 1e-9 {
		t.Errorf("energy %v, host %v", u[0], want)
	}
	for k := range g {
		if math.IsNaN(g[k]) || math.Abs(g[k]-hg[k]) > 1e-9*max(1, math.Abs(hg[k])) {
			t.Errorf("gradient[%d] = %v, host %v", k, g[k], hg[k])
		}
	}
}

// rotation returns a random orthogonal dim×dim matrix with determinant +1 or −1 (reflect).
func rotation(rng *rand.Rand, dim int, reflect bool) [][]float64 {
	q := make([][]float64, dim)
	for i := range q {
		q[i] = make([]float64, dim)
		for j := range q[i] {
			q[i][j] = rng.NormFloat64()
		}
		for j := range i { // Gram–Schmidt
			d := 0.0
			for k := range dim {
				d += q[i][k] * q[j][k]
			}
			for k := range dim {
				q[i][k] -= d * q[j][k]
			}
		}
		n := 0.0
		for k := range dim {
			n += q[i][k] * q[i][k]
		}
		for k := range dim {
			q[i][k] /= math.Sqrt(n)
		}
	}
	if reflect {
		for k := range dim {
			q[0][k] = -q[0][k]
		}
	}
	return q
}

func TestInvariance(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	for _, name := range Names() {
		s, _ := ByName(name)
		ev := evaluator(t, s, 1.7)
		n, dim := s.Particles, s.Dim
		x := randomConfig(rng, n, dim, map[int]float64{2: 2, 3: 0.7}[dim], 0.9)
		transforms := []struct {
			name string
			f    func([]float64) []float64
		}{
			{"rotation", func(x []float64) []float64 { return rotate(x, dim, rotation(rng, dim, false)) }},
			{"reflection", func(x []float64) []float64 { return rotate(x, dim, rotation(rng, dim, true)) }},
			{"translation", func(x []float64) []float64 {
				y := append([]float64(nil), x...)
				shift := []float64{3.5, -2, 7}
				for i := range n {
					for k := range dim {
						y[i*dim+k] += shift[k]
					}
				}
				return y
			}},
			{"permutation", func(x []float64) []float64 {
				y := make([]float64, len(x))
				for i, p := range rng.Perm(n) {
					copy(y[i*dim:(i+1)*dim], x[p*dim:(p+1)*dim])
				}
				return y
			}},
		}
		batch := append([]float64(nil), x...)
		for _, tr := range transforms {
			batch = append(batch, tr.f(x)...)
		}
		u, _, err := ev.Eval(batch)
		if err != nil {
			t.Fatal(err)
		}
		for i, tr := range transforms {
			if e := relErr(u[i+1], u[0]); e > 1e-10 {
				t.Errorf("%s: %s changes the energy %.12g → %.12g", name, tr.name, u[0], u[i+1])
			}
		}
	}
}

func rotate(x []float64, dim int, q [][]float64) []float64 {
	y := make([]float64, len(x))
	for i := 0; i < len(x)/dim; i++ {
		for a := range dim {
			for b := range dim {
				y[i*dim+a] += q[a][b] * x[i*dim+b]
			}
		}
	}
	return y
}

func TestTemperatureAndFloat32(t *testing.T) {
	s, _ := ByName("lj13")
	x := shippedRows(t, s, "DEM_test_split_LJ13-1000.npy", 4)
	u1, _, err := evaluator(t, s, 1).Eval(x)
	if err != nil {
		t.Fatal(err)
	}
	u2, _, err := evaluator(t, s, 2).Eval(x)
	if err != nil {
		t.Fatal(err)
	}
	x32 := make([]float32, len(x))
	for i, v := range x {
		x32[i] = float32(v)
	}
	out, err := ExecOnce(backendT(t), s.Checked, tensors.FromFlatDataAndDimensions(x32, 4, 13, 3))
	if err != nil {
		t.Fatal(err)
	}
	u32 := tensors.MustCopyFlatData[float32](out)
	for r := range u1 {
		if relErr(u2[r], u1[r]/2) > 1e-12 {
			t.Errorf("row %d: u/T at T=2 is %v, want %v", r, u2[r], u1[r]/2)
		}
		if relErr(float64(u32[r]), u1[r]) > 1e-4 {
			t.Errorf("row %d: float32 energy %v, float64 %v", r, u32[r], u1[r])
		}
	}
}

func TestErrors(t *testing.T) {
	tests := []struct {
		name    string
		run     func() error
		wantErr string
	}{
		{"unknown energy", func() error { _, err := ByName("lj55"); return err }, `unknown energy "lj55" (want one of dw4, lj13, lj13-twice)`},
		{"zero temperature", func() error { s, _ := ByName("dw4"); _, err := s.Reduced(0); return err }, "temperature must be finite and > 0, got 0"},
		{"negative temperature", func() error { _, err := Reduced(DW4Params.Energy, -1); return err }, "got -1"},
		{"NaN temperature", func() error { _, err := Reduced(DW4Params.Energy, math.NaN()); return err }, "got NaN"},
		{"Inf temperature", func() error { _, err := Reduced(DW4Params.Energy, math.Inf(1)); return err }, "got +Inf"},
		{"energy of another system", func() error { _, err := ForSystem("dw4", "lj13-twice"); return err }, "energy \"lj13-twice\" is for system lj13, not dw4"},
		{"unknown system", func() error { _, err := ForSystem("lj55", ""); return err }, "unknown system"},
		{"wrong shape", func() error {
			s, _ := ByName("dw4")
			return s.CheckShape(shapes.Make(dtypes.Float64, 5, 13, 3))
		}, "positions have shape [5 13 3], want [B, 4, 2]"},
		{"wrong dtype", func() error {
			s, _ := ByName("dw4")
			return s.CheckShape(shapes.Make(dtypes.Int32, 5, 4, 2))
		}, "dtype Int32"},
		{"wrong shape inside Exec", func() error {
			s, _ := ByName("dw4")
			_, err := ExecOnce(backendT(t), s.Checked, tensors.FromFlatDataAndDimensions(make([]float64, 39), 1, 13, 3))
			return err
		}, "want [B, 4, 2]"},
		{"evaluator wrong length", func() error {
			s, _ := ByName("lj13")
			_, _, err := evaluator(t, s, 1).Eval(make([]float64, 8))
			return err
		}, "8 coordinates is not a positive multiple of 13 particles × 3 dims"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.run()
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err = %v, want %q", err, tc.wantErr)
			}
		})
	}
	if s, err := ByName(" LJ13_Twice "); err != nil || s.Name != "lj13-twice" {
		t.Errorf("ByName(\" LJ13_Twice \") = %v, %v", s.Name, err)
	}
}
