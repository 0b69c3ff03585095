package egnn

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/enflow/enflow/gomlx_models/backend"
	"github.com/gomlx/gomlx/backends"
	"github.com/gomlx/gomlx/pkg/core/dtypes"
	. "github.com/gomlx/gomlx/pkg/core/graph"
	"github.com/gomlx/gomlx/pkg/core/tensors"
	"github.com/gomlx/gomlx/pkg/ml/context"
)

var testBackend backends.Backend

func getBackend(t testing.TB) backends.Backend {
	t.Helper()
	if testBackend == nil {
		b, err := backend.New("")
		if err != nil {
			t.Fatal(err)
		}
		testBackend = b
	}
	return testBackend
}

// maskMode says which masks are passed to EGNN.
type maskMode int

const (
	noMasks   maskMode = iota // nodeMask = edgeMask = nil
	nodeOnly                  // nodeMask given, edgeMask derived (DefaultEdgeMask)
	bothMasks                 // nodeMask and edgeMask given
)

// batch is a dense batch of graphs in row-major flat form plus the per-graph view for refEGNN.
type batch struct {
	b, n, f, d, e int
	graphs        []refGraph
}

func (bt batch) tensors(mode maskMode) []*tensors.Tensor {
	h := make([]float64, 0, bt.b*bt.n*bt.f)
	x := make([]float64, 0, bt.b*bt.n*bt.d)
	var e, nm, em []float64
	for _, g := range bt.graphs {
		for i := range bt.n {
			h = append(h, g.h[i]...)
			x = append(x, g.x[i]...)
			nm = append(nm, g.nodeMask[i])
			for j := range bt.n {
				em = append(em, g.edgeMask[i][j])
				if bt.e > 0 {
					e = append(e, g.edgeAttr[i][j]...)
				}
			}
		}
	}
	out := []*tensors.Tensor{
		tensors.FromFlatDataAndDimensions(h, bt.b, bt.n, bt.f),
		tensors.FromFlatDataAndDimensions(x, bt.b, bt.n, bt.d),
	}
	if bt.e > 0 {
		out = append(out, tensors.FromFlatDataAndDimensions(e, bt.b, bt.n, bt.n, bt.e))
	}
	if mode >= nodeOnly {
		out = append(out, tensors.FromFlatDataAndDimensions(nm, bt.b, bt.n, 1))
	}
	if mode == bothMasks {
		out = append(out, tensors.FromFlatDataAndDimensions(em, bt.b, bt.n, bt.n, 1))
	}
	return out
}

// randomBatch makes B graphs of N nodes; graph k has nReal[k] real nodes (the rest are padding
// filled with garbage) — nReal nil means all real.
func randomBatch(rng *rand.Rand, b, n, f, d, e int, nReal []int) batch {
	bt := batch{b: b, n: n, f: f, d: d, e: e}
	for k := range b {
		real := n
		if nReal != nil {
			real = nReal[k]
		}
		g := refGraph{}
		for i := range n {
			g.h = append(g.h, randVec(rng, f, 1))
			g.x = append(g.x, randVec(rng, d, 1.5))
			m := 0.0
			if i < real {
				m = 1
			}
			g.nodeMask = append(g.nodeMask, m)
		}
		g.edgeMask = make([][]float64, n)
		if e > 0 {
			g.edgeAttr = make([][][]float64, n)
		}
		for i := range n {
			g.edgeMask[i] = make([]float64, n)
			if e > 0 {
				g.edgeAttr[i] = make([][]float64, n)
			}
			for j := range n {
				if i != j {
					g.edgeMask[i][j] = g.nodeMask[i] * g.nodeMask[j]
				}
				if e > 0 {
					g.edgeAttr[i][j] = randVec(rng, e, 1)
				}
			}
		}
		bt.graphs = append(bt.graphs, g)
	}
	return bt
}

func randVec(rng *rand.Rand, n int, scale float64) []float64 {
	v := make([]float64, n)
	for i := range v {
		v[i] = scale * rng.NormFloat64()
	}
	return v
}

// runEGNN runs EGNN on the backend; it returns flat hOut and xOut.
func runEGNN(t testing.TB, ctx *context.Context, cfg Config, bt batch, mode maskMode) (hOut, xOut []float64) {
	t.Helper()
	exec, err := context.NewExec(getBackend(t), ctx, func(ctx *context.Context, args []*Node) []*Node {
		h, x := args[0], args[1]
		idx := 2
		var e, nm, em *Node
		if cfg.EdgeAttrF > 0 {
			e = args[idx]
			idx++
		}
		if mode >= nodeOnly {
			nm = args[idx]
			idx++
		}
		if mode == bothMasks {
			em = args[idx]
		}
		ho, xo := EGNN(ctx, cfg, h, x, e, nm, em)
		return []*Node{ho, xo}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer exec.Finalize()
	var args []any
	for _, a := range bt.tensors(mode) {
		args = append(args, a)
	}
	outs, err := exec.Exec(args...)
	if err != nil {
		t.Fatal(err)
	}
	return tensors.MustCopyFlatData[float64](outs[0]), tensors.MustCopyFlatData[float64](outs[1])
}

func flatten(m [][]float64) []float64 {
	var out []float64
	for _, r := range m {
		out = append(out, r...)
	}
	return out
}

// relErr is max|a−b| / max|b|.
func relErr(a, b []float64) float64 {
	if len(a) != len(b) {
		return math.Inf(1)
	}
	var num, den float64
	for i := range a {
		num = math.Max(num, math.Abs(a[i]-b[i]))
		den = math.Max(den, math.Abs(b[i]))
	}
	if den == 0 {
		return num
	}
	return num / den
}

func f64(cfg Config) Config {
	cfg.DType = dtypes.Float64
	return cfg
}

func tinyConfig() Config {
	return f64(Config{Hidden: 5, Layers: 2, InNodeF: 3, OutNodeF: 2, EdgeAttrF: 1, Attention: true, Tanh: true,
		Recurrent: true})
}

// TestEGNNMatchesReference imports a random PyTorch-layout state dict with ImportTorch and checks
// the GoMLX EGNN against the loop-based float64 reference (ref_test.go), for a range of configs
// and mask modes. It is both the correctness test of the layer and of the key mapping.
func TestEGNNMatchesReference(t *testing.T) {
	type tc struct {
		name  string
		cfg   func(Config) Config
		d     int
		mode  maskMode
		nReal []int
	}
	cases := []tc{
		{"default_3d", func(c Config) Config { return c }, 3, noMasks, nil},
		{"2d", func(c Config) Config { return c }, 2, noMasks, nil},
		{"no_attention", func(c Config) Config { c.Attention = false; return c }, 3, noMasks, nil},
		{"no_tanh", func(c Config) Config { c.Tanh = false; return c }, 3, noMasks, nil},
		{"no_edge_attr", func(c Config) Config { c.EdgeAttrF = 0; return c }, 3, noMasks, nil},
		{"no_out_embedding", func(c Config) Config { c.OutNodeF = 0; return c }, 3, noMasks, nil},
		{"not_recurrent", func(c Config) Config { c.Recurrent = false; return c }, 3, noMasks, nil},
		{"coords_range", func(c Config) Config { c.CoordsRange = 0.7; return c }, 3, noMasks, nil},
		{"node_mask", func(c Config) Config { return c }, 3, nodeOnly, []int{4, 2, 3}},
		{"both_masks", func(c Config) Config { return c }, 3, bothMasks, []int{4, 2, 3}},
		{"dequantizer_like", func(c Config) Config { c.EdgeAttrF, c.Attention, c.Tanh = 0, false, false; return c },
			3, bothMasks, []int{4, 4, 1}},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg := c.cfg(tinyConfig())
			rng := rand.New(rand.NewPCG(7, uint64(i)))
			const prefix = "transformations.1.odefunc.dynamics.egnn."
			state, ref := randomTorchState(cfg, prefix, rng, 0.6)
			ctx := seededContext()
			if err := ImportTorch(ctx, prefix, cfg, state); err != nil {
				t.Fatal(err)
			}
			bt := randomBatch(rng, 3, 4, cfg.InNodeF, c.d, cfg.EdgeAttrF, c.nReal)
			hGot, xGot := runEGNN(t, ctx, cfg, bt, c.mode)
			var hWant, xWant []float64
			for _, g := range bt.graphs {
				ho, xo := refEGNN(cfg, ref, g)
				hWant = append(hWant, flatten(ho)...)
				xWant = append(xWant, flatten(xo)...)
			}
			if e := relErr(hGot, hWant); e > 1e-12 {
				t.Errorf("h_out rel err %g", e)
			}
			if e := relErr(xGot, xWant); e > 1e-12 {
				t.Errorf("x_L rel err %g", e)
			}
			// The test is only meaningful if the coordinates actually moved.
			x0 := tensors.MustCopyFlatData[float64](bt.tensors(noMasks)[1])
			moved := 0.0
			for k := range x0 {
				moved = math.Max(moved, math.Abs(xWant[k]-x0[k]))
			}
			if moved < 1e-2 {
				t.Errorf("coordinates barely moved (%g): test not sensitive", moved)
			}
		})
	}
}

func TestImportExportRoundTrip(t *testing.T) {
	cfg := tinyConfig()
	rng := rand.New(rand.NewPCG(3, 4))
	for _, prefix := range []string{"", "net_fn.egnn.", "net_fn.egnn"} {
		state, _ := randomTorchState(cfg, prefix, rng, 1)
		ctx := seededContext().In("model")
		if err := ImportTorch(ctx, prefix, cfg, state); err != nil {
			t.Fatal(err)
		}
		// A second import overwrites the existing variables.
		state2, _ := randomTorchState(cfg, prefix, rng, 1)
		if err := ImportTorch(ctx, prefix, cfg, state2); err != nil {
			t.Fatal(err)
		}
		back, err := ExportTorch(ctx, prefix, cfg)
		if err != nil {
			t.Fatal(err)
		}
		if len(back) != len(state2) {
			t.Fatalf("prefix %q: exported %d tensors, want %d", prefix, len(back), len(state2))
		}
		for k, v := range state2 {
			w, ok := back[k]
			if !ok {
				t.Fatalf("prefix %q: key %q missing from export", prefix, k)
			}
			if e := relErr(tensors.MustCopyFlatData[float64](w), tensors.MustCopyFlatData[float64](v)); e != 0 {
				t.Errorf("prefix %q: key %q differs after round trip (%g)", prefix, k, e)
			}
		}
	}
	// Spot-check one block: w_r of gcl_1 is column 2H of edge_mlp.0.weight.
	state, ref := randomTorchState(cfg, "", rng, 1)
	ctx := seededContext()
	if err := ImportTorch(ctx, "", cfg, state); err != nil {
		t.Fatal(err)
	}
	v := ctx.In("gcl_1").In("edge_mlp_0").GetVariableByScopeAndName("/gcl_1/edge_mlp_0", "w_r")
	if v == nil {
		t.Fatal("variable /gcl_1/edge_mlp_0/w_r not found")
	}
	got := tensors.MustCopyFlatData[float64](v.MustValue())
	H := cfg.Hidden
	cols := 2*H + 1 + cfg.EdgeAttrF
	for r := range H {
		if want := ref["gcl_1.edge_mlp.0.weight"][r*cols+2*H]; got[r] != want {
			t.Fatalf("w_r[%d] = %g, want %g", r, got[r], want)
		}
	}
}

func TestImportTorchErrors(t *testing.T) {
	cfg := tinyConfig()
	rng := rand.New(rand.NewPCG(5, 6))
	for _, tc := range []struct {
		name    string
		mutate  func(map[string]*tensors.Tensor)
		wantErr string
	}{
		{"missing", func(s map[string]*tensors.Tensor) { delete(s, "p.gcl_1.coord_mlp.2.weight") }, "missing key"},
		{"shape", func(s map[string]*tensors.Tensor) {
			s["p.gcl_0.edge_mlp.0.weight"] = tensors.FromFlatDataAndDimensions(make([]float64, 5*10), 5, 10)
		}, "shape"},
		{"extra", func(s map[string]*tensors.Tensor) {
			s["p.gcl_7.edge_mlp.0.weight"] = tensors.FromFlatDataAndDimensions([]float64{1}, 1)
		}, "not used"},
		{"int_dtype", func(s map[string]*tensors.Tensor) {
			s["p.embedding.bias"] = tensors.FromFlatDataAndDimensions([]int32{1, 2, 3, 4, 5}, 5)
		}, "dtype"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			state, _ := randomTorchState(cfg, "p.", rng, 1)
			tc.mutate(state)
			ctx := seededContext()
			err := ImportTorch(ctx, "p", cfg, state)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err = %v, want it to contain %q", err, tc.wantErr)
			}
			if ctx.NumVariables() != 0 {
				t.Errorf("failed import created %d variables", ctx.NumVariables())
			}
		})
	}
	// embedding_out.* is ignored (not an error) when OutNodeF = 0, as in E-NF's particle model.
	withOut, _ := randomTorchState(cfg, "", rng, 1)
	noOut := cfg
	noOut.OutNodeF = 0
	if err := ImportTorch(seededContext(), "", noOut, withOut); err != nil {
		t.Fatalf("OutNodeF=0 with embedding_out keys: %v", err)
	}
}

// TestFactorisedEdgeLayer compares edgePreactivation against the textbook computation
// Concatenate([h_i, h_j, r_ij, e_ij])·Wᵀ + b with the PyTorch weight W (H, 2H+1+E).
func TestFactorisedEdgeLayer(t *testing.T) {
	for _, edgeF := range []int{0, 1} {
		t.Run(fmt.Sprintf("edge_attr_%d", edgeF), func(t *testing.T) {
			cfg := tinyConfig()
			cfg.EdgeAttrF = edgeF
			rng := rand.New(rand.NewPCG(11, uint64(edgeF)))
			state, ref := randomTorchState(cfg, "", rng, 1)
			ctx := seededContext()
			if err := ImportTorch(ctx, "", cfg, state); err != nil {
				t.Fatal(err)
			}
			const B, N = 2, 4
			H := cfg.Hidden
			hT := tensors.FromFlatDataAndDimensions(randVec(rng, B*N*H, 1), B, N, H)
			xT := tensors.FromFlatDataAndDimensions(randVec(rng, B*N*3, 1), B, N, 3)
			eT := tensors.FromFlatDataAndDimensions(randVec(rng, B*N*N*max(edgeF, 1), 1), B, N, N, max(edgeF, 1))
			exec, err := context.NewExec(getBackend(t), ctx, func(ctx *context.Context, h, x, e *Node) (*Node, *Node) {
				g := h.Graph()
				_, radial := PairDiff(x)
				var eAttr *Node
				if edgeF > 0 {
					eAttr = e
				}
				fast := edgePreactivation(ctx.Checked(false).In("gcl_1").In(ScopeEdgeMLP0), cfg.WithDefaults(), h, radial, eAttr)
				parts := []*Node{
					BroadcastToDims(Reshape(h, B, N, 1, H), B, N, N, H),
					BroadcastToDims(Reshape(h, B, 1, N, H), B, N, N, H),
					radial,
				}
				if edgeF > 0 {
					parts = append(parts, e)
				}
				cat := Concatenate(parts, -1)
				cols := 2*H + 1 + edgeF
				w := Reshape(Const(g, ref["gcl_1.edge_mlp.0.weight"]), H, cols)
				want := Add(DotGeneral(cat, []int{3}, nil, w, []int{1}, nil),
					Reshape(Const(g, ref["gcl_1.edge_mlp.0.bias"]), 1, 1, 1, H))
				return fast, want
			})
			if err != nil {
				t.Fatal(err)
			}
			defer exec.Finalize()
			outs, err := exec.Exec(hT, xT, eT)
			if err != nil {
				t.Fatal(err)
			}
			if e := relErr(tensors.MustCopyFlatData[float64](outs[0]), tensors.MustCopyFlatData[float64](outs[1])); e > 1e-13 {
				t.Fatalf("factorised edge layer differs from concatenate reference: rel err %g", e)
			}
		})
	}
}

// TestInitialisation checks the PyTorch-like initialisation: every weight and bias of a Linear
// with fan-in k is U(−1/√k, 1/√k) (kaiming_uniform(a=√5) / default bias), and the last
// coordinate layer is xavier_uniform with gain 0.001.
func TestInitialisation(t *testing.T) {
	cfg := f64(Config{Hidden: 16, Layers: 1, InNodeF: 3, OutNodeF: 2, EdgeAttrF: 1, Attention: true, Tanh: true,
		Recurrent: true})
	ctx := seededContext()
	rng := rand.New(rand.NewPCG(1, 1))
	runEGNN(t, ctx, cfg, randomBatch(rng, 1, 3, cfg.InNodeF, 3, 1, nil), noMasks)
	H := float64(cfg.Hidden)
	fanIn := map[string]float64{
		"/embedding": 3, "/embedding_out": H, "/gcl_0/edge_mlp_0": 2*H + 2, "/gcl_0/edge_mlp_2": H,
		"/gcl_0/node_mlp_0": 2 * H, "/gcl_0/node_mlp_2": H, "/gcl_0/coord_mlp_0": H, "/gcl_0/att_mlp_0": H,
	}
	n := 0
	for v := range ctx.IterVariables() {
		if !v.Trainable || !v.Shape().DType.IsFloat() {
			continue
		}
		n++
		var bound float64
		if v.Scope() == "/gcl_0/coord_mlp_2" {
			bound = 0.001 * math.Sqrt(6/(H+1))
		} else if k, ok := fanIn[v.Scope()]; ok {
			bound = 1 / math.Sqrt(k)
		} else {
			t.Fatalf("unexpected variable %s", v.ScopeAndName())
		}
		vals := tensors.MustCopyFlatData[float64](v.MustValue())
		maxAbs := 0.0
		for _, x := range vals {
			maxAbs = math.Max(maxAbs, math.Abs(x))
		}
		if maxAbs > bound || (len(vals) >= 16 && maxAbs < 0.5*bound) {
			t.Errorf("%s: max |value| %g, want within (½, 1]·%g", v.ScopeAndName(), maxAbs, bound)
		}
	}
	if n != 21 {
		t.Errorf("found %d trainable variables, want 21", n)
	}
}
