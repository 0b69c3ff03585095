package baselines

// Shared graph helpers: PyTorch-like Linear layers, pair geometry, masks and mean removal.
// Like the egnn and dynamics packages, only matrix products, element-wise ops, reductions,
// broadcasts and reshapes are used (no Slice/Concatenate, whose second-order gradients need Pad,
// missing in SimpleGo), so every Func can be differentiated twice (Hutchinson training with the
// adjoint method) and three times (simple dynamics is itself a gradient field, computed here in
// closed form rather than with Gradient).

import (
	"fmt"
	"math"

	"github.com/enflow/enflow/gomlx_models/fastvjp"
	"github.com/gomlx/gomlx/pkg/core/dtypes"
	. "github.com/gomlx/gomlx/pkg/core/graph" //nolint:revive // GoMLX idiom.
	"github.com/gomlx/gomlx/pkg/core/shapes"
	"github.com/gomlx/gomlx/pkg/core/tensors"
	"github.com/gomlx/gomlx/pkg/ml/context"
	"github.com/gomlx/gomlx/pkg/ml/context/initializers"
)

func init() { fastvjp.Register() }

// distEps is the ε of the reference distance d_ij = √(‖x_i − x_j‖² + ε) (en_flows
// deprecated/eqnode/distances.py::distances_from_vectors). It also keeps the gradient finite at
// the (masked) diagonal i = j.
const distEps = 1e-6

// defaultDType returns dt, or Float32 when unset.
func defaultDType(dt dtypes.DType) dtypes.DType {
	if dt == dtypes.InvalidDType {
		return dtypes.Float32
	}
	return dt
}

func checkDType(dt dtypes.DType) error {
	if dt != dtypes.Float32 && dt != dtypes.Float64 {
		return fmt.Errorf("baselines: DType must be Float32 or Float64, got %s", dt)
	}
	return nil
}

// checkState panics (graph-building convention) unless state is (B,N,D) of dtype dt.
func checkState(name string, dt dtypes.DType, state *Node) {
	if state.Rank() != 3 {
		panic(fmt.Sprintf("baselines.%s: state must be (B,N,D), got %s", name, state.Shape()))
	}
	if state.DType() != dt {
		panic(fmt.Sprintf("baselines.%s: state dtype %s differs from the config's DType %s", name, state.DType(), dt))
	}
}

// timeScalar returns t as a scalar of dtype dt.
func timeScalar(dt dtypes.DType, t *Node) *Node {
	if t.Shape().Size() != 1 {
		panic(fmt.Sprintf("baselines: t must be a scalar, got %s", t.Shape()))
	}
	t = Reshape(t)
	if t.DType() != dt {
		t = ConvertDType(t, dt)
	}
	return t
}

// floatTensor makes a tensor of dtype dt (Float32 or Float64) from float64 values.
func floatTensor(dt dtypes.DType, vals []float64, dims ...int) *tensors.Tensor {
	if dt == dtypes.Float32 {
		f := make([]float32, len(vals))
		for i, v := range vals {
			f[i] = float32(v)
		}
		return tensors.FromFlatDataAndDimensions(f, dims...)
	}
	return tensors.FromFlatDataAndDimensions(append([]float64(nil), vals...), dims...)
}

// param creates (or fetches) a variable with PyTorch nn.Linear initialisation
// U(−1/√fanIn, 1/√fanIn) (kaiming_uniform(a=√5) for weights, and the bias default).
func param(ctx *context.Context, g *Graph, dt dtypes.DType, name string, fanIn int, dims ...int) *Node {
	bound := 1 / math.Sqrt(float64(fanIn))
	return ctx.WithInitializer(initializers.RandomUniformFn(ctx, -bound, bound)).
		VariableWithShape(name, shapes.Make(dt, dims...)).ValueGraph(g)
}

// dense is x·w over the last axis of x (no bias); w is (in, out).
func dense(x, w *Node) *Node {
	return DotGeneral(x, []int{x.Rank() - 1}, nil, w, []int{0}, nil)
}

// addBias adds b (F) to x (..., F) through a rank-2 view (cheaper broadcast in SimpleGo).
func addBias(x, b *Node) *Node {
	dims := x.Shape().Dimensions
	f := dims[len(dims)-1]
	return Reshape(Add(Reshape(x, -1, f), Reshape(b, 1, f)), dims...)
}

// linear is PyTorch nn.Linear(in, out): variables "w" (in,out) and "b" (out) in ctx.
func linear(ctx *context.Context, dt dtypes.DType, x *Node, in, out int) *Node {
	g := x.Graph()
	return addBias(dense(x, param(ctx, g, dt, "w", in, in, out)), param(ctx, g, dt, "b", in, out))
}

// pairGeometry returns r_ij = x_i − x_j (B,N,N,D), s_ij = ‖r_ij‖² (B,N,N,1) and the reference's
// smoothed distance d_ij = √(s_ij + ε) (B,N,N,1).
func pairGeometry(x *Node) (r, s, d *Node) {
	dims := x.Shape().Dimensions
	b, n, dim := dims[0], dims[1], dims[2]
	r = Sub(Reshape(x, b, n, 1, dim), Reshape(x, b, 1, n, dim))
	s = Reshape(ReduceSum(Square(r), -1), b, n, n, 1)
	d = Sqrt(AddScalar(s, distEps))
	return r, s, d
}

// pairMask returns the (B,N,N,1) — or (1,N,N,1) without a node mask — mask of ordered pairs
// i ≠ j of real nodes: node_i·node_j·(1 − δ_ij). nodeMask is (B,N,1) or nil.
func pairMask(g *Graph, dt dtypes.DType, n int, nodeMask *Node) *Node {
	off := make([]float64, n*n)
	for i := range n {
		for j := range n {
			if i != j {
				off[i*n+j] = 1
			}
		}
	}
	e := Reshape(ConstAsDType(g, dt, off), 1, n, n, 1)
	if nodeMask == nil {
		return e
	}
	b := nodeMask.Shape().Dimensions[0]
	return Mul(Mul(Reshape(nodeMask, b, n, 1, 1), Reshape(nodeMask, b, 1, n, 1)), e)
}

// nodeMask3 reshapes a (B,N) mask to (B,N,1) of dtype dt; nil stays nil.
func nodeMask3(mask *Node, dt dtypes.DType, b, n int) *Node {
	if mask == nil {
		return nil
	}
	if mask.DType() != dt {
		mask = ConvertDType(mask, dt)
	}
	return Reshape(mask, b, n, 1)
}

// removeMean subtracts the per-sample mean over (real) nodes of v (B,N,D), keeping padded
// entries at zero (en_flows remove_mean / remove_mean_with_mask).
func removeMean(v, nodeMask *Node) *Node {
	if nodeMask == nil {
		return Sub(v, ReduceAndKeep(v, ReduceMean, 1))
	}
	count := ReduceAndKeep(nodeMask, ReduceSum, 1)
	count = Max(count, OnesLike(count))
	mean := Div(ReduceAndKeep(v, ReduceSum, 1), count)
	return Sub(v, Mul(mean, nodeMask))
}

// pairSum returns Σ_j w_ij·r_ij (B,N,D) for per-pair scalars w (B,N,N,1) and r (B,N,N,D).
func pairSum(w, r *Node) *Node {
	return ReduceSum(Mul(r, w), 2)
}

// linspace returns n evenly spaced values from lo to hi inclusive (torch.linspace).
func linspace(lo, hi float64, n int) []float64 {
	out := make([]float64, n)
	if n == 1 {
		out[0] = lo
		return out
	}
	step := (hi - lo) / float64(n-1)
	for i := range out {
		out[i] = lo + float64(i)*step
	}
	out[n-1] = hi
	return out
}

func constant(v float64, n int) []float64 {
	out := make([]float64, n)
	for i := range out {
		out[i] = v
	}
	return out
}
