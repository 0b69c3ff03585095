package realnvp

import (
	"math"
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/gomlx/gomlx/backends"
	"github.com/gomlx/gomlx/pkg/core/dtypes"
	. "github.com/gomlx/gomlx/pkg/core/graph" //nolint:revive // GoMLX idiom.
	"github.com/gomlx/gomlx/pkg/core/tensors"
	"github.com/gomlx/gomlx/pkg/ml/context"
	"gonum.org/v1/gonum/mat"

	"github.com/enflow/enflow/gomlx_models/backend"
	"github.com/enflow/enflow/gomlx_models/energy"
	"github.com/enflow/enflow/internal/graphutil"
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

const testSeed = 20211206

// newRandomModel builds a float64 flow for DW4-shaped data (4 × 2) and sets every variable,
// including the zero-initialised heads, to random values so the flow is far from the identity.
func newRandomModel(t *testing.T, layers int, scale float64) *Model {
	t.Helper()
	ctx := context.New()
	ctx.SetParam(context.ParamInitialSeed, int64(testSeed))
	m, err := New(backendT(t), ctx, Config{Nodes: 4, Dim: 2, Layers: layers, Hidden: 16, DType: dtypes.Float64})
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(3, 4))
	for _, v := range m.Variables() {
		n := v.Shape().Size()
		vals := make([]float64, n)
		for i := range vals {
			vals[i] = scale * rng.NormFloat64()
		}
		v.SetValue(graphutil.MustTensor(dtypes.Float64, vals, v.Shape().Dimensions...))
	}
	return m
}

func randomX(b int, seed uint64) *tensors.Tensor {
	rng := rand.New(rand.NewPCG(seed, 1))
	vals := make([]float64, b*8)
	for i := range vals {
		vals[i] = 1.5 * rng.NormFloat64()
	}
	return graphutil.MustTensor(dtypes.Float64, vals, b, 4, 2)
}

// TestInvertibility: Invert(Forward(x)) = x and the two log-determinants cancel, to 1e-6.
func TestInvertibility(t *testing.T) {
	m := newRandomModel(t, 6, 0.5)
	x := randomX(16, 1)
	out, err := context.ExecOnceN(m.backend, m.ctx, func(ctx *context.Context, x *Node) []*Node {
		z, ld := Forward(ctx, m.cfg, x)
		xr, ldInv := Invert(ctx, m.cfg, z)
		return []*Node{xr, Add(ld, ldInv), ld}
	}, x)
	if err != nil {
		t.Fatal(err)
	}
	xs, xr := graphutil.MustFloats(x), graphutil.MustFloats(out[0])
	var worst float64
	for i := range xs {
		worst = max(worst, math.Abs(xs[i]-xr[i]))
	}
	if worst > 1e-6 {
		t.Errorf("round trip error %g > 1e-6", worst)
	}
	for i, s := range graphutil.MustFloats(out[1]) {
		if math.Abs(s) > 1e-6 {
			t.Errorf("sample %d: forward + inverse log-det = %g, want 0", i, s)
		}
	}
	var spread float64
	for _, l := range graphutil.MustFloats(out[2]) {
		spread = max(spread, math.Abs(l))
	}
	if spread < 0.1 {
		t.Errorf("log-determinants all ≈ 0 (%g): the random flow is too close to the identity for this test", spread)
	}
}

// TestLogDetMatchesAutodiff compares the closed-form log-determinant with log|det J| of the
// Jacobian ∂z/∂x built row by row by autodiff (float64).
func TestLogDetMatchesAutodiff(t *testing.T) {
	m := newRandomModel(t, 8, 0.4)
	const B, d = 5, 8
	x := randomX(B, 2)
	out, err := context.ExecOnceN(m.backend, m.ctx, func(ctx *context.Context, x *Node) []*Node {
		z, ld := Forward(ctx, m.cfg, x)
		res := []*Node{ld}
		for k := range d {
			e := make([]float64, d)
			e[k] = 1
			zk := ReduceAllSum(Mul(z, Reshape(Const(x.Graph(), e), 1, d)))
			res = append(res, Reshape(Gradient(zk, x)[0], B, d)) // row k of J for each sample
		}
		return res
	}, x)
	if err != nil {
		t.Fatal(err)
	}
	ld := graphutil.MustFloats(out[0])
	rows := make([][]float64, d)
	for k := range d {
		rows[k] = graphutil.MustFloats(out[1+k])
	}
	for b := range B {
		j := mat.NewDense(d, d, nil)
		for k := range d {
			for c := range d {
				j.Set(k, c, rows[k][b*d+c])
			}
		}
		logAbs, _ := mat.LogDet(j)
		if math.Abs(logAbs-ld[b]) > 1e-9*max(1, math.Abs(logAbs)) {
			t.Errorf("sample %d: log-det %.12g, autodiff log|det J| %.12g", b, ld[b], logAbs)
		}
	}
}

// TestSampleDensityMatchesLikelihood: the density returned with a sample equals LogLikelihood of
// that sample; a fresh flow is the identity with a standard normal density.
func TestSampleDensityMatchesLikelihood(t *testing.T) {
	m := newRandomModel(t, 4, 0.5)
	x, logq, err := m.SampleWithLogDensity(7, 9)
	if err != nil {
		t.Fatal(err)
	}
	ll, err := m.LogLikelihood(x)
	if err != nil {
		t.Fatal(err)
	}
	for i := range ll {
		if math.Abs(ll[i]-logq[i]) > 1e-8 {
			t.Errorf("sample %d: log q from sampling %g, from the likelihood %g", i, logq[i], ll[i])
		}
	}
	ctx := context.New()
	ctx.SetParam(context.ParamInitialSeed, int64(testSeed))
	fresh, err := New(backendT(t), ctx, Config{Nodes: 4, Dim: 2, DType: dtypes.Float64})
	if err != nil {
		t.Fatal(err)
	}
	x0 := randomX(3, 5)
	l0, err := fresh.LogLikelihood(x0)
	if err != nil {
		t.Fatal(err)
	}
	xs := graphutil.MustFloats(x0)
	for b := range 3 {
		var sq float64
		for _, v := range xs[b*8 : (b+1)*8] {
			sq += v * v
		}
		want := -0.5*sq - 4*math.Log(2*math.Pi)
		if math.Abs(l0[b]-want) > 1e-9 {
			t.Errorf("fresh flow: log q = %g, standard normal %g", l0[b], want)
		}
	}
}

// TestGradientsFiniteDifferences checks the NLL and KL gradients along a random direction.
func TestGradientsFiniteDifferences(t *testing.T) {
	m := newRandomModel(t, 4, 0.3)
	if err := m.SetTarget(energy.Target{Name: "dw4", Energy: energy.DW4Params.Energy, Temperature: 1.3}); err != nil {
		t.Fatal(err)
	}
	x := randomX(9, 7)
	vars := m.Variables()
	base := make([][]float64, len(vars))
	dirs := make([][]float64, len(vars))
	rng := rand.New(rand.NewPCG(8, 8))
	for i, v := range vars {
		val, err := v.Value()
		if err != nil {
			t.Fatal(err)
		}
		base[i] = graphutil.MustFloats(val)
		dirs[i] = make([]float64, len(base[i]))
		for j := range dirs[i] {
			dirs[i][j] = rng.NormFloat64()
		}
	}
	set := func(h float64) {
		for i, v := range vars {
			vals := make([]float64, len(base[i]))
			for j := range vals {
				vals[j] = base[i][j] + h*dirs[i][j]
			}
			v.SetValue(graphutil.MustTensor(dtypes.Float64, vals, v.Shape().Dimensions...))
		}
	}
	dot := func(grads []*tensors.Tensor) float64 {
		var s float64
		for i, g := range grads {
			for j, gv := range graphutil.MustFloats(g) {
				s += gv * dirs[i][j]
			}
		}
		graphutil.Free(grads...)
		return s
	}
	for _, tc := range []struct {
		name string
		f    func() (float64, []*tensors.Tensor)
	}{
		{"nll", func() (float64, []*tensors.Tensor) {
			l, g, err := m.LossAndGrad(x)
			if err != nil {
				t.Fatal(err)
			}
			return l, g
		}},
		{"kl", func() (float64, []*tensors.Tensor) {
			r, g, err := m.KLLossAndGrad(16, 4)
			if err != nil {
				t.Fatal(err)
			}
			return r.Loss, g
		}},
	} {
		set(0)
		_, g := tc.f()
		analytic := dot(g)
		const h = 1e-6
		set(h)
		lp, g := tc.f()
		graphutil.Free(g...)
		set(-h)
		lm, g := tc.f()
		graphutil.Free(g...)
		fd := (lp - lm) / (2 * h)
		if math.Abs(fd-analytic) > 1e-5*max(1, math.Abs(fd)) {
			t.Errorf("%s: directional derivative %.10g, finite differences %.10g", tc.name, analytic, fd)
		}
	}
	set(0)
}

func TestConfigErrors(t *testing.T) {
	for _, c := range []Config{{Nodes: 1, Dim: 1}, {Nodes: 4, Dim: 2, ScaleRange: -1}, {Nodes: 4, Dim: 2, DType: dtypes.Int32}} {
		if _, err := New(backendT(t), nil, c); err == nil {
			t.Errorf("New(%+v) accepted", c)
		}
	}
	m := newRandomModel(t, 2, 0.1)
	if _, err := m.LogLikelihood(graphutil.MustTensor(dtypes.Float64, make([]float64, 6), 1, 3, 2)); err == nil {
		t.Error("wrong shape accepted")
	}
	if _, _, err := m.KLLossAndGrad(4, 1); err == nil {
		t.Error("KL without a target accepted")
	}
}
