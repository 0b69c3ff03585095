// Package metrics implements the QM9 evaluation metrics of en_flows exactly as the reference
// code computes them (REFERENCE §3.1, §3.2, §3.4): bond orders from distance cutoffs, atom and
// molecule stability, the relative-distance histogram with its Jensen–Shannon divergence, and
// the QM9 molecule-size distribution p(N).
//
// Atoms are identified by their type index in the one-hot order of en_flows
// (H→0, C→1, N→2, O→3, F→4, see molecule.Symbols) or, through AddNumbers/AddMolecule, by
// atomic number, which also covers B, Si, P, S, Cl, As, Br and I (stability_elements.go;
// molecules with other elements are reported as uncovered); positions are in Å.
package metrics

import (
	"fmt"
	"math"

	"github.com/enflow/enflow/etl/molecule"
)

// NumTypes is the number of atom types (H, C, N, O, F).
const NumTypes = molecule.NumTypes

// Bond lengths in picometres, indexed by type index. A zero entry means the bond order does
// not exist for that pair (the reference uses −1000 there, which can never be reached).
var (
	// BondLength1 holds single-bond lengths.
	BondLength1 = [NumTypes][NumTypes]int{
		{74, 109, 101, 96, 92},
		{109, 154, 147, 143, 135},
		{101, 147, 145, 140, 136},
		{96, 143, 140, 148, 142},
		{92, 135, 136, 142, 142},
	}
	// BondLength2 holds double-bond lengths (C–C, C–N, C–O, N–N, N–O, O–O only).
	BondLength2 = [NumTypes][NumTypes]int{
		{0, 0, 0, 0, 0},
		{0, 134, 129, 120, 0},
		{0, 129, 125, 121, 0},
		{0, 120, 121, 121, 0},
		{0, 0, 0, 0, 0},
	}
	// BondLength3 holds triple-bond lengths (C–C, C–N, C–O, N–N only).
	BondLength3 = [NumTypes][NumTypes]int{
		{0, 0, 0, 0, 0},
		{0, 120, 116, 113, 0},
		{0, 116, 110, 0, 0},
		{0, 113, 0, 0, 0},
		{0, 0, 0, 0, 0},
	}
)

// Margins added to BondLength1/2/3 (pm), tuned by the reference to maximise the stability of
// real QM9 molecules.
const (
	Margin1 = 10
	Margin2 = 5
	Margin3 = 3
)

// Valence is the allowed total bond order per type: H 1, C 4, N 3, O 2, F 1.
var Valence = [NumTypes]int{1, 4, 3, 2, 1}

// cutoff[a][b][k] is the strict upper bound in pm for bond order k+1 (absent = −Inf: no
// distance is below it).
var absent = math.Inf(-1)

var cutoff = func() (c [NumTypes][NumTypes][3]float64) {
	for a := range NumTypes {
		for b := range NumTypes {
			c[a][b] = [3]float64{absent, absent, absent}
			c[a][b][0] = float64(BondLength1[a][b] + Margin1)
			if BondLength2[a][b] > 0 {
				c[a][b][1] = float64(BondLength2[a][b] + Margin2)
			}
			if BondLength3[a][b] > 0 {
				c[a][b][2] = float64(BondLength3[a][b] + Margin3)
			}
		}
	}
	return c
}()

// maxCutoff2 is a squared distance in Å² beyond which no pair can be bonded (the largest
// cutoff is C–C single, 1.64 Å); used only to skip the square root, never to decide a bond.
const maxCutoff2 = 1.7 * 1.7

// BondOrder returns the bond order (0–3) between atoms of types t1 and t2 at distance dist Å,
// exactly as the reference get_bond_order: d = 100·dist pm, and with strict comparisons
// order 1 if d < single+10, 2 if also d < double+5, 3 if also d < triple+3. A type outside
// 0..NumTypes−1 or a NaN distance gives 0.
func BondOrder(t1, t2 int, dist float64) int {
	if uint(t1) >= uint(NumTypes) || uint(t2) >= uint(NumTypes) {
		return 0
	}
	return orderWithin(&cutoff[t1][t2], dist)
}

// orderWithin is the bond order of a pair at dist Å given its strict upper bounds c (pm) for
// orders 1, 2, 3 (−Inf where an order does not exist), as in cutoff and zCutoff. NaN gives 0.
func orderWithin(c *[3]float64, dist float64) int {
	d := 100 * dist
	switch {
	case !(d < c[0]):
		return 0
	case !(d < c[1]):
		return 1
	case !(d < c[2]):
		return 2
	}
	return 3
}

// pairDist2 is the squared distance summed in numpy's order (x, then y, then z). The explicit
// conversions forbid fused multiply-add, so the result is bit-identical to numpy's float64.
func pairDist2(p, q *[3]float64) float64 {
	dx := p[0] - q[0]
	dy := p[1] - q[1]
	dz := p[2] - q[2]
	return float64(dx*dx) + float64(dy*dy) + float64(dz*dz)
}

// BondTotals writes into dst (grown as needed, and returned) the total bond order of every
// atom: for every unordered pair i<j the pair's bond order is added to both atoms.
// Distances are evaluated in float64 as in REFERENCE §3.1 (on the real test split, float32
// arithmetic gives the same bond order for every pair).
func BondTotals(dst []int, types []int, pos [][3]float64) ([]int, error) {
	n := len(types)
	if len(pos) != n {
		return dst, fmt.Errorf("%d positions for %d atom types", len(pos), n)
	}
	for i, t := range types {
		if uint(t) >= uint(NumTypes) {
			return dst, fmt.Errorf("atom %d: type index %d outside 0..%d", i, t, NumTypes-1)
		}
	}
	if cap(dst) < n {
		dst = make([]int, n)
	}
	dst = dst[:n]
	clear(dst)
	for i := range n {
		pi := &pos[i]
		ti := types[i]
		for j := i + 1; j < n; j++ {
			d2 := pairDist2(pi, &pos[j])
			if !(d2 < maxCutoff2) { // also skips NaN, which has bond order 0
				continue
			}
			if o := BondOrder(ti, types[j], math.Sqrt(d2)); o > 0 {
				dst[i] += o
				dst[j] += o
			}
		}
	}
	return dst, nil
}

// MoleculeResult is the stability verdict for one molecule.
type MoleculeResult struct {
	Stable  bool // every atom has exactly its allowed valence
	NStable int  // number of stable atoms
	NAtoms  int
	// Uncovered: the molecule has an atom of an element without valence/bond data; it is
	// neither stable nor unstable (Stable false, NStable 0) and not in the pooled ratios.
	Uncovered bool
}

// CheckStability evaluates one molecule given type indices and positions in Å.
func CheckStability(types []int, pos [][3]float64) (MoleculeResult, error) {
	var s Stability
	r, err := s.Add(types, pos)
	if err != nil {
		return r, fmt.Errorf("metrics: check stability: %w", err)
	}
	return r, nil
}

// TypesFromNumbers converts atomic numbers (1, 6, 7, 8, 9) to type indices, appending to dst.
func TypesFromNumbers(dst []int, z []int) ([]int, error) {
	for i, zi := range z {
		t := molecule.TypeIndex(zi)
		if t < 0 {
			return dst, fmt.Errorf("atom %d: atomic number %d is not H, C, N, O or F", i, zi)
		}
		dst = append(dst, t)
	}
	return dst, nil
}

// ElementStats accumulates, for one element, how many atoms were seen, how many were stable,
// and the valence table: number of atoms per total bond order.
type ElementStats struct {
	Atoms   int64         `json:"atoms"`
	Stable  int64         `json:"stable"`
	Valence map[int]int64 `json:"valence"`
}

// Stability accumulates pooled atom and molecule stability over many molecules, as the
// reference analyze_stability_for_molecules: AtomStable = Σ stable atoms / Σ atoms and
// MolStable = stable molecules / molecules. The zero value is ready to use; a Stability is
// not safe for concurrent use (use one per goroutine and Merge).
type Stability struct {
	Molecules       int64
	StableMolecules int64
	Atoms           int64
	StableAtoms     int64
	Elements        [NumTypes]ElementStats // indexed by type index
	Other           map[int]*ElementStats  // covered elements outside QM9, by atomic number

	// Molecules with an uncovered atom (see stability_elements.go): they are not in the
	// counts above. UncoveredAtoms counts their atoms of uncovered elements (per atomic number
	// in UncoveredElements), ExcludedAtoms all their atoms.
	UncoveredMolecules int64
	UncoveredAtoms     int64
	ExcludedAtoms      int64
	UncoveredElements  map[int]int64

	totals []int // scratch
	types  []int // scratch
}

// Add evaluates one molecule (type indices, positions in Å) and adds it to the totals.
// On error nothing is added.
func (s *Stability) Add(types []int, pos [][3]float64) (MoleculeResult, error) {
	totals, err := BondTotals(s.totals, types, pos)
	s.totals = totals
	if err != nil {
		return MoleculeResult{}, err
	}
	r := MoleculeResult{NAtoms: len(types)}
	for i, t := range types {
		e := &s.Elements[t]
		e.Atoms++
		if e.Valence == nil {
			e.Valence = make(map[int]int64)
		}
		e.Valence[totals[i]]++
		if totals[i] == Valence[t] {
			e.Stable++
			r.NStable++
		}
	}
	s.count(&r)
	return r, nil
}

// AddNumbers is Add for atomic numbers instead of type indices. A molecule of H, C, N, O
// and F only takes exactly the reference path (Add); one with other covered elements uses the
// extended tables (BondOrderZ, AllowedValences); one with an uncovered element is counted in
// UncoveredMolecules (not an error). An atomic number outside 1..118 is an error.
func (s *Stability) AddNumbers(z []int, pos [][3]float64) (MoleculeResult, error) {
	types, err := TypesFromNumbers(s.types[:0], z)
	s.types = types
	if err != nil {
		return s.addGeneral(z, pos)
	}
	return s.Add(types, pos)
}

// AddMolecule is Add for a molecule record.
func (s *Stability) AddMolecule(m *molecule.Molecule) (MoleculeResult, error) {
	r, err := s.AddNumbers(m.Z, m.Positions)
	if err != nil {
		return r, fmt.Errorf("molecule %d: %w", m.ID, err)
	}
	return r, nil
}

// Merge adds the totals of o to s.
func (s *Stability) Merge(o *Stability) {
	s.Molecules += o.Molecules
	s.StableMolecules += o.StableMolecules
	s.Atoms += o.Atoms
	s.StableAtoms += o.StableAtoms
	s.UncoveredMolecules += o.UncoveredMolecules
	s.UncoveredAtoms += o.UncoveredAtoms
	s.ExcludedAtoms += o.ExcludedAtoms
	for z, c := range o.UncoveredElements {
		if s.UncoveredElements == nil {
			s.UncoveredElements = map[int]int64{}
		}
		s.UncoveredElements[z] += c
	}
	merge := func(e, f *ElementStats) {
		e.Atoms += f.Atoms
		e.Stable += f.Stable
		for k, v := range f.Valence {
			if e.Valence == nil {
				e.Valence = make(map[int]int64)
			}
			e.Valence[k] += v
		}
	}
	for t := range NumTypes {
		merge(&s.Elements[t], &o.Elements[t])
	}
	for z, f := range o.Other {
		merge(s.elementStats(z), f)
	}
}

// AtomStable returns Σ stable atoms / Σ atoms (NaN when no atoms were added).
func (s *Stability) AtomStable() float64 { return ratio(s.StableAtoms, s.Atoms) }

// MolStable returns stable molecules / molecules (NaN when no molecules were added).
func (s *Stability) MolStable() float64 { return ratio(s.StableMolecules, s.Molecules) }

func ratio(a, b int64) float64 {
	if b == 0 {
		return math.NaN()
	}
	return float64(a) / float64(b)
}

// ElementSummary is the per-element part of a StabilitySummary.
type ElementSummary struct {
	Atoms      int64   `json:"atoms"`
	Stable     int64   `json:"stable"`
	AtomStable float64 `json:"atom_stable"`
	// Valence maps a total bond order to the number of atoms of this element having it.
	Valence map[int]int64 `json:"valence"`
}

// StabilitySummary is a JSON-friendly view of a Stability. Ratios are null-free: with no
// atoms they are 0.
type StabilitySummary struct {
	NMolecules       int64                     `json:"n_molecules"`
	NAtoms           int64                     `json:"n_atoms"`
	NStableMolecules int64                     `json:"n_stable_molecules"`
	NStableAtoms     int64                     `json:"n_stable_atoms"`
	AtomStable       float64                   `json:"atom_stable"`
	MolStable        float64                   `json:"mol_stable"`
	Elements         map[string]ElementSummary `json:"elements"` // by element symbol; only elements seen
	// Molecules with an atom of an element without valence/bond data (not in the ratios or
	// counts above), their atoms of uncovered elements (by symbol in UncoveredElements) and
	// all their atoms.
	NUncoveredMolecules int64            `json:"n_uncovered_molecules"`
	UncoveredAtoms      int64            `json:"uncovered_atoms"`
	NExcludedAtoms      int64            `json:"n_excluded_atoms"`
	UncoveredElements   map[string]int64 `json:"uncovered_elements"`
}

// Summary returns the JSON-friendly view of s.
func (s *Stability) Summary() StabilitySummary {
	out := StabilitySummary{
		NMolecules:       s.Molecules,
		NAtoms:           s.Atoms,
		NStableMolecules: s.StableMolecules,
		NStableAtoms:     s.StableAtoms,
		AtomStable:       zeroNaN(s.AtomStable()),
		MolStable:        zeroNaN(s.MolStable()),
		Elements:         map[string]ElementSummary{},

		NUncoveredMolecules: s.UncoveredMolecules,
		UncoveredAtoms:      s.UncoveredAtoms,
		NExcludedAtoms:      s.ExcludedAtoms,
		UncoveredElements:   map[string]int64{},
	}
	add := func(sym string, e *ElementStats) {
		if e.Atoms == 0 {
			return
		}
		v := make(map[int]int64, len(e.Valence))
		for k, c := range e.Valence {
			v[k] = c
		}
		out.Elements[sym] = ElementSummary{
			Atoms: e.Atoms, Stable: e.Stable, AtomStable: ratio(e.Stable, e.Atoms), Valence: v,
		}
	}
	for t := range s.Elements {
		add(molecule.Symbols[t], &s.Elements[t])
	}
	for z, e := range s.Other {
		add(molecule.Symbol(z), e)
	}
	for z, c := range s.UncoveredElements {
		out.UncoveredElements[molecule.Symbol(z)] += c
	}
	return out
}

func zeroNaN(x float64) float64 {
	if math.IsNaN(x) {
		return 0
	}
	return x
}

// StabilityOfMolecules evaluates every molecule and returns the pooled totals.
func StabilityOfMolecules(ms []molecule.Molecule) (*Stability, error) {
	s := &Stability{}
	for i := range ms {
		if _, err := s.AddMolecule(&ms[i]); err != nil {
			return s, fmt.Errorf("metrics: stability of molecule #%d: %w", i, err)
		}
	}
	return s, nil
}

// count adds an evaluated, covered molecule to the pooled totals.
func (s *Stability) count(r *MoleculeResult) {
	r.Stable = r.NStable == r.NAtoms
	s.Molecules++
	s.Atoms += int64(r.NAtoms)
	s.StableAtoms += int64(r.NStable)
	if r.Stable {
		s.StableMolecules++
	}
}
