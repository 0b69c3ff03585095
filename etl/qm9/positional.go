package qm9

import "github.com/enflow/enflow/etl/molecule"

// PositionalAtoms is the atom count of the QM9 Positional subset (en_flows main_qm9_pos.py,
// filter_n_atoms = 19).
const PositionalAtoms = 19

// IsPositional reports whether m belongs to QM9 Positional (exactly 19 atoms).
func IsPositional(m *molecule.Molecule) bool { return m.NAtoms() == PositionalAtoms }

// FilterPositional returns the molecules with exactly 19 atoms, in order. It copies the
// Molecule structs but shares their slices with mols.
func FilterPositional(mols []molecule.Molecule) []molecule.Molecule {
	var out []molecule.Molecule
	for i := range mols {
		if IsPositional(&mols[i]) {
			out = append(out, mols[i])
		}
	}
	return out
}
