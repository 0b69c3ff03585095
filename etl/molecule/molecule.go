// Package molecule holds the in-memory record shared by every QM9 reader, writer and
// metric: one molecule with its atoms, positions and the 15 QM9 properties.
package molecule

import (
	"fmt"
	"math"
)

// Elements of QM9 in the one-hot order used by en_flows/EDM (H→0, C→1, N→2, O→3, F→4).
var (
	Symbols = [...]string{"H", "C", "N", "O", "F"}
	Numbers = [...]int{1, 6, 7, 8, 9}
)

// NumTypes is the number of atom types in QM9.
const NumTypes = len(Numbers)

// MaxAtoms is the largest molecule in QM9 (the Cormorant padding width).
const MaxAtoms = 29

// TypeIndex returns the one-hot index of atomic number z, or -1 if z is not H, C, N, O or F.
func TypeIndex(z int) int {
	for i, n := range Numbers {
		if n == z {
			return i
		}
	}
	return -1
}

// NumberOf returns the atomic number of an element symbol ("C" → 6), or 0 if unknown.
func NumberOf(symbol string) int {
	for i, s := range Symbols {
		if s == symbol {
			return Numbers[i]
		}
	}
	return 0
}

// PropertyNames are the 15 QM9 properties kept by Cormorant, in file order, with their units
// (as in the raw archive: GHz, Debye, Bohr³, Hartree, Bohr², cal/(mol·K)).
var PropertyNames = [...]string{"A", "B", "C", "mu", "alpha", "homo", "lumo", "gap", "r2", "zpve", "U0", "U", "H", "G", "Cv"}

// NumProperties is len(PropertyNames).
const NumProperties = len(PropertyNames)

// Molecule is one QM9 molecule. Positions are in Å, in the raw frame (not centred).
// Fields that a source does not provide are left at their zero value (nil slices, "").
type Molecule struct {
	ID        int64                  // 1-based gdb index
	Split     string                 // "train", "valid", "test" or ""
	Z         []int                  // atomic numbers, len NAtoms
	Positions [][3]float64           // Å
	Mulliken  []float64              // Mulliken partial charges (raw archive only)
	Props     [NumProperties]float64 // see PropertyNames; NaN where unknown
	Omega1    float64                // largest harmonic frequency, cm⁻¹; NaN where unknown
	Freqs     []float64              // harmonic frequencies, cm⁻¹ (raw archive only)
	SMILES    [2]string              // GDB-17 and B3LYP-relaxed SMILES (raw archive only)
	InChI     [2]string              // GDB-17 and B3LYP-relaxed InChI (raw archive only)
}

// NAtoms returns the number of atoms.
func (m *Molecule) NAtoms() int { return len(m.Z) }

// Validate checks the invariants every writer relies on: matching lengths, known elements,
// finite coordinates, at most MaxAtoms atoms. The error names the field.
func (m *Molecule) Validate() error {
	n := len(m.Z)
	if n == 0 {
		return fmt.Errorf("molecule %d: field atoms: no atoms", m.ID)
	}
	if n > MaxAtoms {
		return fmt.Errorf("molecule %d: field atoms: %d atoms, more than %d", m.ID, n, MaxAtoms)
	}
	if len(m.Positions) != n {
		return fmt.Errorf("molecule %d: field positions: %d rows for %d atoms", m.ID, len(m.Positions), n)
	}
	if m.Mulliken != nil && len(m.Mulliken) != n {
		return fmt.Errorf("molecule %d: field mulliken: %d values for %d atoms", m.ID, len(m.Mulliken), n)
	}
	for i, z := range m.Z {
		if TypeIndex(z) < 0 {
			return fmt.Errorf("molecule %d: atom %d: field z: unknown atomic number %d", m.ID, i, z)
		}
		for k, v := range m.Positions[i] {
			if math.IsNaN(v) || math.IsInf(v, 0) {
				return fmt.Errorf("molecule %d: atom %d: field positions[%d]: non-finite value %v", m.ID, i, k, v)
			}
		}
	}
	return nil
}

// Centered returns the positions with their (unweighted) mean removed, as en_flows does.
func (m *Molecule) Centered() [][3]float64 {
	out := make([][3]float64, len(m.Positions))
	var mean [3]float64
	for _, p := range m.Positions {
		for k := range 3 {
			mean[k] += p[k]
		}
	}
	n := float64(len(m.Positions))
	for k := range 3 {
		mean[k] /= n
	}
	for i, p := range m.Positions {
		for k := range 3 {
			out[i][k] = p[k] - mean[k]
		}
	}
	return out
}
