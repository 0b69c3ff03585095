package metrics

import (
	"math"
	"reflect"
	"testing"

	"github.com/enflow/enflow/etl/molecule"
)

// TestBondOrderZMatchesQM9 checks that the extended tables give exactly BondOrder for every
// H/C/N/O/F pair over a fine distance sweep (so QM9 verdicts cannot change).
func TestBondOrderZMatchesQM9(t *testing.T) {
	for a := range NumTypes {
		for b := range NumTypes {
			for d := 0.5; d < 2.0; d += 0.0005 {
				if got, want := BondOrderZ(molecule.Numbers[a], molecule.Numbers[b], d), BondOrder(a, b, d); got != want {
					t.Fatalf("BondOrderZ(%d,%d,%.4f) = %d, BondOrder = %d", molecule.Numbers[a], molecule.Numbers[b], d, got, want)
				}
			}
		}
	}
	for _, tc := range []struct {
		z1, z2 int
		d      float64
		want   int
	}{
		{17, 1, 1.36, 1}, {1, 17, 1.38, 0}, // H–Cl single < 1.37 Å
		{6, 16, 1.64, 2}, {16, 6, 1.64, 2}, {6, 16, 1.66, 1}, // C=S < 1.65 Å, both orders
		{15, 8, 1.50, 2}, {16, 16, 2.10, 1}, {53, 53, 2.75, 1}, {53, 53, 2.77, 0},
		{5, 6, 1.0, 0},  // B–C: no listed length
		{54, 1, 1.0, 0}, // Xe: uncovered
		{6, 16, math.NaN(), 0},
	} {
		if got := BondOrderZ(tc.z1, tc.z2, tc.d); got != tc.want {
			t.Errorf("BondOrderZ(%d,%d,%v) = %d, want %d", tc.z1, tc.z2, tc.d, got, tc.want)
		}
	}
}

func TestStabilityCoverage(t *testing.T) {
	type want struct {
		stable, uncovered bool
		nStable           int
	}
	hcl := mol{[]int{17, 1}, [][3]float64{{0, 0, 0}, {0, 0, 1.2746}}}
	// SF4 (seesaw, S–F 1.60 Å): S has 4 single bonds, the allowed valence 4.
	sf4 := mol{[]int{16, 9, 9, 9, 9}, [][3]float64{{0, 0, 0}, {1.60, 0, 0}, {-1.60, 0, 0}, {0, 1.13, 1.13}, {0, 1.13, -1.13}}}
	// Methanethiol: S has valence 2, not EDM's allowed 4, so S is unstable (C and the Hs are fine).
	ch3sh := mol{[]int{6, 16, 1, 1, 1, 1}, [][3]float64{{0, 0, 0}, {1.82, 0, 0}, {-0.363, 1.027, 0}, {-0.363, -0.5135, 0.8894}, {-0.363, -0.5135, -0.8894}, {2.15, 1.30, 0}}}
	// Water next to a (hypothetical) Xe atom: Xe has no valence data.
	xeWater := mol{[]int{8, 1, 1, 54}, append(append([][3]float64{}, water.pos...), [3]float64{5, 0, 0})}
	for _, tc := range []struct {
		name string
		m    mol
		want want
	}{
		{"HCl", hcl, want{true, false, 2}},
		{"SF4", sf4, want{true, false, 5}},
		{"CH3SH", ch3sh, want{false, false, 5}},
		{"Xe + water", xeWater, want{false, true, 0}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var s Stability
			r, err := s.AddNumbers(tc.m.types, tc.m.pos)
			if err != nil {
				t.Fatal(err)
			}
			if r.Stable != tc.want.stable || r.Uncovered != tc.want.uncovered || r.NStable != tc.want.nStable {
				t.Errorf("result %+v, want %+v", r, tc.want)
			}
		})
	}

	// Pooled: the Xe molecule is counted apart and not in the ratios.
	var s Stability
	for _, m := range []mol{hcl, sf4, ch3sh, xeWater, xeWater} {
		if _, err := s.AddNumbers(m.types, m.pos); err != nil {
			t.Fatal(err)
		}
	}
	var o Stability
	o.Merge(&s)
	for name, st := range map[string]*Stability{"direct": &s, "merged": &o} {
		sum := st.Summary()
		if sum.NMolecules != 3 || sum.NStableMolecules != 2 || sum.NAtoms != 13 || sum.NStableAtoms != 12 {
			t.Errorf("%s: counts %+v", name, sum)
		}
		if sum.NUncoveredMolecules != 2 || sum.UncoveredAtoms != 2 || sum.NExcludedAtoms != 8 ||
			!reflect.DeepEqual(sum.UncoveredElements, map[string]int64{"Xe": 2}) {
			t.Errorf("%s: uncovered %d molecules, %d atoms, %d excluded, %v", name, sum.NUncoveredMolecules, sum.UncoveredAtoms, sum.NExcludedAtoms, sum.UncoveredElements)
		}
		if e := sum.Elements["S"]; e.Atoms != 2 || e.Stable != 1 || e.Valence[2] != 1 || e.Valence[4] != 1 {
			t.Errorf("%s: S stats %+v", name, e)
		}
		if e := sum.Elements["Cl"]; e.Atoms != 1 || e.Stable != 1 {
			t.Errorf("%s: Cl stats %+v", name, e)
		}
		if math.Abs(sum.MolStable-2.0/3) > 1e-12 {
			t.Errorf("%s: mol_stable %v", name, sum.MolStable)
		}
	}
	if got := CoveredElements(); !reflect.DeepEqual(got, []int{1, 5, 6, 7, 8, 9, 14, 15, 16, 17, 33, 35, 53}) {
		t.Errorf("CoveredElements = %v", got)
	}
}
