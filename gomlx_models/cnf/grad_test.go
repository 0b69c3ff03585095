package cnf

import (
	"math"
	"testing"

	"github.com/gomlx/gomlx/pkg/core/dtypes"
	"github.com/gomlx/gomlx/pkg/core/tensors"
	"github.com/gomlx/gomlx/pkg/ml/context"
)

// lossOnly evaluates the training loss −mean log p(x) + RegWeight·mean reg without gradients.
func lossOnly(t *testing.T, m *Model, x, mask *tensors.Tensor, seed uint64) float64 {
	t.Helper()
	lp, st, err := m.LogLikelihood(x, mask, seed)
	if err != nil {
		t.Fatal(err)
	}
	s := 0.0
	for _, v := range lp {
		s += v
	}
	return -s/float64(len(lp)) + m.cfg.RegWeight*st.Reg
}

// fdGrad is the central finite difference of the loss with respect to entry idx of variable v.
func fdGrad(t *testing.T, m *Model, v *context.Variable, idx int, x, mask *tensors.Tensor, seed uint64, h float64) float64 {
	t.Helper()
	orig := f64(v.MustValue())
	eval := func(delta float64) float64 {
		p := append([]float64(nil), orig...)
		p[idx] += delta
		if err := v.SetValue(tensors.FromFlatDataAndDimensions(p, v.Shape().Dimensions...)); err != nil {
			t.Fatal(err)
		}
		return lossOnly(t, m, x, mask, seed)
	}
	g := (eval(h) - eval(-h)) / (2 * h)
	if err := v.SetValue(tensors.FromFlatDataAndDimensions(orig, v.Shape().Dimensions...)); err != nil {
		t.Fatal(err)
	}
	return g
}

func flatGrads(gs []*tensors.Tensor) []float64 {
	var out []float64
	for _, g := range gs {
		out = append(out, f64(g)...)
	}
	return out
}

// fdProbes are (variable name, flat index) pairs checked against finite differences.
var fdProbes = []struct {
	name string
	idx  int
}{{"W1", 3}, {"A", 1}, {"b1", 2}}

func varByName(t *testing.T, m *Model, name string) (int, *context.Variable) {
	t.Helper()
	for i, v := range m.Variables() {
		if v.Name() == name {
			return i, v
		}
	}
	t.Fatalf("variable %q not found", name)
	return 0, nil
}

// TestBackpropFixedStepMatchesFiniteDifferences: with a fixed-step solver the loss is a smooth
// function of the parameters and backprop through the unrolled steps is its exact gradient.
func TestBackpropFixedStepMatchesFiniteDifferences(t *testing.T) {
	b := backendT(t)
	const B, N, C = 3, 3, 2
	for _, tc := range []struct {
		name string
		cfg  Config
	}{
		{"rk4_hutchinson_rademacher_reg", Config{Solver: "rk4", Steps: 5, Trace: "hutchinson", Noise: "rademacher", RegWeight: 0.1}},
		{"rk4_exact", Config{Solver: "rk4", Steps: 5, Trace: "exact"}},
		{"euler_exact_reg", Config{Solver: "euler", Steps: 7, Trace: "exact", RegWeight: 0.3}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := tc.cfg
			cfg.Grad, cfg.DType = "backprop", dtypes.Float64
			m, err := New(b, newTestContext(C, dtypes.Float64, 21), testDynamics, cfg)
			if err != nil {
				t.Fatal(err)
			}
			x, mask := testData(t, B, N, C, dtypes.Float64, true, 22)
			loss, nll, grads, st, err := m.LossAndGrad(x, mask, 5)
			if err != nil {
				t.Fatal(err)
			}
			if want := lossOnly(t, m, x, mask, 5); math.Abs(loss-want) > 1e-10 {
				t.Errorf("loss %.12g, forward-only loss %.12g", loss, want)
			}
			if cfg.RegWeight == 0 && loss != nll {
				t.Errorf("loss %g != nll %g without regulariser", loss, nll)
			}
			if len(grads) != len(m.Variables()) {
				t.Fatalf("%d gradients for %d variables", len(grads), len(m.Variables()))
			}
			t.Logf("loss %.6f nll %.6f reg %.4f stats %+v", loss, nll, st.Reg, st)
			for _, p := range fdProbes {
				i, v := varByName(t, m, p.name)
				got := f64(grads[i])[p.idx]
				want := fdGrad(t, m, v, p.idx, x, mask, 5, 1e-5)
				t.Logf("∂L/∂%s[%d]: backprop %.9f, finite differences %.9f", p.name, p.idx, got, want)
				if math.Abs(got-want) > 1e-6*max(1, math.Abs(want)) {
					t.Errorf("∂L/∂%s[%d] = %.9g, finite differences %.9g", p.name, p.idx, got, want)
				}
			}
		})
	}
}

// TestAdjointMatchesBackprop compares the two gradient methods with dopri5 at a tight tolerance,
// and both with finite differences.
func TestAdjointMatchesBackprop(t *testing.T) {
	b := backendT(t)
	const B, N, C = 3, 3, 2
	for _, tc := range []struct {
		name string
		cfg  Config
	}{
		{"hutchinson_gaussian_reg", Config{Trace: "hutchinson", Noise: "gaussian", RegWeight: 0.2}},
		{"exact", Config{Trace: "exact"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := newTestContext(C, dtypes.Float64, 31)
			x, mask := testData(t, B, N, C, dtypes.Float64, true, 32)
			results := map[string][]float64{}
			var models []*Model
			for _, grad := range []string{"adjoint", "backprop"} {
				cfg := tc.cfg
				cfg.Grad, cfg.DType, cfg.RTol, cfg.ATol = grad, dtypes.Float64, 1e-8, 1e-8
				m, err := New(b, ctx, testDynamics, cfg)
				if err != nil {
					t.Fatal(err)
				}
				loss, _, grads, st, err := m.LossAndGrad(x, mask, 7)
				if err != nil {
					t.Fatal(err)
				}
				results[grad] = flatGrads(grads)
				models = append(models, m)
				t.Logf("%s: loss %.9f, forward %+v, backward %+v", grad, loss, st.Forward, st.Backward)
			}
			rel := relErr(results["adjoint"], results["backprop"])
			t.Logf("relative difference adjoint vs backprop: %.3g", rel)
			if rel > 1e-3 {
				t.Errorf("adjoint and backprop gradients differ by %.3g (relative)", rel)
			}
			m := models[0]
			for _, p := range fdProbes[:2] {
				i, v := varByName(t, m, p.name)
				off := 0
				for _, vv := range m.Variables()[:i] {
					off += vv.Shape().Size()
				}
				want := fdGrad(t, m, v, p.idx, x, mask, 7, 1e-4)
				for _, grad := range []string{"adjoint", "backprop"} {
					got := results[grad][off+p.idx]
					t.Logf("∂L/∂%s[%d]: %s %.7f, finite differences %.7f", p.name, p.idx, grad, got, want)
					if math.Abs(got-want) > 1e-3*max(1, math.Abs(want)) {
						t.Errorf("%s: ∂L/∂%s[%d] = %.7g, finite differences %.7g", grad, p.name, p.idx, got, want)
					}
				}
			}
		})
	}
}

// TestAdjointMemoryFlat: the adjoint solve keeps a constant number of live state tensors however
// many steps it takes (no per-step tensors are retained).
func TestAdjointMemoryFlat(t *testing.T) {
	b := backendT(t)
	const B, N, C = 2, 3, 2
	ctx := newTestContext(C, dtypes.Float64, 41)
	x, _ := testData(t, B, N, C, dtypes.Float64, false, 42)
	var peaks, steps []int
	for _, tol := range []float64{1e-3, 1e-8} {
		m, err := New(b, ctx, testDynamics, Config{RTol: tol, ATol: tol, DType: dtypes.Float64})
		if err != nil {
			t.Fatal(err)
		}
		_, _, _, st, err := m.LossAndGrad(x, nil, 1)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("tol %.0e: backward %+v", tol, st.Backward)
		peaks = append(peaks, st.Backward.PeakLiveTensors)
		steps = append(steps, st.Backward.Accepted)
	}
	if steps[1] < 3*steps[0] {
		t.Fatalf("tight tolerance should take many more steps: %v", steps)
	}
	if peaks[0] != peaks[1] {
		t.Errorf("peak live tensors grow with the number of steps: %v for %v steps", peaks, steps)
	}
}
