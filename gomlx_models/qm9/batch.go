package qm9

import (
	"fmt"
	"sort"

	"github.com/enflow/enflow/etl/molecule"
)

// Batch is a padded batch of molecules in ENF's training layout (REFERENCE §2.2): positions
// centred per molecule (mean over its atoms), h = [one_hot(H,C,N,O,F), charge = atomic number],
// zero-padded to the largest molecule of the batch, with a node mask.
type Batch struct {
	B, N   int       // molecules, padded atoms per molecule
	IDs    []int64   // molecule ids
	NAtoms []int     // real atoms per molecule
	X      []float64 // (B,N,3) centred positions, zero on padding
	OneHot []float64 // (B,N,5)
	Charge []float64 // (B,N,1)
	Mask   []float64 // (B,N)
}

// NewBatch builds a batch from molecules. Every atom must be H, C, N, O or F.
func NewBatch(mols []molecule.Molecule) (*Batch, error) {
	if len(mols) == 0 {
		return nil, fmt.Errorf("qm9: empty batch")
	}
	n := 0
	for i := range mols {
		if err := mols[i].Validate(); err != nil {
			return nil, fmt.Errorf("qm9: %w", err)
		}
		n = max(n, mols[i].NAtoms())
	}
	b := &Batch{B: len(mols), N: n, IDs: make([]int64, len(mols)), NAtoms: make([]int, len(mols)),
		X: make([]float64, len(mols)*n*PosDims), OneHot: make([]float64, len(mols)*n*NumTypes),
		Charge: make([]float64, len(mols)*n), Mask: make([]float64, len(mols)*n)}
	for i := range mols {
		m := &mols[i]
		b.IDs[i], b.NAtoms[i] = m.ID, m.NAtoms()
		for a, p := range m.Centered() {
			node := i*n + a
			copy(b.X[node*PosDims:], p[:])
			b.OneHot[node*NumTypes+molecule.TypeIndex(m.Z[a])] = 1
			b.Charge[node] = float64(m.Z[a])
			b.Mask[node] = 1
		}
	}
	return b, nil
}

// SizeBatches groups molecule indices by size (ascending, stable within a size) and cuts them
// into batches of at most batch molecules, so that little padding is needed.
func SizeBatches(mols []molecule.Molecule, batch int) [][]int {
	if batch <= 0 {
		batch = 1
	}
	idx := make([]int, len(mols))
	for i := range idx {
		idx[i] = i
	}
	sort.SliceStable(idx, func(a, b int) bool { return mols[idx[a]].NAtoms() < mols[idx[b]].NAtoms() })
	var out [][]int
	for s := 0; s < len(idx); {
		e := s
		for e < len(idx) && e-s < batch && mols[idx[e]].NAtoms() == mols[idx[s]].NAtoms() {
			e++
		}
		out = append(out, idx[s:e])
		s = e
	}
	return out
}
