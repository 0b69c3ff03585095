package qm9

import (
	"fmt"
	"math"
	"sort"

	"github.com/enflow/enflow/etl/molecule"
)

// Batch is a padded batch of molecules in ENF's training layout (REFERENCE §2.2): positions
// centred per molecule (mean over its atoms), h = [one_hot(elements), charge = atomic number],
// zero-padded to the largest molecule of the batch, with a node mask.
type Batch struct {
	B, N   int       // molecules, padded atoms per molecule
	K      int       // one-hot atom types (5 for QM9)
	IDs    []int64   // molecule ids
	NAtoms []int     // real atoms per molecule
	X      []float64 // (B,N,3) centred positions, zero on padding
	OneHot []float64 // (B,N,K)
	Charge []float64 // (B,N,1)
	Mask   []float64 // (B,N)
}

// NewBatch builds a QM9 batch (elements H, C, N, O, F) from molecules.
func NewBatch(mols []molecule.Molecule) (*Batch, error) { return NewBatchOf(mols, nil) }

// NewBatchOf builds a batch whose one-hot channels are elements (atomic numbers in channel
// order; nil = QM9's). An atom of another element, a molecule without atoms, a coordinate that
// is not finite or a position count that differs from the atom count is an error naming the
// molecule and the atom.
func NewBatchOf(mols []molecule.Molecule, elements []int) (*Batch, error) {
	if len(mols) == 0 {
		return nil, fmt.Errorf("qm9: empty batch")
	}
	if elements == nil {
		elements = QM9Elements()
	}
	index := make(map[int]int, len(elements))
	for i, z := range elements {
		index[z] = i
	}
	k := len(elements)
	n := 0
	for i := range mols {
		m := &mols[i]
		if m.NAtoms() == 0 {
			return nil, fmt.Errorf("qm9: molecule %d: no atoms", m.ID)
		}
		if len(m.Positions) != m.NAtoms() {
			return nil, fmt.Errorf("qm9: molecule %d: %d positions for %d atoms", m.ID, len(m.Positions), m.NAtoms())
		}
		for a, z := range m.Z {
			if _, ok := index[z]; !ok {
				return nil, fmt.Errorf("qm9: molecule %d: atom %d: element Z=%d is not one of the model's elements %v", m.ID, a, z, elements)
			}
			for c, v := range m.Positions[a] {
				if math.IsNaN(v) || math.IsInf(v, 0) {
					return nil, fmt.Errorf("qm9: molecule %d: atom %d: coordinate %d is %v", m.ID, a, c, v)
				}
			}
		}
		n = max(n, m.NAtoms())
	}
	b := &Batch{B: len(mols), N: n, K: k, IDs: make([]int64, len(mols)), NAtoms: make([]int, len(mols)),
		X: make([]float64, len(mols)*n*PosDims), OneHot: make([]float64, len(mols)*n*k),
		Charge: make([]float64, len(mols)*n), Mask: make([]float64, len(mols)*n)}
	for i := range mols {
		m := &mols[i]
		b.IDs[i], b.NAtoms[i] = m.ID, m.NAtoms()
		for a, p := range m.Centered() {
			node := i*n + a
			copy(b.X[node*PosDims:], p[:])
			b.OneHot[node*k+index[m.Z[a]]] = 1
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
