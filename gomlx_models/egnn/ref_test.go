package egnn

// A plain float64 Go re-implementation of E-NF's EGNN (gcl.py::E_GCL, models.py::EGNN), written
// with explicit loops over an edge list directly from PyTorch-layout weights (out,in) and the
// concatenated inputs [h_i, h_j, radial, edge_attr]. It is the ground truth for the GoMLX
// implementation and for ImportTorch's key mapping.

import (
	"math"
	"math/rand/v2"

	"github.com/gomlx/gomlx/pkg/core/tensors"
)

// refWeights is a PyTorch-style state dict of flat float64 data.
type refWeights map[string][]float64

// randomTorchState returns a random state dict for cfg (keys with prefix), values U(−scale, scale)
// (biases included), as Float64 tensors with PyTorch shapes; and the same data as refWeights
// without prefix.
func randomTorchState(cfg Config, prefix string, rng *rand.Rand, scale float64) (map[string]*tensors.Tensor, refWeights) {
	cfg = cfg.WithDefaults()
	state := map[string]*tensors.Tensor{}
	ref := refWeights{}
	for _, e := range torchLayout(cfg) {
		n := e.rows * max(e.cols, 1)
		data := make([]float64, n)
		for i := range data {
			data[i] = scale * (2*rng.Float64() - 1)
		}
		dims := []int{e.rows}
		if e.cols > 0 {
			dims = append(dims, e.cols)
		}
		state[joinPrefix(prefix, e.key)] = tensors.FromFlatDataAndDimensions(append([]float64(nil), data...), dims...)
		ref[e.key] = data
	}
	return state, ref
}

// refLinear computes W·in + b for W (out, len(in)) row-major; b may be nil.
func refLinear(w, b []float64, in []float64, out int) []float64 {
	nIn := len(in)
	y := make([]float64, out)
	for o := range out {
		s := 0.0
		for k := range nIn {
			s += w[o*nIn+k] * in[k]
		}
		if b != nil {
			s += b[o]
		}
		y[o] = s
	}
	return y
}

func refSiLU(v []float64) []float64 {
	out := make([]float64, len(v))
	for i, x := range v {
		out[i] = x / (1 + math.Exp(-x))
	}
	return out
}

func sigmoid(x float64) float64 { return 1 / (1 + math.Exp(-x)) }

// refGraph is one graph (one batch element).
type refGraph struct {
	h        [][]float64   // (N, F)
	x        [][]float64   // (N, D)
	edgeAttr [][][]float64 // (N, N, E) or nil
	nodeMask []float64     // (N)
	edgeMask [][]float64   // (N, N)
}

// refEGNN runs the EGNN on one graph. Edges are all ordered pairs (i,j) (self-edges included,
// as in E-NF's QM9 get_adj_matrix) weighted by edgeMask, i = row = receiver.
func refEGNN(cfg Config, w refWeights, gr refGraph) (hOut, xOut [][]float64) {
	cfg = cfg.WithDefaults()
	H := cfg.Hidden
	n := len(gr.x)
	dim := len(gr.x[0])
	h := make([][]float64, n)
	x := make([][]float64, n)
	for i := range n {
		h[i] = refLinear(w["embedding.weight"], w["embedding.bias"], gr.h[i], H)
		x[i] = append([]float64(nil), gr.x[i]...)
	}
	for k := range cfg.Layers {
		p := LayerScope(k) + "."
		newH := make([][]float64, n)
		newX := make([][]float64, n)
		agg := make([][]float64, n)
		for i := range n {
			agg[i] = make([]float64, H)
			newX[i] = append([]float64(nil), x[i]...)
		}
		for i := range n {
			for j := range n {
				d := make([]float64, dim)
				r := 0.0
				for c := range dim {
					d[c] = x[i][c] - x[j][c]
					r += d[c] * d[c]
				}
				in := append(append(append([]float64(nil), h[i]...), h[j]...), r)
				if cfg.EdgeAttrF > 0 {
					in = append(in, gr.edgeAttr[i][j]...)
				}
				m := refSiLU(refLinear(w[p+"edge_mlp.0.weight"], w[p+"edge_mlp.0.bias"], in, H))
				m = refSiLU(refLinear(w[p+"edge_mlp.2.weight"], w[p+"edge_mlp.2.bias"], m, H))
				if cfg.Attention {
					a := sigmoid(refLinear(w[p+"att_mlp.0.weight"], w[p+"att_mlp.0.bias"], m, 1)[0])
					for c := range m {
						m[c] *= a
					}
				}
				for c := range m {
					m[c] *= gr.edgeMask[i][j]
				}
				phi := refSiLU(refLinear(w[p+"coord_mlp.0.weight"], w[p+"coord_mlp.0.bias"], m, H))
				f := refLinear(w[p+"coord_mlp.2.weight"], nil, phi, 1)[0]
				if cfg.Tanh {
					f = math.Tanh(f) * cfg.CoordsRange
				}
				norm := math.Sqrt(r+1e-8) + 1
				for c := range dim {
					newX[i][c] += d[c] / norm * f * gr.edgeMask[i][j]
				}
				for c := range H {
					agg[i][c] += m[c]
				}
			}
		}
		for i := range n {
			in := append(append([]float64(nil), h[i]...), agg[i]...)
			u := refSiLU(refLinear(w[p+"node_mlp.0.weight"], w[p+"node_mlp.0.bias"], in, H))
			u = refLinear(w[p+"node_mlp.2.weight"], w[p+"node_mlp.2.bias"], u, H)
			newH[i] = make([]float64, H)
			for c := range H {
				if cfg.Recurrent {
					newH[i][c] = h[i][c] + u[c]
				} else {
					newH[i][c] = u[c]
				}
				newH[i][c] *= gr.nodeMask[i]
			}
			for c := range dim {
				newX[i][c] *= gr.nodeMask[i]
			}
		}
		h, x = newH, newX
	}
	if cfg.OutNodeF > 0 {
		for i := range n {
			h[i] = refLinear(w["embedding_out.weight"], w["embedding_out.bias"], h[i], cfg.OutNodeF)
			for c := range h[i] {
				h[i][c] *= gr.nodeMask[i]
			}
		}
	}
	return h, x
}
