// Package molecule holds the in-memory record shared by every molecule reader, writer and
// metric: one molecule with its atoms, positions, the 15 QM9 properties and, for molecules
// from other sources (etl/molfile), a name, formal charges, bonds and free-form properties.
//
// Two levels of validity: Validate accepts any element (Z = 1..MaxZ, see Symbol and
// NumberOfSymbol) and up to MaxMoleculeAtoms atoms; ValidateQM9 additionally requires QM9's
// elements (H, C, N, O, F) and at most MaxAtoms (29) atoms. The QM9-specific names
// (Symbols, Numbers, NumTypes, MaxAtoms, TypeIndex, NumberOf) keep their QM9 meaning.
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

// MaxMoleculeAtoms is the largest molecule the general record (Validate) and the molecule
// table accept: a generous bound for user datasets (proteins fragments, clusters), far above
// QM9's 29, that still keeps an O(n²) pair metric or a padded batch bounded.
const MaxMoleculeAtoms = 4096

// TypeIndex returns the one-hot index of atomic number z, or -1 if z is not H, C, N, O or F.
func TypeIndex(z int) int {
	for i, n := range Numbers {
		if n == z {
			return i
		}
	}
	return -1
}

// NumberOf returns the atomic number of a QM9 element symbol ("C" → 6, case-sensitive), or 0
// if the symbol is not H, C, N, O or F. NumberOfSymbol covers every element.
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

// Bond is a chemical bond between atoms A and B (0-based atom indices, A ≠ B) of bond order
// Order (1 single, 2 double, 3 triple, 4 aromatic as in SDF, or other small positive codes).
type Bond struct {
	A, B  int
	Order int
}

// MaxBondOrder is the largest bond order code Validate accepts (SDF bond types 1..8).
const MaxBondOrder = 8

// Molecule is one molecule. Positions are in Å, in the raw frame (not centred).
// Fields that a source does not provide are left at their zero value (nil slices, "", nil map).
type Molecule struct {
	ID        int64                  // 1-based gdb index (QM9) or 1-based input order (etl/molfile)
	Split     string                 // "train", "valid", "test" or ""
	Z         []int                  // atomic numbers, len NAtoms
	Positions [][3]float64           // Å
	Mulliken  []float64              // Mulliken partial charges (raw archive only)
	Props     [NumProperties]float64 // see PropertyNames; NaN where unknown
	Omega1    float64                // largest harmonic frequency, cm⁻¹; NaN where unknown
	Freqs     []float64              // harmonic frequencies, cm⁻¹ (raw archive only)
	SMILES    [2]string              // GDB-17 and B3LYP-relaxed SMILES (raw archive only)
	InChI     [2]string              // GDB-17 and B3LYP-relaxed InChI (raw archive only)

	Name          string         // title: SDF header line 1 or the plain-XYZ comment line
	Source        string         // origin, "file#record" (record 1-based within the file)
	FormalCharges []int          // per-atom formal charges (SDF M  CHG), nil if unknown
	Bonds         []Bond         // bonds (SDF bond block), nil if unknown
	Properties    map[string]any // per-molecule properties: string or float64 values (extended XYZ key=value pairs, SDF data items), nil if none
}

// NAtoms returns the number of atoms.
func (m *Molecule) NAtoms() int { return len(m.Z) }

// Validate checks the invariants every writer relies on: matching lengths, atomic numbers
// in 1..MaxZ, finite coordinates, 1..MaxMoleculeAtoms atoms, and (when present) one formal
// charge per atom, bonds between distinct existing atoms with an order in 1..MaxBondOrder,
// and property values that are strings or finite float64s. The error names the field.
func (m *Molecule) Validate() error {
	n := len(m.Z)
	if n == 0 {
		return fmt.Errorf("molecule %d: field atoms: no atoms", m.ID)
	}
	if n > MaxMoleculeAtoms {
		return fmt.Errorf("molecule %d: field atoms: %d atoms, more than %d", m.ID, n, MaxMoleculeAtoms)
	}
	if err := m.validateArrays(); err != nil {
		return err
	}
	for i, z := range m.Z {
		if !ValidZ(z) {
			return fmt.Errorf("molecule %d: atom %d: field z: unknown atomic number %d", m.ID, i, z)
		}
	}
	return nil
}

// ValidateQM9 is Validate plus QM9's limits: every atom is H, C, N, O or F and there are at
// most MaxAtoms (29) atoms. The QM9 readers and writers (etl/qm9) are this strict.
func (m *Molecule) ValidateQM9() error {
	n := len(m.Z)
	if n == 0 {
		return fmt.Errorf("molecule %d: field atoms: no atoms", m.ID)
	}
	if n > MaxAtoms {
		return fmt.Errorf("molecule %d: field atoms: %d atoms, more than %d", m.ID, n, MaxAtoms)
	}
	if err := m.validateArrays(); err != nil {
		return err
	}
	for i, z := range m.Z {
		if TypeIndex(z) < 0 {
			return fmt.Errorf("molecule %d: atom %d: field z: unknown atomic number %d", m.ID, i, z)
		}
	}
	return nil
}

// validateArrays checks the per-atom arrays, coordinates, bonds and properties.
func (m *Molecule) validateArrays() error {
	n := len(m.Z)
	if len(m.Positions) != n {
		return fmt.Errorf("molecule %d: field positions: %d rows for %d atoms", m.ID, len(m.Positions), n)
	}
	if m.Mulliken != nil && len(m.Mulliken) != n {
		return fmt.Errorf("molecule %d: field mulliken: %d values for %d atoms", m.ID, len(m.Mulliken), n)
	}
	if m.FormalCharges != nil && len(m.FormalCharges) != n {
		return fmt.Errorf("molecule %d: field formal_charges: %d values for %d atoms", m.ID, len(m.FormalCharges), n)
	}
	for i := range m.Positions {
		for k, v := range m.Positions[i] {
			if math.IsNaN(v) || math.IsInf(v, 0) {
				return fmt.Errorf("molecule %d: atom %d: field positions[%d]: non-finite value %v", m.ID, i, k, v)
			}
		}
	}
	for i, b := range m.Bonds {
		if b.A < 0 || b.A >= n || b.B < 0 || b.B >= n || b.A == b.B {
			return fmt.Errorf("molecule %d: bond %d: field bonds: atoms %d-%d invalid for %d atoms", m.ID, i, b.A, b.B, n)
		}
		if b.Order < 1 || b.Order > MaxBondOrder {
			return fmt.Errorf("molecule %d: bond %d: field bonds: order %d outside 1..%d", m.ID, i, b.Order, MaxBondOrder)
		}
	}
	for k, v := range m.Properties {
		switch v := v.(type) {
		case string:
		case float64:
			if math.IsNaN(v) || math.IsInf(v, 0) {
				return fmt.Errorf("molecule %d: field properties[%q]: non-finite value %v", m.ID, k, v)
			}
		default:
			return fmt.Errorf("molecule %d: field properties[%q]: value of type %T, want string or float64", m.ID, k, v)
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
