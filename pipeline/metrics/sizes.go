package metrics

import (
	"fmt"
	"math"
	"math/rand/v2"

	"github.com/enflow/enflow/etl/molecule"
)

// QM9NNodes is the reference QM9 molecule-size histogram (en_flows analyzed['n_nodes'], EDM
// qm9_with_h): QM9NNodes[N] = number of train molecules with N atoms, N = 0..29. Sizes 0, 1,
// 2 and 28 never occur.
var QM9NNodes = [molecule.MaxAtoms + 1]int64{
	3: 1, 4: 4, 5: 5, 6: 9, 7: 16, 8: 49, 9: 124, 10: 362, 11: 807, 12: 1689,
	13: 3060, 14: 5136, 15: 7796, 16: 10644, 17: 13025, 18: 13364, 19: 13832, 20: 9482,
	21: 9970, 22: 3393, 23: 4848, 24: 539, 25: 1506, 26: 48, 27: 266, 29: 25,
}

// QM9NNodesTotal is ΣQM9NNodes, the 100,000 train molecules.
const QM9NNodesTotal = 100000

// QM9AtomTypes is the reference train atom-type histogram analyzed['atom_types'] by type
// index (H, C, N, O, F).
var QM9AtomTypes = [NumTypes]int64{923537, 635559, 101476, 140202, 2323}

// LogPN returns log p(N) = ln(count_N/100000 + 1e-30), the size term of the QM9 NLL. Like the
// reference (a KeyError there), it fails for sizes absent from the histogram (N < 3, N = 28,
// N > 29).
func LogPN(n int) (float64, error) {
	if n < 0 || n >= len(QM9NNodes) || QM9NNodes[n] == 0 {
		return 0, fmt.Errorf("metrics: log p(N): no QM9 molecule has %d atoms", n)
	}
	return math.Log(float64(QM9NNodes[n])/QM9NNodesTotal + 1e-30), nil
}

// QM9NNodesEntropy returns H[N] = −Σ p·ln p over the histogram (2.4757 nats).
func QM9NNodesEntropy() float64 {
	var h float64
	for _, c := range QM9NNodes {
		if c > 0 {
			p := float64(c) / QM9NNodesTotal
			h -= p * math.Log(p)
		}
	}
	return h
}

// NodeSampler draws molecule sizes N with probability QM9NNodes[N]/100000. It is
// deterministic for a given seed and not safe for concurrent use.
type NodeSampler struct {
	rng *rand.Rand
	cum [len(QM9NNodes)]int64 // cum[N] = Σ_{k≤N} QM9NNodes[k]
}

// NewNodeSampler returns a sampler seeded with seed (PCG, stream 0).
func NewNodeSampler(seed uint64) *NodeSampler {
	s := &NodeSampler{rng: rand.New(rand.NewPCG(seed, 0))}
	var c int64
	for n, k := range QM9NNodes {
		c += k
		s.cum[n] = c
	}
	return s
}

// Sample draws one size N: a uniform integer r in [0, 100000) selects the smallest N with
// cum[N] > r, so each N is drawn with probability exactly count_N/100000.
func (s *NodeSampler) Sample() int {
	r := s.rng.Int64N(QM9NNodesTotal)
	lo, hi := 0, len(s.cum)-1
	for lo < hi {
		mid := (lo + hi) / 2
		if s.cum[mid] > r {
			hi = mid
		} else {
			lo = mid + 1
		}
	}
	return lo
}

// SampleN draws k sizes (none when k ≤ 0).
func (s *NodeSampler) SampleN(k int) []int {
	if k <= 0 {
		return nil
	}
	out := make([]int, k)
	for i := range out {
		out[i] = s.Sample()
	}
	return out
}
