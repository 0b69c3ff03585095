package egnn

import (
	"math"
	"math/rand/v2"
	"testing"
)

// RandomOrthogonal returns a random D×D orthogonal matrix (Gram–Schmidt on a Gaussian matrix);
// with reflect it has determinant −1, otherwise +1.
func randomOrthogonal(rng *rand.Rand, d int, reflect bool) [][]float64 {
	q := make([][]float64, d)
	for i := range d {
		v := randVec(rng, d, 1)
		for k := range i {
			p := 0.0
			for c := range d {
				p += v[c] * q[k][c]
			}
			for c := range d {
				v[c] -= p * q[k][c]
			}
		}
		n := 0.0
		for _, a := range v {
			n += a * a
		}
		n = math.Sqrt(n)
		for c := range v {
			v[c] /= n
		}
		q[i] = v
	}
	if det(q) < 0 != reflect {
		for c := range d {
			q[0][c] = -q[0][c]
		}
	}
	return q
}

func det(m [][]float64) float64 {
	if len(m) == 2 {
		return m[0][0]*m[1][1] - m[0][1]*m[1][0]
	}
	return m[0][0]*(m[1][1]*m[2][2]-m[1][2]*m[2][1]) - m[0][1]*(m[1][0]*m[2][2]-m[1][2]*m[2][0]) +
		m[0][2]*(m[1][0]*m[2][1]-m[1][1]*m[2][0])
}

// Transform is x ↦ Q·x + t applied to every node, followed by the node permutation perm
// (new node k is old node perm[k]).
type transform struct {
	name   string
	rotate bool
	refl   bool
	shift  bool
	perm   bool
}

var transforms = []transform{
	{name: "rotation", rotate: true},
	{name: "reflection", rotate: true, refl: true},
	{name: "translation", shift: true},
	{name: "permutation", perm: true},
	{name: "all", rotate: true, refl: true, shift: true, perm: true},
}

type concreteTransform struct {
	q    [][]float64
	t    []float64
	perm []int
}

func (tr transform) concrete(rng *rand.Rand, d, n int) concreteTransform {
	c := concreteTransform{t: make([]float64, d), perm: make([]int, n)}
	c.q = make([][]float64, d)
	for i := range d {
		c.q[i] = make([]float64, d)
		c.q[i][i] = 1
	}
	if tr.rotate {
		c.q = randomOrthogonal(rng, d, tr.refl)
	}
	if tr.shift {
		c.t = randVec(rng, d, 3)
	}
	for i := range n {
		c.perm[i] = i
	}
	if tr.perm {
		rng.Shuffle(n, func(i, j int) { c.perm[i], c.perm[j] = c.perm[j], c.perm[i] })
	}
	return c
}

func (c concreteTransform) point(x []float64) []float64 {
	out := make([]float64, len(x))
	for i := range x {
		out[i] = c.t[i]
		for k := range x {
			out[i] += c.q[i][k] * x[k]
		}
	}
	return out
}

// vector rotates without translating (for velocities).
func (c concreteTransform) vector(x []float64) []float64 {
	out := make([]float64, len(x))
	for i := range x {
		for k := range x {
			out[i] += c.q[i][k] * x[k]
		}
	}
	return out
}

func (c concreteTransform) graph(g refGraph) refGraph {
	n := len(g.x)
	out := refGraph{nodeMask: make([]float64, n), edgeMask: make([][]float64, n)}
	if g.edgeAttr != nil {
		out.edgeAttr = make([][][]float64, n)
	}
	for k := range n {
		p := c.perm[k]
		out.h = append(out.h, append([]float64(nil), g.h[p]...))
		out.x = append(out.x, c.point(g.x[p]))
		out.nodeMask[k] = g.nodeMask[p]
		out.edgeMask[k] = make([]float64, n)
		if g.edgeAttr != nil {
			out.edgeAttr[k] = make([][]float64, n)
		}
		for l := range n {
			out.edgeMask[k][l] = g.edgeMask[p][c.perm[l]]
			if g.edgeAttr != nil {
				out.edgeAttr[k][l] = g.edgeAttr[p][c.perm[l]]
			}
		}
	}
	return out
}

// TestEGNNEquivariance checks E(n) equivariance of EGNN: under x ↦ Q·x + t and a node
// permutation, h_out is permuted and invariant, and x_L transforms like x.
func TestEGNNEquivariance(t *testing.T) {
	for _, d := range []int{2, 3} {
		for ti, tr := range transforms {
			t.Run(tr.name+map[int]string{2: "_2d", 3: "_3d"}[d], func(t *testing.T) {
				cfg := tinyConfig()
				rng := rand.New(rand.NewPCG(21, uint64(10*d+ti)))
				state, _ := randomTorchState(cfg, "", rng, 0.6)
				ctx := seededContext()
				if err := ImportTorch(ctx, "", cfg, state); err != nil {
					t.Fatal(err)
				}
				const B, N = 2, 5
				bt := randomBatch(rng, B, N, cfg.InNodeF, d, cfg.EdgeAttrF, []int{5, 3})
				ct := tr.concrete(rng, d, N)
				bt2 := bt
				bt2.graphs = nil
				for _, g := range bt.graphs {
					bt2.graphs = append(bt2.graphs, ct.graph(g))
				}
				h1, x1 := runEGNN(t, ctx, cfg, bt, bothMasks)
				h2, x2 := runEGNN(t, ctx, cfg, bt2, bothMasks)
				// Expected: transform the first outputs.
				var hWant, xWant []float64
				F := cfg.OutNodeF
				for b := range B {
					for k := range N {
						p := ct.perm[k]
						hWant = append(hWant, h1[(b*N+p)*F:(b*N+p+1)*F]...)
						xp := ct.point(x1[(b*N+p)*d : (b*N+p+1)*d])
						if bt.graphs[b].nodeMask[p] == 0 {
							xp = make([]float64, d) // padded nodes are zeroed, not moved
						}
						xWant = append(xWant, xp...)
					}
				}
				if e := relErr(h2, hWant); e > 1e-8 {
					t.Errorf("h_out not invariant: rel err %g", e)
				}
				if e := relErr(x2, xWant); e > 1e-8 {
					t.Errorf("x_L not equivariant: rel err %g", e)
				}
			})
		}
	}
}

// TestEGNNPaddingInvariance: a graph padded with extra masked nodes (holding garbage) gives
// the same outputs on its real nodes, and zeros on the padding.
func TestEGNNPaddingInvariance(t *testing.T) {
	for _, cfg := range []Config{
		tinyConfig(),
		func() Config { c := tinyConfig(); c.EdgeAttrF = 0; c.Attention = false; return c }(),
		func() Config { c := tinyConfig(); c.OutNodeF = 0; return c }(), // returns the hidden h
	} {
		rng := rand.New(rand.NewPCG(31, uint64(cfg.EdgeAttrF)))
		state, _ := randomTorchState(cfg, "", rng, 0.6)
		ctx := seededContext()
		if err := ImportTorch(ctx, "", cfg, state); err != nil {
			t.Fatal(err)
		}
		const real, pad = 4, 3
		padded := randomBatch(rng, 1, real+pad, cfg.InNodeF, 3, cfg.EdgeAttrF, []int{real})
		// The unpadded graph: the first `real` nodes.
		g := padded.graphs[0]
		small := refGraph{nodeMask: g.nodeMask[:real]}
		for i := range real {
			small.h = append(small.h, g.h[i])
			small.x = append(small.x, g.x[i])
			small.edgeMask = append(small.edgeMask, g.edgeMask[i][:real])
			if g.edgeAttr != nil {
				small.edgeAttr = append(small.edgeAttr, g.edgeAttr[i][:real])
			}
		}
		unpadded := batch{b: 1, n: real, f: cfg.InNodeF, d: 3, e: cfg.EdgeAttrF, graphs: []refGraph{small}}
		hU, xU := runEGNN(t, ctx, cfg, unpadded, noMasks)
		for _, mode := range []maskMode{nodeOnly, bothMasks} {
			hP, xP := runEGNN(t, ctx, cfg, padded, mode)
			F := cfg.OutNodeF
			if F == 0 {
				F = cfg.Hidden
			}
			if e := relErr(hP[:real*F], hU); e > 1e-12 {
				t.Errorf("mode %d: h_out on real nodes changed by padding: rel err %g", mode, e)
			}
			if e := relErr(xP[:real*3], xU); e > 1e-12 {
				t.Errorf("mode %d: x_L on real nodes changed by padding: rel err %g", mode, e)
			}
			for i, v := range append(hP[real*F:], xP[real*3:]...) {
				if v != 0 {
					t.Fatalf("mode %d: padded output #%d = %g, want 0", mode, i, v)
				}
			}
		}
	}
}
