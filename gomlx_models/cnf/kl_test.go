package cnf

import (
	"fmt"
	"math"
	"testing"

	"github.com/gomlx/gomlx/pkg/core/dtypes"
	. "github.com/gomlx/gomlx/pkg/core/graph" //nolint:revive // GoMLX idiom.
	"github.com/gomlx/gomlx/pkg/core/shapes"
	"github.com/gomlx/gomlx/pkg/core/tensors"
	"github.com/gomlx/gomlx/pkg/ml/context"

	"github.com/enflow/enflow/gomlx_models/energy"
	"github.com/enflow/enflow/gomlx_models/prior"
	"github.com/enflow/enflow/internal/graphutil"
)

// linearDynamics is f(t, x) = a·(x − x̄) with one trainable scalar a: from z at t = 1 the flow
// gives x = e^{−a}·z, so with k = (N−1)·D mean-free degrees of freedom
// log|det ∂x/∂z| = −a·k and, for u(x) = ½‖x‖², KL = e^{−2a}·E[½‖z‖²]/T + a·k.
func linearDynamics(ctx *context.Context, _, x, mask *Node) *Node {
	a := ctx.In("lin").VariableWithShape("a", shapes.Make(x.DType())).ValueGraph(x.Graph())
	return Mul(a, prior.RemoveMean(x, mask))
}

func halfSquaredNorm(x *Node) *Node { return MulScalar(ReduceSum(Square(x), 1, 2), 0.5) }

func newLinearKL(t *testing.T, grad, trace string, a, temperature float64) *Model {
	return newLinearKLSolver(t, grad, trace, "", 0, a, temperature)
}

// newLinearKLSolver is newLinearKL with a given solver ("" = dopri5) and fixed step count.
func newLinearKLSolver(t *testing.T, grad, trace, solver string, steps int, a, temperature float64) *Model {
	t.Helper()
	ctx := seededContext()
	ctx.In("lin").VariableWithValue("a", a)
	m, err := New(backendT(t), ctx, linearDynamics, Config{
		DType: dtypes.Float64, Grad: grad, Trace: trace, RTol: 1e-9, ATol: 1e-9,
		Solver: solver, Steps: steps,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.SetTarget(energy.Target{Name: "gauss", Energy: halfSquaredNorm, Temperature: temperature}); err != nil {
		t.Fatal(err)
	}
	return m
}

func setScalarVar(t *testing.T, m *Model, a float64) {
	t.Helper()
	vs := m.Variables()
	if len(vs) != 1 {
		t.Fatalf("want 1 variable, got %d", len(vs))
	}
	vs[0].SetValue(tensors.FromScalar(a))
}

// TestKLClosedForm checks the energy-based loss and its gradient of the linear flow against the
// closed form, for the adjoint and for backprop: a wrong sign of the log-determinant, of the
// time direction or of the adjoint's end conditions changes them.
func TestKLClosedForm(t *testing.T) {
	const B, N, D = 64, 4, 2
	k := float64((N - 1) * D)
	for _, tc := range []struct {
		grad, trace, solver string
		steps               int
		a, temp             float64
	}{
		{GradAdjoint, TraceExact, "", 0, 0.3, 1},
		{GradAdjoint, TraceExact, "", 0, -0.4, 2.5},
		{GradBackprop, TraceExact, "", 0, 0.3, 1},
		{GradBackprop, TraceExact, "", 0, -0.4, 2.5},
		// Fixed steps replay the uniform grid from t = 1 down to 0 (the BG experiments' setting).
		{GradBackprop, TraceExact, "rk4", 16, 0.3, 1},
		{GradBackprop, TraceExact, "rk4", 16, -0.4, 2.5},
	} {
		t.Run(fmt.Sprintf("%s/%s/%s%d/a=%g", tc.grad, tc.trace, tc.solver, tc.steps, tc.a), func(t *testing.T) {
			m := newLinearKLSolver(t, tc.grad, tc.trace, tc.solver, tc.steps, tc.a, tc.temp)
			res, grads, st, err := m.KLLossAndGrad(B, N, D, 11)
			if err != nil {
				t.Fatal(err)
			}
			// MeanEnergy = e^{−2a}·S with S = E[½‖z‖²] of this batch.
			wantKL := res.MeanEnergy/tc.temp + tc.a*k
			if math.Abs(res.KL-wantKL) > 1e-6*max(1, math.Abs(wantKL)) {
				t.Errorf("KL = %.10g, closed form %.10g", res.KL, wantKL)
			}
			if res.Loss != res.KL {
				t.Errorf("loss %g ≠ KL %g without a regulariser", res.Loss, res.KL)
			}
			wantGrad := -2*res.MeanEnergy/tc.temp + k
			got := graphutil.MustFloats(grads[0])[0]
			if math.Abs(got-wantGrad) > 1e-5*max(1, math.Abs(wantGrad)) {
				t.Errorf("∂KL/∂a = %.10g, closed form %.10g", got, wantGrad)
			}
			if st.Forward.NFE == 0 || st.Backward.NFE == 0 {
				t.Errorf("stats %+v: want forward and backward work", st)
			}
			graphutil.Free(grads...)
		})
	}
}

// TestKLGradientFiniteDifferences compares the reparameterised KL gradient of a nonlinear flow
// (testDynamics, Hutchinson trace with its fixed noise draw) with central finite differences
// along a random direction, for the adjoint and for backprop, float64.
func TestKLGradientFiniteDifferences(t *testing.T) {
	const B, N, C = 6, 4, 2
	dw := energy.Target{Name: "dw", Energy: func(x *Node) *Node { // a smooth pair energy Σ_{i,j} (r²−2)²/8
		b, n, d := x.Shape().Dim(0), x.Shape().Dim(1), x.Shape().Dim(2)
		diff := Sub(Reshape(x, b, n, 1, d), Reshape(x, b, 1, n, d))
		r2 := ReduceSum(Square(diff), -1)
		return MulScalar(ReduceSum(Square(AddScalar(r2, -2)), 1, 2), 0.125)
	}, Temperature: 1.7}
	for _, grad := range []string{GradAdjoint, GradBackprop} {
		t.Run(grad, func(t *testing.T) {
			ctx := newTestContext(C, dtypes.Float64, 5)
			m, err := New(backendT(t), ctx, testDynamics, Config{DType: dtypes.Float64, Grad: grad, RTol: 1e-10, ATol: 1e-10})
			if err != nil {
				t.Fatal(err)
			}
			if err := m.SetTarget(dw); err != nil {
				t.Fatal(err)
			}
			const seed = 3
			res, grads, _, err := m.KLLossAndGrad(B, N, C, seed)
			if err != nil {
				t.Fatal(err)
			}
			vars := m.Variables()
			base := make([][]float64, len(vars))
			dirs := make([][]float64, len(vars))
			var analytic float64
			for i, v := range vars {
				val, err := v.Value()
				if err != nil {
					t.Fatal(err)
				}
				base[i] = graphutil.MustFloats(val)
				g := graphutil.MustFloats(grads[i])
				dirs[i] = make([]float64, len(base[i]))
				for j := range dirs[i] {
					dirs[i][j] = math.Sin(float64(7*i+3*j) + 0.5)
					analytic += dirs[i][j] * g[j]
				}
			}
			graphutil.Free(grads...)
			shift := func(h float64) float64 {
				for i, v := range vars {
					vals := make([]float64, len(base[i]))
					for j := range vals {
						vals[j] = base[i][j] + h*dirs[i][j]
					}
					tv, err := prior.FromFloat64(dtypes.Float64, vals, v.Shape().Dimensions...)
					if err != nil {
						t.Fatal(err)
					}
					v.SetValue(tv)
				}
				r, g, _, err := m.KLLossAndGrad(B, N, C, seed)
				if err != nil {
					t.Fatal(err)
				}
				graphutil.Free(g...)
				return r.Loss
			}
			const h = 1e-5
			fd := (shift(h) - shift(-h)) / (2 * h)
			shift(0)
			if rel := math.Abs(fd-analytic) / max(1e-8, math.Abs(fd)); rel > 1e-4 {
				t.Errorf("directional derivative: reparameterised %.10g, finite differences %.10g (rel %.2g); loss %g", analytic, fd, rel, res.Loss)
			}
		})
	}
}

// TestKLMatchedFlow: when the flow's density equals the target (linear flow with e^{−2a} = T and
// u = ½‖x‖²), log q_X(x) + u(x)/T = −(k/2)·log(2πT) = −log Z for every sample, so the KL with the
// prior term is −log Z exactly, the log-weights −u/T − log q are constant and the Kish ESS is n.
// A flow that is not matched has ESS < n.
func TestKLMatchedFlow(t *testing.T) {
	const B, N, D = 200, 4, 2
	k := float64((N - 1) * D)
	const temp = 0.49
	aStar := -0.5 * math.Log(temp)
	m := newLinearKL(t, GradAdjoint, TraceExact, aStar, temp)
	res, grads, _, err := m.KLLossAndGrad(B, N, D, 21)
	if err != nil {
		t.Fatal(err)
	}
	graphutil.Free(grads...)
	logZ := 0.5 * k * math.Log(2*math.Pi*temp)
	if math.Abs(res.KLPrior+logZ) > 1e-6 {
		t.Errorf("KL with the prior term = %.9g, want −log Z = %.9g", res.KLPrior, -logZ)
	}
	ess := func(a float64) float64 {
		setScalarVar(t, m, a)
		x, logq, _, _, err := m.SampleWithLogDensity(B, N, D, nil, 5)
		if err != nil {
			t.Fatal(err)
		}
		xs := graphutil.MustFloats(x)
		graphutil.Free(x)
		logw := make([]float64, B)
		maxw := math.Inf(-1)
		for b := range B {
			var u float64
			for _, v := range xs[b*N*D : (b+1)*N*D] {
				u += 0.5 * v * v
			}
			logw[b] = -u/temp - logq[b]
			maxw = max(maxw, logw[b])
		}
		var s, s2 float64
		for _, lw := range logw {
			w := math.Exp(lw - maxw)
			s += w
			s2 += w * w
		}
		return s * s / (float64(B) * s2)
	}
	if e := ess(aStar); math.Abs(e-1) > 1e-9 {
		t.Errorf("matched flow: ESS/n = %.12g, want 1", e)
	}
	if e := ess(aStar + 0.4); e > 0.95 {
		t.Errorf("mismatched flow: ESS/n = %.4g, want clearly below 1", e)
	}
}

// TestSampleWithLogDensityMatchesLikelihood: the density of a sample computed on the way from z
// (SampleWithLogDensity) equals the likelihood of the same x computed from data
// (LogLikelihood), and x equals Sample's draw for the same seed.
func TestSampleWithLogDensityMatchesLikelihood(t *testing.T) {
	const B, N, C = 5, 4, 2
	ctx := newTestContext(C, dtypes.Float64, 8)
	m, err := New(backendT(t), ctx, testDynamics, Config{DType: dtypes.Float64, Trace: TraceExact, RTol: 1e-10, ATol: 1e-10})
	if err != nil {
		t.Fatal(err)
	}
	x, logq, _, _, err := m.SampleWithLogDensity(B, N, C, nil, 4)
	if err != nil {
		t.Fatal(err)
	}
	xs, _, err := m.Sample(B, N, C, nil, 4)
	if err != nil {
		t.Fatal(err)
	}
	if d := maxAbsDiff(graphutil.MustFloats(x), graphutil.MustFloats(xs)); d > 1e-7 {
		t.Errorf("SampleWithLogDensity x differs from Sample's by %g", d)
	}
	ll, _, err := m.LogLikelihood(x, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	if d := maxAbsDiff(logq, ll); d > 1e-6 {
		t.Errorf("log q from the sampling direction %v vs log-likelihood %v (max diff %g)", logq, ll, d)
	}
	graphutil.Free(x, xs)
}

func TestSetTargetValidates(t *testing.T) {
	m := newLinearKL(t, GradAdjoint, TraceExact, 0, 1)
	for _, tg := range []energy.Target{{Name: "nil"}, {Name: "neg", Energy: halfSquaredNorm, Temperature: -1},
		{Name: "inf", Energy: halfSquaredNorm, Temperature: math.Inf(1)}} {
		if err := m.SetTarget(tg); err == nil {
			t.Errorf("SetTarget(%s) accepted", tg.Name)
		}
	}
	ctx := seededContext()
	m2, err := New(backendT(t), ctx, linearDynamics, Config{DType: dtypes.Float64})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := m2.KLLossAndGrad(2, 3, 2, 1); err == nil {
		t.Error("KLLossAndGrad without a target succeeded")
	}
}
