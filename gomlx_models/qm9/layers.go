package qm9

import (
	"fmt"
	"math"

	"github.com/enflow/enflow/gomlx_models/egnn"
	"github.com/gomlx/gomlx/pkg/core/dtypes"
	. "github.com/gomlx/gomlx/pkg/core/graph" //nolint:revive // GoMLX idiom.
	"github.com/gomlx/gomlx/pkg/core/shapes"
	"github.com/gomlx/gomlx/pkg/ml/context"
	"github.com/gomlx/gomlx/pkg/ml/context/initializers"
)

// Graph functions of the QM9 E-NF besides the dynamics: ActNormPositionAndFeatures and the
// ArgmaxAndVariationalDequantizer (REFERENCE §3.3, §4.3, §4.6). Channels are split and joined
// with constant 0/1 selection matrices (matrix products) instead of Slice/Concatenate, whose
// gradients need Pad (missing in SimpleGo), so everything stays differentiable for training.

// Shapes of the QM9 state: 3 position channels, then K one-hot atom types and 1 integer charge
// (the atomic number). QM9 has K = 5 (H, C, N, O, F); a model of other molecules has one
// one-hot channel per element of its Config.Elements, so the graph functions below read K from
// their inputs' shapes. The constants are QM9's.
const (
	PosDims     = 3
	NumTypes    = 5
	NumFeatures = NumTypes + 1          // one-hot + integer charge
	Channels    = PosDims + NumFeatures // 9
)

// Variable scopes (under the model's root context).
const (
	ScopeActNorm     = "actnorm"     // x_log_s (1,1), h_t (1,6), h_log_s (1,6), as PyTorch
	ScopeDequantizer = "dequantizer" // EGNN under dequantizer/egnn (PyTorch net_fn.egnn.)
	ScopeFlow        = "flow"        // dynamics EGNN under flow/egnn (PyTorch transformations.1.odefunc.dynamics.egnn.)
)

// ActNorm variable names.
const (
	VarXLogS = "x_log_s"
	VarHT    = "h_t"
	VarHLogS = "h_log_s"
)

var log2Pi = math.Log(2 * math.Pi)

// sel returns the constant (rows, cols) matrix with ones at (rowOff+k, colOff+k) for k < n.
func sel(g *Graph, dt dtypes.DType, rows, cols, rowOff, colOff, n int) *Node {
	data := make([]float64, rows*cols)
	for k := range n {
		data[(rowOff+k)*cols+colOff+k] = 1
	}
	return Reshape(ConstAsDType(g, dt, data), rows, cols)
}

// matmulLast is x·w over the last axis of x.
func matmulLast(x, w *Node) *Node {
	return DotGeneral(x, []int{x.Rank() - 1}, nil, w, []int{0}, nil)
}

// columns returns x[..., from:from+n] (as a matrix product).
func columns(x *Node, from, n int) *Node {
	c := x.Shape().Dimensions[x.Rank()-1]
	return matmulLast(x, sel(x.Graph(), x.DType(), c, n, from, 0, n))
}

// place returns x (…, n) placed at channels [at, at+n) of a width-c tensor, zeros elsewhere.
func place(x *Node, c, at int) *Node {
	n := x.Shape().Dimensions[x.Rank()-1]
	return matmulLast(x, sel(x.Graph(), x.DType(), n, c, 0, at, n))
}

// mask3 reshapes a (B,N) mask to (B,N,1) in dtype.
func mask3(mask *Node, dt dtypes.DType) *Node {
	d := mask.Shape().Dimensions
	if mask.DType() != dt {
		mask = ConvertDType(mask, dt)
	}
	return Reshape(mask, d[0], d[1], 1)
}

// actNormVars returns x_log_s, h_t and h_log_s as rank-1 nodes of sizes 1, F and F (F = K + 1
// features). The variables have PyTorch's shapes (1,1), (1,F), (1,F) and start at zero; their
// values come from a checkpoint or from the data-dependent initialisation (Model.InitActNorm).
func actNormVars(ctx *context.Context, g *Graph, dt dtypes.DType, feats int) (xLogS, hT, hLogS *Node) {
	c := ctx.In(ScopeActNorm).Checked(false).WithInitializer(initializers.Zero)
	xLogS = Reshape(c.VariableWithShape(VarXLogS, shapes.Make(dt, 1, 1)).ValueGraph(g), 1)
	hT = Reshape(c.VariableWithShape(VarHT, shapes.Make(dt, 1, feats)).ValueGraph(g), feats)
	hLogS = Reshape(c.VariableWithShape(VarHLogS, shapes.Make(dt, 1, feats)).ValueGraph(g), feats)
	return
}

// actNormChannels returns the per-channel log-scale s (3+F) = [x_log_s ×3, h_log_s] and shift
// t (3+F) = [0, 0, 0, h_t].
func actNormChannels(ctx *context.Context, g *Graph, dt dtypes.DType, feats int) (s, t *Node) {
	xLogS, hT, hLogS := actNormVars(ctx, g, dt, feats)
	ch := PosDims + feats
	ones := make([]float64, ch)
	for k := range PosDims {
		ones[k] = 1
	}
	s = Add(Mul(xLogS, ConstAsDType(g, dt, ones)), Reshape(place(Reshape(hLogS, 1, feats), ch, PosDims), ch))
	t = Reshape(place(Reshape(hT, 1, feats), ch, PosDims), ch)
	return
}

// ActNormForward applies ActNormPositionAndFeatures (ENF flows/actnorm.py) to xh (B,N,3+F) with
// mask (B,N): h ← (h − h_t)/exp(h_log_s), x ← x/exp(x_log_s), masked. It returns the output and
// the log-determinant per molecule (B,) = −Σ_nodes [Σ_F h_log_s + 3·x_log_s] (ENF's convention:
// N·3 position dimensions, not (N−1)·3; REFERENCE §3.3).
func ActNormForward(ctx *context.Context, xh, mask *Node) (y, logDet *Node) {
	g, dt := xh.Graph(), xh.DType()
	ch := checkState(xh)
	s, t := actNormChannels(ctx, g, dt, ch-PosDims)
	m := mask3(mask, dt)
	y = Mul(Mul(Sub(xh, Reshape(t, 1, 1, ch)), Reshape(Exp(Neg(s)), 1, 1, ch)), m)
	n := ReduceSum(m, 1, 2) // nodes per molecule (B,)
	logDet = Mul(n, Neg(ReduceAllSum(s)))
	return y, logDet
}

// ActNormReverse inverts ActNormForward: h ← h·exp(h_log_s) + h_t, x ← x·exp(x_log_s), masked.
func ActNormReverse(ctx *context.Context, y, mask *Node) *Node {
	g, dt := y.Graph(), y.DType()
	ch := checkState(y)
	s, t := actNormChannels(ctx, g, dt, ch-PosDims)
	xh := Add(Mul(y, Reshape(Exp(s), 1, 1, ch)), Reshape(t, 1, 1, ch))
	return Mul(xh, mask3(mask, dt))
}

// checkState checks that xh is (B, N, 3+K+1) with K ≥ 1 and returns its channel count.
func checkState(xh *Node) int {
	if xh.Rank() != 3 || xh.Shape().Dimensions[2] < PosDims+2 {
		panic(fmt.Sprintf("qm9: state must be (B,N,3+K+1) with K ≥ 1 atom types, got %s", xh.Shape()))
	}
	return xh.Shape().Dimensions[2]
}

// logSigmoid is log σ(x) = −softplus(−x), computed stably.
func logSigmoid(x *Node) *Node { return Neg(Softplus(Neg(x))) }

// Dequantized is the output of Dequantize.
type Dequantized struct {
	V        *Node // (B,N,K+1) = [v_cat (K), v_int (1)], masked
	LogQ     *Node // (B,) log q(v | x, h)
	Mu       *Node // (B,N,K+1)
	LogSigma *Node // (B,N,K+1)
}

// Dequantize is ENF's ArgmaxAndVariationalDequantizer.forward (flows/dequantize.py; REFERENCE
// §3.3, §4.3). Inputs: x (B,N,3) centred positions (Å), oneHot (B,N,K) (K = 5 for QM9),
// charge (B,N,1) raw atomic numbers, mask (B,N), eps (B,N,K+1) standard normal noise (zeros for
// the deterministic u = mu). cfg is the dequantizer EGNN configuration (egnn.DequantizerConfig()); its variables
// live under ctx.In(ScopeDequantizer).In("egnn").
//
//	(mu, log σ) = EGNN(x, [one_hot, charge])  (6 + 6 channels, masked)
//	u = mu + exp(log σ)·ε,      log q(u) = Σ_masked (−½ε² − ½ln 2π) − Σ log σ
//	integer:     v_int = charge + sigmoid(u_int),  ldj_int = Σ mask·(log σ(u_int) + log σ(−u_int))
//	categorical: T = u at the hot index; v_hot = T; v_i = T − softplus(T − u_i) otherwise,
//	             ldj_cat = Σ_{i≠hot} mask·log σ(T − u_i)
//	log q(v) = log q(u) − ldj_int − ldj_cat
func Dequantize(ctx *context.Context, cfg egnn.Config, x, oneHot, charge, mask, eps *Node) Dequantized {
	dt := x.DType()
	types := oneHot.Shape().Dimensions[2]
	feats := types + 1
	m := mask3(mask, dt)
	h := Mul(Add(place(oneHot, feats, 0), place(charge, feats, types)), m)
	xm := Mul(x, m)
	out, _ := egnn.EGNN(ctx.In(ScopeDequantizer).In("egnn"), cfg, h, xm, nil, m, nil) // (B,N,2F), masked
	mu := columns(out, 0, feats)
	logSigma := columns(out, feats, feats)
	eps = Mul(eps, m)
	u := Add(mu, Mul(Exp(logSigma), eps))
	logQu := Sub(ReduceSum(Mul(AddScalar(MulScalar(Square(eps), -0.5), -0.5*log2Pi), m), 1, 2), ReduceSum(logSigma, 1, 2))

	uCat := columns(u, 0, types)
	uInt := columns(u, types, 1)
	// Integer part: sigmoid lifting.
	ldjInt := ReduceSum(Mul(Add(logSigmoid(uInt), logSigmoid(Neg(uInt))), m), 1, 2)
	vInt := Add(charge, Sigmoid(uInt))
	// Categorical part: argmax partition.
	T := ReduceAndKeep(Mul(oneHot, uCat), ReduceSum, -1) // (B,N,1)
	notHot := OneMinus(oneHot)
	diff := Sub(T, uCat) // broadcasts (B,N,1) − (B,N,5)
	vCat := Add(Mul(oneHot, uCat), Mul(Mul(m, notHot), Sub(T, Softplus(diff))))
	ldjCat := ReduceSum(Mul(Mul(notHot, logSigmoid(diff)), m), 1, 2)
	v := Mul(Add(place(vCat, feats, 0), place(vInt, feats, types)), m)
	return Dequantized{V: v, LogQ: Sub(logQu, Add(ldjInt, ldjCat)), Mu: mu, LogSigma: logSigma}
}
