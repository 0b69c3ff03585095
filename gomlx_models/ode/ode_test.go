package ode

import (
	"errors"
	"fmt"
	"math"
	"sync"
	"testing"

	"github.com/gomlx/gomlx/backends"
	"github.com/gomlx/gomlx/pkg/core/dtypes"
	. "github.com/gomlx/gomlx/pkg/core/graph" //nolint:revive // GoMLX idiom.
	"github.com/gomlx/gomlx/pkg/core/tensors"
	"github.com/gomlx/gomlx/pkg/ml/context"

	"github.com/enflow/enflow/gomlx_models/backend"
)

// testBackend is the project backend (backend.New: $GOMLX_BACKEND or SimpleGo with sequential op
// scheduling, which avoids SimpleGo's worker-pool deadlock on gradient graphs).
var testBackend = sync.OnceValues(func() (backends.Backend, error) { return backend.New("") })

func backendT(t testing.TB) backends.Backend {
	t.Helper()
	b, err := testBackend()
	if err != nil {
		t.Fatalf("creating SimpleGo backend: %v", err)
	}
	return b
}

func flat(t testing.TB, x *tensors.Tensor) []float64 {
	t.Helper()
	switch x.DType() {
	case dtypes.Float64:
		return tensors.MustCopyFlatData[float64](x)
	case dtypes.Float32:
		v := tensors.MustCopyFlatData[float32](x)
		out := make([]float64, len(v))
		for i, e := range v {
			out[i] = float64(e)
		}
		return out
	}
	t.Fatalf("unsupported dtype %s", x.DType())
	return nil
}

func maxAbsDiff(a, b []float64) float64 {
	m := 0.0
	for i := range a {
		m = max(m, math.Abs(a[i]-b[i]))
	}
	return m
}

// decay is y' = −λ·y (one state tensor).
func decay(lambda float64) Func {
	return func(_ *context.Context, _ *Node, y, _ []*Node) []*Node {
		return []*Node{MulScalar(y[0], -lambda)}
	}
}

// oscillator is the harmonic oscillator q' = p, p' = −ω²q with q and p as two separate state
// tensors (a tuple state, as (x, logp, reg) in a CNF).
func oscillator(omega float64) Func {
	return func(_ *context.Context, _ *Node, y, _ []*Node) []*Node {
		return []*Node{y[1], MulScalar(y[0], -omega*omega)}
	}
}

func oscillatorExact(q0, p0 []float64, omega, t float64) (q, p []float64) {
	c, s := math.Cos(omega*t), math.Sin(omega*t)
	for i := range q0 {
		q = append(q, q0[i]*c+p0[i]/omega*s)
		p = append(p, -q0[i]*omega*s+p0[i]*c)
	}
	return q, p
}

func TestDecayTolerances(t *testing.T) {
	b := backendT(t)
	y0 := []float64{1, -2, 0.5, 3}
	for _, tc := range []struct {
		name   string
		t0, t1 float64
		tol    float64
	}{
		{"forward_1e-4", 0, 1, 1e-4},
		{"forward_1e-7", 0, 1, 1e-7},
		{"forward_1e-10", 0, 1, 1e-10},
		{"reverse_1e-7", 1, 0, 1e-7},
		{"reverse_1e-10", 1, 0, 1e-10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const lambda = 1.5
			s, err := New(b, nil, decay(lambda), 1, Options{Method: "dopri5", RTol: tc.tol, ATol: tc.tol})
			if err != nil {
				t.Fatal(err)
			}
			sol, err := s.Solve(tc.t0, tc.t1, []*tensors.Tensor{tensors.FromValue(y0)}, nil)
			if err != nil {
				t.Fatal(err)
			}
			got := flat(t, sol.Y[0])
			want := make([]float64, len(y0))
			for i := range y0 {
				want[i] = y0[i] * math.Exp(-lambda*(tc.t1-tc.t0))
			}
			errAbs := maxAbsDiff(got, want)
			// Global error of dopri5 is a small multiple of the tolerance here.
			if errAbs > 100*tc.tol {
				t.Errorf("error %.3g too large for tol %.0e (stats %+v)", errAbs, tc.tol, sol.Stats)
			}
			st := sol.Stats
			if st.NFE != 2+6*(st.Accepted+st.Rejected) {
				t.Errorf("NFE %d != 2 + 6·(%d+%d)", st.NFE, st.Accepted, st.Rejected)
			}
			if len(sol.Times) != st.Accepted || sol.Times[0] != tc.t0 {
				t.Errorf("bad step record: %v", sol.Times)
			}
			last := len(sol.Times) - 1
			if end := sol.Times[last] + sol.Steps[last]; math.Abs(end-tc.t1) > 1e-15 {
				t.Errorf("last step ends at %g, want %g", end, tc.t1)
			}
			t.Logf("tol=%.0e: max error %.2e, %+v", tc.tol, errAbs, st)
		})
	}
}

func TestOscillatorErrorDecreasesWithTolerance(t *testing.T) {
	b := backendT(t)
	q0, p0 := []float64{1, 0.5, -0.3}, []float64{0, 0.2, 1}
	const omega = 2.0
	wantQ, wantP := oscillatorExact(q0, p0, omega, 1)
	prevErr, prevNFE := math.Inf(1), 0
	for _, tol := range []float64{1e-3, 1e-5, 1e-7, 1e-9} {
		s, err := New(b, nil, oscillator(omega), 2, Options{RTol: tol, ATol: tol})
		if err != nil {
			t.Fatal(err)
		}
		sol, err := s.Solve(0, 1, []*tensors.Tensor{tensors.FromValue(q0), tensors.FromValue(p0)}, nil)
		if err != nil {
			t.Fatal(err)
		}
		e := max(maxAbsDiff(flat(t, sol.Y[0]), wantQ), maxAbsDiff(flat(t, sol.Y[1]), wantP))
		t.Logf("tol %.0e: error %.2e, NFE %d", tol, e, sol.Stats.NFE)
		if e > 100*tol {
			t.Errorf("tol %.0e: error %.3g > 100·tol", tol, e)
		}
		if e >= prevErr || sol.Stats.NFE <= prevNFE {
			t.Errorf("tol %.0e: error %.3g (prev %.3g) and NFE %d (prev %d) should decrease/increase", tol, e, prevErr, sol.Stats.NFE, prevNFE)
		}
		prevErr, prevNFE = e, sol.Stats.NFE
	}
}

// TestDopri5MatchesTorchdiffeqControl compares the initial step and the accepted steps with golden
// values from a plain-Python transcription of torchdiffeq's dopri5 control flow (tuple state, mixed
// norm, _select_initial_step, _optimal_step_size) for the oscillator with q0=(1,.5,−.3),
// p0=(0,.2,1), ω=2, rtol=atol=1e-6. torchdiffeq's 8th step overshoots t=1 (and interpolates); ours
// is shortened to end at 1, so only the first 7 steps are compared.
func TestDopri5MatchesTorchdiffeqControl(t *testing.T) {
	golden := [][2]float64{
		{0, 0.020870025261008535},
		{0.020870025261008535, 0.12371137161833774},
		{0.14458139687934629, 0.13054712724006626},
		{0.27512852411941258, 0.13679051609349949},
		{0.41191904021291204, 0.14383119394152558},
		{0.55575023415443758, 0.15158458636944494},
		{0.70733482052388252, 0.15165412089360425},
	}
	b := backendT(t)
	s, err := New(b, nil, oscillator(2), 2, Options{RTol: 1e-6, ATol: 1e-6})
	if err != nil {
		t.Fatal(err)
	}
	sol, err := s.Solve(0, 1, []*tensors.Tensor{tensors.FromValue([]float64{1, 0.5, -0.3}), tensors.FromValue([]float64{0, 0.2, 1})}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if sol.Stats.Accepted != 8 || sol.Stats.Rejected != 0 || sol.Stats.NFE != 50 {
		t.Errorf("stats %+v, want 8 accepted, 0 rejected, 50 NFE", sol.Stats)
	}
	for i, g := range golden {
		if i >= len(sol.Times) {
			break
		}
		// The error estimate is a sum with heavy cancellation, so the summation order changes the
		// error ratio at the ~1e-9 relative level.
		if math.Abs(sol.Times[i]-g[0]) > 1e-8*g[1] || math.Abs(sol.Steps[i]-g[1]) > 1e-8*g[1] {
			t.Errorf("step %d: (t, dt) = (%.17g, %.17g), want (%.17g, %.17g)", i, sol.Times[i], sol.Steps[i], g[0], g[1])
		}
	}
	if last := sol.Steps[7]; math.Abs(sol.Times[7]+last-1) > 1e-15 {
		t.Errorf("last step does not end at t=1: %g + %g", sol.Times[7], last)
	}
}

// TestFixedStepOrder checks the empirical order of convergence log2(e(h)/e(h/2)).
func TestFixedStepOrder(t *testing.T) {
	b := backendT(t)
	q0, p0 := []float64{1, 0.5}, []float64{0, 0.2}
	const omega = 3.0
	wantQ, wantP := oscillatorExact(q0, p0, omega, 1)
	for _, tc := range []struct {
		method     string
		steps      []int
		order      float64
		nfePerStep int
	}{
		{"rk4", []int{8, 16, 32}, 4, 4},
		{"rk4classic", []int{8, 16, 32}, 4, 4},
		{"euler", []int{200, 400, 800}, 1, 1},
	} {
		t.Run(tc.method, func(t *testing.T) {
			var errs []float64
			for _, n := range tc.steps {
				s, err := New(b, nil, oscillator(omega), 2, Options{Method: tc.method, Steps: n})
				if err != nil {
					t.Fatal(err)
				}
				sol, err := s.Solve(0, 1, []*tensors.Tensor{tensors.FromValue(q0), tensors.FromValue(p0)}, nil)
				if err != nil {
					t.Fatal(err)
				}
				if sol.Stats.NFE != n*tc.nfePerStep || sol.Stats.Accepted != n {
					t.Errorf("stats %+v for %d steps", sol.Stats, n)
				}
				errs = append(errs, max(maxAbsDiff(flat(t, sol.Y[0]), wantQ), maxAbsDiff(flat(t, sol.Y[1]), wantP)))
			}
			for i := 1; i < len(errs); i++ {
				p := math.Log2(errs[i-1] / errs[i])
				t.Logf("%s: steps %d→%d: errors %.3g→%.3g, order %.3f", tc.method, tc.steps[i-1], tc.steps[i], errs[i-1], errs[i], p)
				if math.Abs(p-tc.order) > 0.3 {
					t.Errorf("observed order %.3f, want ≈ %g", p, tc.order)
				}
			}
		})
	}
}

func TestRK4IsThreeEighthsRule(t *testing.T) {
	// One step of y' = t² (y-independent) integrates cubics exactly with both rules; y' = t⁴ is
	// where they differ: 3/8 rule gives dt⁵·(1/8·(1/3)⁴·3 + 3/8·(2/3)⁴ + 1/8) for t∈[0,dt].
	b := backendT(t)
	f := func(_ *context.Context, tt *Node, y, _ []*Node) []*Node {
		return []*Node{BroadcastToShape(Square(Square(tt)), y[0].Shape())}
	}
	for _, tc := range []struct {
		method string
		want   float64
	}{
		{"rk4", 3./8*math.Pow(1./3, 4) + 3./8*math.Pow(2./3, 4) + 1./8},
		{"rk4classic", 2./3*math.Pow(0.5, 4) + 1./6},
	} {
		s, err := New(b, nil, f, 1, Options{Method: tc.method, Steps: 1})
		if err != nil {
			t.Fatal(err)
		}
		sol, err := s.Solve(0, 1, []*tensors.Tensor{tensors.FromValue([]float64{0})}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if got := flat(t, sol.Y[0])[0]; math.Abs(got-tc.want) > 1e-15 {
			t.Errorf("%s: ∫t⁴ one step = %.17g, want %.17g", tc.method, got, tc.want)
		}
	}
}

func TestMixedNormIsMaxOfPerTensorRMS(t *testing.T) {
	b := backendT(t)
	a := []float64{3, 4}          // RMS = sqrt(12.5) ≈ 3.54
	c := []float64{1, 1, 1, 1, 6} // RMS = sqrt(40/5) ≈ 2.83; max-abs 6 (a plain flat RMS would be ≈ 3.05)
	got := MustExecOnce(b, func(x, y *Node) *Node { return MixedNorm([]*Node{x, y}) }, a, c)
	if v := tensors.ToScalar[float64](got); math.Abs(v-math.Sqrt(12.5)) > 1e-14 {
		t.Errorf("MixedNorm = %v, want %v", v, math.Sqrt(12.5))
	}
}

// TestParametersFromContext integrates y' = y·A with A a variable of ctx (used in 6 stages of one
// graph): y(1) = y0·exp(A), A = [[a, b], [−b, a]] so exp(A) = eᵃ·[[cos b, sin b], [−sin b, cos b]].
func TestParametersFromContext(t *testing.T) {
	b := backendT(t)
	const a, w = -0.3, 1.7
	ctx := seededContext()
	ctx.In("lin").VariableWithValue("A", [][]float64{{a, w}, {-w, a}})
	f := func(ctx *context.Context, _ *Node, y, _ []*Node) []*Node {
		A := ctx.In("lin").VariableWithValue("A", [][]float64{{0, 0}, {0, 0}}).ValueGraph(y[0].Graph())
		return []*Node{MatMul(y[0], A)}
	}
	y0 := [][]float64{{1, 0}, {0.5, -2}}
	s, err := New(b, ctx, f, 1, Options{RTol: 1e-10, ATol: 1e-10})
	if err != nil {
		t.Fatal(err)
	}
	sol, err := s.Solve(0, 1, []*tensors.Tensor{tensors.FromValue(y0)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	e := math.Exp(a)
	c, sn := e*math.Cos(w), e*math.Sin(w)
	var want []float64
	for _, r := range y0 {
		want = append(want, r[0]*c-r[1]*sn, r[0]*sn+r[1]*c)
	}
	if d := maxAbsDiff(flat(t, sol.Y[0]), want); d > 1e-8 {
		t.Errorf("max error %.3g", d)
	}
}

func TestArgsAreConstantInputs(t *testing.T) {
	// y' = c with c passed as an arg: y(1) = y0 + c exactly (any method).
	b := backendT(t)
	f := func(_ *context.Context, _ *Node, _, args []*Node) []*Node { return []*Node{args[0]} }
	for _, method := range []string{"dopri5", "rk4", "euler"} {
		s, err := New(b, nil, f, 1, Options{Method: method, Steps: 3, RTol: 1e-6, ATol: 1e-6})
		if err != nil {
			t.Fatal(err)
		}
		sol, err := s.Solve(0, 1, []*tensors.Tensor{tensors.FromValue([]float64{1, 2})}, []*tensors.Tensor{tensors.FromValue([]float64{0.5, -1})})
		if err != nil {
			t.Fatal(err)
		}
		if d := maxAbsDiff(flat(t, sol.Y[0]), []float64{1.5, 1}); d > 1e-14 {
			t.Errorf("%s: error %.3g", method, d)
		}
	}
}

func TestErrors(t *testing.T) {
	b := backendT(t)
	// NaN once t > 0.5: every step crossing 0.5 is rejected until the step size collapses.
	nanAfterHalf := func(_ *context.Context, tt *Node, y, _ []*Node) []*Node {
		s := Sqrt(SubScalar(Neg(tt), -0.5)) // sqrt(0.5 − t)
		return []*Node{Mul(y[0], s)}
	}
	for _, tc := range []struct {
		name string
		f    Func
		opts Options
		want error
	}{
		{"max_steps", oscillator(20), Options{RTol: 1e-10, ATol: 1e-10, MaxSteps: 5}, ErrMaxSteps},
		{"step_too_small", nanAfterHalf, Options{RTol: 1e-6, ATol: 1e-6, MaxSteps: 100000}, ErrStepSizeTooSmall},
		{"min_step", nanAfterHalf, Options{RTol: 1e-6, ATol: 1e-6, MinStep: 1e-4}, ErrStepSizeTooSmall},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := 1
			y0 := []*tensors.Tensor{tensors.FromValue([]float64{1, 2})}
			if tc.name == "max_steps" {
				n = 2
				y0 = append(y0, tensors.FromValue([]float64{0, 1}))
			}
			s, err := New(b, nil, tc.f, n, tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			_, err = s.Solve(0, 1, y0, nil)
			if !errors.Is(err, tc.want) {
				t.Fatalf("got error %v, want %v", err, tc.want)
			}
			t.Logf("error: %v", err)
		})
	}
	if _, err := New(b, nil, decay(1), 1, Options{Method: "rk4"}); err == nil {
		t.Error("rk4 without Steps should fail")
	}
	if _, err := New(b, nil, decay(1), 1, Options{Method: "nope"}); err == nil {
		t.Error("unknown method should fail")
	}
}

// TestIntegrateReplaysSolve replays the accepted steps of an adaptive solve in one unrolled graph
// (the backprop path of the CNF) and checks it reproduces the solution.
func TestIntegrateReplaysSolve(t *testing.T) {
	b := backendT(t)
	f := oscillator(2)
	s, err := New(b, nil, f, 2, Options{RTol: 1e-5, ATol: 1e-5})
	if err != nil {
		t.Fatal(err)
	}
	q0, p0 := tensors.FromValue([]float64{1, 0.5}), tensors.FromValue([]float64{0, 0.2})
	sol, err := s.Solve(0, 1, []*tensors.Tensor{q0, p0}, nil)
	if err != nil {
		t.Fatal(err)
	}
	n := len(sol.Steps)
	args := []any{q0, p0}
	for i := range n {
		args = append(args, sol.Times[i], sol.Steps[i])
	}
	var nfe int
	out, err := context.ExecOnceN(b, seededContext(), func(ctx *context.Context, in []*Node) []*Node {
		ts, dts := make([]*Node, n), make([]*Node, n)
		for i := range n {
			ts[i], dts[i] = in[2+2*i], in[3+2*i]
		}
		var y []*Node
		y, nfe = Integrate(Dopri5, Bind(ctx, f, nil, false), ts, dts, in[:2])
		return y
	}, args...)
	if err != nil {
		t.Fatal(err)
	}
	if nfe != 1+6*n {
		t.Errorf("replay NFE %d, want %d", nfe, 1+6*n)
	}
	for i := range 2 {
		if d := maxAbsDiff(flat(t, out[i]), flat(t, sol.Y[i])); d > 1e-14 {
			t.Errorf("replay differs from solve by %.3g", d)
		}
	}
}

// TestNoPerStepTensors checks that the solver's live state tensors do not grow with the number of
// steps (what keeps the CNF adjoint memory flat).
func TestNoPerStepTensors(t *testing.T) {
	b := backendT(t)
	var peaks []int
	for _, tol := range []float64{1e-3, 1e-9} {
		s, err := New(b, nil, oscillator(5), 2, Options{RTol: tol, ATol: tol})
		if err != nil {
			t.Fatal(err)
		}
		sol, err := s.Solve(0, 1, []*tensors.Tensor{tensors.FromValue([]float64{1}), tensors.FromValue([]float64{0})}, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("tol %.0e: %+v", tol, sol.Stats)
		peaks = append(peaks, sol.Stats.PeakLiveTensors)
		if tol == 1e-9 && sol.Stats.Accepted < 20 {
			t.Errorf("expected many steps at tol 1e-9, got %d", sol.Stats.Accepted)
		}
	}
	if peaks[0] != peaks[1] || peaks[0] > 4*2+1 {
		t.Errorf("peak live tensors %v should be equal and ≤ 9 (y, k, candidate y1, k1, ratio)", peaks)
	}
}

func TestFirstStepOption(t *testing.T) {
	b := backendT(t)
	s, err := New(b, nil, decay(1), 1, Options{RTol: 1e-6, ATol: 1e-6, FirstStep: 0.01})
	if err != nil {
		t.Fatal(err)
	}
	sol, err := s.Solve(0, 1, []*tensors.Tensor{tensors.FromValue([]float64{1})}, nil)
	if err != nil {
		t.Fatal(err)
	}
	st := sol.Stats
	if sol.Steps[0] != 0.01 || st.NFE != 1+6*(st.Accepted+st.Rejected) {
		t.Errorf("first step %g, stats %+v: want 0.01 and NFE = 1 + 6·steps", sol.Steps[0], st)
	}
	if d := math.Abs(flat(t, sol.Y[0])[0] - math.Exp(-1)); d > 1e-5 {
		t.Errorf("error %.3g", d)
	}
}

func TestFloat32State(t *testing.T) {
	b := backendT(t)
	s, err := New(b, nil, decay(1), 1, Options{RTol: 1e-5, ATol: 1e-5})
	if err != nil {
		t.Fatal(err)
	}
	sol, err := s.Solve(0, 1, []*tensors.Tensor{tensors.FromValue([]float32{1, 2})}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if sol.Y[0].DType() != dtypes.Float32 {
		t.Fatalf("dtype %s", sol.Y[0].DType())
	}
	if d := maxAbsDiff(flat(t, sol.Y[0]), []float64{math.Exp(-1), 2 * math.Exp(-1)}); d > 1e-4 {
		t.Errorf("error %.3g", d)
	}
}

func ExampleSolver_Solve() {
	b := backend.MustNew("") // SimpleGo unless $GOMLX_BACKEND says otherwise
	// y' = −y, y(0) = 1.
	f := func(_ *context.Context, _ *Node, y, _ []*Node) []*Node { return []*Node{Neg(y[0])} }
	s, _ := New(b, nil, f, 1, Options{Method: "dopri5", RTol: 1e-8, ATol: 1e-8})
	sol, _ := s.Solve(0, 1, []*tensors.Tensor{tensors.FromValue([]float64{1})}, nil)
	fmt.Printf("y(1) = %.6f, accepted steps = %d\n", tensors.MustCopyFlatData[float64](sol.Y[0])[0], sol.Stats.Accepted)
	// Output: y(1) = 0.367879, accepted steps = 10
}
