package egnn

import (
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/gomlx/gomlx/pkg/core/tensors"
	"github.com/gomlx/gomlx/pkg/ml/context"

	"github.com/enflow/enflow/internal/graphutil"
)

// Variable layout and its PyTorch correspondence.
//
// PyTorch nn.Linear stores weight as (out, in) and computes y = x·weightᵀ + bias; the Go
// variables store weights as (in, out) (y = x·w + b), i.e. the transpose. Linears whose input is
// a concatenation are split into per-input row blocks of w, i.e. column blocks of the PyTorch
// weight. With H = Hidden, E = EdgeAttrF, F_in = InNodeF, F_out = OutNodeF, and ctx the context
// passed to EGNN:
//
//	PyTorch key (after prefix)        shape        Go variable (scope/name)              shape
//	embedding.weight                  (H, F_in)    embedding/w                           (F_in, H)  = weightᵀ
//	embedding.bias                    (H)          embedding/b                           (H)
//	embedding_out.weight              (F_out, H)   embedding_out/w                       (H, F_out) = weightᵀ  [only if F_out > 0]
//	embedding_out.bias                (F_out)      embedding_out/b                       (F_out)
//	gcl_k.edge_mlp.0.weight           (H, 2H+1+E)  gcl_k/edge_mlp_0/w_hi                 (H, H) = weight[:, 0:H]ᵀ      (h_i)
//	                                               gcl_k/edge_mlp_0/w_hj                 (H, H) = weight[:, H:2H]ᵀ     (h_j)
//	                                               gcl_k/edge_mlp_0/w_r                  (1, H) = weight[:, 2H:2H+1]ᵀ  (radial)
//	                                               gcl_k/edge_mlp_0/w_e                  (1, H) = weight[:, 2H+1:]ᵀ    (edge_attr) [only if E = 1]
//	gcl_k.edge_mlp.0.bias             (H)          gcl_k/edge_mlp_0/b                    (H)
//	gcl_k.edge_mlp.2.weight / .bias   (H,H)/(H)    gcl_k/edge_mlp_2/w, b                 (H,H) = weightᵀ / (H)
//	gcl_k.node_mlp.0.weight           (H, 2H)      gcl_k/node_mlp_0/w_h                  (H, H) = weight[:, 0:H]ᵀ      (h_i)
//	                                               gcl_k/node_mlp_0/w_a                  (H, H) = weight[:, H:2H]ᵀ     (Σ_j m_ij)
//	gcl_k.node_mlp.0.bias             (H)          gcl_k/node_mlp_0/b                    (H)
//	gcl_k.node_mlp.2.weight / .bias   (H,H)/(H)    gcl_k/node_mlp_2/w, b                 (H,H) = weightᵀ / (H)
//	gcl_k.coord_mlp.0.weight / .bias  (H,H)/(H)    gcl_k/coord_mlp_0/w, b                (H,H) = weightᵀ / (H)
//	gcl_k.coord_mlp.2.weight          (1, H)       gcl_k/coord_mlp_2/w                   (H, 1) = weightᵀ  (no bias)
//	gcl_k.att_mlp.0.weight / .bias    (1,H)/(1)    gcl_k/att_mlp_0/w, b                  (H,1) = weightᵀ / (1) [only if Attention]
//
// For the published QM9 flow the prefix is "transformations.1.odefunc.dynamics.egnn." (H = 64,
// E = 1, F_in = F_out = 7, edge_mlp.0.weight (64,130)); for the dequantizer it is
// "net_fn.egnn." (E = 0, edge_mlp.0.weight (64,129)).

// block is one column block [lo,hi) of a PyTorch weight, stored transposed in variable scope/name.
type block struct {
	scope  []string
	name   string
	lo, hi int
}

// torchEntry maps one PyTorch tensor (rows×cols weight, or a bias of length rows when cols = 0)
// to Go variables.
type torchEntry struct {
	key        string
	rows, cols int
	blocks     []block
}

// torchLayout lists every PyTorch tensor of an EGNN with configuration cfg.
func torchLayout(cfg Config) []torchEntry {
	H, E := cfg.Hidden, cfg.EdgeAttrF
	var out []torchEntry
	linear := func(key string, scope []string, in, outF int, bias bool) {
		out = append(out, torchEntry{key: key + ".weight", rows: outF, cols: in,
			blocks: []block{{scope: scope, name: "w", lo: 0, hi: in}}})
		if bias {
			out = append(out, torchEntry{key: key + ".bias", rows: outF,
				blocks: []block{{scope: scope, name: "b"}}})
		}
	}
	linear("embedding", []string{ScopeEmbedding}, cfg.InNodeF, H, true)
	if cfg.OutNodeF > 0 {
		linear("embedding_out", []string{ScopeEmbeddingOut}, H, cfg.OutNodeF, true)
	}
	for k := range cfg.Layers {
		gcl := LayerScope(k)
		sc := func(s string) []string { return []string{gcl, s} }
		e0 := sc(ScopeEdgeMLP0)
		blocks := []block{
			{scope: e0, name: "w_hi", lo: 0, hi: H},
			{scope: e0, name: "w_hj", lo: H, hi: 2 * H},
			{scope: e0, name: "w_r", lo: 2 * H, hi: 2*H + 1},
		}
		if E > 0 {
			blocks = append(blocks, block{scope: e0, name: "w_e", lo: 2*H + 1, hi: 2*H + 1 + E})
		}
		out = append(out,
			torchEntry{key: gcl + ".edge_mlp.0.weight", rows: H, cols: 2*H + 1 + E, blocks: blocks},
			torchEntry{key: gcl + ".edge_mlp.0.bias", rows: H, blocks: []block{{scope: e0, name: "b"}}})
		linear(gcl+".edge_mlp.2", sc(ScopeEdgeMLP2), H, H, true)
		n0 := sc(ScopeNodeMLP0)
		out = append(out,
			torchEntry{key: gcl + ".node_mlp.0.weight", rows: H, cols: 2 * H, blocks: []block{
				{scope: n0, name: "w_h", lo: 0, hi: H}, {scope: n0, name: "w_a", lo: H, hi: 2 * H}}},
			torchEntry{key: gcl + ".node_mlp.0.bias", rows: H, blocks: []block{{scope: n0, name: "b"}}})
		linear(gcl+".node_mlp.2", sc(ScopeNodeMLP2), H, H, true)
		linear(gcl+".coord_mlp.0", sc(ScopeCoordMLP0), H, H, true)
		linear(gcl+".coord_mlp.2", sc(ScopeCoordMLP2), H, 1, false)
		if cfg.Attention {
			linear(gcl+".att_mlp.0", sc(ScopeAttMLP0), H, 1, true)
		}
	}
	return out
}

// TorchKeys returns the PyTorch state-dict keys (without prefix) that ImportTorch expects for cfg.
func TorchKeys(cfg Config) []string {
	var keys []string
	for _, e := range torchLayout(cfg.WithDefaults()) {
		keys = append(keys, e.key)
	}
	return keys
}

// normPrefix returns prefix with a trailing "." (unless empty).
func normPrefix(prefix string) string {
	if prefix == "" || strings.HasSuffix(prefix, ".") {
		return prefix
	}
	return prefix + "."
}

func joinPrefix(prefix, key string) string { return normPrefix(prefix) + key }

// ImportTorch sets the EGNN variables in ctx from a PyTorch-style state dict (see the layout
// table above): state maps full PyTorch keys to tensors with PyTorch shapes, Float32 or Float64
// (converted to cfg.DType). Only keys starting with prefix are considered; prefix may or may not
// end with ".". ctx must be the context later passed to EGNN (for the dynamics package:
// ctx.In(dynamics.Scope)). Variables are created if missing and overwritten otherwise.
//
// Every expected key must be present with the right shape, and every key under prefix must be
// used — except "embedding_out.*" when cfg.OutNodeF = 0 (E-NF's particle dynamics has an
// unused embedding_out) — otherwise an error is returned and nothing is modified.
func ImportTorch(ctx *context.Context, prefix string, cfg Config, state map[string]*tensors.Tensor) (err error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return err
	}
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("egnn.ImportTorch: %v", r)
		}
	}()
	type assignment struct {
		scope []string
		name  string
		value *tensors.Tensor
	}
	var assigns []assignment
	used := make(map[string]bool)
	for _, e := range torchLayout(cfg) {
		key := joinPrefix(prefix, e.key)
		t, ok := state[key]
		if !ok || t == nil {
			return fmt.Errorf("egnn.ImportTorch: missing key %q", key)
		}
		used[key] = true
		wantDims := []int{e.rows}
		if e.cols > 0 {
			wantDims = append(wantDims, e.cols)
		}
		if !slices.Equal(t.Shape().Dimensions, wantDims) {
			return fmt.Errorf("egnn.ImportTorch: %q has shape %v, want %v", key, t.Shape().Dimensions, wantDims)
		}
		data, err := graphutil.Floats(t)
		if err != nil {
			return fmt.Errorf("egnn.ImportTorch: %q: %w", key, err)
		}
		for _, bl := range e.blocks {
			if e.cols == 0 {
				assigns = append(assigns, assignment{bl.scope, bl.name, graphutil.MustTensor(cfg.DType, data, e.rows)})
				continue
			}
			// Go block (hi−lo, rows) = transpose of weight[:, lo:hi].
			w := bl.hi - bl.lo
			blk := make([]float64, w*e.rows)
			for r := range e.rows {
				for c := bl.lo; c < bl.hi; c++ {
					blk[(c-bl.lo)*e.rows+r] = data[r*e.cols+c]
				}
			}
			assigns = append(assigns, assignment{bl.scope, bl.name, graphutil.MustTensor(cfg.DType, blk, w, e.rows)})
		}
	}
	var unused []string
	p := normPrefix(prefix)
	for key := range state {
		if !strings.HasPrefix(key, p) || used[key] {
			continue
		}
		rest := strings.TrimPrefix(key, p)
		if cfg.OutNodeF == 0 && strings.HasPrefix(rest, "embedding_out.") {
			continue
		}
		unused = append(unused, key)
	}
	if len(unused) > 0 {
		sort.Strings(unused)
		return fmt.Errorf("egnn.ImportTorch: keys under prefix %q not used by config %+v: %v", prefix, cfg, unused)
	}
	c := ctx.Checked(false)
	for _, a := range assigns {
		sc := c
		for _, s := range a.scope {
			sc = sc.In(s)
		}
		if v := sc.GetVariableByScopeAndName(sc.Scope(), a.name); v != nil {
			if !v.Shape().Equal(a.value.Shape()) {
				return fmt.Errorf("egnn.ImportTorch: variable %s/%s exists with shape %s, want %s",
					sc.Scope(), a.name, v.Shape(), a.value.Shape())
			}
		}
	}
	for _, a := range assigns {
		sc := c
		for _, s := range a.scope {
			sc = sc.In(s)
		}
		// Variable.SetValue finalizes the previous value, so only call it on existing variables
		// (never with the tensor just given to VariableWithValue).
		if v := sc.GetVariableByScopeAndName(sc.Scope(), a.name); v != nil {
			if err := v.SetValue(a.value); err != nil {
				return fmt.Errorf("egnn.ImportTorch: setting %s: %w", v.ScopeAndName(), err)
			}
			continue
		}
		sc.VariableWithValue(a.name, a.value)
	}
	return nil
}

// ExportTorch is the inverse of ImportTorch: it returns the PyTorch-layout state dict (keys with
// prefix, Float64 tensors with PyTorch (out,in) shapes) of the EGNN variables in ctx.
func ExportTorch(ctx *context.Context, prefix string, cfg Config) (state map[string]*tensors.Tensor, err error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("egnn.ExportTorch: %v", r)
		}
	}()
	state = make(map[string]*tensors.Tensor)
	for _, e := range torchLayout(cfg) {
		n := e.rows * max(e.cols, 1)
		data := make([]float64, n)
		for _, bl := range e.blocks {
			sc := ctx
			for _, s := range bl.scope {
				sc = sc.In(s)
			}
			v := sc.GetVariableByScopeAndName(sc.Scope(), bl.name)
			if v == nil {
				return nil, fmt.Errorf("egnn.ExportTorch: variable %s/%s not found", sc.Scope(), bl.name)
			}
			val, err := v.Value()
			if err != nil {
				return nil, fmt.Errorf("egnn.ExportTorch: %s/%s: %w", sc.Scope(), bl.name, err)
			}
			vals, err := graphutil.Floats(val)
			if err != nil {
				return nil, fmt.Errorf("egnn.ExportTorch: %s/%s: %w", sc.Scope(), bl.name, err)
			}
			if e.cols == 0 {
				copy(data, vals)
				continue
			}
			for c := bl.lo; c < bl.hi; c++ {
				for r := range e.rows {
					data[r*e.cols+c] = vals[(c-bl.lo)*e.rows+r]
				}
			}
		}
		dims := []int{e.rows}
		if e.cols > 0 {
			dims = append(dims, e.cols)
		}
		state[joinPrefix(prefix, e.key)] = tensors.FromFlatDataAndDimensions(data, dims...)
	}
	return state, nil
}
