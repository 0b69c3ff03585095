// Package egnn implements the E(n) equivariant graph neural network of Satorras, Hoogeboom &
// Welling, "E(n) Equivariant Graph Neural Networks" (ICML 2021), in the variant used by
// "E(n) Equivariant Normalizing Flows" (E-NF, NeurIPS 2021): the E_GCL layer of the official
// en_flows code (egnn/gcl.py) and the EGNN stack (egnn/models.py), as summarised in
// REFERENCE.md §4.4.
//
// Tensors are dense per graph: node features h (B,N,F), coordinates x (B,N,D) with D = 2 or 3,
// optional node mask (B,N,1) and edge mask (B,N,N,1), optional edge attributes (B,N,N,E). All
// messages are computed for every ordered pair (i,j) as (B,N,N,·) tensors (fine for N ≤ 29).
// Row i is the receiver and column j the sender, as in the PyTorch edge lists.
//
// One E_GCL layer computes, with d_ij = x_i − x_j (paper eqs. 3–6 with the E-NF modifications):
//
//	r_ij  = ‖d_ij‖²                                          (squared distance, "radial")
//	m_ij  = φ_e(h_i, h_j, r_ij, e_ij)                          (eq. 3; 2-layer MLP, act after both)
//	m_ij ← m_ij · sigmoid(w_att·m_ij + b_att)                  (attention, optional)
//	m_ij ← m_ij · edge_mask_ij
//	x_i  ← x_i + Σ_j d_ij/(√(r_ij+1e-8)+1) · φ_x(m_ij) · edge_mask_ij   (eq. 4, normalised)
//	       with φ_x(m) = tanh(w_c·act(W_c·m + b_c))·coords_range if Tanh, else w_c·act(W_c·m + b_c)
//	a_i  = Σ_j m_ij                                             (eq. 5, sum aggregation)
//	h_i  ← h_i + φ_h(h_i, a_i)                                  (eq. 6, recurrent residual)
//	h, x ← h·node_mask, x·node_mask
//
// Both updates use the layer-input h, x and m. The EGNN stack is
// h ← embedding(h_in); L × E_GCL (the same edge attributes feed every layer);
// h_out = embedding_out(h)·node_mask; it returns (h_out, x_L).
//
// Implementation notes (SimpleGo performance and second-order autodiff):
//
//   - The first edge Linear, W·[h_i, h_j, r_ij, e_ij] + b, is computed in factorised form
//     (W_hi·h_i + b) + W_hj·h_j + w_r·r_ij + w_e·e_ij: the two node terms are per-node
//     (B,N,H) matrix products broadcast to pairs, so the (B,N,N,2H+2) concatenation is never
//     built. Likewise node_mlp.0 is W_h·h_i + W_a·a_i + b. No Concatenate or Slice is used
//     anywhere: their gradients need Pad, which SimpleGo lacks, so they would break
//     gradients of gradients (Hutchinson-trace training).
//   - Broadcasting binary ops are ~10–15× slower than same-shape ops in SimpleGo, so the
//     per-edge scalars (attention, masks, 1/(norm+1), φ_x) are combined on (B,N,N,1)
//     tensors before touching (B,N,N,H) or (B,N,N,D) tensors.
//
// Variables are created on first use and reused on later calls (the graph functions may be
// called many times per graph, e.g. once per ODE-solver stage), using ctx.Checked(false).
// See ImportTorch for the variable layout and its mapping to PyTorch state-dict keys.
package egnn

import (
	"fmt"
	"math"

	"github.com/enflow/enflow/gomlx_models/fastvjp"
	"github.com/enflow/enflow/internal/graphutil"
	"github.com/gomlx/gomlx/pkg/core/dtypes"
	. "github.com/gomlx/gomlx/pkg/core/graph"
	"github.com/gomlx/gomlx/pkg/core/shapes"
	"github.com/gomlx/gomlx/pkg/ml/context"
	"github.com/gomlx/gomlx/pkg/ml/context/initializers"
)

func init() { fastvjp.Register() }

// Activation is an element-wise activation function.
type Activation func(x *Node) *Node

// SiLU is x·sigmoid(x) (PyTorch nn.SiLU), the activation used throughout E-NF.
func SiLU(x *Node) *Node { return Mul(x, Sigmoid(x)) }

// Config holds the EGNN hyperparameters (PyTorch names in parentheses).
type Config struct {
	Hidden    int  // hidden width (hidden_nf / nf)
	Layers    int  // number of E_GCL layers (n_layers)
	InNodeF   int  // input node features (in_node_nf)
	OutNodeF  int  // output node features (out_node_nf); 0 = no embedding_out, EGNN returns the hidden h
	EdgeAttrF int  // edge attribute features (in_edge_nf), 0 or 1
	Attention bool // attention gate on messages (attention)
	Tanh      bool // bound φ_x with tanh·CoordsRange (tanh)
	// CoordsRange is the per-layer coordinate range used when Tanh is set (coords_range_layer).
	// 0 means the PyTorch default 15/Layers.
	CoordsRange float64
	Recurrent   bool       // residual h update (recurrent); true in every E-NF model
	Act         Activation // nil means SiLU
	// DType of the variables and of the inputs; zero value (InvalidDType) means Float32.
	DType dtypes.DType
}

// ParticleConfig is the DW4/LJ13 E-NF dynamics network (REFERENCE §4.5): hidden 32, 3 layers,
// attention, tanh (coords_range 15/3 = 5), one input feature (time), edge attribute = squared
// distance, no output embedding (only x is used).
func ParticleConfig() Config {
	return Config{Hidden: 32, Layers: 3, InNodeF: 1, OutNodeF: 0, EdgeAttrF: 1, Attention: true, Tanh: true,
		Recurrent: true}
}

// QM9Config is the QM9 flow dynamics network (REFERENCE §4.1–4.2): hidden 64, 6 layers, attention,
// tanh (coords_range 2.5), 7 input/output features (5 one-hot + charge + time), edge attribute.
func QM9Config() Config {
	return Config{Hidden: 64, Layers: 6, InNodeF: 7, OutNodeF: 7, EdgeAttrF: 1, Attention: true, Tanh: true,
		Recurrent: true}
}

// DequantizerConfig is the QM9 dequantizer network (REFERENCE §4.3): hidden 64, 4 layers, no
// attention, no tanh, 6 → 12 features, no edge attribute.
func DequantizerConfig() Config {
	return Config{Hidden: 64, Layers: 4, InNodeF: 6, OutNodeF: 12, EdgeAttrF: 0, Recurrent: true}
}

// WithDefaults returns cfg with zero fields filled (Act = SiLU, DType = Float32,
// CoordsRange = 15/Layers).
func (cfg Config) WithDefaults() Config {
	if cfg.Act == nil {
		cfg.Act = SiLU
	}
	if cfg.DType == dtypes.InvalidDType {
		cfg.DType = dtypes.Float32
	}
	if cfg.CoordsRange == 0 && cfg.Layers > 0 {
		cfg.CoordsRange = 15 / float64(cfg.Layers)
	}
	return cfg
}

// Validate reports configuration errors.
func (cfg Config) Validate() error {
	switch {
	case cfg.Hidden <= 0:
		return fmt.Errorf("egnn: Hidden must be > 0, got %d", cfg.Hidden)
	case cfg.Layers <= 0:
		return fmt.Errorf("egnn: Layers must be > 0, got %d", cfg.Layers)
	case cfg.InNodeF <= 0:
		return fmt.Errorf("egnn: InNodeF must be > 0, got %d", cfg.InNodeF)
	case cfg.OutNodeF < 0:
		return fmt.Errorf("egnn: OutNodeF must be >= 0, got %d", cfg.OutNodeF)
	case cfg.EdgeAttrF != 0 && cfg.EdgeAttrF != 1:
		return fmt.Errorf("egnn: EdgeAttrF must be 0 or 1, got %d", cfg.EdgeAttrF)
	case cfg.DType != dtypes.InvalidDType && !cfg.DType.IsFloat():
		return fmt.Errorf("egnn: DType must be a float type, got %s", cfg.DType)
	}
	return nil
}

// LayerScope returns the scope name of E_GCL layer k ("gcl_k", as in PyTorch).
func LayerScope(k int) string { return fmt.Sprintf("gcl_%d", k) }

// Variable scopes and names. ImportTorch documents the PyTorch correspondence.
const (
	ScopeEmbedding    = "embedding"
	ScopeEmbeddingOut = "embedding_out"
	ScopeEdgeMLP0     = "edge_mlp_0"
	ScopeEdgeMLP2     = "edge_mlp_2"
	ScopeNodeMLP0     = "node_mlp_0"
	ScopeNodeMLP2     = "node_mlp_2"
	ScopeCoordMLP0    = "coord_mlp_0"
	ScopeCoordMLP2    = "coord_mlp_2"
	ScopeAttMLP0      = "att_mlp_0"
)

// Masks are the dense masks of a batch of graphs: Node (B,N,1) or nil, Edge (B,N,N,1).
type masks struct {
	node *Node // (B,N,1) or nil for all-real nodes
	edge *Node // (B,N,N,1) or (1,N,N,1); never nil after prepareMasks
}

// DefaultEdgeMask returns the edge mask used when none is given: 1 for every ordered pair i≠j
// whose two nodes are real (node_mask_i·node_mask_j·(1−δ_ij)), shape (B,N,N,1); with a nil
// nodeMask it is the constant (1,N,N,1) tensor 1−I. This equals E-NF's QM9 edge_mask and, for
// particle systems, its "all i≠j" edge list.
func DefaultEdgeMask(g *Graph, dtype dtypes.DType, n int, nodeMask *Node) *Node {
	return graphutil.PairMask(g, dtype, n, nodeMask)
}

func prepareMasks(dtype dtypes.DType, x, nodeMask, edgeMask *Node) masks {
	dims := x.Shape().Dimensions
	b, n := dims[0], dims[1]
	if nodeMask != nil {
		nodeMask = Reshape(graphutil.AsDType(nodeMask, dtype), b, n, 1)
	}
	if edgeMask == nil {
		edgeMask = DefaultEdgeMask(x.Graph(), dtype, n, nodeMask)
	} else {
		edgeMask = Reshape(graphutil.AsDType(edgeMask, dtype), b, n, n, 1)
	}
	return masks{node: nodeMask, edge: edgeMask}
}

func checkInputs(cfg Config, hFeatures int, h, x, edgeAttr *Node) {
	if h.Rank() != 3 || x.Rank() != 3 {
		panic(fmt.Sprintf("egnn: h and x must be (B,N,F) and (B,N,D), got %s and %s", h.Shape(), x.Shape()))
	}
	hd, xd := h.Shape().Dimensions, x.Shape().Dimensions
	if hd[0] != xd[0] || hd[1] != xd[1] || hd[2] != hFeatures {
		panic(fmt.Sprintf("egnn: h %s and x %s disagree on (B,N), or h does not have %d features", h.Shape(), x.Shape(), hFeatures))
	}
	if h.DType() != cfg.DType || x.DType() != cfg.DType {
		panic(fmt.Sprintf("egnn: inputs must have Config.DType %s, got h %s and x %s", cfg.DType, h.DType(), x.DType()))
	}
	if (edgeAttr == nil) != (cfg.EdgeAttrF == 0) {
		panic(fmt.Sprintf("egnn: Config.EdgeAttrF=%d but edgeAttr given=%v", cfg.EdgeAttrF, edgeAttr != nil))
	}
	if edgeAttr != nil {
		want := []int{xd[0], xd[1], xd[1], cfg.EdgeAttrF}
		if edgeAttr.Shape().Size() != xd[0]*xd[1]*xd[1]*cfg.EdgeAttrF || edgeAttr.DType() != cfg.DType {
			panic(fmt.Sprintf("egnn: edgeAttr must be %v %s, got %s", want, cfg.DType, edgeAttr.Shape()))
		}
	}
}

// EGNN runs the E-NF EGNN (models.py::EGNN.forward): embedding, cfg.Layers E_GCL layers and,
// if cfg.OutNodeF > 0, the output embedding masked by nodeMask.
//
//   - h: (B,N,InNodeF); x: (B,N,D).
//   - edgeAttr: (B,N,N,EdgeAttrF), or nil when EdgeAttrF = 0.
//   - nodeMask: (B,N,1) of 0/1, or nil for all-real nodes.
//   - edgeMask: (B,N,N,1), or nil for DefaultEdgeMask (all i≠j pairs of real nodes).
//
// It returns hOut (B,N,OutNodeF) — or the final hidden h (B,N,Hidden) when OutNodeF = 0 — and
// the final coordinates xL (B,N,D). Variables live under ctx (scopes "embedding", "gcl_k",
// "embedding_out"). Graph-building function: panics on invalid input.
func EGNN(ctx *context.Context, cfg Config, h, x, edgeAttr, nodeMask, edgeMask *Node) (hOut, xL *Node) {
	return EGNNWithPairs(ctx, cfg, h, x, Pairs{}, edgeAttr, nodeMask, edgeMask)
}

// Pairs holds the pair differences of a coordinate tensor x (B,N,D), as returned by PairDiff:
// Diff d_ij = x_i − x_j (B,N,N,D) and Radial r_ij = ‖d_ij‖² (B,N,N,1). The zero value means
// "not computed".
type Pairs struct {
	Diff, Radial *Node
}

// NewPairs returns the Pairs of x (PairDiff(x)).
func NewPairs(x *Node) Pairs {
	diff, radial := PairDiff(x)
	return Pairs{Diff: diff, Radial: radial}
}

// EGNNWithPairs is EGNN with the pair differences of its input x already computed (e.g. by a
// caller that also uses r_ij as the edge attribute): the first E_GCL layer, whose input is x,
// uses pairs instead of recomputing them; later layers compute their own from their updated
// coordinates. pairs must be NewPairs(x) of this same x (or the zero Pairs to compute them
// here); the result is identical to EGNN's.
func EGNNWithPairs(ctx *context.Context, cfg Config, h, x *Node, pairs Pairs, edgeAttr, nodeMask, edgeMask *Node) (hOut, xL *Node) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		panic(err)
	}
	checkInputs(cfg, cfg.InNodeF, h, x, edgeAttr)
	ctx = ctx.Checked(false)
	mk := prepareMasks(cfg.DType, x, nodeMask, edgeMask)
	checkPairs(x, pairs)
	if edgeAttr != nil && edgeAttr != pairs.Radial { // pairs.Radial is already (B,N,N,1)
		d := x.Shape().Dimensions
		edgeAttr = Reshape(edgeAttr, d[0], d[1], d[1], cfg.EdgeAttrF)
	}
	h = graphutil.Linear(ctx.In(ScopeEmbedding), cfg.DType, h, cfg.InNodeF, cfg.Hidden, true)
	for k := range cfg.Layers {
		h, x = layer(ctx.In(LayerScope(k)), cfg, h, x, pairs, edgeAttr, mk)
		pairs = Pairs{} // layer k+1 sees the updated x
	}
	if cfg.OutNodeF > 0 {
		h = graphutil.Linear(ctx.In(ScopeEmbeddingOut), cfg.DType, h, cfg.Hidden, cfg.OutNodeF, true)
		if mk.node != nil {
			h = Mul(h, mk.node)
		}
	}
	return h, x
}

// Layer applies one E_GCL layer (gcl.py::E_GCL.forward) with variables in ctx (e.g.
// ctx.In("gcl_0")). h is (B,N,Hidden); the other arguments are as for EGNN. It returns the
// updated (h, x).
func Layer(ctx *context.Context, cfg Config, h, x, edgeAttr, nodeMask, edgeMask *Node) (*Node, *Node) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		panic(err)
	}
	checkInputs(cfg, cfg.Hidden, h, x, edgeAttr)
	ctx = ctx.Checked(false)
	mk := prepareMasks(cfg.DType, x, nodeMask, edgeMask)
	if edgeAttr != nil {
		d := x.Shape().Dimensions
		edgeAttr = Reshape(edgeAttr, d[0], d[1], d[1], cfg.EdgeAttrF)
	}
	return layer(ctx, cfg, h, x, Pairs{}, edgeAttr, mk)
}

// checkPairs panics unless pairs is the zero Pairs or has the shapes of x's pair differences.
func checkPairs(x *Node, pairs Pairs) {
	if pairs.Diff == nil && pairs.Radial == nil {
		return
	}
	d := x.Shape().Dimensions
	b, n, dim := d[0], d[1], d[2]
	if pairs.Diff == nil || pairs.Radial == nil ||
		!pairs.Diff.Shape().Equal(shapes.Make(x.DType(), b, n, n, dim)) ||
		!pairs.Radial.Shape().Equal(shapes.Make(x.DType(), b, n, n, 1)) {
		panic(fmt.Sprintf("egnn: pairs must be NewPairs(x) for x %s", x.Shape()))
	}
}

// PairDiff returns d_ij = x_i − x_j, shape (B,N,N,D), and r_ij = ‖d_ij‖², shape (B,N,N,1).
func PairDiff(x *Node) (diff, radial *Node) { return graphutil.PairDiff(x) }

// edgePreactivation computes the first Linear of edge_mlp, W·[h_i, h_j, r_ij, e_ij] + b, in
// factorised form (h_i·W_hi + b) + h_j·W_hj + r_ij·w_r + e_ij·w_e, with variables in ctx
// (scope edge_mlp_0). h is (B,N,H), radial (B,N,N,1), edgeAttr nil or (B,N,N,E); the result is
// (B,N,N,H).
func edgePreactivation(ctx *context.Context, cfg Config, h, radial, edgeAttr *Node) *Node {
	g := h.Graph()
	dt := cfg.DType
	d := h.Shape().Dimensions
	b, n, H := d[0], d[1], cfg.Hidden
	edgeIn := 2*H + 1 + cfg.EdgeAttrF // fan-in of PyTorch edge_mlp.0
	hi := graphutil.AddBias(graphutil.Dense(h, graphutil.Param(ctx, g, dt, "w_hi", edgeIn, H, H)),
		graphutil.Param(ctx, g, dt, "b", edgeIn, H))
	hj := graphutil.Dense(h, graphutil.Param(ctx, g, dt, "w_hj", edgeIn, H, H))
	pre := Add(Reshape(hi, b, n, 1, H), Reshape(hj, b, 1, n, H))
	wr := graphutil.Param(ctx, g, dt, "w_r", edgeIn, 1, H)
	if edgeAttr == nil {
		return Add(pre, Mul(radial, Reshape(wr, 1, 1, 1, H)))
	}
	we := graphutil.Param(ctx, g, dt, "w_e", edgeIn, cfg.EdgeAttrF, H)
	switch {
	case edgeAttr == radial:
		// The edge attribute is this layer's own r_ij (the E-NF dynamics' first layer):
		// r·w_r + r·w_e = r·(w_r + w_e), one broadcast product over the pairs instead of two.
		return Add(pre, Mul(radial, Reshape(Add(wr, we), 1, 1, 1, H)))
	case cfg.EdgeAttrF == 1:
		pre = Add(pre, Mul(edgeAttr, Reshape(we, 1, 1, 1, H)))
	default:
		pre = Add(pre, graphutil.Dense(edgeAttr, we))
	}
	return Add(pre, Mul(radial, Reshape(wr, 1, 1, 1, H)))
}

// layer is E_GCL with prepared masks; edgeAttr is nil or (B,N,N,E); pairs is NewPairs(x) or
// the zero Pairs (then computed here).
func layer(ctx *context.Context, cfg Config, h, x *Node, pairs Pairs, edgeAttr *Node, mk masks) (*Node, *Node) {
	g := h.Graph()
	dt := cfg.DType
	act := cfg.Act
	dims := x.Shape().Dimensions
	b, n, dim := dims[0], dims[1], dims[2]
	H := cfg.Hidden

	if pairs.Diff == nil {
		pairs = NewPairs(x)
	}
	diff, radial := pairs.Diff, pairs.Radial

	// Edge MLP (eq. 3).
	pre := edgePreactivation(ctx.In(ScopeEdgeMLP0), cfg, h, radial, edgeAttr)
	m := act(graphutil.Linear(ctx.In(ScopeEdgeMLP2), dt, act(pre), H, H, true)) // (B,N,N,H)

	// Attention gate and edge mask, combined on the (B,N,N,1) scalars.
	gate := mk.edge
	if cfg.Attention {
		att := Sigmoid(graphutil.Linear(ctx.In(ScopeAttMLP0), dt, m, H, 1, true)) // (B,N,N,1)
		gate = Mul(att, mk.edge)
	}
	m = Mul(m, gate)

	// Coordinate update (eq. 4), x_i += Σ_j d_ij/(√(r_ij+1e-8)+1)·φ_x(m_ij)·edge_mask_ij.
	phi := act(graphutil.Linear(ctx.In(ScopeCoordMLP0), dt, m, H, H, true))
	c2 := ctx.In(ScopeCoordMLP2)
	lastBound := 0.001 * math.Sqrt(6/float64(H+1)) // xavier_uniform(gain=0.001)
	wc := c2.WithInitializer(initializers.RandomUniformFn(c2, -lastBound, lastBound)).
		VariableWithShape("w", shapes.Make(dt, H, 1)).ValueGraph(g)
	phi = graphutil.Dense(phi, wc) // (B,N,N,1)
	if cfg.Tanh {
		phi = MulScalar(Tanh(phi), cfg.CoordsRange)
	}
	norm := AddScalar(Sqrt(AddScalar(radial, 1e-8)), 1)
	s := Div(Mul(phi, mk.edge), norm)                              // (B,N,N,1)
	xNew := Add(x, Reshape(ReduceSum(Mul(diff, s), 2), b, n, dim)) // (B,N,D)

	// Node update (eqs. 5–6): a_i = Σ_j m_ij; h_i += W_n2·act(W_h·h_i + W_a·a_i + b_n1) + b_n2.
	agg := ReduceSum(m, 2) // (B,N,H)
	cn := ctx.In(ScopeNodeMLP0)
	nodeIn := 2 * H
	u := Add(graphutil.Dense(h, graphutil.Param(cn, g, dt, "w_h", nodeIn, H, H)),
		graphutil.Dense(agg, graphutil.Param(cn, g, dt, "w_a", nodeIn, H, H)))
	u = act(graphutil.AddBias(u, graphutil.Param(cn, g, dt, "b", nodeIn, H)))
	u = graphutil.Linear(ctx.In(ScopeNodeMLP2), dt, u, H, H, true)
	hNew := u
	if cfg.Recurrent {
		hNew = Add(h, u)
	}
	if mk.node != nil {
		hNew = Mul(hNew, mk.node)
		xNew = Mul(xNew, mk.node)
	}
	return hNew, xNew
}
