package metrics

import (
	"fmt"

	"github.com/enflow/enflow/etl/molecule"
	"github.com/enflow/enflow/gomlx_models/prior"
)

// QM9NNodes is the reference QM9 molecule-size histogram (en_flows analyzed['n_nodes'], EDM
// qm9_with_h): QM9NNodes[N] = number of train molecules with N atoms, N = 0..29. Sizes 0, 1,
// 2 and 28 never occur. The distribution itself lives in gomlx_models/prior (prior.QM9Sizes),
// where the models use it.
var QM9NNodes = func() (h [molecule.MaxAtoms + 1]int64) {
	copy(h[:], prior.QM9Sizes().Counts)
	return h
}()

// QM9NNodesTotal is ΣQM9NNodes, the 100,000 train molecules.
const QM9NNodesTotal = 100000

// QM9AtomTypes is the reference train atom-type histogram analyzed['atom_types'] by type
// index (H, C, N, O, F).
var QM9AtomTypes = [NumTypes]int64{923537, 635559, 101476, 140202, 2323}

// LogPN returns log p(N) = ln(count_N/100000 + 1e-30), the size term of the QM9 NLL. Like the
// reference (a KeyError there), it fails for sizes absent from the histogram (N < 3, N = 28,
// N > 29).
func LogPN(n int) (float64, error) {
	lp, err := prior.QM9Sizes().LogProb(n)
	if err != nil {
		return 0, fmt.Errorf("metrics: log p(N): no QM9 molecule has %d atoms", n)
	}
	return lp, nil
}

// QM9NNodesEntropy returns H[N] = −Σ p·ln p over the histogram (2.4757 nats).
func QM9NNodesEntropy() float64 { return prior.QM9Sizes().Entropy() }

// NewNodeSampler returns a sampler of QM9 sizes seeded with seed (PCG, stream 0): each N is
// drawn with probability exactly count_N/100000.
func NewNodeSampler(seed uint64) *prior.SizeSampler { return prior.QM9Sizes().NewSampler(seed) }
