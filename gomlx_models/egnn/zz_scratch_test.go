package egnn

import (
	"os"
	"testing"

	"github.com/enflow/enflow/gomlx_models/backend"
	. "github.com/gomlx/gomlx/pkg/core/graph"
	"github.com/gomlx/gomlx/pkg/core/tensors"
	"github.com/gomlx/gomlx/pkg/core/shapes"
	"github.com/gomlx/gomlx/pkg/core/dtypes"
)

func BenchmarkZZMicro(bm *testing.B) {
	be := backend.MustNew(os.Getenv("ZZB"))
	const B, N, H = 100, 13, 32
	big := tensors.FromShape(shapesF32(B, N, N, H))
	small := tensors.FromShape(shapesF32(H))
	hn := tensors.FromShape(shapesF32(B, N, H))
	gate := tensors.FromShape(shapesF32(B, N, N, 1))
	w := tensors.FromShape(shapesF32(H, H))
	cases := []struct {
		name string
		fn   func(big, small, hn, gate, w *Node) *Node
	}{
		{"sameshape_add", func(big, small, hn, gate, w *Node) *Node { return Add(big, big) }},
		{"bias_rank4", func(big, small, hn, gate, w *Node) *Node { return Add(big, Reshape(small, 1, 1, 1, H)) }},
		{"bias_rank2", func(big, small, hn, gate, w *Node) *Node {
			return Reshape(Add(Reshape(big, B*N*N, H), Reshape(small, 1, H)), B, N, N, H)
		}},
		{"pair_add", func(big, small, hn, gate, w *Node) *Node {
			return Add(Reshape(hn, B, N, 1, H), Reshape(hn, B, 1, N, H))
		}},
		{"gate_mul", func(big, small, hn, gate, w *Node) *Node { return Mul(big, gate) }},
		{"dense", func(big, small, hn, gate, w *Node) *Node { return DotGeneral(big, []int{3}, nil, w, []int{0}, nil) }},
		{"dense_rank2", func(big, small, hn, gate, w *Node) *Node {
			return Reshape(Dot(Reshape(big, B*N*N, H), w), B, N, N, H)
		}},
		{"silu", func(big, small, hn, gate, w *Node) *Node { return Mul(big, Sigmoid(big)) }},
		{"k1dot", func(big, small, hn, gate, w *Node) *Node {
			return DotGeneral(gate, []int{3}, nil, Reshape(small, 1, H), []int{0}, nil)
		}},
		{"reduce_j", func(big, small, hn, gate, w *Node) *Node { return ReduceSum(big, 2) }},
	}
	for _, c := range cases {
		e := MustNewExec(be, c.fn)
		e.MustExec(big, small, hn, gate, w)
		bm.Run(c.name, func(bm *testing.B) {
			for bm.Loop() {
				e.MustExec(big, small, hn, gate, w)[0].FinalizeAll()
			}
		})
	}
}

func shapesF32(dims ...int) shapes.Shape { return shapes.Make(dtypes.Float32, dims...) }
