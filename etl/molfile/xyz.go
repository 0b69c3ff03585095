package molfile

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/enflow/enflow/etl/molecule"
)

// ParseXYZ reads plain XYZ: frames of a count line (one integer), a comment line (kept as
// Molecule.Name) and count lines "Sym x y z …" (extra columns ignored; the symbol may be in
// any case, or a decimal atomic number). Blank lines between frames are skipped. QM9's
// extended XYZ parses too: a comment line starting with "gdb " marks a QM9 frame, whose three
// trailing lines (frequencies, SMILES, InChI) are skipped, and "*^" exponents are accepted.
func ParseXYZ(name string, data []byte) ([]Record, error) { return parseFrames(name, data, false) }

// ParseExtXYZ reads extended XYZ: frames as in XYZ whose comment line holds key=value pairs
// (values unquoted, "double-quoted" with \" and \\ escapes, or {braced}/[bracketed]; a bare
// key means "T"). Properties=name:type:count:… describes the atom columns (default
// species:S:1:pos:R:3); it must contain species:S:1 (or Z:I:1) and pos:R:3, and each atom line
// must have exactly the described number of columns. Every other pair becomes a molecule
// property (a float64 when the value is a finite number, else the string).
func ParseExtXYZ(name string, data []byte) ([]Record, error) { return parseFrames(name, data, true) }

func parseFrames(name string, data []byte, ext bool) ([]Record, error) {
	p := &parser{file: name, l: lines{data: data}}
	var out []Record
	for {
		line, ok := p.l.next()
		for ok && strings.TrimSpace(line) == "" {
			line, ok = p.l.next()
		}
		if !ok {
			break
		}
		p.record = len(out) + 1
		if f := strings.Fields(line); len(f) != 1 || !isInt(f[0]) {
			if len(out) > 0 && len(f) >= 4 {
				prev := &out[len(out)-1]
				p.record = prev.Index
				return nil, p.fail(p.l.n, "atom count %d (line %d) does not match: another atom line %q follows the last atom", prev.Molecule.NAtoms(), prev.Line, line)
			}
			return nil, p.fail(p.l.n, "expected an atom count line (one integer), found %q", truncate(line))
		}
		rec, err := p.frame(line, ext)
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

func isInt(s string) bool {
	_, err := strconv.Atoi(s)
	return err == nil
}

func truncate(s string) string {
	if len(s) > 80 {
		return s[:80] + "…"
	}
	return s
}

// atomLayout locates the species and position columns of an atom line.
type atomLayout struct {
	species int  // column of the symbol or atomic number
	numeric bool // species column holds atomic numbers (Z:I:1)
	pos     int  // first of three position columns
	columns int  // exact column count; 0: at least 4 (plain XYZ, extra columns ignored)
	spec    string
}

var plainLayout = atomLayout{species: 0, pos: 1}

func (p *parser) frame(countLine string, ext bool) (Record, error) {
	start := p.l.n
	n, _ := strconv.Atoi(strings.TrimSpace(countLine))
	if n < 1 || n > molecule.MaxMoleculeAtoms {
		return Record{}, p.fail(start, "atom count %d, want 1..%d", n, molecule.MaxMoleculeAtoms)
	}
	comment, ok := p.l.next()
	if !ok {
		return Record{}, p.fail(start, "atom count %d does not match: the file ends after the count line (no comment line, no atoms)", n)
	}
	rec := p.newRecord(start)
	rec.AtomLines = make([]int, 0, n)
	m := &rec.Molecule
	layout := plainLayout
	qm9 := false
	if ext {
		var err error
		if layout, m.Properties, err = parseComment(comment); err != nil {
			return Record{}, p.fail(p.l.n, "comment line: %v", err)
		}
	} else {
		m.Name = strings.TrimSpace(comment)
		qm9 = strings.HasPrefix(m.Name, "gdb ") || strings.HasPrefix(m.Name, "gdb\t")
	}
	m.Z = make([]int, 0, n)
	m.Positions = make([][3]float64, 0, n)
	for i := range n {
		line, ok := p.l.next()
		if !ok {
			return Record{}, p.fail(start, "atom count %d does not match: the file ends after %d atom lines", n, i)
		}
		f := strings.Fields(line)
		switch {
		case len(f) == 0:
			return Record{}, p.fail(p.l.n, "atom count %d (line %d) does not match: blank line after %d atom lines", n, start, i)
		case len(f) == 1 && isInt(f[0]):
			return Record{}, p.fail(p.l.n, "atom count %d (line %d) does not match: a count line follows %d atom lines", n, start, i)
		case len(f) < layout.pos+3 || len(f) <= layout.species:
			return Record{}, p.fail(p.l.n, "atom %d: missing coordinates: %d columns, want %s", i+1, len(f), layout.want())
		case layout.columns > 0 && len(f) != layout.columns:
			return Record{}, p.fail(p.l.n, "atom %d: %d columns, want %s", i+1, len(f), layout.want())
		}
		var z int
		var err error
		if layout.numeric {
			if z, err = strconv.Atoi(f[layout.species]); err != nil || !molecule.ValidZ(z) {
				err = fmt.Errorf("unknown atomic number %q", f[layout.species])
			}
		} else {
			z, err = element(f[layout.species])
		}
		if err != nil {
			return Record{}, p.fail(p.l.n, "atom %d: %v", i+1, err)
		}
		var xyz [3]float64
		for k := range 3 {
			if xyz[k], err = parseCoord(f[layout.pos+k]); err != nil {
				return Record{}, p.fail(p.l.n, "atom %d: coordinate %c: %v", i+1, "xyz"[k], err)
			}
		}
		m.Z = append(m.Z, z)
		m.Positions = append(m.Positions, xyz)
		rec.AtomLines = append(rec.AtomLines, p.l.n)
	}
	if qm9 {
		// QM9 trailer: frequencies, SMILES, InChI (each optional at the end of the file).
		for range 3 {
			next, ok := p.l.peek()
			if !ok {
				break
			}
			if f := strings.Fields(next); len(f) == 1 && isInt(f[0]) {
				break
			}
			p.l.next()
		}
	}
	if err := m.Validate(); err != nil {
		return Record{}, p.wrap(start, err)
	}
	return rec, nil
}

func (a atomLayout) want() string {
	if a.columns == 0 {
		return `at least 4 ("symbol x y z")`
	}
	return fmt.Sprintf("%d (Properties=%s)", a.columns, a.spec)
}

// parseComment reads the key=value pairs of an extended-XYZ comment line into the atom
// layout and the molecule properties.
func parseComment(s string) (atomLayout, map[string]any, error) {
	kv, err := splitKV(s)
	if err != nil {
		return atomLayout{}, nil, err
	}
	layout := plainLayout
	var props map[string]any
	for _, p := range kv {
		if strings.EqualFold(p[0], "Properties") {
			if layout, err = parseLayout(p[1]); err != nil {
				return atomLayout{}, nil, err
			}
			continue
		}
		if props == nil {
			props = map[string]any{}
		}
		props[p[0]] = propertyValue(p[1])
	}
	return layout, props, nil
}

// parseLayout reads a Properties value "name:type:count:…".
func parseLayout(v string) (atomLayout, error) {
	parts := strings.Split(v, ":")
	if len(parts)%3 != 0 {
		return atomLayout{}, fmt.Errorf("Properties=%s: want name:type:count triples", v)
	}
	a := atomLayout{species: -1, pos: -1, spec: v}
	col := 0
	for i := 0; i < len(parts); i += 3 {
		name, typ := parts[i], strings.ToUpper(parts[i+1])
		cnt, err := strconv.Atoi(parts[i+2])
		if err != nil || cnt < 1 || cnt > 1000 {
			return atomLayout{}, fmt.Errorf("Properties=%s: column %q: bad count %q", v, name, parts[i+2])
		}
		if !strings.Contains("SRIL", typ) || len(typ) != 1 {
			return atomLayout{}, fmt.Errorf("Properties=%s: column %q: type %q, want S, R, I or L", v, name, parts[i+1])
		}
		switch {
		case strings.EqualFold(name, "species") && typ == "S" && cnt == 1:
			a.species, a.numeric = col, false
		case name == "Z" && typ == "I" && cnt == 1 && a.species < 0:
			a.species, a.numeric = col, true
		case (strings.EqualFold(name, "pos") || strings.EqualFold(name, "positions")) && typ == "R" && cnt == 3:
			a.pos = col
		}
		col += cnt
	}
	if a.species < 0 || a.pos < 0 {
		return atomLayout{}, fmt.Errorf("Properties=%s: want species:S:1 (or Z:I:1) and pos:R:3", v)
	}
	a.columns = col
	return a, nil
}

// splitKV splits an extended-XYZ comment into [key, value] pairs in order.
func splitKV(s string) ([][2]string, error) {
	var out [][2]string
	i := 0
	for {
		for i < len(s) && isBlank(s[i]) {
			i++
		}
		if i >= len(s) {
			return out, nil
		}
		key, j, err := token(s, i, true)
		if err != nil {
			return nil, err
		}
		if key == "" {
			return nil, fmt.Errorf("column %d: empty key", i+1)
		}
		i = j
		if i < len(s) && s[i] == '=' {
			var val string
			if val, i, err = token(s, i+1, false); err != nil {
				return nil, err
			}
			out = append(out, [2]string{key, val})
		} else {
			out = append(out, [2]string{key, "T"})
		}
	}
}

func isBlank(c byte) bool { return c == ' ' || c == '\t' }

// token reads a quoted, bracketed or bare token starting at s[i]; a key stops at '='.
func token(s string, i int, key bool) (string, int, error) {
	if i < len(s) && s[i] == '"' {
		var b strings.Builder
		for j := i + 1; j < len(s); j++ {
			switch c := s[j]; {
			case c == '\\' && j+1 < len(s):
				j++
				b.WriteByte(s[j])
			case c == '"':
				return b.String(), j + 1, nil
			default:
				b.WriteByte(c)
			}
		}
		return "", 0, fmt.Errorf("column %d: unterminated quoted value", i+1)
	}
	if !key && i < len(s) && (s[i] == '{' || s[i] == '[') {
		closer := byte('}')
		if s[i] == '[' {
			closer = ']'
		}
		j := strings.IndexByte(s[i:], closer)
		if j < 0 {
			return "", 0, fmt.Errorf("column %d: unterminated %c", i+1, s[i])
		}
		return s[i+1 : i+j], i + j + 1, nil
	}
	j := i
	for j < len(s) && !isBlank(s[j]) && !(key && s[j] == '=') {
		j++
	}
	return s[i:j], j, nil
}
