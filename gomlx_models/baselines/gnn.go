package baselines

import (
	"fmt"

	"github.com/enflow/enflow/gomlx_models/dynamics"
	"github.com/gomlx/gomlx/pkg/core/dtypes"
	. "github.com/gomlx/gomlx/pkg/core/graph" //nolint:revive // GoMLX idiom.
	"github.com/gomlx/gomlx/pkg/ml/context"

	"github.com/enflow/enflow/internal/graphutil"
)

// ScopeGNN is the sub-scope of ctx holding the GNF dynamics' GNN. Inside it the layout follows
// en_flows' module names: "embedding", "gcl_k/{edge_mlp_0,edge_mlp_2,att_mlp_0,node_mlp_0,
// node_mlp_2}", "embedding_out".
const ScopeGNN = "gnn"

// GNNConfig configures the non-equivariant GNN dynamics of the GNF baselines (en_flows
// EGNN_dynamics with mode "gnn_dynamics": egnn/models.py::GNN with egnn/gcl.py::GCL layers).
type GNNConfig struct {
	Hidden    int  `json:"hidden"`    // hidden width (en_flows --nf 32)
	Layers    int  `json:"layers"`    // GCL layers (en_flows --n_layers 3)
	Attention bool `json:"attention"` // attention gate on messages (GNF-att, GNF-att-aug)
	// Recurrent adds the residual h ← h + φ_h(h, a) (en_flows recurrent=True).
	Recurrent bool `json:"recurrent"`
	// DType of variables and states; zero value means Float32. Not serialised.
	DType dtypes.DType `json:"-"`
}

// GNFConfig is the en_flows DW4/LJ13 GNF network: hidden 32, 3 layers, recurrent, SiLU, with
// or without attention (GNF-att / GNF).
func GNFConfig(attention bool) GNNConfig {
	return GNNConfig{Hidden: 32, Layers: 3, Attention: attention, Recurrent: true}
}

// Validate reports configuration errors.
func (c GNNConfig) Validate() error {
	if c.Hidden <= 0 || c.Layers <= 0 {
		return fmt.Errorf("baselines: GNNConfig hidden %d and layers %d must be > 0", c.Hidden, c.Layers)
	}
	return checkDType(defaultDType(c.DType))
}

// silu is x·sigmoid(x) (PyTorch nn.SiLU).
func silu(x *Node) *Node { return Mul(x, Sigmoid(x)) }

// GNN returns the GNF velocity field: a plain (not equivariant) message-passing network on the
// fully connected graph (all i ≠ j) whose node input is [t, x_i] (en_flows h = cat([t, x])):
//
//	h⁰_i  = W_emb·[t, x_i] + b_emb
//	m_ij  = SiLU(W_e2·SiLU(W_e1·[h_i, h_j] + b_e1) + b_e2)                (edge_mlp)
//	m_ij ← m_ij · sigmoid(w_att·m_ij + b_att)                             (attention, optional)
//	a_i   = Σ_{j≠i} m_ij                                                  (sum aggregation)
//	h_i  ← h_i + W_n2·SiLU(W_n1·[h_i, a_i] + b_n1) + b_n2                 (node_mlp, recurrent)
//	v_i   = W_out·h^L_i + b_out,  then the per-sample mean over nodes is removed.
//
// Coordinates enter as plain features, so the field is permutation equivariant and (after the
// mean removal) mean-free, but neither rotation equivariant nor translation invariant: that is
// what the GNF-att-aug baseline compensates with random rotations of the training data. The
// concatenations are computed as sums of per-block matrix products (no Concatenate), so the
// parameters map one-to-one to the PyTorch Linear layers (W·[a, b] = W_a·a + W_b·b).
//
// state is (B,N,D), mask (B,N) or nil; padded nodes take no part in messages, get zero velocity
// and are excluded from the mean. Variables live under ctx.In(ScopeGNN).
func GNN(cfg GNNConfig) dynamics.Func {
	cfg.DType = defaultDType(cfg.DType)
	if err := cfg.Validate(); err != nil {
		panic(err)
	}
	return func(ctx *context.Context, t, state, mask *Node) *Node {
		checkState("GNN", cfg.DType, state)
		ctx = ctx.In(ScopeGNN).Checked(false)
		g := state.Graph()
		dt := cfg.DType
		dims := state.Shape().Dimensions
		b, n, dim := dims[0], dims[1], dims[2]
		H := cfg.Hidden
		nm := graphutil.NodeMask(mask, dt, b, n)
		x := state
		if nm != nil {
			x = Mul(x, nm)
		}

		// Embedding of [t, x_i]: x·W_x + t·w_t + b (fan-in 1 + D, as nn.Linear(1+D, H)).
		ce := ctx.In("embedding")
		fanIn := 1 + dim
		h := graphutil.Dense(x, graphutil.Param(ce, g, dt, "w_x", fanIn, dim, H))
		tw := Mul(graphutil.TimeScalar(t, dt), graphutil.Param(ce, g, dt, "w_t", fanIn, H))
		h = graphutil.AddBias(h, Add(tw, graphutil.Param(ce, g, dt, "b", fanIn, H)))
		if nm != nil {
			h = Mul(h, nm)
		}

		em := graphutil.PairMask(g, dt, n, nm) // (B|1,N,N,1)
		for k := range cfg.Layers {
			h = gclLayer(ctx.In(fmt.Sprintf("gcl_%d", k)), cfg, h, em, nm)
		}
		v := graphutil.Linear(ctx.In("embedding_out"), dt, h, H, dim, true)
		if nm != nil {
			v = Mul(v, nm)
		}
		return graphutil.RemoveMean(v, nm)
	}
}

// gclLayer is one en_flows GCL layer on dense (B,N,H) node features with pair mask em.
func gclLayer(ctx *context.Context, cfg GNNConfig, h, em, nm *Node) *Node {
	g := h.Graph()
	dt := cfg.DType
	dims := h.Shape().Dimensions
	b, n, H := dims[0], dims[1], cfg.Hidden

	// edge_mlp.0 on [h_i, h_j] (fan-in 2H), factorised: (h_i·W_i + b) + h_j·W_j.
	c0 := ctx.In("edge_mlp_0")
	hi := graphutil.AddBias(graphutil.Dense(h, graphutil.Param(c0, g, dt, "w_hi", 2*H, H, H)), graphutil.Param(c0, g, dt, "b", 2*H, H))
	hj := graphutil.Dense(h, graphutil.Param(c0, g, dt, "w_hj", 2*H, H, H))
	pre := Add(Reshape(hi, b, n, 1, H), Reshape(hj, b, 1, n, H))
	m := silu(graphutil.Linear(ctx.In("edge_mlp_2"), dt, silu(pre), H, H, true)) // (B,N,N,H)
	gate := em
	if cfg.Attention {
		gate = Mul(Sigmoid(graphutil.Linear(ctx.In("att_mlp_0"), dt, m, H, 1, true)), em) // (B,N,N,1)
	}
	m = Mul(m, gate)
	agg := ReduceSum(m, 2) // (B,N,H)

	// node_mlp on [h_i, a_i] (fan-in 2H).
	cn := ctx.In("node_mlp_0")
	u := Add(graphutil.Dense(h, graphutil.Param(cn, g, dt, "w_h", 2*H, H, H)), graphutil.Dense(agg, graphutil.Param(cn, g, dt, "w_a", 2*H, H, H)))
	u = silu(graphutil.AddBias(u, graphutil.Param(cn, g, dt, "b", 2*H, H)))
	u = graphutil.Linear(ctx.In("node_mlp_2"), dt, u, H, H, true)
	if cfg.Recurrent {
		u = Add(h, u)
	}
	if nm != nil {
		u = Mul(u, nm)
	}
	return u
}
