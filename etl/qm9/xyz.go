package qm9

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"os"
	"path"
	"path/filepath"
	"strconv"

	"github.com/enflow/enflow/etl/molecule"
)

// propertiesFields is the number of fields on the properties line: tag, index, 15 values.
const propertiesFields = 2 + molecule.NumProperties

// ReadXYZ reads and parses one QM9 .xyz file from disk (see ParseXYZ).
func ReadXYZ(file string) (*molecule.Molecule, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("qm9: %w", err)
	}
	return ParseXYZ(filepath.Base(file), data)
}

// ParseXYZ parses one QM9 extended-XYZ file (REFERENCE §2.1): atom count; properties line
// "gdb <index> <15 values>"; one line per atom "Element x y z Mulliken"; harmonic
// frequencies; two SMILES; two InChI. Fields are separated by tabs and/or spaces;
// Mathematica exponents ("1.5*^-6") and values like "0." are accepted. Omega1 is the largest
// frequency. The frequency count is not checked against 3n−6 / 3n−5; at least one is required.
//
// name is the file or member name used in errors; when it has the official form
// dsgdb9nsd_NNNNNN.xyz its number must equal the index on the properties line.
// Every error is a *ParseError.
func ParseXYZ(name string, data []byte) (*molecule.Molecule, error) {
	p := xyzParser{name: name, lines: lineReader{data: data}}
	m, err := p.parse()
	if err != nil {
		return nil, err
	}
	return m, nil
}

// IDFromName extracts the gdb id from an official member name (any directory prefix is
// ignored): "dsgdb9nsd_000017.xyz" → 17, true.
func IDFromName(name string) (int64, bool) {
	base := path.Base(filepath.ToSlash(name))
	const prefix, suffix = "dsgdb9nsd_", ".xyz"
	if len(base) <= len(prefix)+len(suffix) || base[:len(prefix)] != prefix || base[len(base)-len(suffix):] != suffix {
		return 0, false
	}
	digits := base[len(prefix) : len(base)-len(suffix)]
	for i := 0; i < len(digits); i++ {
		if digits[i] < '0' || digits[i] > '9' {
			return 0, false
		}
	}
	id, err := strconv.ParseInt(digits, 10, 64)
	if err != nil || id < 1 {
		return 0, false
	}
	return id, true
}

type xyzParser struct {
	name   string
	lines  lineReader
	fields [][]byte // reused field buffer
}

func (p *xyzParser) fail(line int, field string, err error) error {
	return &ParseError{File: p.name, Line: line, Field: field, Err: err}
}

func (p *xyzParser) failf(line int, field, format string, args ...any) error {
	return p.fail(line, field, fmt.Errorf(format, args...))
}

// next returns the fields of the next line, or an error naming what was expected.
func (p *xyzParser) next(what string) ([][]byte, int, error) {
	line, ok := p.lines.next()
	if !ok {
		return nil, p.lines.n + 1, p.failf(p.lines.n+1, what, "missing line (file ends after %d lines)", p.lines.n)
	}
	p.fields = splitFields(line, p.fields[:0])
	return p.fields, p.lines.n, nil
}

func (p *xyzParser) parse() (*molecule.Molecule, error) {
	// Line 1: atom count.
	f, ln, err := p.next("n_atoms")
	if err != nil {
		return nil, err
	}
	if len(f) != 1 {
		return nil, p.failf(ln, "n_atoms", "want 1 value, got %d", len(f))
	}
	n, err := strconv.Atoi(string(f[0]))
	if err != nil {
		return nil, p.fail(ln, "n_atoms", err)
	}
	if n < 1 || n > molecule.MaxAtoms {
		return nil, p.failf(ln, "n_atoms", "%d atoms, want 1..%d", n, molecule.MaxAtoms)
	}

	m := &molecule.Molecule{
		Z:         make([]int, n),
		Positions: make([][3]float64, n),
		Mulliken:  make([]float64, n),
	}
	if err := p.parseProperties(m); err != nil {
		return nil, err
	}
	for i := range n {
		if err := p.parseAtom(m, i, n); err != nil {
			return nil, err
		}
	}
	if err := p.parseFrequencies(m); err != nil {
		return nil, err
	}
	if err := p.parsePair("smiles", &m.SMILES); err != nil {
		return nil, err
	}
	if err := p.parsePair("inchi", &m.InChI); err != nil {
		return nil, err
	}
	for {
		line, ok := p.lines.next()
		if !ok {
			break
		}
		if len(splitFields(line, p.fields[:0])) > 0 {
			return nil, p.failf(p.lines.n, "", "unexpected content after the InChI line")
		}
	}
	return m, nil
}

func (p *xyzParser) parseProperties(m *molecule.Molecule) error {
	f, ln, err := p.next("properties")
	if err != nil {
		return err
	}
	if len(f) != propertiesFields {
		return p.failf(ln, "properties", "want %d fields (gdb tag, index, %d properties), got %d", propertiesFields, molecule.NumProperties, len(f))
	}
	if string(f[0]) != "gdb" {
		return p.failf(ln, "tag", "want %q, got %q", "gdb", f[0])
	}
	id, err := strconv.ParseInt(string(f[1]), 10, 64)
	if err != nil {
		return p.fail(ln, "index", err)
	}
	if id < 1 {
		return p.failf(ln, "index", "id %d must be positive", id)
	}
	if fileID, ok := IDFromName(p.name); ok && fileID != id {
		return p.failf(ln, "index", "file name says id %d, properties line says %d", fileID, id)
	}
	m.ID = id
	for k := range molecule.NumProperties {
		v, err := parseNumber(f[2+k])
		if err != nil {
			return p.fail(ln, molecule.PropertyNames[k], err)
		}
		m.Props[k] = v
	}
	return nil
}

var coordFields = [...]string{"x", "y", "z"}

func (p *xyzParser) parseAtom(m *molecule.Molecule, i, n int) error {
	line, ok := p.lines.next()
	if !ok {
		return p.failf(p.lines.n+1, "atoms", "file ends after %d of %d declared atoms", i, n)
	}
	f := splitFields(line, p.fields[:0])
	p.fields = f
	ln := p.lines.n
	if len(f) != 5 {
		return p.failf(ln, "atoms", "atom %d of %d: want 5 fields (element x y z charge), got %d (fewer atom lines than declared?)", i+1, n, len(f))
	}
	z := atomicNumber(f[0])
	if z == 0 {
		return p.failf(ln, "element", "atom %d: unknown element %q", i+1, f[0])
	}
	m.Z[i] = z
	for k := range 3 {
		v, err := parseNumber(f[1+k])
		if err != nil {
			return p.fail(ln, coordFields[k], err)
		}
		m.Positions[i][k] = v
	}
	q, err := parseNumber(f[4])
	if err != nil {
		return p.fail(ln, "mulliken", err)
	}
	m.Mulliken[i] = q
	return nil
}

func (p *xyzParser) parseFrequencies(m *molecule.Molecule) error {
	f, ln, err := p.next("frequencies")
	if err != nil {
		return err
	}
	if len(f) == 0 {
		return p.failf(ln, "frequencies", "no values")
	}
	m.Freqs = make([]float64, len(f))
	m.Omega1 = math.Inf(-1)
	for i, b := range f {
		v, err := parseNumber(b)
		if err != nil {
			return p.fail(ln, "frequencies", fmt.Errorf("value %d: %w", i+1, err))
		}
		m.Freqs[i] = v
		m.Omega1 = max(m.Omega1, v)
	}
	return nil
}

func (p *xyzParser) parsePair(field string, dst *[2]string) error {
	f, ln, err := p.next(field)
	if err != nil {
		return err
	}
	if len(f) != 2 {
		return p.failf(ln, field, "want 2 values, got %d", len(f))
	}
	dst[0], dst[1] = string(f[0]), string(f[1])
	return nil
}

// atomicNumber maps an element symbol of QM9 to its atomic number, 0 if unknown.
func atomicNumber(sym []byte) int {
	switch string(sym) {
	case "H":
		return 1
	case "C":
		return 6
	case "N":
		return 7
	case "O":
		return 8
	case "F":
		return 9
	}
	return 0
}

var mathematicaExp = []byte("*^")

var errNonFinite = errors.New("non-finite value")

// parseNumber parses a float, accepting Mathematica exponents ("*^" for "e"). NaN and ±Inf
// are rejected.
func parseNumber(b []byte) (float64, error) {
	if i := bytes.Index(b, mathematicaExp); i >= 0 {
		var buf [64]byte
		if len(b) >= len(buf) {
			return 0, fmt.Errorf("number too long: %q", b)
		}
		n := copy(buf[:], b[:i])
		buf[n] = 'e'
		n++
		n += copy(buf[n:], b[i+2:])
		b = buf[:n]
	}
	v, err := strconv.ParseFloat(string(b), 64)
	if err != nil {
		return 0, err
	}
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return 0, fmt.Errorf("%w %q", errNonFinite, b)
	}
	return v, nil
}
