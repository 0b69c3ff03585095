// Package molfile reads user molecule files into molecule records: plain XYZ (one or more
// frames per file, also QM9's extended XYZ), extended XYZ (multi-frame, key=value comment
// line with a Properties column layout) and MDL SDF/MOL V2000 (multi-record, counts line,
// atom and bond blocks, M  CHG formal charges, data items).
//
// Every reader returns the records in file order; each Record keeps the 1-based record
// number within its file and the 1-based line of its first line and of every atom, so that
// later checks (e.g. an element filter) can point at the input. Every error is an *Error
// naming the file, the record and the line, e.g.
//
//	molfile: mols.sdf: record 2: line 17: atom 3: unknown element symbol "Xx"
//
// Records are not validated beyond what the format needs plus molecule.Validate (elements
// 1..118, at most molecule.MaxMoleculeAtoms atoms, finite coordinates); nothing panics on
// malformed input (FuzzParseXYZ, FuzzParseExtXYZ, FuzzParseSDF).
package molfile

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/enflow/enflow/etl/molecule"
)

// Format is a molecule file format, read here and written by pipeline/molwrite.
type Format int

const (
	// XYZ is plain XYZ: count line, comment line, "Sym x y z" lines (extra columns ignored).
	XYZ Format = iota
	// ExtXYZ is extended XYZ: like XYZ, with key=value pairs on the comment line.
	ExtXYZ
	// SDF is MDL SDF / MOL V2000.
	SDF
)

// String returns the format name as accepted by ParseFormat.
func (f Format) String() string {
	switch f {
	case XYZ:
		return "xyz"
	case ExtXYZ:
		return "extxyz"
	case SDF:
		return "sdf"
	}
	return fmt.Sprintf("Format(%d)", int(f))
}

// Ext returns the file extension (with the dot) of one file of the format. Extended XYZ
// files use .xyz, as is conventional (extxyz is a superset of XYZ).
func (f Format) Ext() string {
	if f == SDF {
		return ".sdf"
	}
	return ".xyz"
}

// ParseFormat parses "xyz", "extxyz" or "sdf" (case-insensitive; "exyz" means extxyz,
// "mol"/"sd" mean sdf).
func ParseFormat(s string) (Format, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "xyz":
		return XYZ, nil
	case "extxyz", "exyz":
		return ExtXYZ, nil
	case "sdf", "sd", "mol":
		return SDF, nil
	}
	return 0, fmt.Errorf("unknown molecule format %q (want xyz, extxyz or sdf)", s)
}

// MaxFileBytes bounds the size of one input file (read into memory whole).
const MaxFileBytes = 4 << 30

// Record is one molecule read from a file.
type Record struct {
	Molecule  molecule.Molecule // ID is 0 (the caller numbers molecules); Source is "file#record"
	File      string            // the file name as given to the reader
	Index     int               // 1-based record number within File
	Line      int               // 1-based line of the record's first line
	AtomLines []int             // 1-based line of each atom
}

// Error is a parse error located in a file.
type Error struct {
	File   string
	Record int // 1-based record number within File
	Line   int // 1-based line number
	Err    error
}

func (e *Error) Error() string {
	return fmt.Sprintf("molfile: %s: record %d: line %d: %v", e.File, e.Record, e.Line, e.Err)
}

func (e *Error) Unwrap() error { return e.Err }

// ErrEmpty is wrapped by the error for an input without molecules.
var ErrEmpty = errors.New("empty input: no molecules")

// Parse reads all records of data in format f; name labels errors and Sources.
func Parse(f Format, name string, data []byte) ([]Record, error) {
	switch f {
	case XYZ:
		return ParseXYZ(name, data)
	case ExtXYZ:
		return ParseExtXYZ(name, data)
	case SDF:
		return ParseSDF(name, data)
	}
	return nil, fmt.Errorf("molfile: %s: unknown format %d", name, int(f))
}

// ReadFile reads and parses one file.
func ReadFile(f Format, path string) ([]Record, error) {
	data, err := readAll(path)
	if err != nil {
		return nil, err
	}
	return Parse(f, path, data)
}

// ReadXYZDir parses every *.xyz file of dir (not recursive) in lexical file-name order as
// plain XYZ. A directory without .xyz files is an error.
func ReadXYZDir(dir string) ([]Record, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.xyz"))
	if err != nil {
		return nil, fmt.Errorf("molfile: %s: %w", dir, err)
	}
	sort.Strings(files)
	var regular []string
	for _, f := range files {
		if st, err := os.Stat(f); err == nil && st.Mode().IsRegular() {
			regular = append(regular, f)
		}
	}
	if len(regular) == 0 {
		if st, err := os.Stat(dir); err != nil {
			return nil, fmt.Errorf("molfile: %w", err)
		} else if !st.IsDir() {
			return nil, fmt.Errorf("molfile: %s: not a directory", dir)
		}
		return nil, fmt.Errorf("molfile: %s: %w (no *.xyz files)", dir, ErrEmpty)
	}
	var out []Record
	for _, f := range regular {
		rs, err := ReadFile(XYZ, f)
		if err != nil {
			return nil, err
		}
		out = append(out, rs...)
	}
	return out, nil
}

func readAll(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("molfile: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxFileBytes+1))
	if err != nil {
		return nil, fmt.Errorf("molfile: read %s: %w", path, err)
	}
	if len(data) > MaxFileBytes {
		return nil, fmt.Errorf("molfile: %s: larger than %d bytes", path, int64(MaxFileBytes))
	}
	return data, nil
}

// lines walks the lines of a file: n is the 1-based number of the line last returned.
// "\r\n" endings are accepted; a final line without "\n" counts.
type lines struct {
	data []byte
	pos  int
	n    int
}

func (l *lines) next() (string, bool) {
	if l.pos >= len(l.data) {
		return "", false
	}
	rest := l.data[l.pos:]
	i := bytes.IndexByte(rest, '\n')
	var line []byte
	if i < 0 {
		line, l.pos = rest, len(l.data)
	} else {
		line, l.pos = rest[:i], l.pos+i+1
	}
	l.n++
	return strings.TrimSuffix(string(line), "\r"), true
}

// peek returns the next line without consuming it.
func (l *lines) peek() (string, bool) {
	save := *l
	s, ok := l.next()
	*l = save
	return s, ok
}

// parser holds the location for errors.
type parser struct {
	file   string
	record int
	l      lines
}

func (p *parser) fail(line int, format string, a ...any) error {
	return &Error{File: p.file, Record: p.record, Line: line, Err: fmt.Errorf(format, a...)}
}

// wrap locates err (from molecule.Validate) at line.
func (p *parser) wrap(line int, err error) error {
	return &Error{File: p.file, Record: p.record, Line: line, Err: err}
}

// newRecord starts a record: the QM9 property fields, which these formats do not have, are
// NaN (stored as null).
func (p *parser) newRecord(line int) Record {
	rec := Record{File: p.file, Index: p.record, Line: line}
	for k := range rec.Molecule.Props {
		rec.Molecule.Props[k] = math.NaN()
	}
	rec.Molecule.Omega1 = math.NaN()
	rec.Molecule.Source = p.source()
	return rec
}

func (p *parser) source() string { return fmt.Sprintf("%s#%d", filepath.Base(p.file), p.record) }

// parseCoord parses one coordinate (QM9's Mathematica "*^" exponent accepted).
func parseCoord(s string) (float64, error) {
	s = strings.Replace(s, "*^", "e", 1)
	v, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return 0, fmt.Errorf("malformed number %q", s)
	}
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return 0, fmt.Errorf("non-finite number %q", s)
	}
	return v, nil
}

// element returns the atomic number of a symbol (any case) or of a decimal atomic number.
func element(s string) (int, error) {
	if z := molecule.NumberOfSymbol(s); z > 0 {
		return z, nil
	}
	if z, err := strconv.Atoi(s); err == nil && molecule.ValidZ(z) {
		return z, nil
	}
	return 0, fmt.Errorf("unknown element symbol %q", s)
}

// propertyValue types a property: a finite decimal number becomes float64, anything else
// stays a string.
func propertyValue(s string) any {
	if v, err := strconv.ParseFloat(s, 64); err == nil && !math.IsNaN(v) && !math.IsInf(v, 0) {
		return v
	}
	return s
}
