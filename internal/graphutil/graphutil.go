// Package graphutil holds the small GoMLX helpers shared by the model packages (gomlx_models/…)
// and the training driver (pipeline/train): dense layers with PyTorch-style initialisation, mask
// reshapes, masked mean removal, pair differences and pair masks, constant selection matrices,
// and the host-side conversions between tensors and []float64.
//
// Graph-building functions follow the GoMLX convention and panic on invalid input; host-side
// functions return errors (the Must… variants panic). Only matrix products, element-wise ops,
// reductions and reshapes are used (no Slice/Concatenate, whose second-order gradients need Pad,
// which SimpleGo lacks).
package graphutil

import (
	"fmt"
	"math"

	"github.com/gomlx/gomlx/pkg/core/dtypes"
	. "github.com/gomlx/gomlx/pkg/core/graph" //nolint:revive // GoMLX idiom.
	"github.com/gomlx/gomlx/pkg/core/shapes"
	"github.com/gomlx/gomlx/pkg/ml/context"
	"github.com/gomlx/gomlx/pkg/ml/context/initializers"
)

// Param creates (or fetches) the variable name of shape dims in ctx with PyTorch nn.Linear
// initialisation U(−1/√fanIn, 1/√fanIn) (kaiming_uniform with a=√5 for weights, and the bias
// default), and returns its value in g.
func Param(ctx *context.Context, g *Graph, dtype dtypes.DType, name string, fanIn int, dims ...int) *Node {
	bound := 1 / math.Sqrt(float64(fanIn))
	return ctx.WithInitializer(initializers.RandomUniformFn(ctx, -bound, bound)).
		VariableWithShape(name, shapes.Make(dtype, dims...)).ValueGraph(g)
}

// Dense is x·w over the last axis of x (no bias); w is (in, out).
func Dense(x, w *Node) *Node {
	return DotGeneral(x, []int{x.Rank() - 1}, nil, w, []int{0}, nil)
}

// AddBias adds a bias vector b (F) to x (..., F). The broadcast is done on a rank-2 view, which
// is cheaper in SimpleGo than a higher-rank broadcast.
func AddBias(x, b *Node) *Node {
	dims := x.Shape().Dimensions
	f := dims[len(dims)-1]
	if x.Rank() == 2 {
		return Add(x, Reshape(b, 1, f))
	}
	return Reshape(Add(Reshape(x, -1, f), Reshape(b, 1, f)), dims...)
}

// Linear is a PyTorch nn.Linear(in, out) on the last axis of x, with variables "w" (in, out)
// and, if bias, "b" (out) in ctx (both initialised by Param with fan-in in).
func Linear(ctx *context.Context, dtype dtypes.DType, x *Node, in, out int, bias bool) *Node {
	g := x.Graph()
	y := Dense(x, Param(ctx, g, dtype, "w", in, in, out))
	if bias {
		y = AddBias(y, Param(ctx, g, dtype, "b", in, out))
	}
	return y
}

// Selection returns the constant (rows, cols) matrix with ones at (rowOff+k, colOff+k): x·S
// selects or places a block of channels as a matrix product (instead of Slice/Concatenate).
func Selection(g *Graph, dtype dtypes.DType, rows, cols, rowOff, colOff int) *Node {
	data := make([]float64, rows*cols)
	for k := 0; rowOff+k < rows && colOff+k < cols; k++ {
		data[(rowOff+k)*cols+colOff+k] = 1
	}
	return Reshape(ConstAsDType(g, dtype, data), rows, cols)
}

// AsDType converts x to dtype if it has another dtype.
func AsDType(x *Node, dtype dtypes.DType) *Node {
	if x.DType() == dtype {
		return x
	}
	return ConvertDType(x, dtype)
}

// NodeMask reshapes a (B,N) node mask to (B,N,1) of dtype; nil stays nil.
func NodeMask(mask *Node, dtype dtypes.DType, b, n int) *Node {
	if mask == nil {
		return nil
	}
	return Reshape(AsDType(mask, dtype), b, n, 1)
}

// TimeScalar returns the single-element tensor t as a scalar of dtype.
func TimeScalar(t *Node, dtype dtypes.DType) *Node {
	if t.Shape().Size() != 1 {
		panic(fmt.Sprintf("graphutil: t must be a scalar, got %s", t.Shape()))
	}
	return AsDType(Reshape(t), dtype)
}

// RemoveMean subtracts the per-sample mean over nodes of v (B,N,D): over all nodes when
// nodeMask is nil, otherwise over real nodes only (en_flows remove_mean_with_mask, v already
// masked), keeping padded entries at zero. nodeMask is (B,N,1). A sample with no real nodes
// gets zeros (PyTorch would give NaN).
func RemoveMean(v, nodeMask *Node) *Node {
	if nodeMask == nil {
		return Sub(v, ReduceAndKeep(v, ReduceMean, 1))
	}
	count := ReduceAndKeep(nodeMask, ReduceSum, 1)     // (B,1,1)
	count = Max(count, OnesLike(count))                // avoid 0/0 for empty samples
	mean := Div(ReduceAndKeep(v, ReduceSum, 1), count) // (B,1,D)
	return Sub(v, Mul(mean, nodeMask))
}

// PairDiff returns d_ij = x_i − x_j, shape (B,N,N,D), and r_ij = ‖d_ij‖², shape (B,N,N,1), for
// x (B,N,D).
func PairDiff(x *Node) (diff, radial *Node) {
	d := x.Shape().Dimensions
	b, n, dim := d[0], d[1], d[2]
	diff = Sub(Reshape(x, b, n, 1, dim), Reshape(x, b, 1, n, dim))
	radial = Reshape(ReduceSum(Square(diff), -1), b, n, n, 1)
	return diff, radial
}

// PairMask returns the mask of ordered pairs i ≠ j of real nodes, node_i·node_j·(1 − δ_ij),
// shape (B,N,N,1); with a nil nodeMask it is the constant (1,N,N,1) tensor 1 − I. nodeMask is
// (B,N,1) or nil.
func PairMask(g *Graph, dtype dtypes.DType, n int, nodeMask *Node) *Node {
	offDiag := make([]float64, n*n)
	for i := range n {
		for j := range n {
			if i != j {
				offDiag[i*n+j] = 1
			}
		}
	}
	e := Reshape(ConstAsDType(g, dtype, offDiag), 1, n, n, 1)
	if nodeMask == nil {
		return e
	}
	b := nodeMask.Shape().Dimensions[0]
	pair := Mul(Reshape(nodeMask, b, n, 1, 1), Reshape(nodeMask, b, 1, n, 1))
	return Mul(pair, e)
}
