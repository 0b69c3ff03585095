package metrics

import (
	"fmt"
	"math"
	"slices"

	"github.com/enflow/enflow/etl/molecule"
)

// Stability for elements beyond QM9.
//
// The bond lengths (pm) and allowed valences below extend the QM9 tables with the further
// elements for which EDM's qm9/bond_analyze.py lists literature values (wiredchemist.com and
// chemistry-reference.com): B, Si, P, S, Cl, As, Br, I. The bond-order rule, the margins and
// the strict comparisons are those of BondOrder; the H/C/N/O/F entries are exactly
// BondLength1/2/3, so a molecule of QM9 elements gets the same verdict on either path.
//
// An element is covered when it has an allowed valence and at least one bond length:
// H, B, C, N, O, F, Si, P, S, Cl, As, Br, I. A pair of covered elements without a listed
// length never bonds (order 0). EDM lists valences for Al, Hg and Bi but no bond lengths, so
// they are uncovered here, like every other element (e.g. Xe). EDM has the C=S double bond
// only when C is the first atom of the pair; here every pair is symmetric.
//
// Rule for uncovered atoms: a molecule containing at least one atom of an uncovered element
// is neither stable nor unstable. It is counted in UncoveredMolecules, its uncovered atoms in
// UncoveredAtoms and UncoveredElements, and all its atoms in ExcludedAtoms; it does not enter
// Molecules, Atoms, StableAtoms, StableMolecules or the per-element statistics, so
// mol_stable and atm_stable are over fully covered molecules only.

// extraBond is the lengths (pm) of one element pair outside H/C/N/O/F × H/C/N/O/F;
// 0 means the bond order does not exist.
type extraBond struct {
	a, b                   string
	single, double, triple int
}

var extraBonds = []extraBond{
	{"H", "B", 119, 0, 0}, {"H", "Si", 148, 0, 0}, {"H", "P", 144, 0, 0}, {"H", "As", 152, 0, 0},
	{"H", "S", 134, 0, 0}, {"H", "Cl", 127, 0, 0}, {"H", "Br", 141, 0, 0}, {"H", "I", 161, 0, 0},
	{"C", "Si", 185, 0, 0}, {"C", "P", 184, 0, 0}, {"C", "S", 182, 160, 0}, {"C", "Cl", 177, 0, 0},
	{"C", "Br", 194, 0, 0}, {"C", "I", 214, 0, 0},
	{"N", "P", 177, 0, 0}, {"N", "S", 168, 0, 0}, {"N", "Cl", 175, 0, 0}, {"N", "Br", 214, 0, 0}, {"N", "I", 222, 0, 0},
	{"O", "Si", 163, 0, 0}, {"O", "P", 163, 150, 0}, {"O", "S", 151, 0, 0}, {"O", "Cl", 164, 0, 0},
	{"O", "Br", 172, 0, 0}, {"O", "I", 194, 0, 0},
	{"F", "Si", 160, 0, 0}, {"F", "P", 156, 0, 0}, {"F", "S", 158, 0, 0}, {"F", "Cl", 166, 0, 0},
	{"F", "Br", 178, 0, 0}, {"F", "I", 187, 0, 0},
	{"B", "Cl", 175, 0, 0},
	{"Si", "Si", 233, 0, 0}, {"Si", "S", 200, 0, 0}, {"Si", "Cl", 202, 0, 0}, {"Si", "Br", 215, 0, 0}, {"Si", "I", 243, 0, 0},
	{"P", "P", 221, 0, 0}, {"P", "S", 210, 186, 0}, {"P", "Cl", 203, 0, 0}, {"P", "Br", 222, 0, 0},
	{"S", "S", 204, 0, 0}, {"S", "Cl", 207, 0, 0}, {"S", "Br", 225, 0, 0}, {"S", "I", 234, 0, 0},
	{"Cl", "Cl", 199, 0, 0}, {"Cl", "Br", 214, 0, 0},
	{"Br", "Br", 228, 0, 0},
	{"I", "I", 266, 0, 0},
}

// allowedValences lists the allowed total bond orders per covered element (as EDM: P 3 or 5,
// S 4, halogens 1, …).
var allowedValences = map[int][]int{
	1: {1}, 5: {3}, 6: {4}, 7: {3}, 8: {2}, 9: {1},
	14: {4}, 15: {3, 5}, 16: {4}, 17: {1}, 33: {3}, 35: {1}, 53: {1},
}

// zCutoff[[2]int{z1, z2}] are the strict upper bounds (pm) for bond orders 1..3 (−Inf when
// the order does not exist), for both orders of the pair.
var zCutoff, maxCutoffZ2 = func() (map[[2]int][3]float64, float64) {
	c := map[[2]int][3]float64{}
	maxPm := 0.0
	put := func(z1, z2, l1, l2, l3 int) {
		v := [3]float64{float64(l1 + Margin1), absent, absent}
		if l2 > 0 {
			v[1] = float64(l2 + Margin2)
		}
		if l3 > 0 {
			v[2] = float64(l3 + Margin3)
		}
		c[[2]int{z1, z2}], c[[2]int{z2, z1}] = v, v
		maxPm = max(maxPm, v[0])
	}
	for a := range NumTypes {
		for b := range NumTypes {
			put(molecule.Numbers[a], molecule.Numbers[b], BondLength1[a][b], BondLength2[a][b], BondLength3[a][b])
		}
	}
	for _, e := range extraBonds {
		put(molecule.NumberOfSymbol(e.a), molecule.NumberOfSymbol(e.b), e.single, e.double, e.triple)
	}
	// A little above the largest cutoff, squared in Å²; only used to skip the square root.
	return c, (maxPm/100 + 0.05) * (maxPm/100 + 0.05)
}()

// Covered reports whether stability can judge atoms of atomic number z (it has an allowed
// valence and bond lengths).
func Covered(z int) bool { _, ok := allowedValences[z]; return ok }

// CoveredElements returns the atomic numbers of the covered elements, ascending.
func CoveredElements() []int {
	out := make([]int, 0, len(allowedValences))
	for z := range allowedValences {
		out = append(out, z)
	}
	slices.Sort(out)
	return out
}

// AllowedValences returns the allowed total bond orders of atomic number z (nil if uncovered).
func AllowedValences(z int) []int { return slices.Clone(allowedValences[z]) }

// BondOrderZ is BondOrder for atomic numbers of any covered element; uncovered elements,
// pairs without a listed length and NaN distances give 0. For H, C, N, O, F it equals
// BondOrder.
func BondOrderZ(z1, z2 int, dist float64) int {
	c, ok := zCutoff[[2]int{z1, z2}]
	if !ok {
		return 0
	}
	return orderWithin(&c, dist)
}

// bondTotalsZ is BondTotals by atomic number (every atom covered).
func bondTotalsZ(dst []int, z []int, pos [][3]float64) []int {
	n := len(z)
	if cap(dst) < n {
		dst = make([]int, n)
	}
	dst = dst[:n]
	clear(dst)
	for i := range n {
		for j := i + 1; j < n; j++ {
			d2 := pairDist2(&pos[i], &pos[j])
			if !(d2 < maxCutoffZ2) {
				continue
			}
			if o := BondOrderZ(z[i], z[j], math.Sqrt(d2)); o > 0 {
				dst[i] += o
				dst[j] += o
			}
		}
	}
	return dst
}

// addGeneral evaluates a molecule with at least one atom outside H/C/N/O/F.
func (s *Stability) addGeneral(z []int, pos [][3]float64) (MoleculeResult, error) {
	if len(pos) != len(z) {
		return MoleculeResult{}, fmt.Errorf("%d positions for %d atoms", len(pos), len(z))
	}
	uncovered := 0
	for i, zi := range z {
		if !molecule.ValidZ(zi) {
			return MoleculeResult{}, fmt.Errorf("atom %d: atomic number %d outside 1..%d", i, zi, molecule.MaxZ)
		}
		if !Covered(zi) {
			uncovered++
		}
	}
	r := MoleculeResult{NAtoms: len(z)}
	if uncovered > 0 {
		r.Uncovered = true
		s.UncoveredMolecules++
		s.UncoveredAtoms += int64(uncovered)
		s.ExcludedAtoms += int64(len(z))
		if s.UncoveredElements == nil {
			s.UncoveredElements = map[int]int64{}
		}
		for _, zi := range z {
			if !Covered(zi) {
				s.UncoveredElements[zi]++
			}
		}
		return r, nil
	}
	totals := bondTotalsZ(s.totals, z, pos)
	s.totals = totals
	for i, zi := range z {
		e := s.elementStats(zi)
		e.Atoms++
		if e.Valence == nil {
			e.Valence = make(map[int]int64)
		}
		e.Valence[totals[i]]++
		if slices.Contains(allowedValences[zi], totals[i]) {
			e.Stable++
			r.NStable++
		}
	}
	s.count(&r)
	return r, nil
}

// elementStats returns the statistics of atomic number z (QM9 elements in Elements, others
// in Other).
func (s *Stability) elementStats(z int) *ElementStats {
	if t := molecule.TypeIndex(z); t >= 0 {
		return &s.Elements[t]
	}
	if s.Other == nil {
		s.Other = map[int]*ElementStats{}
	}
	e, ok := s.Other[z]
	if !ok {
		e = &ElementStats{}
		s.Other[z] = e
	}
	return e
}
