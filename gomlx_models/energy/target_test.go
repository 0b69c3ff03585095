package energy

import (
	"math"
	"testing"

	. "github.com/gomlx/gomlx/pkg/core/graph" //nolint:revive // GoMLX idiom.
	"github.com/gomlx/gomlx/pkg/core/tensors"
)

func TestLinLogCut(t *testing.T) {
	// The identity "energy" of a [B, 1, 1] input: u = x.
	ident := func(x *Node) *Node { return Reshape(x, x.Shape().Dimensions[0]) }
	cut, err := LinLogCut(ident, 10, 1e3)
	if err != nil {
		t.Fatal(err)
	}
	xs := []float64{-5, 0, 10, 11, 20, 500, 999, 1e6, math.Inf(1)}
	g := func(x *Node) (*Node, *Node) {
		u := cut(x)
		return u, Gradient(ReduceAllSum(u), x)[0]
	}
	outs, err := ExecOnceN(backendT(t), func(x *Node) []*Node { u, d := g(x); return []*Node{u, d} },
		tensors.FromFlatDataAndDimensions(xs, len(xs), 1, 1))
	if err != nil {
		t.Fatal(err)
	}
	u := tensors.MustCopyFlatData[float64](outs[0])
	du := tensors.MustCopyFlatData[float64](outs[1])
	for i, x := range xs {
		want, wantD := x, 1.0
		if x > 10 {
			c := math.Min(x, 1e3)
			want, wantD = 10+math.Log1p(c-10), 1/(1+c-10)
			if x > 1e3 {
				wantD = 0
			}
		}
		if math.Abs(u[i]-want) > 1e-12 || math.Abs(du[i]-wantD) > 1e-12 || math.IsNaN(du[i]) {
			t.Errorf("u(%v) = %v (grad %v), want %v (grad %v)", x, u[i], du[i], want, wantD)
		}
	}
	for _, tc := range []struct {
		f         Func
		high, max float64
	}{{nil, 10, 1e3}, {ident, math.NaN(), 1e3}, {ident, 10, 5}, {ident, 10, math.Inf(1)}} {
		if _, err := LinLogCut(tc.f, tc.high, tc.max); err == nil {
			t.Errorf("LinLogCut(high %v, max %v, nil f %v): no error", tc.high, tc.max, tc.f == nil)
		}
	}
}
