// Package prior implements the base distributions of the E(n) equivariant normalizing flow
// (REFERENCE.md §3.3):
//
//   - the centre-of-gravity-free (CoG-free) Gaussian over positions, a standard normal restricted to
//     the (N−1)·D-dimensional subspace of mean-free configurations:
//     log p(x) = −½‖x‖² − ½·(N−1)·D·ln 2π, with x already mean-free and N the number of (unmasked)
//     nodes; sampled by drawing N·D i.i.d. N(0,1) values and subtracting the node mean;
//   - the standard normal over node features (QM9), masked: log p(h) = Σ_{unmasked} −½h² − ½ln 2π.
//
// Log densities are graph functions returning one value per sample (nats). Masks are (B, N) of 0/1
// in the dtype of the data, or nil (all nodes present). Samplers run in Go from an explicit
// *rand.Rand so that results are reproducible from a seed.
package prior

import (
	"fmt"
	"math"
	"math/rand/v2"

	"github.com/gomlx/gomlx/pkg/core/dtypes"
	. "github.com/gomlx/gomlx/pkg/core/graph" //nolint:revive // GoMLX idiom.
	"github.com/gomlx/gomlx/pkg/core/tensors"

	"github.com/enflow/enflow/internal/graphutil"
)

// Log2Pi is ln 2π.
var Log2Pi = math.Log(2 * math.Pi)

// mask3 converts a (B, N) mask to (B, N, 1) in dtype; nil stays nil.
func mask3(mask *Node, dtype dtypes.DType) *Node {
	if mask == nil {
		return nil
	}
	return graphutil.NodeMask(mask, dtype, mask.Shape().Dim(0), mask.Shape().Dim(1))
}

// NumNodes returns the number of (unmasked) nodes of each sample, shape (B,), in x's dtype.
// x is (B, N, C).
func NumNodes(x, mask *Node) *Node {
	if mask == nil {
		return BroadcastToDims(Scalar(x.Graph(), x.DType(), x.Shape().Dim(1)), x.Shape().Dim(0))
	}
	if mask.DType() != x.DType() {
		mask = ConvertDType(mask, x.DType())
	}
	return ReduceSum(mask, 1)
}

// RemoveMean subtracts the node mean of each sample over the unmasked nodes and zeroes the masked
// ones: mask·(x − (Σ_n mask_n·x_n)/N), for x (B, N, D) (REFERENCE.md §3.3; ENF
// remove_mean_with_mask, which assumes x is already masked). Zeroing masked nodes (rather than
// passing them through) also keeps their entries out of Jacobian traces.
func RemoveMean(x, mask *Node) *Node {
	if mask == nil {
		return Sub(x, ReduceAndKeep(x, ReduceMean, 1))
	}
	m := mask3(mask, x.DType())
	n := ExpandAxes(NumNodes(x, mask), -1)  // (B, 1)
	mean := Div(ReduceSum(Mul(x, m), 1), n) // (B, D)
	return Mul(Sub(x, ExpandAxes(mean, 1)), m)
}

// CoGFreeLogProb is the log density of the centre-of-gravity-free Gaussian, per sample (B,):
//
//	log p(x) = −½‖x‖² − ½·(N−1)·D·ln 2π,
//
// where x (B, N, D) is assumed mean-free (over the unmasked nodes) and N is counted from the mask.
// This is a normalized density on the (N−1)·D-dimensional mean-free subspace (ENF
// center_gravity_zero_gaussian_log_likelihood_with_mask). Masked entries are excluded from ‖x‖².
func CoGFreeLogProb(x, mask *Node) *Node {
	d := float64(x.Shape().Dim(2))
	sq := Square(x)
	if m := mask3(mask, x.DType()); m != nil {
		sq = Mul(sq, m)
	}
	r2 := ReduceSum(sq, 1, 2)
	dof := MulScalar(AddScalar(NumNodes(x, mask), -1), d)
	return Sub(MulScalar(r2, -0.5), MulScalar(dof, 0.5*Log2Pi))
}

// StandardNormalLogProb is the masked standard normal log density per sample (B,) of h (B, N, F):
// Σ_{unmasked n, f} (−½h² − ½ln 2π) (ENF standard_gaussian_log_likelihood_with_mask).
func StandardNormalLogProb(h, mask *Node) *Node {
	elem := AddScalar(MulScalar(Square(h), -0.5), -0.5*Log2Pi)
	if m := mask3(mask, h.DType()); m != nil {
		elem = Mul(elem, m)
	}
	return ReduceSum(elem, 1, 2)
}

// PositionFeatureLogProb is the prior of a state whose first posDims channels are positions
// (CoG-free Gaussian) and whose remaining channels are features (standard normal), per sample (B,).
// posDims == C (or 0) means positions only. Channels are selected by multiplying with constant 0/1
// selectors instead of Slice, so the result can be differentiated twice on backends without Pad
// (SimpleGo).
func PositionFeatureLogProb(z, mask *Node, posDims int) *Node {
	c := z.Shape().Dim(2)
	if posDims <= 0 || posDims >= c {
		return CoGFreeLogProb(z, mask)
	}
	g := z.Graph()
	selPos := make([]float64, c)
	for i := range posDims {
		selPos[i] = 1
	}
	pos := Reshape(ConstAsDType(g, z.DType(), selPos), 1, 1, c) // same rank: GoMLX only broadcasts scalars or size-1 axes
	feat := OneMinus(pos)
	zPos, zFeat := Mul(z, pos), Mul(z, feat)
	// CoG part: ‖x‖² over position channels with (N−1)·posDims degrees of freedom.
	m := mask3(mask, z.DType())
	sqPos, sqFeat := Square(zPos), Square(zFeat)
	if m != nil {
		sqPos, sqFeat = Mul(sqPos, m), Mul(sqFeat, m)
	}
	n := NumNodes(z, mask)
	logPos := Sub(MulScalar(ReduceSum(sqPos, 1, 2), -0.5),
		MulScalar(AddScalar(n, -1), 0.5*float64(posDims)*Log2Pi))
	logFeat := Sub(MulScalar(ReduceSum(sqFeat, 1, 2), -0.5),
		MulScalar(n, 0.5*float64(c-posDims)*Log2Pi))
	return Add(logPos, logFeat)
}

// MaskValues returns the B·N values of a (B, N) mask tensor as float64 (all ones for nil).
func MaskValues(mask *tensors.Tensor, b, n int) ([]float64, error) {
	if mask == nil {
		out := make([]float64, b*n)
		for i := range out {
			out[i] = 1
		}
		return out, nil
	}
	if dims := mask.Shape().Dimensions; len(dims) != 2 || dims[0] != b || dims[1] != n {
		return nil, fmt.Errorf("prior: mask shape %s, want (%d, %d)", mask.Shape(), b, n)
	}
	if dt := mask.DType(); dt != dtypes.Float32 && dt != dtypes.Float64 {
		return nil, fmt.Errorf("prior: mask dtype %s not supported (want Float32 or Float64)", dt)
	}
	return graphutil.Floats(mask)
}

// FromFloat64 builds a tensor of the given float dtype (Float32 or Float64) from float64 data
// (graphutil.Tensor, kept for the callers of this package).
func FromFloat64(dtype dtypes.DType, data []float64, dims ...int) (*tensors.Tensor, error) {
	return graphutil.Tensor(dtype, data, dims...)
}

// SamplePositionFeature draws z (B, N, C) whose first posDims channels follow the CoG-free Gaussian
// (i.i.d. N(0,1), masked, minus the masked node mean) and whose other channels are masked i.i.d.
// N(0,1) (ENF PositionFeaturePrior.sample). posDims ≤ 0 or ≥ C means positions only.
func SamplePositionFeature(rng *rand.Rand, dtype dtypes.DType, b, n, c, posDims int, mask *tensors.Tensor) (*tensors.Tensor, error) {
	if posDims <= 0 || posDims > c {
		posDims = c
	}
	m, err := MaskValues(mask, b, n)
	if err != nil {
		return nil, err
	}
	data := make([]float64, b*n*c)
	for i := range data {
		data[i] = rng.NormFloat64() * m[i/c]
	}
	for bi := range b {
		cnt := 0.0
		for ni := range n {
			cnt += m[bi*n+ni]
		}
		if cnt == 0 {
			continue
		}
		for ci := range posDims {
			sum := 0.0
			for ni := range n {
				sum += data[(bi*n+ni)*c+ci]
			}
			mean := sum / cnt
			for ni := range n {
				data[(bi*n+ni)*c+ci] -= mean * m[bi*n+ni]
			}
		}
	}
	return FromFloat64(dtype, data, b, n, c)
}

// CenterPositions subtracts in place, from each of the first posDims channels of one
// configuration z (n nodes × c channels, row-major, all nodes real), its mean over the nodes:
// the projection onto the centre-of-gravity-free subspace, on the host.
func CenterPositions(z []float64, n, c, posDims int) {
	for ci := range posDims {
		mean := 0.0
		for ni := range n {
			mean += z[ni*c+ci]
		}
		mean /= float64(n)
		for ni := range n {
			z[ni*c+ci] -= mean
		}
	}
}

// SampleCoGFree draws x (B, N, D) from the CoG-free Gaussian: i.i.d. N(0,1), masked, then the
// masked node mean is subtracted.
func SampleCoGFree(rng *rand.Rand, dtype dtypes.DType, b, n, d int, mask *tensors.Tensor) (*tensors.Tensor, error) {
	return SamplePositionFeature(rng, dtype, b, n, d, d, mask)
}

// SampleStandardNormal draws h (B, N, F) i.i.d. N(0,1), zero on masked nodes.
func SampleStandardNormal(rng *rand.Rand, dtype dtypes.DType, b, n, f int, mask *tensors.Tensor) (*tensors.Tensor, error) {
	m, err := MaskValues(mask, b, n)
	if err != nil {
		return nil, err
	}
	data := make([]float64, b*n*f)
	for i := range data {
		data[i] = rng.NormFloat64() * m[i/f]
	}
	return FromFloat64(dtype, data, b, n, f)
}
