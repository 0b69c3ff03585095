package cnf

import (
	"errors"
	"math"
	"testing"

	"github.com/gomlx/gomlx/pkg/core/dtypes"
	. "github.com/gomlx/gomlx/pkg/core/graph" //nolint:revive // GoMLX idiom.
	"github.com/gomlx/gomlx/pkg/core/tensors"
	"github.com/gomlx/gomlx/pkg/ml/context"

	"github.com/enflow/enflow/gomlx_models/ode"
	"github.com/enflow/enflow/gomlx_models/prior"
	"github.com/enflow/enflow/internal/graphutil"
)

func f64(t *tensors.Tensor) []float64 { return graphutil.MustFloats(t) }

// fdJacobian returns the full Jacobian ∂f_i/∂x_j (B, K, K) of the plain dynamics by central
// differences, perturbing coordinate j of every sample at once (samples are independent).
func fdJacobian(t *testing.T, m *Model, x, mask *tensors.Tensor, tt float64) [][][]float64 {
	t.Helper()
	dims := x.Shape().Dimensions
	B, K := dims[0], dims[1]*dims[2]
	base := f64(x)
	var args []*tensors.Tensor
	if mask != nil {
		args = append(args, mask)
	}
	const h = 1e-5
	jac := make([][][]float64, B)
	for b := range B {
		jac[b] = make([][]float64, K)
		for i := range K {
			jac[b][i] = make([]float64, K)
		}
	}
	for j := range K {
		var fs [2][]float64
		for s, sign := range []float64{1, -1} {
			xp := append([]float64(nil), base...)
			for b := range B {
				xp[b*K+j] += sign * h
			}
			out, err := m.sample.Eval(tt, []*tensors.Tensor{tensors.FromFlatDataAndDimensions(xp, dims...)}, args)
			if err != nil {
				t.Fatal(err)
			}
			fs[s] = f64(out[0])
		}
		for b := range B {
			for i := range K {
				jac[b][i][j] = (fs[0][b*K+i] - fs[1][b*K+i]) / (2 * h)
			}
		}
	}
	return jac
}

// evalAug evaluates the augmented ODE function [dx, −tr, (reg rate)] once.
func evalAug(t *testing.T, m *Model, x, mask *tensors.Tensor, tt float64, seed uint64) []*tensors.Tensor {
	t.Helper()
	B := x.Shape().Dim(0)
	args, _, err := m.args(x, mask, seed)
	if err != nil {
		t.Fatal(err)
	}
	y := []*tensors.Tensor{x}
	for range m.nAug - 1 {
		z, _ := m.zeros(B)
		y = append(y, z)
	}
	out, err := m.fwd.Eval(tt, y, args)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestExactTraceMatchesFiniteDifferences(t *testing.T) {
	b := backendT(t)
	for _, tc := range []struct {
		name     string
		withMask bool
		reg      float64
	}{
		{"no_mask", false, 0},
		{"mask", true, 0},
		{"mask_with_regularizer", true, 0.1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const B, N, C = 2, 3, 2
			ctx := newTestContext(C, dtypes.Float64, 1)
			m, err := New(b, ctx, testDynamics, Config{Trace: "exact", RegWeight: tc.reg, DType: dtypes.Float64})
			if err != nil {
				t.Fatal(err)
			}
			x, mask := testData(t, B, N, C, dtypes.Float64, tc.withMask, 2)
			jac := fdJacobian(t, m, x, mask, 0.3)
			out := evalAug(t, m, x, mask, 0.3, 5)
			negTr := f64(out[1])
			plain, err := m.sample.Eval(0.3, []*tensors.Tensor{x}, withMaskArgs(mask))
			if err != nil {
				t.Fatal(err)
			}
			if d := maxAbsDiff(f64(out[0]), f64(plain[0])); d != 0 {
				t.Errorf("dx from the replicated batch differs from f(x) by %g", d)
			}
			for bi := range B {
				tr := 0.0
				for k := range jac[bi] {
					tr += jac[bi][k][k]
				}
				t.Logf("sample %d: exact trace %.12f, finite differences %.12f", bi, -negTr[bi], tr)
				if math.Abs(-negTr[bi]-tr) > 1e-7*max(1, math.Abs(tr)) {
					t.Errorf("sample %d: trace %.12g, finite differences %.12g", bi, -negTr[bi], tr)
				}
			}
			if tc.reg > 0 && len(out) != 3 {
				t.Fatalf("expected the regulariser rate output")
			}
		})
	}
}

func withMaskArgs(mask *tensors.Tensor) []*tensors.Tensor {
	if mask == nil {
		return nil
	}
	return []*tensors.Tensor{mask}
}

// TestHutchinsonConvergesToExactTrace replicates one sample many times (each row gets its own
// noise draw) and checks that the mean of the trace and Frobenius estimates match the exact values
// within 5 standard errors, for both noise distributions.
func TestHutchinsonConvergesToExactTrace(t *testing.T) {
	b := backendT(t)
	const N, C, R = 3, 2, 4000
	ctx := newTestContext(C, dtypes.Float64, 3)
	x1, _ := testData(t, 1, N, C, dtypes.Float64, false, 4)
	xv := f64(x1)
	rep := make([]float64, 0, R*len(xv))
	for range R {
		rep = append(rep, xv...)
	}
	x := tensors.FromFlatDataAndDimensions(rep, R, N, C)
	exact, err := New(b, ctx, testDynamics, Config{Trace: "exact", DType: dtypes.Float64})
	if err != nil {
		t.Fatal(err)
	}
	jac := fdJacobian(t, exact, x1, nil, 0.7)
	trExact := -f64(evalAug(t, exact, x1, nil, 0.7, 0)[1])[0]
	frobExact := 0.0
	for _, row := range jac[0] {
		for _, v := range row {
			frobExact += v * v
		}
	}
	for _, noise := range []string{"gaussian", "rademacher"} {
		t.Run(noise, func(t *testing.T) {
			m, err := New(b, ctx, testDynamics, Config{Trace: "hutchinson", Noise: noise, RegWeight: 1, DType: dtypes.Float64})
			if err != nil {
				t.Fatal(err)
			}
			out := evalAug(t, m, x, nil, 0.7, 11)
			negTr, regRate, dx := f64(out[1]), f64(out[2]), f64(out[0])
			fsq := 0.0
			for _, v := range dx[:N*C] {
				fsq += v * v
			}
			var trs, frobs []float64
			for r := range R {
				trs = append(trs, -negTr[r])
				frobs = append(frobs, regRate[r]-fsq)
			}
			check := func(what string, est []float64, want float64) {
				mean, sd := meanStd(est)
				se := sd / math.Sqrt(float64(len(est)))
				t.Logf("%s: mean %.5f ± %.5f (sd %.3f), exact %.5f", what, mean, se, sd, want)
				if math.Abs(mean-want) > 5*se {
					t.Errorf("%s: mean estimate %.5f differs from exact %.5f by > 5 s.e. (%.5f)", what, mean, want, se)
				}
				if sd == 0 {
					t.Errorf("%s: zero variance: the noise is not drawn per row", what)
				}
			}
			check("trace", trs, trExact)
			check("Frobenius", frobs, frobExact)
		})
	}
}

func meanStd(v []float64) (mean, sd float64) {
	for _, e := range v {
		mean += e
	}
	mean /= float64(len(v))
	for _, e := range v {
		sd += (e - mean) * (e - mean)
	}
	return mean, math.Sqrt(sd / float64(len(v)-1))
}

// scaled is f = a·x (masked): z = eᵃ·x and tr J = a·N·D. With Rademacher noise Hutchinson's
// estimate εᵀ(aI)ε = a·N·D is exact, which checks the sign conventions of both trace paths.
func scaled(a float64) DynamicsFunc {
	return func(_ *context.Context, _, x, mask *Node) *Node {
		out := MulScalar(x, a)
		if mask != nil {
			out = Mul(out, ExpandAxes(mask, -1))
		}
		return out
	}
}

// projected is f = a·P·x with P the (masked) mean removal: translation invariant and mean-free,
// tr J = a·(N−1)·D: the density of x is then exactly the CoG-free Gaussian scaled by e^{−a}.
func projected(a float64) DynamicsFunc {
	return func(_ *context.Context, _, x, mask *Node) *Node {
		return MulScalar(prior.RemoveMean(x, mask), a)
	}
}

// TestLogLikelihoodAnalytic checks log p(x) = log p_Z(z) + ∫ tr J dt for linear flows with known
// solutions (FFJORD sign conventions: data at t = 0, latent at t = 1).
func TestLogLikelihoodAnalytic(t *testing.T) {
	b := backendT(t)
	const B, N, C, a = 3, 4, 2, 0.7
	for _, tc := range []struct {
		name     string
		f        DynamicsFunc
		cfg      Config
		dof      func(n int) float64 // ∫ tr J dt / a
		withMask bool
	}{
		{"projected_exact", projected(a), Config{Trace: "exact"}, func(n int) float64 { return float64((n - 1) * C) }, true},
		{"scaled_exact_rk4", scaled(a), Config{Trace: "exact", Solver: "rk4", Steps: 40}, func(n int) float64 { return float64(n * C) }, false},
		{"scaled_hutchinson_rademacher", scaled(a), Config{Trace: "hutchinson", Noise: "rademacher"}, func(n int) float64 { return float64(n * C) }, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := tc.cfg
			cfg.DType, cfg.RTol, cfg.ATol = dtypes.Float64, 1e-9, 1e-9
			m, err := New(b, nil, tc.f, cfg)
			if err != nil {
				t.Fatal(err)
			}
			x, mask := testData(t, B, N, C, dtypes.Float64, tc.withMask, 5)
			got, st, err := m.LogLikelihood(x, mask, 1)
			if err != nil {
				t.Fatal(err)
			}
			xv := f64(x)
			mv, _ := prior.MaskValues(mask, B, N)
			for bi := range B {
				n := 0
				r2 := 0.0
				for i := range N {
					if mv[bi*N+i] == 0 {
						continue
					}
					n++
					for c := range C {
						v := xv[(bi*N+i)*C+c] * math.Exp(a) // z = eᵃ·x
						r2 += v * v
					}
				}
				want := -0.5*r2 - 0.5*float64((n-1)*C)*prior.Log2Pi + a*tc.dof(n)
				if math.Abs(got[bi]-want) > 1e-6 {
					t.Errorf("sample %d (N=%d): log p(x) = %.10f, want %.10f", bi, n, got[bi], want)
				}
			}
			t.Logf("stats %+v", st)
		})
	}
}

// TestZeroDynamics: f ≡ 0 gives z = x, log p(x) = log p_Z(x) exactly, and a zero regulariser.
func TestZeroDynamics(t *testing.T) {
	b := backendT(t)
	zero := func(_ *context.Context, _, x, _ *Node) *Node { return ZerosLike(x) }
	for _, trace := range []string{"exact", "hutchinson"} {
		t.Run(trace, func(t *testing.T) {
			m, err := New(b, nil, zero, Config{Trace: trace, RegWeight: 0.5, DType: dtypes.Float64})
			if err != nil {
				t.Fatal(err)
			}
			x, mask := testData(t, 3, 4, 3, dtypes.Float64, true, 6)
			got, st, err := m.LogLikelihood(x, mask, 3)
			if err != nil {
				t.Fatal(err)
			}
			want, err := ExecOnce(b, prior.CoGFreeLogProb, x, mask)
			if err != nil {
				t.Fatal(err)
			}
			for i, w := range f64(want) {
				if got[i] != w {
					t.Errorf("sample %d: log p(x) = %.17g, log p_Z(x) = %.17g", i, got[i], w)
				}
			}
			if st.Reg != 0 {
				t.Errorf("regulariser %g for zero dynamics", st.Reg)
			}
		})
	}
}

// TestInvertibility integrates forward (Encode) then backward (Decode) and recovers x.
func TestInvertibility(t *testing.T) {
	b := backendT(t)
	const B, N, C = 3, 4, 3
	ctx := newTestContext(C, dtypes.Float64, 8)
	m, err := New(b, ctx, testDynamics, Config{RTol: 1e-7, ATol: 1e-7, DType: dtypes.Float64})
	if err != nil {
		t.Fatal(err)
	}
	x, mask := testData(t, B, N, C, dtypes.Float64, true, 9)
	z, _, st1, err := m.Encode(x, mask, 1)
	if err != nil {
		t.Fatal(err)
	}
	xr, st2, err := m.Decode(z, mask)
	if err != nil {
		t.Fatal(err)
	}
	moved := maxAbsDiff(f64(z), f64(x))
	d := maxAbsDiff(f64(xr), f64(x))
	t.Logf("|z−x|∞ = %.3g; round trip error %.3g; NFE %d + %d", moved, d, st1.Forward.NFE, st2.Forward.NFE)
	if moved < 0.1 {
		t.Errorf("the flow barely moves the data (%.3g): test is too weak", moved)
	}
	if d > 1e-5 {
		t.Errorf("round trip error %.3g > 1e-5", d)
	}
}

func TestSample(t *testing.T) {
	b := backendT(t)
	const B, N, C = 4, 5, 3
	ctx := newTestContext(C, dtypes.Float32, 10)
	m, err := New(b, ctx, testDynamics, Config{})
	if err != nil {
		t.Fatal(err)
	}
	_, mask := testData(t, B, N, C, dtypes.Float32, true, 11)
	x, st, err := m.Sample(B, N, C, mask, 42)
	if err != nil {
		t.Fatal(err)
	}
	if x.DType() != dtypes.Float32 || x.Shape().Dim(0) != B || x.Shape().Dim(1) != N || x.Shape().Dim(2) != C {
		t.Fatalf("sample shape %s", x.Shape())
	}
	xv := f64(x)
	mv, _ := prior.MaskValues(mask, B, N)
	for bi := range B {
		for c := range C {
			s := 0.0
			for i := range N {
				v := xv[(bi*N+i)*C+c]
				if mv[bi*N+i] == 0 && v != 0 {
					t.Errorf("masked node %d of sample %d is %g", i, bi, v)
				}
				s += v
			}
			if math.Abs(s) > 1e-4 {
				t.Errorf("sample %d channel %d not mean-free: %g", bi, c, s)
			}
		}
	}
	if st.Forward.NFE < 8 {
		t.Errorf("suspiciously few NFE: %+v", st.Forward)
	}
	x2, _, _ := m.Sample(B, N, C, mask, 42)
	if maxAbsDiff(f64(x2), xv) != 0 {
		t.Errorf("Sample is not reproducible from the seed")
	}
}

func TestMaxStepsExceeded(t *testing.T) {
	b := backendT(t)
	ctx := newTestContext(2, dtypes.Float64, 12)
	m, err := New(b, ctx, testDynamics, Config{RTol: 1e-10, ATol: 1e-10, MaxSteps: 3, DType: dtypes.Float64})
	if err != nil {
		t.Fatal(err)
	}
	x, _ := testData(t, 2, 3, 2, dtypes.Float64, false, 13)
	_, _, err = m.LogLikelihood(x, nil, 1)
	if !errors.Is(err, ode.ErrMaxSteps) {
		t.Fatalf("got %v, want ode.ErrMaxSteps", err)
	}
	t.Logf("error: %v", err)
}

func TestConfigAndInputErrors(t *testing.T) {
	b := backendT(t)
	for _, cfg := range []Config{
		{Solver: "rk45"}, {Trace: "approx"}, {Noise: "uniform"}, {Grad: "finite"},
		{Solver: "rk4"}, // no Steps
		{RegWeight: -1}, {DType: dtypes.Int32},
	} {
		if _, err := New(b, nil, scaled(1), cfg); err == nil {
			t.Errorf("config %+v should be rejected", cfg)
		}
	}
	m, err := New(b, nil, scaled(1), Config{DType: dtypes.Float64})
	if err != nil {
		t.Fatal(err)
	}
	x32, _ := testData(t, 2, 3, 2, dtypes.Float32, false, 1)
	if _, _, err := m.LogLikelihood(x32, nil, 1); err == nil {
		t.Error("dtype mismatch should fail")
	}
	x, _ := testData(t, 2, 3, 2, dtypes.Float64, false, 1)
	if _, _, err := m.LogLikelihood(x, tensors.FromValue([][]float64{{1, 1}}), 1); err == nil {
		t.Error("mask shape mismatch should fail")
	}
}
