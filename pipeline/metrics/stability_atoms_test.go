package metrics

import (
	"slices"
	"testing"
)

func TestAtomStability(t *testing.T) {
	ch3sh := mol{[]int{6, 16, 1, 1, 1, 1}, [][3]float64{{0, 0, 0}, {1.82, 0, 0}, {-0.363, 1.027, 0}, {-0.363, -0.5135, 0.8894}, {-0.363, -0.5135, -0.8894}, {2.15, 1.30, 0}}}
	h2o := mol{[]int{8, 1, 1}, water.pos}
	// Water with one hydrogen pulled 3 Å away: O and that H are unstable.
	broken := mol{[]int{8, 1, 1}, [][3]float64{{0, 0, 0}, {0.9572, 0, 0}, {-3, 0, 0}}}
	xeWater := mol{[]int{8, 1, 1, 54}, append(append([][3]float64{}, water.pos...), [3]float64{5, 0, 0})}
	for _, tc := range []struct {
		name      string
		m         mol
		want      []bool
		uncovered bool
	}{
		{"water", h2o, []bool{true, true, true}, false},
		{"broken water", broken, []bool{false, true, false}, false},
		{"CH3SH: S has valence 2", ch3sh, []bool{true, false, true, true, true, true}, false},
		{"Xe + water: uncovered", xeWater, nil, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, r, err := AtomStability(tc.m.types, tc.m.pos)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tc.want) || r.Uncovered != tc.uncovered {
				t.Errorf("AtomStability = %v (uncovered %v), want %v (uncovered %v)", got, r.Uncovered, tc.want, tc.uncovered)
			}
		})
	}
	if _, _, err := AtomStability([]int{1, 200}, [][3]float64{{0, 0, 0}, {1, 0, 0}}); err == nil {
		t.Error("atomic number 200: no error")
	}
}

// TestAtomStabilityMatchesTestSplit: on real QM9 molecules the per-atom flags add up to the
// pooled totals of Stability.
func TestAtomStabilityMatchesTestSplit(t *testing.T) {
	mols := loadTestSplit(t)
	var s Stability
	var stableAtoms, stableMols int64
	for i := range min(len(mols), 2000) {
		m := &mols[i]
		flags, r, err := AtomStability(m.Z, m.Positions)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.AddMolecule(m); err != nil {
			t.Fatal(err)
		}
		all := true
		for _, f := range flags {
			if f {
				stableAtoms++
			}
			all = all && f
		}
		if all != r.Stable {
			t.Fatalf("molecule %d: flags %v but verdict stable=%v", m.ID, flags, r.Stable)
		}
		if all {
			stableMols++
		}
	}
	if stableAtoms != s.StableAtoms || stableMols != s.StableMolecules {
		t.Errorf("flags: %d stable atoms, %d stable molecules; Stability: %d, %d", stableAtoms, stableMols, s.StableAtoms, s.StableMolecules)
	}
}
