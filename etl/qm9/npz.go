package qm9

import (
	"fmt"
	"math"
	"path/filepath"
	"strings"

	"github.com/sbinet/npyio/npz"

	"github.com/enflow/enflow/etl/molecule"
)

// ReadNPZ reads a Cormorant / en_flows / EDM preprocessed split ({train,valid,test}.npz):
// num_atoms (N,), charges (N,M) atomic numbers zero-padded, positions (N,M,3) in Å, index
// (N,) 1-based gdb ids, the 15 properties and omega1 (N,) each. `*_thermo` keys and any
// other keys are ignored. Integer keys accept any integer dtype and float keys float32 or
// float64; the raw files use int64 and float32. Every molecule gets Split = split
// (which may be ""). Molecules keep the file's row order.
//
// Errors name the file, the key and, for per-molecule checks, the record (0-based row):
// missing keys, wrong shapes or dtypes, num_atoms inconsistent with the non-zero charges,
// unknown atomic numbers, non-finite positions, non-positive or repeated ids.
func ReadNPZ(path, split string) ([]molecule.Molecule, error) {
	name := filepath.Base(path)
	r, err := npz.Open(path)
	if err != nil {
		return nil, fmt.Errorf("qm9: %s: %w", name, err)
	}
	defer r.Close()
	d := npzDecoder{name: name, r: r}
	return d.decode(split)
}

// SplitFromFileName infers the split from a file name: "train", "valid" (or "val",
// "validation") or "test" must appear as a word of the base name (words are separated by
// anything but letters and digits), e.g. "cormorant_qm9_test.npz" → "test". It returns ""
// when no split or more than one is named.
func SplitFromFileName(path string) string {
	base := strings.ToLower(filepath.Base(path))
	base = strings.TrimSuffix(base, filepath.Ext(base))
	words := strings.FieldsFunc(base, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9')
	})
	found := ""
	for _, w := range words {
		s := ""
		switch w {
		case "train":
			s = Train
		case "valid", "val", "validation":
			s = Valid
		case "test":
			s = Test
		}
		if s == "" {
			continue
		}
		if found != "" && found != s {
			return ""
		}
		found = s
	}
	return found
}

type npzDecoder struct {
	name string
	r    *npz.Reader
}

func (d *npzDecoder) keyErr(key string, err error) error {
	return fmt.Errorf("qm9: %s: key %s: %w", d.name, key, err)
}

func (d *npzDecoder) recordErr(key string, row int, id int64, format string, args ...any) error {
	return fmt.Errorf("qm9: %s: key %s: record %d (id %d): %s", d.name, key, row, id, fmt.Sprintf(format, args...))
}

// read reads key with the given kind and shape.
func (d *npzDecoder) read(key string, kind dtypeKind, shape ...int) (*npyArray, error) {
	a, err := readArray(d.r, key, kind)
	if err != nil {
		return nil, d.keyErr(key, err)
	}
	if err := a.checkShape(shape...); err != nil {
		return nil, d.keyErr(key, err)
	}
	return a, nil
}

func (d *npzDecoder) decode(split string) ([]molecule.Molecule, error) {
	numAtoms, err := d.read("num_atoms", kindInt, -1)
	if err != nil {
		return nil, err
	}
	n := numAtoms.shape[0]
	charges, err := d.read("charges", kindInt, n, -1)
	if err != nil {
		return nil, err
	}
	width := charges.shape[1]
	positions, err := d.read("positions", kindFloat, n, width, 3)
	if err != nil {
		return nil, err
	}
	index, err := d.read("index", kindInt, n)
	if err != nil {
		return nil, err
	}
	var props [molecule.NumProperties]*npyArray
	for k, key := range molecule.PropertyNames {
		if props[k], err = d.read(key, kindFloat, n); err != nil {
			return nil, err
		}
	}
	omega1, err := d.read("omega1", kindFloat, n)
	if err != nil {
		return nil, err
	}

	mols := make([]molecule.Molecule, n)
	seen := make(map[int64]int, n)
	for row := range mols {
		m := &mols[row]
		m.ID = index.ints[row]
		m.Split = split
		if m.ID < 1 {
			return nil, d.recordErr("index", row, m.ID, "id must be positive")
		}
		if prev, dup := seen[m.ID]; dup {
			return nil, d.recordErr("index", row, m.ID, "id repeated (first in record %d)", prev)
		}
		seen[m.ID] = row
		if err := d.atoms(m, row, numAtoms.ints[row], width, charges, positions); err != nil {
			return nil, err
		}
		for k := range props {
			m.Props[k] = props[k].floats[row]
		}
		m.Omega1 = omega1.floats[row]
	}
	return mols, nil
}

// atoms fills Z and Positions of record row and checks them against num_atoms.
func (d *npzDecoder) atoms(m *molecule.Molecule, row int, numAtoms int64, width int, charges, positions *npyArray) error {
	if numAtoms < 1 || numAtoms > int64(min(width, molecule.MaxAtoms)) {
		return d.recordErr("num_atoms", row, m.ID, "%d atoms, want 1..%d", numAtoms, min(width, molecule.MaxAtoms))
	}
	na := int(numAtoms)
	zs := charges.ints[row*width : (row+1)*width]
	nonZero := 0
	for _, z := range zs {
		if z != 0 {
			nonZero++
		}
	}
	for j, z := range zs {
		if (z != 0) != (j < na) {
			return d.recordErr("charges", row, m.ID, "num_atoms is %d but the charges have %d non-zero entries (atom %d is %d)", na, nonZero, j, z)
		}
	}
	m.Z = make([]int, na)
	m.Positions = make([][3]float64, na)
	for j := range na {
		z := zs[j]
		if z > math.MaxInt32 || molecule.TypeIndex(int(z)) < 0 {
			return d.recordErr("charges", row, m.ID, "atom %d: unknown atomic number %d", j, z)
		}
		m.Z[j] = int(z)
		for k := range 3 {
			v := positions.floats[(row*width+j)*3+k]
			if math.IsNaN(v) || math.IsInf(v, 0) {
				return d.recordErr("positions", row, m.ID, "atom %d: non-finite coordinate %s = %v", j, coordFields[k], v)
			}
			m.Positions[j][k] = v
		}
	}
	return nil
}
