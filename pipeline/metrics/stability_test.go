package metrics

import (
	"fmt"
	"math"
	"strings"
	"testing"
	"time"
)

const (
	tH = iota
	tC
	tN
	tO
	tF
)

// TestBondOrderCutoffs checks every cutoff of REFERENCE §3.1's Å table (typed in here
// independently of the pm tables): just below a cutoff gives that order, just above gives the
// next lower order.
func TestBondOrderCutoffs(t *testing.T) {
	type pair struct {
		a, b    int
		cutoffs [3]float64 // Å; single, double, triple; 0 = none
	}
	table := []pair{
		{tH, tH, [3]float64{0.84}},
		{tH, tC, [3]float64{1.19}},
		{tH, tN, [3]float64{1.11}},
		{tH, tO, [3]float64{1.06}},
		{tH, tF, [3]float64{1.02}},
		{tC, tC, [3]float64{1.64, 1.39, 1.23}},
		{tC, tN, [3]float64{1.57, 1.34, 1.19}},
		{tC, tO, [3]float64{1.53, 1.25, 1.16}},
		{tC, tF, [3]float64{1.45}},
		{tN, tN, [3]float64{1.55, 1.30, 1.13}},
		{tN, tO, [3]float64{1.50, 1.26}},
		{tN, tF, [3]float64{1.46}},
		{tO, tO, [3]float64{1.58, 1.26}},
		{tO, tF, [3]float64{1.52}},
		{tF, tF, [3]float64{1.52}},
	}
	const eps = 1e-6 // Å
	sym := []string{"H", "C", "N", "O", "F"}
	for _, p := range table {
		for k, c := range p.cutoffs {
			if c == 0 {
				continue
			}
			order := k + 1
			for _, tc := range []struct {
				what string
				d    float64
				want int
			}{
				{"below", c - eps, order},
				{"above", c + eps, order - 1},
			} {
				name := fmt.Sprintf("%s-%s/order%d/%s", sym[p.a], sym[p.b], order, tc.what)
				t.Run(name, func(t *testing.T) {
					if got := BondOrder(p.a, p.b, tc.d); got != tc.want {
						t.Errorf("BondOrder(%s,%s,%.7f Å) = %d, want %d", sym[p.a], sym[p.b], tc.d, got, tc.want)
					}
					if got := BondOrder(p.b, p.a, tc.d); got != tc.want {
						t.Errorf("BondOrder(%s,%s,%.7f Å) = %d, want %d (swapped)", sym[p.b], sym[p.a], tc.d, got, tc.want)
					}
				})
			}
		}
	}
}

// TestBondOrderSpecial covers exact cutoffs (strict <), orders far from any cutoff,
// pairs without multiple bonds, invalid input.
func TestBondOrderSpecial(t *testing.T) {
	tests := []struct {
		name string
		a, b int
		d    float64
		want int
	}{
		{"C-O exactly at double cutoff 125 pm is single", tC, tO, 1.25, 1},
		{"N-O exactly at single cutoff 150 pm is none", tN, tO, 1.50, 0},
		{"C-C at 1.0 Å is triple", tC, tC, 1.0, 3},
		{"C-C 1.385 Å is double", tC, tC, 1.385, 2},
		{"C-C ethane 1.53 Å is single", tC, tC, 1.53, 1},
		{"C-H 1.09 Å is single", tC, tH, 1.09, 1},
		{"H-H very close is still single (no double H-H)", tH, tH, 0.1, 1},
		{"C-F very close is single (no double C-F)", tC, tF, 0.5, 1},
		{"N-O very close is double (no triple N-O)", tN, tO, 0.5, 2},
		{"zero distance C-C is triple", tC, tC, 0, 3},
		{"far apart is none", tC, tC, 5, 0},
		{"NaN is none", tC, tC, math.NaN(), 0},
		{"+Inf is none", tC, tC, math.Inf(1), 0},
		{"negative type is none", -1, tC, 1.0, 0},
		{"type 5 is none", tC, 5, 1.0, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := BondOrder(tc.a, tc.b, tc.d); got != tc.want {
				t.Errorf("BondOrder(%d,%d,%v) = %d, want %d", tc.a, tc.b, tc.d, got, tc.want)
			}
		})
	}
}

func TestBondTablesSymmetric(t *testing.T) {
	for a := range NumTypes {
		for b := range NumTypes {
			for k, tab := range []*[NumTypes][NumTypes]int{&BondLength1, &BondLength2, &BondLength3} {
				if tab[a][b] != tab[b][a] {
					t.Errorf("bonds%d[%d][%d]=%d but [%d][%d]=%d", k+1, a, b, tab[a][b], b, a, tab[b][a])
				}
			}
		}
	}
}

// Hand-made molecules (positions in Å).
var (
	methane = mol{[]int{tC, tH, tH, tH, tH}, [][3]float64{
		{0, 0, 0}, {0.629, 0.629, 0.629}, {-0.629, -0.629, 0.629}, {-0.629, 0.629, -0.629}, {0.629, -0.629, -0.629},
	}}
	methyl = mol{methane.types[:4], methane.pos[:4]}
	water  = mol{[]int{tO, tH, tH}, [][3]float64{{0, 0, 0}, {0.96, 0, 0}, {-0.24, 0.93, 0}}}
	hcn    = mol{[]int{tH, tC, tN}, [][3]float64{{-1.07, 0, 0}, {0, 0, 0}, {1.16, 0, 0}}}
	o2     = mol{[]int{tO, tO}, [][3]float64{{0, 0, 0}, {0, 0, 1.21}}}
	n2     = mol{[]int{tN, tN}, [][3]float64{{0, 0, 0}, {1.10, 0, 0}}}
	// Two far-apart water molecules: stable (stability does not require connectivity).
	twoWaters = mol{append(append([]int{}, water.types...), water.types...), append(append([][3]float64{}, water.pos...),
		[3]float64{10, 0, 0}, [3]float64{10.96, 0, 0}, [3]float64{9.76, 0.93, 0})}
	// Ethylene with a C=C bond stretched to single: both carbons have valence 3.
	ethyleneStretched = mol{[]int{tC, tC, tH, tH, tH, tH}, [][3]float64{
		{0, 0, 0}, {1.45, 0, 0}, {-0.55, 0.93, 0}, {-0.55, -0.93, 0}, {2.0, 0.93, 0}, {2.0, -0.93, 0},
	}}
)

type mol struct {
	types []int
	pos   [][3]float64
}

func TestCheckStabilityHandMade(t *testing.T) {
	tests := []struct {
		name       string
		m          mol
		wantTotals []int
		wantStable int
		wantMol    bool
	}{
		{"methane", methane, []int{4, 1, 1, 1, 1}, 5, true},
		{"methyl radical", methyl, []int{3, 1, 1, 1}, 3, false},
		{"water", water, []int{2, 1, 1}, 3, true},
		{"HCN triple bond", hcn, []int{1, 4, 3}, 3, true},
		{"O2 double bond", o2, []int{2, 2}, 2, true},
		{"N2 triple bond", n2, []int{3, 3}, 2, true},
		{"two distant waters", twoWaters, []int{2, 1, 1, 2, 1, 1}, 6, true},
		{"stretched ethylene", ethyleneStretched, []int{3, 3, 1, 1, 1, 1}, 4, false},
		{"single atom", mol{[]int{tC}, [][3]float64{{0, 0, 0}}}, []int{0}, 0, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			totals, err := BondTotals(nil, tc.m.types, tc.m.pos)
			if err != nil {
				t.Fatal(err)
			}
			if fmt.Sprint(totals) != fmt.Sprint(tc.wantTotals) {
				t.Errorf("totals %v, want %v", totals, tc.wantTotals)
			}
			r, err := CheckStability(tc.m.types, tc.m.pos)
			if err != nil {
				t.Fatal(err)
			}
			want := MoleculeResult{Stable: tc.wantMol, NStable: tc.wantStable, NAtoms: len(tc.m.types)}
			if r != want {
				t.Errorf("CheckStability = %+v, want %+v", r, want)
			}
		})
	}
}

func TestStabilityErrors(t *testing.T) {
	tests := []struct {
		name    string
		run     func(s *Stability) error
		wantErr string
	}{
		{"length mismatch", func(s *Stability) error {
			_, err := s.Add([]int{tC, tH}, [][3]float64{{0, 0, 0}})
			return err
		}, "1 positions for 2 atom types"},
		{"bad type index", func(s *Stability) error {
			_, err := s.Add([]int{tC, 7}, [][3]float64{{0, 0, 0}, {1, 0, 0}})
			return err
		}, "atom 1: type index 7"},
		{"bad atomic number", func(s *Stability) error {
			_, err := s.AddNumbers([]int{6, 119}, [][3]float64{{0, 0, 0}, {1, 0, 0}})
			return err
		}, "atom 1: atomic number 119"},
		{"general length mismatch", func(s *Stability) error {
			_, err := s.AddNumbers([]int{6, 16}, [][3]float64{{0, 0, 0}})
			return err
		}, "1 positions for 2 atoms"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var s Stability
			err := tc.run(&s)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
			}
			if s.Molecules != 0 || s.Atoms != 0 {
				t.Errorf("failed Add changed totals: %+v", s)
			}
		})
	}
}

func TestStabilityPooling(t *testing.T) {
	var s Stability
	for _, m := range []mol{methane, methyl, water} {
		if _, err := s.Add(m.types, m.pos); err != nil {
			t.Fatal(err)
		}
	}
	// 12 atoms of which 11 stable (the methyl carbon is not); 2 of 3 molecules stable.
	if s.Atoms != 12 || s.StableAtoms != 11 || s.Molecules != 3 || s.StableMolecules != 2 {
		t.Fatalf("totals %+v", s)
	}
	if got, want := s.AtomStable(), 11.0/12; got != want {
		t.Errorf("AtomStable %v, want %v", got, want)
	}
	if got, want := s.MolStable(), 2.0/3; got != want {
		t.Errorf("MolStable %v, want %v", got, want)
	}
	sum := s.Summary()
	if c := sum.Elements["C"]; c.Atoms != 2 || c.Stable != 1 || c.Valence[3] != 1 || c.Valence[4] != 1 {
		t.Errorf("carbon summary %+v", c)
	}
	if _, ok := sum.Elements["F"]; ok {
		t.Errorf("fluorine listed without atoms")
	}
	var empty Stability
	if !math.IsNaN(empty.AtomStable()) || !math.IsNaN(empty.MolStable()) {
		t.Errorf("empty ratios not NaN")
	}
	if es := empty.Summary(); es.AtomStable != 0 || es.MolStable != 0 {
		t.Errorf("empty summary ratios %v %v", es.AtomStable, es.MolStable)
	}
}

// TestStabilityTestSplit reproduces REFERENCE §3.1 on the 13,083 real test molecules:
// mol_stable 0.9522, atm_stable 0.9934.
func TestStabilityTestSplit(t *testing.T) {
	mols := loadTestSplit(t)
	if len(mols) != testSplitMolecules {
		t.Fatalf("%d molecules, want %d", len(mols), testSplitMolecules)
	}
	start := time.Now()
	s, err := StabilityOfMolecules(mols)
	if err != nil {
		t.Fatal(err)
	}
	elapsed := time.Since(start)
	t.Logf("stability of %d molecules in %v", len(mols), elapsed)
	t.Logf("mol_stable = %d/%d = %.6f", s.StableMolecules, s.Molecules, s.MolStable())
	t.Logf("atom_stable = %d/%d = %.6f", s.StableAtoms, s.Atoms, s.AtomStable())
	if s.Molecules != testSplitMolecules || s.Atoms != testSplitAtoms {
		t.Errorf("counted %d molecules, %d atoms; want %d, %d", s.Molecules, s.Atoms, testSplitMolecules, testSplitAtoms)
	}
	if got := math.Round(s.MolStable()*1e4) / 1e4; got != 0.9522 {
		t.Errorf("mol_stable %.6f rounds to %.4f, want 0.9522", s.MolStable(), got)
	}
	if got := math.Round(s.AtomStable()*1e4) / 1e4; got != 0.9934 {
		t.Errorf("atom_stable %.6f rounds to %.4f, want 0.9934", s.AtomStable(), got)
	}
	// Element counts of REFERENCE §2.3, and consistency of the valence tables.
	wantAtoms := [NumTypes]int64{120847, 83118, 13297, 18289, 332}
	for typ, e := range s.Elements {
		if e.Atoms != wantAtoms[typ] {
			t.Errorf("type %d: %d atoms, want %d", typ, e.Atoms, wantAtoms[typ])
		}
		var n int64
		for _, c := range e.Valence {
			n += c
		}
		if n != e.Atoms || e.Valence[Valence[typ]] != e.Stable {
			t.Errorf("type %d: valence table %v inconsistent with %d atoms, %d stable", typ, e.Valence, e.Atoms, e.Stable)
		}
	}
	if elapsed > 5*time.Second { // generous: typically ~0.1 s even on a loaded machine
		t.Errorf("stability took %v", elapsed)
	}

	// Merging per-half accumulators equals the whole.
	var a, b Stability
	for i := range mols {
		acc := &a
		if i%2 == 1 {
			acc = &b
		}
		if _, err := acc.AddMolecule(&mols[i]); err != nil {
			t.Fatal(err)
		}
	}
	a.Merge(&b)
	if fmt.Sprint(a.Summary()) != fmt.Sprint(s.Summary()) {
		t.Errorf("merged halves differ from the whole:\n%+v\n%+v", a.Summary(), s.Summary())
	}
}

func BenchmarkStabilityTestSplit(b *testing.B) {
	mols := loadTestSplit(b)
	for b.Loop() {
		if _, err := StabilityOfMolecules(mols); err != nil {
			b.Fatal(err)
		}
	}
}
