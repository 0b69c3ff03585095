package table

import (
	"encoding/json"
	"fmt"
	"math"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"

	"github.com/enflow/enflow/etl/molecule"
)

// Schema metadata keys and tags.
const (
	// MetaSchema is the key-value metadata key holding the table kind and version.
	MetaSchema = "enflow.schema"
	// MetaUnits is the key holding a JSON object {column: unit}.
	MetaUnits = "enflow.units"

	// MoleculeSchemaTag is the MetaSchema value of molecule tables.
	MoleculeSchemaTag = "molecule/v1"
	// ConfigSchemaTag is the MetaSchema value of particle-configuration tables.
	ConfigSchemaTag = "particles/v1"
)

// Molecule column names besides the 15 properties (named exactly as molecule.PropertyNames).
const (
	colID            = "id"
	colSplit         = "split"
	colNAtoms        = "n_atoms"
	colZ             = "z"
	colPositions     = "positions"
	colMulliken      = "mulliken"
	colOmega1        = "omega1"
	colFreqs         = "freqs"
	colSMILES        = "smiles"
	colSMILESRelaxed = "smiles_relaxed"
	colInChI         = "inchi"
	colInChIRelaxed  = "inchi_relaxed"

	// Optional columns (added for etl/molfile; files written before them still read).
	colName          = "name"
	colSource        = "source"
	colFormalCharges = "formal_charges"
	colBonds         = "bonds"
	colProperties    = "properties"
)

// moleculeUnits is the MetaUnits value of molecule tables (units of the raw QM9 archive, as
// documented on molecule.PropertyNames).
var moleculeUnits = map[string]string{
	colPositions: "angstrom",
	colMulliken:  "e",
	colOmega1:    "cm^-1",
	colFreqs:     "cm^-1",
	"A":          "GHz", "B": "GHz", "C": "GHz",
	"mu":    "debye",
	"alpha": "bohr^3",
	"homo":  "hartree", "lumo": "hartree", "gap": "hartree",
	"r2":   "bohr^2",
	"zpve": "hartree",
	"U0":   "hartree", "U": "hartree", "H": "hartree", "G": "hartree",
	"Cv": "cal/(mol K)",
}

func unitsJSON(u map[string]string) string {
	b, err := json.Marshal(u) // sorted keys; cannot fail for a map of strings
	if err != nil {
		return "{}"
	}
	return string(b)
}

// MoleculeSchema is the Arrow schema of molecule tables (see the package documentation).
var MoleculeSchema = newMoleculeSchema()

func newMoleculeSchema() *arrow.Schema {
	f64 := arrow.PrimitiveTypes.Float64
	fields := []arrow.Field{
		{Name: colID, Type: arrow.PrimitiveTypes.Int64},
		{Name: colSplit, Type: arrow.BinaryTypes.String, Nullable: true},
		{Name: colNAtoms, Type: arrow.PrimitiveTypes.Int32},
		{Name: colZ, Type: arrow.ListOfNonNullable(arrow.PrimitiveTypes.Int32)},
		{Name: colPositions, Type: arrow.ListOfNonNullable(arrow.FixedSizeListOfNonNullable(3, f64))},
		{Name: colMulliken, Type: arrow.ListOfNonNullable(f64), Nullable: true},
	}
	for _, p := range molecule.PropertyNames {
		fields = append(fields, arrow.Field{Name: p, Type: f64, Nullable: true})
	}
	fields = append(fields,
		arrow.Field{Name: colOmega1, Type: f64, Nullable: true},
		arrow.Field{Name: colFreqs, Type: arrow.ListOfNonNullable(f64), Nullable: true},
		arrow.Field{Name: colSMILES, Type: arrow.BinaryTypes.String, Nullable: true},
		arrow.Field{Name: colSMILESRelaxed, Type: arrow.BinaryTypes.String, Nullable: true},
		arrow.Field{Name: colInChI, Type: arrow.BinaryTypes.String, Nullable: true},
		arrow.Field{Name: colInChIRelaxed, Type: arrow.BinaryTypes.String, Nullable: true},
		arrow.Field{Name: colName, Type: arrow.BinaryTypes.String, Nullable: true},
		arrow.Field{Name: colSource, Type: arrow.BinaryTypes.String, Nullable: true},
		arrow.Field{Name: colFormalCharges, Type: arrow.ListOfNonNullable(arrow.PrimitiveTypes.Int32), Nullable: true},
		arrow.Field{Name: colBonds, Type: arrow.ListOfNonNullable(arrow.FixedSizeListOfNonNullable(3, arrow.PrimitiveTypes.Int32)), Nullable: true},
		arrow.Field{Name: colProperties, Type: arrow.BinaryTypes.String, Nullable: true},
	)
	md := arrow.NewMetadata([]string{MetaSchema, MetaUnits}, []string{MoleculeSchemaTag, unitsJSON(moleculeUnits)})
	return arrow.NewSchema(fields, &md)
}

var moleculeColumns = func() []colSpec {
	cs := []colSpec{
		{colID, kindInt}, {colSplit, kindString}, {colNAtoms, kindInt}, {colZ, kindIntList},
		{colPositions, kindVec3List}, {colMulliken, kindFloatList},
	}
	for _, p := range molecule.PropertyNames {
		cs = append(cs, colSpec{p, kindFloat})
	}
	return append(cs, colSpec{colOmega1, kindFloat}, colSpec{colFreqs, kindFloatList},
		colSpec{colSMILES, kindString}, colSpec{colSMILESRelaxed, kindString},
		colSpec{colInChI, kindString}, colSpec{colInChIRelaxed, kindString})
}()

// moleculeOptionalColumns may be absent from a file (it then reads as null).
var moleculeOptionalColumns = []colSpec{
	{colName, kindString}, {colSource, kindString}, {colFormalCharges, kindIntList},
	{colBonds, kindIntVecList}, {colProperties, kindString},
}

// MoleculeWriter streams molecules to a Parquet or Arrow IPC file (chosen by extension, see
// FormatOf). Nothing appears at the path until Commit; Abort (or a failed Commit) leaves
// nothing behind. It is not safe for concurrent use.
type MoleculeWriter struct {
	w *batchWriter

	id                                    *array.Int64Builder
	nAtoms                                *array.Int32Builder
	split, smiles, smilesR, inchi, inchiR *array.StringBuilder
	z                                     *array.ListBuilder
	zv                                    *array.Int32Builder
	pos                                   *array.ListBuilder
	posRow                                *array.FixedSizeListBuilder
	posv                                  *array.Float64Builder
	mull, freqs                           *array.ListBuilder
	mullv, freqsv                         *array.Float64Builder
	props                                 [molecule.NumProperties]*array.Float64Builder
	omega1                                *array.Float64Builder
	name, source, properties              *array.StringBuilder
	charges                               *array.ListBuilder
	chargesv                              *array.Int32Builder
	bonds                                 *array.ListBuilder
	bondRow                               *array.FixedSizeListBuilder
	bondv                                 *array.Int32Builder
}

// NewMoleculeWriter starts writing path (.parquet or .arrow). Rows are buffered and written
// BatchRows at a time.
func NewMoleculeWriter(path string) (*MoleculeWriter, error) {
	bw, err := newBatchWriter(path, MoleculeSchema)
	if err != nil {
		return nil, err
	}
	b := bw.b
	w := &MoleculeWriter{w: bw}
	// Builder types follow newMoleculeSchema field by field; the assertions cannot fail.
	w.id = b.Field(0).(*array.Int64Builder)
	w.split = b.Field(1).(*array.StringBuilder)
	w.nAtoms = b.Field(2).(*array.Int32Builder)
	w.z = b.Field(3).(*array.ListBuilder)
	w.zv = w.z.ValueBuilder().(*array.Int32Builder)
	w.pos = b.Field(4).(*array.ListBuilder)
	w.posRow = w.pos.ValueBuilder().(*array.FixedSizeListBuilder)
	w.posv = w.posRow.ValueBuilder().(*array.Float64Builder)
	w.mull = b.Field(5).(*array.ListBuilder)
	w.mullv = w.mull.ValueBuilder().(*array.Float64Builder)
	for k := range molecule.NumProperties {
		w.props[k] = b.Field(6 + k).(*array.Float64Builder)
	}
	i := 6 + molecule.NumProperties
	w.omega1 = b.Field(i).(*array.Float64Builder)
	w.freqs = b.Field(i + 1).(*array.ListBuilder)
	w.freqsv = w.freqs.ValueBuilder().(*array.Float64Builder)
	w.smiles = b.Field(i + 2).(*array.StringBuilder)
	w.smilesR = b.Field(i + 3).(*array.StringBuilder)
	w.inchi = b.Field(i + 4).(*array.StringBuilder)
	w.inchiR = b.Field(i + 5).(*array.StringBuilder)
	w.name = b.Field(i + 6).(*array.StringBuilder)
	w.source = b.Field(i + 7).(*array.StringBuilder)
	w.charges = b.Field(i + 8).(*array.ListBuilder)
	w.chargesv = w.charges.ValueBuilder().(*array.Int32Builder)
	w.bonds = b.Field(i + 9).(*array.ListBuilder)
	w.bondRow = w.bonds.ValueBuilder().(*array.FixedSizeListBuilder)
	w.bondv = w.bondRow.ValueBuilder().(*array.Int32Builder)
	w.properties = b.Field(i + 10).(*array.StringBuilder)
	return w, nil
}

// Write validates m (molecule.Validate) and appends it. An invalid molecule is rejected with
// an error naming its id and field, and the writer stays usable; an I/O error is sticky.
func (w *MoleculeWriter) Write(m *molecule.Molecule) error {
	if w == nil {
		return fmt.Errorf("table: nil MoleculeWriter")
	}
	if err := w.w.usable(); err != nil {
		return err
	}
	if m == nil {
		return fmt.Errorf("table: write %s: row %d: nil molecule", w.w.path, w.w.total)
	}
	if err := m.Validate(); err != nil {
		return fmt.Errorf("table: write %s: %w", w.w.path, err)
	}
	props := ""
	if len(m.Properties) > 0 {
		b, err := json.Marshal(m.Properties) // sorted keys; Validate allowed only strings and finite floats
		if err != nil {
			return fmt.Errorf("table: write %s: molecule %d: field properties: %w", w.w.path, m.ID, err)
		}
		props = string(b)
	}

	w.id.Append(m.ID)
	appendString(w.split, m.Split)
	w.nAtoms.Append(int32(len(m.Z)))
	w.z.Append(true)
	for _, z := range m.Z {
		w.zv.Append(int32(z))
	}
	w.pos.Append(true)
	for _, p := range m.Positions {
		w.posRow.Append(true)
		w.posv.AppendValues(p[:], nil)
	}
	appendFloatList(w.mull, w.mullv, m.Mulliken)
	for k, v := range m.Props {
		appendFloat(w.props[k], v)
	}
	appendFloat(w.omega1, m.Omega1)
	appendFloatList(w.freqs, w.freqsv, m.Freqs)
	appendString(w.smiles, m.SMILES[0])
	appendString(w.smilesR, m.SMILES[1])
	appendString(w.inchi, m.InChI[0])
	appendString(w.inchiR, m.InChI[1])
	appendString(w.name, m.Name)
	appendString(w.source, m.Source)
	if m.FormalCharges == nil {
		w.charges.AppendNull()
	} else {
		w.charges.Append(true)
		for _, c := range m.FormalCharges {
			w.chargesv.Append(int32(c))
		}
	}
	if m.Bonds == nil {
		w.bonds.AppendNull()
	} else {
		w.bonds.Append(true)
		for _, b := range m.Bonds {
			w.bondRow.Append(true)
			w.bondv.AppendValues([]int32{int32(b.A), int32(b.B), int32(b.Order)}, nil)
		}
	}
	appendString(w.properties, props)
	return w.w.rowDone()
}

// Commit writes the remaining rows and the footer, then atomically renames the file onto its
// path. On error nothing is left behind.
func (w *MoleculeWriter) Commit() error {
	if w == nil {
		return fmt.Errorf("table: nil MoleculeWriter")
	}
	return w.w.commit()
}

// Abort discards everything written so far; no file is left at the path (a previous file
// there is untouched). Safe to call more than once and after Commit (then a no-op).
func (w *MoleculeWriter) Abort() {
	if w != nil {
		w.w.abort()
	}
}

// appendString appends s, or null for "".
func appendString(b *array.StringBuilder, s string) {
	if s == "" {
		b.AppendNull()
	} else {
		b.Append(s)
	}
}

// appendFloat appends v, or null for NaN.
func appendFloat(b *array.Float64Builder, v float64) {
	if math.IsNaN(v) {
		b.AppendNull()
	} else {
		b.Append(v)
	}
}

// appendFloatList appends vs, or null for a nil slice (an empty non-nil slice is an empty list).
func appendFloatList(l *array.ListBuilder, vb *array.Float64Builder, vs []float64) {
	if vs == nil {
		l.AppendNull()
		return
	}
	l.Append(true)
	vb.AppendValues(vs, nil)
}

// ReadMolecules reads a whole molecule table. See ScanMolecules for large files.
func ReadMolecules(path string) ([]molecule.Molecule, error) {
	var out []molecule.Molecule
	err := ScanMolecules(path, BatchRows, func(ms []molecule.Molecule) error {
		out = append(out, ms...)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// ScanMolecules streams a molecule table (Parquet or Arrow IPC, recognised by content) to fn
// in file order, at most batch molecules per call (batch ≤ 0 means BatchRows); fn may keep
// the slice. Memory is bounded by one batch. Every row is checked (column types, list
// lengths against n_atoms, molecule.Validate) and errors name the file, row index, id and
// column. An error from fn stops the scan and is returned as is.
func ScanMolecules(path string, batch int, fn func([]molecule.Molecule) error) error {
	s, err := openSource(path, batch)
	if err != nil {
		return err
	}
	defer s.close()
	idx, err := bindSchema(path, s.schema, MoleculeSchemaTag, moleculeColumns)
	if err != nil {
		return err
	}
	opt, err := bindOptional(path, s.schema, moleculeOptionalColumns)
	if err != nil {
		return err
	}
	for k, v := range opt {
		idx[k] = v
	}
	var row int64
	return s.each(func(rec arrow.RecordBatch) error {
		ms, err := decodeMolecules(path, rec, idx, row)
		if err != nil {
			return err
		}
		row += rec.NumRows()
		return fn(ms)
	})
}

// decodeMolecules converts one record batch; row0 is the file row index of its first row.
func decodeMolecules(path string, rec arrow.RecordBatch, idx map[string]int, row0 int64) (out []molecule.Molecule, err error) {
	defer catch(path, &err)
	col := func(name string) arrow.Array { return rec.Column(idx[name]) }
	id := intAccessor(col(colID))
	nAtoms := intAccessor(col(colNAtoms))
	split := stringAccessor(col(colSplit))
	strs := [4]stringCol{
		stringAccessor(col(colSMILES)), stringAccessor(col(colSMILESRelaxed)),
		stringAccessor(col(colInChI)), stringAccessor(col(colInChIRelaxed)),
	}
	var props [molecule.NumProperties]floatCol
	for k, p := range molecule.PropertyNames {
		props[k] = floatAccessor(col(p))
	}
	omega1 := floatAccessor(col(colOmega1))
	zl, ok1 := listAccessor(col(colZ))
	pl, ok2 := listAccessor(col(colPositions))
	ml, ok3 := listAccessor(col(colMulliken))
	fl, ok4 := listAccessor(col(colFreqs))
	if !ok1 || !ok2 || !ok3 || !ok4 {
		return nil, fmt.Errorf("table: read %s: list column is not a list array", path)
	}
	zv := intAccessor(zl.child)
	inner, ok := listAccessor(pl.child)
	if !ok {
		return nil, fmt.Errorf("table: read %s: column %q: inner list is not a list array", path, colPositions)
	}
	posv := floatValues(inner.child)
	mullv := floatValues(ml.child)
	freqv := floatValues(fl.child)
	ext, err := optionalMoleculeColumns(path, rec, idx)
	if err != nil {
		return nil, err
	}

	n := int(rec.NumRows())
	out = make([]molecule.Molecule, n)
	for i := range n {
		m := &out[i]
		r := row0 + int64(i)
		v, ok := id(i)
		if !ok {
			return nil, fmt.Errorf("table: read %s: row %d: column %q: null id", path, r, colID)
		}
		m.ID = v
		bad := func(column, format string, a ...any) error {
			return fmt.Errorf("table: read %s: row %d (id %d): column %q: %s", path, r, m.ID, column, fmt.Sprintf(format, a...))
		}
		m.Split, _ = split(i)
		na, ok := nAtoms(i)
		if !ok {
			return nil, bad(colNAtoms, "null")
		}
		if na < 1 || na > molecule.MaxMoleculeAtoms {
			return nil, bad(colNAtoms, "%d atoms, want 1..%d", na, molecule.MaxMoleculeAtoms)
		}

		s, e, null, err := zl.span(i)
		switch {
		case err != nil:
			return nil, bad(colZ, "%v", err)
		case null:
			return nil, bad(colZ, "null")
		case int64(e-s) != na:
			return nil, bad(colZ, "%d values for n_atoms=%d", e-s, na)
		}
		if err := noNulls(zl.child, s, e); err != nil {
			return nil, bad(colZ, "%v", err)
		}
		m.Z = make([]int, e-s)
		for j := s; j < e; j++ {
			z, _ := zv(j)
			m.Z[j-s] = int(z)
		}

		s, e, null, err = pl.span(i)
		switch {
		case err != nil:
			return nil, bad(colPositions, "%v", err)
		case null:
			return nil, bad(colPositions, "null")
		case int64(e-s) != na:
			return nil, bad(colPositions, "%d rows for n_atoms=%d (want n_atoms rows of 3 coordinates)", e-s, na)
		}
		m.Positions = make([][3]float64, e-s)
		for j := s; j < e; j++ {
			ps, pe, null, err := inner.span(j)
			switch {
			case err != nil:
				return nil, bad(colPositions, "atom %d: %v", j-s, err)
			case null:
				return nil, bad(colPositions, "atom %d: null", j-s)
			case pe-ps != 3:
				return nil, bad(colPositions, "atom %d: %d coordinates, want 3", j-s, pe-ps)
			case pe > len(posv):
				return nil, bad(colPositions, "atom %d: values out of range", j-s)
			}
			if err := noNulls(inner.child, ps, pe); err != nil {
				return nil, bad(colPositions, "atom %d: %v", j-s, err)
			}
			copy(m.Positions[j-s][:], posv[ps:pe])
		}

		if m.Mulliken, err = ml.floats(i, mullv); err != nil {
			return nil, bad(colMulliken, "%v", err)
		}
		if m.Mulliken != nil && int64(len(m.Mulliken)) != na {
			return nil, bad(colMulliken, "%d values for n_atoms=%d", len(m.Mulliken), na)
		}
		for k := range props {
			m.Props[k] = nanIfNull(props[k].get(i))
		}
		m.Omega1 = nanIfNull(omega1.get(i))
		if m.Freqs, err = fl.floats(i, freqv); err != nil {
			return nil, bad(colFreqs, "%v", err)
		}
		m.SMILES[0], _ = strs[0](i)
		m.SMILES[1], _ = strs[1](i)
		m.InChI[0], _ = strs[2](i)
		m.InChI[1], _ = strs[3](i)
		if err := ext.decode(i, m, bad); err != nil {
			return nil, err
		}
		if err := m.Validate(); err != nil {
			return nil, fmt.Errorf("table: read %s: row %d: %w", path, r, err)
		}
	}
	return out, nil
}

func nanIfNull(v float64, ok bool) float64 {
	if !ok {
		return math.NaN()
	}
	return v
}

// moleculeExt reads the optional columns of one record batch (a nil accessor: column absent).
type moleculeExt struct {
	name, source, props stringCol
	charges             *listCol
	chargesv            intCol
	bonds, bondRow      *listCol
	bondv               intCol
}

func optionalMoleculeColumns(path string, rec arrow.RecordBatch, idx map[string]int) (*moleculeExt, error) {
	x := &moleculeExt{}
	str := func(name string) stringCol {
		if j, ok := idx[name]; ok {
			return stringAccessor(rec.Column(j))
		}
		return nil
	}
	x.name, x.source, x.props = str(colName), str(colSource), str(colProperties)
	if j, ok := idx[colFormalCharges]; ok {
		l, ok := listAccessor(rec.Column(j))
		if !ok {
			return nil, fmt.Errorf("table: read %s: column %q is not a list array", path, colFormalCharges)
		}
		x.charges, x.chargesv = &l, intAccessor(l.child)
	}
	if j, ok := idx[colBonds]; ok {
		l, ok1 := listAccessor(rec.Column(j))
		var inner listCol
		ok2 := false
		if ok1 {
			inner, ok2 = listAccessor(l.child)
		}
		if !ok1 || !ok2 {
			return nil, fmt.Errorf("table: read %s: column %q is not a list of lists", path, colBonds)
		}
		x.bonds, x.bondRow, x.bondv = &l, &inner, intAccessor(inner.child)
	}
	return x, nil
}

// decode fills the optional fields of m from row i.
func (x *moleculeExt) decode(i int, m *molecule.Molecule, bad func(column, format string, a ...any) error) error {
	if x.name != nil {
		m.Name, _ = x.name(i)
	}
	if x.source != nil {
		m.Source, _ = x.source(i)
	}
	if x.charges != nil {
		s, e, null, err := x.charges.span(i)
		switch {
		case err != nil:
			return bad(colFormalCharges, "%v", err)
		case !null:
			if err := noNulls(x.charges.child, s, e); err != nil {
				return bad(colFormalCharges, "%v", err)
			}
			m.FormalCharges = make([]int, e-s)
			for j := s; j < e; j++ {
				v, _ := x.chargesv(j)
				m.FormalCharges[j-s] = int(v)
			}
		}
	}
	if x.bonds != nil {
		s, e, null, err := x.bonds.span(i)
		switch {
		case err != nil:
			return bad(colBonds, "%v", err)
		case !null:
			m.Bonds = make([]molecule.Bond, e-s)
			for j := s; j < e; j++ {
				bs, be, null, err := x.bondRow.span(j)
				switch {
				case err != nil:
					return bad(colBonds, "bond %d: %v", j-s, err)
				case null || be-bs != 3:
					return bad(colBonds, "bond %d: want 3 integers (atom, atom, order)", j-s)
				}
				if err := noNulls(x.bondRow.child, bs, be); err != nil {
					return bad(colBonds, "bond %d: %v", j-s, err)
				}
				a, _ := x.bondv(bs)
				b, _ := x.bondv(bs + 1)
				o, _ := x.bondv(bs + 2)
				m.Bonds[j-s] = molecule.Bond{A: int(a), B: int(b), Order: int(o)}
			}
		}
	}
	if x.props != nil {
		if js, ok := x.props(i); ok && js != "" {
			if err := json.Unmarshal([]byte(js), &m.Properties); err != nil {
				return bad(colProperties, "not a JSON object: %v", err)
			}
		}
	}
	return nil
}
