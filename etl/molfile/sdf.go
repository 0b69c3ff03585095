package molfile

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/enflow/enflow/etl/molecule"
)

// ParseSDF reads MDL SDF (records ended by "$$$$"; the last one may end at the end of the
// file) or a single MOL file, connection-table version V2000:
//
//   - header: title (kept as Molecule.Name), program line, comment line;
//   - counts line: atoms and bonds in columns 1–3 and 4–6 (V3000 is rejected);
//   - atom block: x, y, z in columns 1–30, the symbol in 32–34 and the old-style charge code
//     in 37–39 (fixed columns, or whitespace-separated fields when the columns do not parse);
//   - bond block: first atom, second atom, bond type (1–8), 1-based;
//   - properties block up to the required "M  END": "M  CHG" lines set formal charges (and,
//     as the format says, override every charge of the atom block); other M, A, V, G and S
//     lines are skipped; any other line is an error;
//   - data items "> <name>" followed by value lines up to a blank line, kept as molecule
//     properties (a float64 when the value is one finite number, else the string, lines
//     joined by "\n").
//
// Molecules get FormalCharges (zeros when none are given) and Bonds (0-based atom indices).
func ParseSDF(name string, data []byte) ([]Record, error) {
	p := &parser{file: name, l: lines{data: data}}
	var out []Record
	for {
		// Skip blank lines between records (and trailing ones).
		save := p.l
		line, ok := p.l.next()
		for ok && strings.TrimSpace(line) == "" {
			save = p.l
			line, ok = p.l.next()
		}
		if !ok {
			break
		}
		p.l = save
		p.record = len(out) + 1
		rec, err := p.sdfRecord()
		if err != nil {
			return nil, err
		}
		out = append(out, rec)
	}
	if len(out) == 0 {
		return nil, &Error{File: name, Record: 1, Line: max(1, p.l.n), Err: ErrEmpty}
	}
	return out, nil
}

// oldCharge maps the atom block's charge code to a formal charge (4 = doublet radical: 0).
var oldCharge = [8]int{0, 3, 2, 1, 0, -1, -2, -3}

func (p *parser) sdfRecord() (Record, error) {
	title, _ := p.l.next()
	start := p.l.n
	rec := p.newRecord(start)
	m := &rec.Molecule
	m.Name = strings.TrimSpace(title)
	for k := range 2 { // program and comment lines
		if l, ok := p.l.next(); !ok || l == "$$$$" {
			return Record{}, p.fail(p.l.n, "truncated header: %d of 4 header lines before the counts line", k+1)
		}
	}
	counts, ok := p.l.next()
	if !ok || counts == "$$$$" {
		return Record{}, p.fail(p.l.n, "missing counts line")
	}
	cl := p.l.n
	if strings.Contains(counts, "V3000") {
		return Record{}, p.fail(cl, "V3000 connection tables are not supported (only V2000)")
	}
	nAtoms, nBonds, err := parseCounts(counts)
	if err != nil {
		return Record{}, p.fail(cl, "counts line: %v", err)
	}
	if nAtoms < 1 || nAtoms > molecule.MaxMoleculeAtoms {
		return Record{}, p.fail(cl, "counts line: %d atoms, want 1..%d", nAtoms, molecule.MaxMoleculeAtoms)
	}
	// The V2000 bond count is a 3-column field; bound it before it sizes anything.
	if nBonds < 0 || nBonds > 999 {
		return Record{}, p.fail(cl, "counts line: %d bonds, want 0..999", nBonds)
	}
	m.Z = make([]int, 0, nAtoms)
	m.Positions = make([][3]float64, 0, nAtoms)
	m.FormalCharges = make([]int, 0, nAtoms)
	rec.AtomLines = make([]int, 0, nAtoms)
	for i := range nAtoms {
		line, ok := p.l.next()
		if !ok || isSDFTerminator(line) {
			at := p.l.n
			if !ok {
				at = cl
			}
			return Record{}, p.fail(at, "atom count %d (counts line %d) does not match: %d atom lines", nAtoms, cl, i)
		}
		if allInts(line) {
			return Record{}, p.fail(p.l.n, "atom count %d (counts line %d) does not match: a bond line follows %d atom lines", nAtoms, cl, i)
		}
		z, xyz, chg, err := parseAtomLine(line)
		if err != nil {
			return Record{}, p.fail(p.l.n, "atom %d: %v", i+1, err)
		}
		m.Z = append(m.Z, z)
		m.Positions = append(m.Positions, xyz)
		m.FormalCharges = append(m.FormalCharges, chg)
		rec.AtomLines = append(rec.AtomLines, p.l.n)
	}
	m.Bonds = make([]molecule.Bond, 0, min(nBonds, nAtoms*(nAtoms-1)/2))
	for i := range nBonds {
		line, ok := p.l.next()
		if !ok || isSDFTerminator(line) {
			at := p.l.n
			if !ok {
				at = cl
			}
			return Record{}, p.fail(at, "bond count %d (counts line %d) does not match: %d bond lines", nBonds, cl, i)
		}
		if _, _, _, err := parseAtomLine(line); err == nil && !allInts(line) {
			return Record{}, p.fail(p.l.n, "atom count %d (counts line %d) does not match: another atom line follows the last atom", nAtoms, cl)
		}
		b, err := parseBondLine(line, nAtoms)
		if err != nil {
			return Record{}, p.fail(p.l.n, "bond %d: %v", i+1, err)
		}
		m.Bonds = append(m.Bonds, b)
	}
	if err := p.sdfProperties(m); err != nil {
		return Record{}, err
	}
	if err := p.sdfData(m); err != nil {
		return Record{}, err
	}
	if err := m.Validate(); err != nil {
		return Record{}, p.wrap(start, err)
	}
	return rec, nil
}

func isSDFTerminator(line string) bool {
	return line == "$$$$" || strings.HasPrefix(line, "M  END")
}

// fixed returns the trimmed columns [a, b) of line (as much as exists).
func fixed(line string, a, b int) string {
	if a >= len(line) {
		return ""
	}
	return strings.TrimSpace(line[a:min(b, len(line))])
}

func parseCounts(line string) (atoms, bonds int, err error) {
	a, errA := strconv.Atoi(fixed(line, 0, 3))
	b, errB := strconv.Atoi(fixed(line, 3, 6))
	if errA == nil && errB == nil {
		return a, b, nil
	}
	f := strings.Fields(line)
	if len(f) < 2 {
		return 0, 0, fmt.Errorf("want atom and bond counts, found %q", truncate(line))
	}
	if a, errA = strconv.Atoi(f[0]); errA != nil {
		return 0, 0, fmt.Errorf("atom count %q is not an integer", f[0])
	}
	if b, errB = strconv.Atoi(f[1]); errB != nil {
		return 0, 0, fmt.Errorf("bond count %q is not an integer", f[1])
	}
	return a, b, nil
}

// parseAtomLine reads "x y z symbol [mass-difference charge-code …]".
func parseAtomLine(line string) (z int, xyz [3]float64, charge int, err error) {
	// Fixed columns first (they allow coordinates that touch), then whitespace fields.
	sym, code := fixed(line, 31, 34), fixed(line, 36, 39)
	coords := [3]string{fixed(line, 0, 10), fixed(line, 10, 20), fixed(line, 20, 30)}
	okFixed := len(line) >= 32 && sym != "" && !strings.ContainsAny(sym, " ")
	for _, c := range coords {
		if _, e := strconv.ParseFloat(c, 64); e != nil && !isNonFinite(c) {
			okFixed = false
		}
	}
	if !okFixed {
		f := strings.Fields(line)
		if len(f) < 4 {
			return 0, xyz, 0, fmt.Errorf("missing coordinates: %d fields, want \"x y z symbol\"", len(f))
		}
		coords = [3]string{f[0], f[1], f[2]}
		sym, code = f[3], ""
		if len(f) >= 6 {
			code = f[5]
		}
	}
	for k, c := range coords {
		if xyz[k], err = parseCoord(c); err != nil {
			return 0, xyz, 0, fmt.Errorf("coordinate %c: %v", "xyz"[k], err)
		}
	}
	if z = molecule.NumberOfSymbol(sym); z == 0 {
		return 0, xyz, 0, fmt.Errorf("unknown element symbol %q", sym)
	}
	if code != "" {
		c, err := strconv.Atoi(code)
		if err != nil || c < 0 || c > 7 {
			return 0, xyz, 0, fmt.Errorf("charge code %q, want 0..7", code)
		}
		charge = oldCharge[c]
	}
	return z, xyz, charge, nil
}

func isNonFinite(s string) bool {
	v, err := strconv.ParseFloat(s, 64)
	return err == nil && (v != v || v > 1e308 || v < -1e308)
}

func parseBondLine(line string, nAtoms int) (molecule.Bond, error) {
	a, e1 := strconv.Atoi(fixed(line, 0, 3))
	b, e2 := strconv.Atoi(fixed(line, 3, 6))
	t, e3 := strconv.Atoi(fixed(line, 6, 9))
	if e1 != nil || e2 != nil || e3 != nil {
		f := strings.Fields(line)
		if len(f) < 3 {
			return molecule.Bond{}, fmt.Errorf("want \"atom atom type\", found %q", truncate(line))
		}
		var err error
		if a, err = strconv.Atoi(f[0]); err == nil {
			if b, err = strconv.Atoi(f[1]); err == nil {
				t, err = strconv.Atoi(f[2])
			}
		}
		if err != nil {
			return molecule.Bond{}, fmt.Errorf("want \"atom atom type\" integers, found %q", truncate(line))
		}
	}
	if a < 1 || a > nAtoms || b < 1 || b > nAtoms || a == b {
		return molecule.Bond{}, fmt.Errorf("atoms %d-%d: want two distinct atoms in 1..%d", a, b, nAtoms)
	}
	if t < 1 || t > molecule.MaxBondOrder {
		return molecule.Bond{}, fmt.Errorf("bond type %d, want 1..%d", t, molecule.MaxBondOrder)
	}
	return molecule.Bond{A: a - 1, B: b - 1, Order: t}, nil
}

// sdfProperties reads the properties block through "M  END".
func (p *parser) sdfProperties(m *molecule.Molecule) error {
	var chg []int // M  CHG charges, nil if none
	for {
		line, ok := p.l.next()
		if !ok || line == "$$$$" || strings.HasPrefix(line, ">") {
			at := p.l.n
			return p.fail(at, "no \"M  END\" line: the connection table ends without it")
		}
		switch {
		case strings.HasPrefix(line, "M  END"):
			if chg != nil {
				copy(m.FormalCharges, chg)
			}
			return nil
		case strings.HasPrefix(line, "M  CHG"):
			if chg == nil {
				chg = make([]int, len(m.Z))
			}
			if err := parseCHG(line, chg); err != nil {
				return p.fail(p.l.n, "M  CHG: %v", err)
			}
		case strings.HasPrefix(line, "A  ") || strings.HasPrefix(line, "G  "):
			p.l.next() // the alias / group text line
		case strings.HasPrefix(line, "M  ") || strings.HasPrefix(line, "V  ") || strings.HasPrefix(line, "S  "):
		case strings.TrimSpace(line) == "":
		default:
			return p.fail(p.l.n, "unexpected line %q in the properties block (more atom or bond lines than the counts line says?)", truncate(line))
		}
	}
}

// parseCHG reads "M  CHGnn8 aaa vvv …" into chg (1-based atom numbers).
func parseCHG(line string, chg []int) error {
	f := strings.Fields(line[6:])
	if len(f) < 1 {
		return fmt.Errorf("missing entry count")
	}
	n, err := strconv.Atoi(f[0])
	if err != nil || n < 1 || n > 8 {
		return fmt.Errorf("entry count %q, want 1..8", f[0])
	}
	if len(f) != 1+2*n {
		return fmt.Errorf("%d entries announced, %d values found", n, len(f)-1)
	}
	for k := range n {
		a, e1 := strconv.Atoi(f[1+2*k])
		v, e2 := strconv.Atoi(f[2+2*k])
		if e1 != nil || e2 != nil {
			return fmt.Errorf("entry %d: %q %q are not integers", k+1, f[1+2*k], f[2+2*k])
		}
		if a < 1 || a > len(chg) {
			return fmt.Errorf("entry %d: atom %d outside 1..%d", k+1, a, len(chg))
		}
		if v < -15 || v > 15 {
			return fmt.Errorf("entry %d: charge %d outside -15..15", k+1, v)
		}
		chg[a-1] = v
	}
	return nil
}

// sdfData reads data items up to "$$$$" (or the end of the file).
func (p *parser) sdfData(m *molecule.Molecule) error {
	for {
		line, ok := p.l.next()
		if !ok || line == "$$$$" {
			return nil
		}
		if strings.TrimSpace(line) == "" {
			continue
		}
		if !strings.HasPrefix(line, ">") {
			return p.fail(p.l.n, "expected a data header \"> <name>\" or \"$$$$\", found %q", truncate(line))
		}
		hdr := p.l.n
		name := ""
		if i := strings.IndexByte(line, '<'); i >= 0 {
			if j := strings.IndexByte(line[i+1:], '>'); j >= 0 {
				name = line[i+1 : i+1+j]
			}
		}
		if name == "" {
			return p.fail(hdr, "data header %q without a <name>", truncate(line))
		}
		var vals []string
		for {
			v, ok := p.l.peek()
			if !ok || strings.TrimSpace(v) == "" || v == "$$$$" {
				break
			}
			p.l.next()
			vals = append(vals, v)
		}
		if m.Properties == nil {
			m.Properties = map[string]any{}
		}
		if len(vals) == 1 {
			m.Properties[name] = propertyValue(strings.TrimSpace(vals[0]))
		} else {
			m.Properties[name] = strings.Join(vals, "\n")
		}
	}
}

// allInts reports whether line has at least three fields, all integers (a bond line).
func allInts(line string) bool {
	f := strings.Fields(line)
	if len(f) < 3 {
		return false
	}
	for _, x := range f {
		if !isInt(x) {
			return false
		}
	}
	return true
}
