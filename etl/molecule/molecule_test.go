package molecule

import (
	"strings"
	"testing"
)

// TestValidateLevels: the general record accepts any element and up to MaxMoleculeAtoms
// atoms; ValidateQM9 keeps QM9's H/C/N/O/F and 29 atoms.
func TestValidateLevels(t *testing.T) {
	mk := func(z ...int) *Molecule {
		m := &Molecule{ID: 7, Z: z, Positions: make([][3]float64, len(z))}
		for i := range m.Positions {
			m.Positions[i] = [3]float64{float64(i), 0, 0}
		}
		return m
	}
	many := func(n int) *Molecule {
		z := make([]int, n)
		for i := range z {
			z[i] = 6
		}
		return mk(z...)
	}
	tests := []struct {
		name         string
		m            *Molecule
		general, qm9 string // "" = valid, else a substring of the error
	}{
		{"CH4", mk(6, 1, 1, 1, 1), "", ""},
		{"HCl", mk(17, 1), "", "unknown atomic number 17"},
		{"Og", mk(118), "", "unknown atomic number 118"},
		{"Z 0", mk(0), "unknown atomic number 0", "unknown atomic number 0"},
		{"Z 119", mk(119), "unknown atomic number 119", "unknown atomic number 119"},
		{"30 atoms", many(30), "", "30 atoms, more than 29"},
		{"4096 atoms", many(MaxMoleculeAtoms), "", "more than 29"},
		{"4097 atoms", many(MaxMoleculeAtoms + 1), "more than 4096", "more than 29"},
		{"no atoms", mk(), "no atoms", "no atoms"},
	}
	check := func(t *testing.T, what string, err error, want string) {
		t.Helper()
		switch {
		case want == "" && err != nil:
			t.Errorf("%s: %v, want valid", what, err)
		case want != "" && (err == nil || !strings.Contains(err.Error(), want)):
			t.Errorf("%s: %v, want an error containing %q", what, err, want)
		}
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			check(t, "Validate", tc.m.Validate(), tc.general)
			check(t, "ValidateQM9", tc.m.ValidateQM9(), tc.qm9)
		})
	}
}
