package cnf

import (
	"math"
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/gomlx/gomlx/backends"
	"github.com/gomlx/gomlx/pkg/core/dtypes"
	. "github.com/gomlx/gomlx/pkg/core/graph" //nolint:revive // GoMLX idiom.
	"github.com/gomlx/gomlx/pkg/core/shapes"
	"github.com/gomlx/gomlx/pkg/core/tensors"
	"github.com/gomlx/gomlx/pkg/ml/context"

	"github.com/enflow/enflow/gomlx_models/backend"
	"github.com/enflow/enflow/gomlx_models/prior"
)

// testBackend is the project backend (backend.New: $GOMLX_BACKEND or SimpleGo with sequential op
// scheduling, which avoids SimpleGo's worker-pool deadlock on gradient graphs).
var testBackend = sync.OnceValues(func() (backends.Backend, error) { return backend.New("") })

func backendT(t testing.TB) backends.Backend {
	t.Helper()
	b, err := testBackend()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

const testHidden = 5

// testDynamics is a small translation-invariant velocity field with parameters in ctx and a
// dense Jacobian (nodes are coupled through a pooled term), standing in for dynamics.Particle:
//
//	u = x − mean(x);  h = tanh(u·W1 + t·b1);  s = Σ_n mask·tanh(u·U)
//	f = RemoveMean(mask·(h·W2 + s·V + u·A))
func testDynamics(ctx *context.Context, t, x, mask *Node) *Node {
	g := x.Graph()
	dt := x.DType()
	C := x.Shape().Dim(2)
	ctx = ctx.In("testdyn")
	w := func(name string, dims ...int) *Node {
		return ctx.VariableWithShape(name, shapes.Make(dt, dims...)).ValueGraph(g)
	}
	u := prior.RemoveMean(x, mask)
	var m3 *Node
	if mask != nil {
		m3 = ExpandAxes(mask, -1)
	}
	h := Tanh(Add(MatMul(u, w("W1", C, testHidden)), Mul(t, Reshape(w("b1", testHidden), 1, 1, testHidden))))
	p := Tanh(MatMul(u, w("U", C, testHidden)))
	if m3 != nil {
		p = Mul(p, m3)
	}
	s := ReduceAndKeep(p, ReduceSum, 1) // (B, 1, H)
	out := Add(Add(MatMul(h, w("W2", testHidden, C)), MatMul(s, w("V", testHidden, C))), MatMul(u, w("A", C, C)))
	if m3 != nil {
		out = Mul(out, m3)
	}
	return prior.RemoveMean(out, mask)
}

// newTestContext creates the variables of testDynamics with seeded values of a scale that makes
// the flow clearly non-trivial.
func newTestContext(c int, dtype dtypes.DType, seed uint64) *context.Context {
	ctx := seededContext()
	rng := rand.New(rand.NewPCG(seed, 99))
	set := func(name string, scale float64, dims ...int) {
		n := 1
		for _, d := range dims {
			n *= d
		}
		data := make([]float64, n)
		for i := range data {
			data[i] = scale * rng.NormFloat64()
		}
		v, err := prior.FromFloat64(dtype, data, dims...)
		if err != nil {
			panic(err)
		}
		ctx.In("testdyn").VariableWithValue(name, v)
	}
	set("W1", 0.8, c, testHidden)
	set("b1", 0.5, testHidden)
	set("U", 0.8, c, testHidden)
	set("W2", 0.5, testHidden, c)
	set("V", 0.3, testHidden, c)
	set("A", 0.4, c, c)
	return ctx
}

// testData returns mean-free x (B, N, C) and a mask where sample b has N − (b mod 2) nodes.
func testData(t testing.TB, b, n, c int, dtype dtypes.DType, withMask bool, seed uint64) (x, mask *tensors.Tensor) {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, 7))
	if withMask {
		mv := make([]float64, b*n)
		for bi := range b {
			for i := range n - bi%2 {
				mv[bi*n+i] = 1
			}
		}
		var err error
		if mask, err = prior.FromFloat64(dtype, mv, b, n); err != nil {
			t.Fatal(err)
		}
	}
	x, err := prior.SampleCoGFree(rng, dtype, b, n, c, mask)
	if err != nil {
		t.Fatal(err)
	}
	return x, mask
}

func relErr(got, want []float64) float64 {
	var num, den float64
	for i := range got {
		num += (got[i] - want[i]) * (got[i] - want[i])
		den += want[i] * want[i]
	}
	return math.Sqrt(num / max(den, 1e-300))
}

func maxAbsDiff(a, b []float64) float64 {
	m := 0.0
	for i := range a {
		m = max(m, math.Abs(a[i]-b[i]))
	}
	return m
}
