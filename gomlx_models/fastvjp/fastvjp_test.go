package fastvjp

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/enflow/enflow/gomlx_models/backend"
	"github.com/gomlx/gomlx/backends"
	"github.com/gomlx/gomlx/pkg/core/dtypes"
	"github.com/gomlx/gomlx/pkg/core/graph"
	"github.com/gomlx/gomlx/pkg/core/shapes"
	"github.com/gomlx/gomlx/pkg/core/tensors"
)

// product describes one matrix product O = DotGeneral(L, lc, lb, R, rc, rb).
type product struct {
	name           string
	lDims, rDims   []int
	lc, lb, rc, rb []int
	useDot         bool // build with graph.Dot instead of graph.DotGeneral
}

func (p product) build(l, r *graph.Node) *graph.Node {
	if p.useDot {
		return graph.Dot(l, r).Product()
	}
	return graph.DotGeneral(l, p.lc, p.lb, r, p.rc, p.rb)
}

func (p product) outDims() []int {
	lc, rc := p.lc, p.rc
	if p.useDot {
		lc, rc = []int{len(p.lDims) - 1}, []int{0}
	}
	var dims []int
	for _, a := range p.lb {
		dims = append(dims, p.lDims[a])
	}
	for _, a := range crossAxes(len(p.lDims), lc, p.lb) {
		dims = append(dims, p.lDims[a])
	}
	for _, a := range crossAxes(len(p.rDims), rc, p.rb) {
		dims = append(dims, p.rDims[a])
	}
	return dims
}

var products = []product{
	{name: "dense_rank2", lDims: []int{5, 4}, rDims: []int{4, 3}, lc: []int{1}, rc: []int{0}},
	{name: "dense_rank3", lDims: []int{2, 5, 4}, rDims: []int{4, 3}, lc: []int{2}, rc: []int{0}},
	{name: "dense_rank4", lDims: []int{2, 3, 3, 4}, rDims: []int{4, 6}, lc: []int{3}, rc: []int{0}},
	{name: "dense_rank4_to1", lDims: []int{2, 3, 3, 4}, rDims: []int{4, 1}, lc: []int{3}, rc: []int{0}},
	{name: "dense_k1", lDims: []int{2, 3, 3, 1}, rDims: []int{1, 5}, lc: []int{3}, rc: []int{0}},
	{name: "batched_bmm", lDims: []int{3, 4, 5}, rDims: []int{3, 5, 2}, lc: []int{2}, lb: []int{0}, rc: []int{1}, rb: []int{0}},
	{name: "batched_edge_sum", lDims: []int{2, 4, 4}, rDims: []int{2, 4, 3}, lc: []int{2}, lb: []int{0}, rc: []int{1}, rb: []int{0}},
	{name: "scrambled", lDims: []int{2, 3, 4, 5}, rDims: []int{5, 6, 2, 3}, lc: []int{3, 1}, lb: []int{0}, rc: []int{0, 3}, rb: []int{2}},
	{name: "scrambled2", lDims: []int{2, 3, 4, 5}, rDims: []int{5, 6, 2, 3}, lc: []int{1, 3}, lb: []int{0}, rc: []int{3, 0}, rb: []int{2}},
	{name: "outer", lDims: []int{3}, rDims: []int{4}},
	{name: "dot_mm", lDims: []int{3, 4}, rDims: []int{4, 2}, useDot: true},
	{name: "dot_mv", lDims: []int{3, 4}, rDims: []int{4}, useDot: true},
	{name: "dot_vv", lDims: []int{4}, rDims: []int{4}, useDot: true},
}

func randTensor(rng *rand.Rand, dims ...int) *tensors.Tensor {
	n := 1
	for _, d := range dims {
		n *= d
	}
	data := make([]float64, n)
	for i := range data {
		data[i] = rng.NormFloat64()
	}
	return tensors.FromFlatDataAndDimensions(data, dims...)
}

func flat(t *tensors.Tensor) []float64 { return tensors.MustCopyFlatData[float64](t) }

func withFlat(t *tensors.Tensor, f func([]float64)) *tensors.Tensor {
	d := flat(t)
	f(d)
	return tensors.FromFlatDataAndDimensions(d, t.Shape().Dimensions...)
}

// run executes fn(l, r, c) -> outputs on the backend, with the fast VJP on or off.
func run(t *testing.T, b backends.Backend, fast bool, fn func(l, r, c *graph.Node) []*graph.Node, args ...any) [][]float64 {
	t.Helper()
	if fast {
		Register()
	} else {
		Restore()
		defer Register()
	}
	e, err := graph.NewExec(b, fn)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Finalize()
	outs, err := e.Exec(args...)
	if err != nil {
		t.Fatal(err)
	}
	res := make([][]float64, len(outs))
	for i, o := range outs {
		res[i] = flat(o)
	}
	return res
}

func maxRelDiff(a, b []float64) float64 {
	var num, den float64
	for i := range a {
		num = math.Max(num, math.Abs(a[i]-b[i]))
		den = math.Max(den, math.Max(math.Abs(a[i]), math.Abs(b[i])))
	}
	if den == 0 {
		return num
	}
	return num / den
}

func dot(a, b []float64) float64 {
	s := 0.0
	for i := range a {
		s += a[i] * b[i]
	}
	return s
}

// TestFirstAndSecondOrder checks, for every product shape:
//   - first order: ∂y/∂L, ∂y/∂R of y = Σ C⊙tanh(O) equal the stock GoMLX VJP and central
//     finite differences along random directions;
//   - second order: ∂z/∂L, ∂z/∂R of z = Σ (∂y/∂L)² + Σ (∂y/∂R)² equal the stock VJP
//     and finite differences of z.
func TestFirstAndSecondOrder(t *testing.T) {
	b := backend.MustNew("")
	defer b.Finalize()
	for _, p := range products {
		t.Run(p.name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(1, uint64(len(p.name))))
			L, R := randTensor(rng, p.lDims...), randTensor(rng, p.rDims...)
			outDims := p.outDims()
			C := randTensor(rng, outDims...)
			yFn := func(l, r, c *graph.Node) *graph.Node {
				return graph.ReduceAllSum(graph.Mul(c, graph.Tanh(p.build(l, r))))
			}
			first := func(l, r, c *graph.Node) []*graph.Node {
				y := yFn(l, r, c)
				g := graph.Gradient(y, l, r)
				return []*graph.Node{y, g[0], g[1]}
			}
			zFn := func(l, r, c *graph.Node) *graph.Node {
				g := graph.Gradient(yFn(l, r, c), l, r)
				return graph.Add(graph.ReduceAllSum(graph.Square(g[0])), graph.ReduceAllSum(graph.Square(g[1])))
			}
			second := func(l, r, c *graph.Node) []*graph.Node {
				z := zFn(l, r, c)
				g := graph.Gradient(z, l, r)
				return []*graph.Node{z, g[0], g[1]}
			}
			for _, order := range []struct {
				name string
				fn   func(l, r, c *graph.Node) []*graph.Node
			}{{"first", first}, {"second", second}} {
				fastRes := run(t, b, true, order.fn, L, R, C)
				stockRes := run(t, b, false, order.fn, L, R, C)
				for i := 1; i <= 2; i++ {
					if d := maxRelDiff(fastRes[i], stockRes[i]); d > 1e-12 {
						t.Errorf("%s order: gradient #%d differs from stock VJP: rel diff %g", order.name, i, d)
					}
				}
				// Finite differences of the scalar along random directions.
				scalar := func(l, r, c *graph.Node) []*graph.Node { return order.fn(l, r, c)[:1] }
				const eps = 1e-5
				for which, base := range []*tensors.Tensor{L, R} {
					U := randTensor(rng, base.Shape().Dimensions...)
					u := flat(U)
					shift := func(s float64) *tensors.Tensor {
						return withFlat(base, func(d []float64) {
							for i := range d {
								d[i] += s * u[i]
							}
						})
					}
					var plus, minus [][]float64
					if which == 0 {
						plus = run(t, b, true, scalar, shift(eps), R, C)
						minus = run(t, b, true, scalar, shift(-eps), R, C)
					} else {
						plus = run(t, b, true, scalar, L, shift(eps), C)
						minus = run(t, b, true, scalar, L, shift(-eps), C)
					}
					fd := (plus[0][0] - minus[0][0]) / (2 * eps)
					an := dot(fastRes[1+which], u)
					if math.Abs(fd-an) > 1e-6*math.Max(1, math.Abs(an)) {
						t.Errorf("%s order, operand %d: finite difference %.10g vs analytic %.10g", order.name, which, fd, an)
					}
				}
			}
		})
	}
}

// TestFallbackOnUnknownNode checks that parse failures fall back to the stock rule.
func TestParseDotGeneral(t *testing.T) {
	b := backend.MustNew("")
	defer b.Finalize()
	for _, p := range products {
		if p.useDot {
			continue
		}
		g := graph.NewGraph(b, "parse")
		l := graph.Parameter(g, "l", tensorsShape(p.lDims))
		r := graph.Parameter(g, "r", tensorsShape(p.rDims))
		o := p.build(l, r).WithAlias(`lhs=[#999], lhsContractingAxes=[7], lhsBatchAxes=[], rhs=[#998], rhsContractingAxes=[7], rhsBatchAxes=[])`)
		got, ok := parseDotGeneral(o)
		if !ok {
			t.Errorf("%s: parse failed on %s", p.name, o)
			continue
		}
		if fmt.Sprint(got.lc, got.lb, got.rc, got.rb) != fmt.Sprint(nz(p.lc), nz(p.lb), nz(p.rc), nz(p.rb)) {
			t.Errorf("%s: parsed %v, want %v %v %v %v", p.name, got, p.lc, p.lb, p.rc, p.rb)
		}
		g.Finalize()
	}
}

func nz(a []int) []int {
	if a == nil {
		return []int{}
	}
	return a
}

func tensorsShape(dims []int) shapes.Shape { return shapes.Make(dtypes.Float64, dims...) }

// TestParseDotGeneralConfig checks that products with a requested output or accumulator dtype are
// left to the stock VJP, and plain ones are not.
func TestParseDotGeneralConfig(t *testing.T) {
	b := backend.MustNew("")
	defer b.Finalize()
	g := graph.NewGraph(b, "config")
	defer g.Finalize()
	l := graph.Parameter(g, "l", tensorsShape([]int{3, 4}))
	r := graph.Parameter(g, "r", tensorsShape([]int{4, 2}))
	for _, tc := range []struct {
		name   string
		node   *graph.Node
		wantOK bool
	}{
		{"default", graph.Dot(l, r).Product(), true},
		{"output float64", graph.Dot(l, r).WithOutputDType(dtypes.Float64).Product(), false},
	} {
		if _, ok := parseDotGeneral(tc.node); ok != tc.wantOK {
			t.Errorf("%s: parseDotGeneral ok = %v, want %v (node %s)", tc.name, ok, tc.wantOK, tc.node)
		}
	}
}
