package baselines

// Shared graph helpers: PyTorch-like Linear layers, pair geometry, masks and mean removal.
// Like the egnn and dynamics packages, only matrix products, element-wise ops, reductions,
// broadcasts and reshapes are used (no Slice/Concatenate, whose second-order gradients need Pad,
// missing in SimpleGo), so every Func can be differentiated twice (Hutchinson training with the
// adjoint method) and three times (simple dynamics is itself a gradient field, computed here in
// closed form rather than with Gradient).

import (
	"fmt"

	"github.com/enflow/enflow/gomlx_models/fastvjp"
	"github.com/gomlx/gomlx/pkg/core/dtypes"
	. "github.com/gomlx/gomlx/pkg/core/graph" //nolint:revive // GoMLX idiom.

	"github.com/enflow/enflow/internal/graphutil"
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

// pairGeometry returns r_ij = x_i − x_j (B,N,N,D), s_ij = ‖r_ij‖² (B,N,N,1) and the reference's
// smoothed distance d_ij = √(s_ij + ε) (B,N,N,1).
func pairGeometry(x *Node) (r, s, d *Node) {
	r, s = graphutil.PairDiff(x)
	d = Sqrt(AddScalar(s, distEps))
	return r, s, d
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
