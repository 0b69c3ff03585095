// Package molwrite writes molecule records (etl/molecule, as read from a molecule/v1 table:
// ETL output or `enflow sample` output) in the formats chemists open directly: XYZ,
// extended XYZ (extxyz) and MDL SDF V2000.
//
// Bonds are not stored in molecule tables; they are perceived from the atom types and
// distances with the bond-order function of the stability metric (metrics.BondOrder, the
// tables of REFERENCE §3.1), so an SDF file shows exactly the bonds and orders that the
// stability metric counts. Formal charges (SDF "M  CHG") are inferred only where the bond
// orders leave no doubt, see FormalCharges.
package molwrite

import (
	"bufio"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"

	"github.com/enflow/enflow/etl/molecule"
	"github.com/enflow/enflow/etl/molfile"
	"github.com/enflow/enflow/pipeline/metrics"
)

// Format is an output format: the formats etl/molfile reads.
type Format = molfile.Format

// Output formats.
const (
	XYZ    = molfile.XYZ
	ExtXYZ = molfile.ExtXYZ
	SDF    = molfile.SDF
)

// ParseFormat parses "xyz", "extxyz" or "sdf" (case-insensitive; "mol"/"sd" mean sdf).
func ParseFormat(s string) (Format, error) {
	f, err := molfile.ParseFormat(s)
	if err != nil {
		return 0, fmt.Errorf("molwrite: %w", err)
	}
	return f, nil
}

// Bond is one perceived bond between atoms I < J (0-based) of bond order 1, 2 or 3.
type Bond struct {
	I, J, Order int
}

// Bonds perceives the bonds of m: every unordered pair i < j whose metrics.BondOrder is
// positive, in row-major order (i ascending, then j). Distances are the float64 Euclidean
// distances used by metrics.BondTotals, so the bond orders of an atom sum to its total in
// the stability metric.
func Bonds(m *molecule.Molecule) ([]Bond, error) {
	if len(m.Positions) != len(m.Z) {
		return nil, fmt.Errorf("molecule %d: field positions: %d rows for %d atoms", m.ID, len(m.Positions), len(m.Z))
	}
	types, err := metrics.TypesFromNumbers(nil, m.Z)
	if err != nil {
		return nil, fmt.Errorf("molecule %d: field z: %w", m.ID, err)
	}
	var bonds []Bond
	for i := range types {
		p := &m.Positions[i]
		for j := i + 1; j < len(types); j++ {
			q := &m.Positions[j]
			dx, dy, dz := p[0]-q[0], p[1]-q[1], p[2]-q[2]
			// Explicit conversions forbid fused multiply-add: the same bits as BondTotals.
			d := math.Sqrt(float64(dx*dx) + float64(dy*dy) + float64(dz*dz))
			if o := metrics.BondOrder(types[i], types[j], d); o > 0 {
				bonds = append(bonds, Bond{I: i, J: j, Order: o})
			}
		}
	}
	return bonds, nil
}

// BondOrderSums returns, per atom, the sum of the orders of its bonds.
func BondOrderSums(nAtoms int, bonds []Bond) []int {
	s := make([]int, nAtoms)
	for _, b := range bonds {
		s[b.I] += b.Order
		s[b.J] += b.Order
	}
	return s
}

// cationValence is the neutral valence of the elements that FormalCharges may charge.
var cationValence = map[int]int{7: 3, 8: 2} // N, O

// FormalCharges infers formal charges from the bond-order sums. The only rule: a nitrogen
// with bond-order sum 4 or an oxygen with sum 3 — one more than its neutral valence — is a
// cation (+1): with all hydrogens explicit (as in QM9 and in samples) a second-row atom can
// exceed its octet valence by one only by giving up its lone-pair electron (ammonium, the N
// of nitro groups and zwitterions, oxonium). Every other mismatch is left uncharged because
// it is ambiguous: a deficit can be an anion, a radical or a bond order that the distance
// cutoffs missed, and a carbon or halogen above its valence has no charged interpretation.
// The returned slice has one entry per atom (0 where no charge is inferred).
func FormalCharges(z []int, bonds []Bond) []int {
	sums := BondOrderSums(len(z), bonds)
	q := make([]int, len(z))
	for i, zi := range z {
		if v, ok := cationValence[zi]; ok && sums[i] == v+1 {
			q[i] = 1
		}
	}
	return q
}

// Symbol returns the element symbol of atomic number z.
func Symbol(z int) (string, error) {
	t := molecule.TypeIndex(z)
	if t < 0 || t >= len(molecule.Symbols) {
		return "", fmt.Errorf("unknown atomic number %d", z)
	}
	return molecule.Symbols[t], nil
}

func symbols(m *molecule.Molecule) ([]string, error) {
	out := make([]string, len(m.Z))
	for i, z := range m.Z {
		s, err := Symbol(z)
		if err != nil {
			return nil, fmt.Errorf("molecule %d: atom %d: field z: %w", m.ID, i, err)
		}
		out[i] = s
	}
	return out, nil
}

func checkPositions(m *molecule.Molecule) error {
	if len(m.Z) == 0 {
		return fmt.Errorf("molecule %d: field atoms: no atoms", m.ID)
	}
	if len(m.Positions) != len(m.Z) {
		return fmt.Errorf("molecule %d: field positions: %d rows for %d atoms", m.ID, len(m.Positions), len(m.Z))
	}
	for i, p := range m.Positions {
		for k, v := range p {
			if math.IsNaN(v) || math.IsInf(v, 0) {
				return fmt.Errorf("molecule %d: atom %d: field positions[%d]: non-finite value %v", m.ID, i, k, v)
			}
		}
	}
	return nil
}

// Write writes one molecule in format f to w. A multi-molecule file is the concatenation of
// the records (XYZ/extxyz frames, SDF records ending in $$$$).
func Write(w io.Writer, f Format, m *molecule.Molecule) error {
	switch f {
	case XYZ, ExtXYZ:
		return writeXYZ(w, f == ExtXYZ, m)
	case SDF:
		return WriteSDF(w, m)
	}
	return fmt.Errorf("molwrite: unknown format %v", f)
}

func ftoa(v float64) string { return strconv.FormatFloat(v, 'f', -1, 64) }

func writeXYZ(w io.Writer, ext bool, m *molecule.Molecule) error {
	if err := checkPositions(m); err != nil {
		return err
	}
	syms, err := symbols(m)
	if err != nil {
		return err
	}
	bw := bufio.NewWriter(w)
	fmt.Fprintf(bw, "%d\n", len(m.Z))
	if ext {
		bw.WriteString(ExtXYZComment(m))
	} else {
		fmt.Fprintf(bw, "enflow molecule id=%d", m.ID)
		if m.Split != "" {
			fmt.Fprintf(bw, " split=%s", m.Split)
		}
	}
	bw.WriteByte('\n')
	withMulliken := ext && len(m.Mulliken) == len(m.Z)
	for i, p := range m.Positions {
		fmt.Fprintf(bw, "%-2s %s %s %s", syms[i], ftoa(p[0]), ftoa(p[1]), ftoa(p[2]))
		if withMulliken {
			fmt.Fprintf(bw, " %s", ftoa(m.Mulliken[i]))
		}
		bw.WriteByte('\n')
	}
	return bw.Flush()
}

// ExtXYZComment returns the extxyz comment line (without newline): the Properties
// declaration (species, pos and, when present, the Mulliken charges), id, n_atoms, split,
// every finite QM9 property (units of the molecule table: GHz, D, Bohr³, Hartree, Bohr²,
// cal/(mol·K), cm⁻¹), the SMILES when present, and pbc="F F F".
func ExtXYZComment(m *molecule.Molecule) string {
	var sb strings.Builder
	sb.WriteString("Properties=species:S:1:pos:R:3")
	if len(m.Mulliken) == len(m.Z) && len(m.Z) > 0 {
		sb.WriteString(":mulliken:R:1")
	}
	fmt.Fprintf(&sb, " id=%d n_atoms=%d", m.ID, len(m.Z))
	if m.Split != "" {
		fmt.Fprintf(&sb, " split=%s", quoteExt(m.Split))
	}
	for k, name := range molecule.PropertyNames {
		if v := m.Props[k]; !math.IsNaN(v) && !math.IsInf(v, 0) {
			fmt.Fprintf(&sb, " %s=%s", name, strconv.FormatFloat(v, 'g', -1, 64))
		}
	}
	if v := m.Omega1; !math.IsNaN(v) && !math.IsInf(v, 0) {
		fmt.Fprintf(&sb, " omega1=%s", strconv.FormatFloat(v, 'g', -1, 64))
	}
	if m.SMILES[0] != "" {
		fmt.Fprintf(&sb, " smiles=%s", quoteExt(m.SMILES[0]))
	}
	if m.SMILES[1] != "" {
		fmt.Fprintf(&sb, " smiles_relaxed=%s", quoteExt(m.SMILES[1]))
	}
	sb.WriteString(` pbc="F F F"`)
	return sb.String()
}

// quoteExt quotes an extxyz value when it holds characters that end or confuse a bare value.
func quoteExt(s string) string {
	if s != "" && !strings.ContainsAny(s, " \t\"\\=,[]{}'") {
		return s
	}
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`)
	return `"` + r.Replace(s) + `"`
}

// sdfLine removes characters that would break the line structure of an SDF record and cuts
// the line to 80 characters.
func sdfLine(s string) string {
	s = strings.Map(func(r rune) rune {
		if r == '\n' || r == '\r' {
			return ' '
		}
		return r
	}, s)
	if len(s) > 80 {
		s = s[:80]
	}
	return s
}

// WriteSDF writes one MDL SDF V2000 record: header (title "gdb_<id>" for ETL rows, with
// split, or "enflow_<id>"), counts line, atom block (coordinates in Å, F10.4), bond block
// (perceived by Bonds), "M  CHG" lines for the charges of FormalCharges, "M  END", data
// items (id, split, n_atoms and every finite QM9 property) and "$$$$".
func WriteSDF(w io.Writer, m *molecule.Molecule) error {
	if err := checkPositions(m); err != nil {
		return err
	}
	syms, err := symbols(m)
	if err != nil {
		return err
	}
	if len(m.Z) > 999 {
		return fmt.Errorf("molecule %d: field atoms: %d atoms, more than V2000's 999", m.ID, len(m.Z))
	}
	bonds, err := Bonds(m)
	if err != nil {
		return err
	}
	if len(bonds) > 999 {
		return fmt.Errorf("molecule %d: %d bonds, more than V2000's 999", m.ID, len(bonds))
	}
	charges := FormalCharges(m.Z, bonds)
	bw := bufio.NewWriter(w)
	title := fmt.Sprintf("enflow_%d", m.ID)
	if m.Split != "" {
		title = fmt.Sprintf("gdb_%d", m.ID)
	}
	bw.WriteString(sdfLine(title) + "\n")
	// Program line: initials (2), program (8), date (10, blank), dimension code "3D".
	bw.WriteString("  enflow            3D\n")
	bw.WriteString(sdfLine("bonds from the enflow stability bond tables (REFERENCE 3.1)") + "\n")
	fmt.Fprintf(bw, "%3d%3d  0  0  0  0  0  0  0  0999 V2000\n", len(m.Z), len(bonds))
	for i, p := range m.Positions {
		for _, v := range p {
			if math.Abs(v) >= 1e5 {
				return fmt.Errorf("molecule %d: atom %d: field positions: %v Å does not fit SDF's F10.4", m.ID, i, v)
			}
		}
		fmt.Fprintf(bw, "%10.4f%10.4f%10.4f %-3s 0  0  0  0  0  0  0  0  0  0  0  0\n",
			p[0], p[1], p[2], syms[i])
	}
	for _, b := range bonds {
		fmt.Fprintf(bw, "%3d%3d%3d  0\n", b.I+1, b.J+1, b.Order)
	}
	var charged []int
	for i, q := range charges {
		if q != 0 {
			charged = append(charged, i)
		}
	}
	for len(charged) > 0 {
		k := min(len(charged), 8)
		fmt.Fprintf(bw, "M  CHG%3d", k)
		for _, i := range charged[:k] {
			fmt.Fprintf(bw, " %3d %3d", i+1, charges[i])
		}
		bw.WriteByte('\n')
		charged = charged[k:]
	}
	bw.WriteString("M  END\n")
	item := func(name, value string) {
		fmt.Fprintf(bw, "> <%s>\n%s\n\n", name, sdfLine(value))
	}
	item("id", strconv.FormatInt(m.ID, 10))
	if m.Split != "" {
		item("split", m.Split)
	}
	item("n_atoms", strconv.Itoa(len(m.Z)))
	for k, name := range molecule.PropertyNames {
		if v := m.Props[k]; !math.IsNaN(v) && !math.IsInf(v, 0) {
			item(name, strconv.FormatFloat(v, 'g', -1, 64))
		}
	}
	if v := m.Omega1; !math.IsNaN(v) && !math.IsInf(v, 0) {
		item("omega1", strconv.FormatFloat(v, 'g', -1, 64))
	}
	if m.SMILES[0] != "" {
		item("smiles", m.SMILES[0])
	}
	bw.WriteString("$$$$\n")
	return bw.Flush()
}
