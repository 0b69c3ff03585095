package table

import (
	"fmt"
	"math"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"

	"github.com/enflow/enflow/etl/particles"
)

const (
	colSystem     = "system"
	colNParticles = "n_particles"
	colDim        = "dim"
	colEnergy     = "energy"
)

// ConfigSchema is the Arrow schema of particle-configuration tables (see the package
// documentation).
var ConfigSchema = func() *arrow.Schema {
	f64 := arrow.PrimitiveTypes.Float64
	md := arrow.NewMetadata([]string{MetaSchema, MetaUnits}, []string{ConfigSchemaTag,
		unitsJSON(map[string]string{colPositions: "reduced units", colEnergy: "reduced units"})})
	return arrow.NewSchema([]arrow.Field{
		{Name: colID, Type: arrow.PrimitiveTypes.Int64},
		{Name: colSplit, Type: arrow.BinaryTypes.String, Nullable: true},
		{Name: colSystem, Type: arrow.BinaryTypes.String},
		{Name: colNParticles, Type: arrow.PrimitiveTypes.Int32},
		{Name: colDim, Type: arrow.PrimitiveTypes.Int32},
		{Name: colPositions, Type: arrow.ListOfNonNullable(f64)},
		{Name: colEnergy, Type: f64, Nullable: true},
	}, &md)
}()

var configColumns = []colSpec{
	{colID, kindInt}, {colSplit, kindString}, {colSystem, kindString}, {colNParticles, kindInt},
	{colDim, kindInt}, {colPositions, kindFloatList}, {colEnergy, kindFloat},
}

// ConfigWriter streams particle configurations to a Parquet or Arrow IPC file (chosen by
// extension, see FormatOf), atomically like MoleculeWriter. It is not safe for concurrent use.
type ConfigWriter struct {
	w              *batchWriter
	id             *array.Int64Builder
	split, system  *array.StringBuilder
	nParticles, dm *array.Int32Builder
	pos            *array.ListBuilder
	posv           *array.Float64Builder
	energy         *array.Float64Builder
}

// NewConfigWriter starts writing path (.parquet or .arrow).
func NewConfigWriter(path string) (*ConfigWriter, error) {
	return newConfigWriter(path, ConfigSchema)
}

// newConfigWriter starts writing path with schema, which is ConfigSchema possibly followed
// by optional columns (config_ext.go).
func newConfigWriter(path string, schema *arrow.Schema) (*ConfigWriter, error) {
	bw, err := newBatchWriter(path, schema)
	if err != nil {
		return nil, err
	}
	b := bw.b
	// Builder types follow ConfigSchema field by field; the assertions cannot fail.
	w := &ConfigWriter{
		w:          bw,
		id:         b.Field(0).(*array.Int64Builder),
		split:      b.Field(1).(*array.StringBuilder),
		system:     b.Field(2).(*array.StringBuilder),
		nParticles: b.Field(3).(*array.Int32Builder),
		dm:         b.Field(4).(*array.Int32Builder),
		pos:        b.Field(5).(*array.ListBuilder),
		energy:     b.Field(6).(*array.Float64Builder),
	}
	w.posv = w.pos.ValueBuilder().(*array.Float64Builder)
	return w, nil
}

// Write checks c (known system, len(Positions) = particles·dim, finite coordinates) and
// appends it; the system is stored under its canonical name ("dw4", "lj13") with its
// n_particles and dim. A NaN energy is stored as null. Errors name the configuration id and
// field; an invalid configuration leaves the writer usable.
func (w *ConfigWriter) Write(c *particles.Config) error {
	if err := w.appendConfig(c); err != nil {
		return err
	}
	return w.w.rowDone()
}

// appendConfig checks and appends the ConfigSchema columns of one row without counting
// it (rowDone), so that optional columns can be appended to the same row.
func (w *ConfigWriter) appendConfig(c *particles.Config) error {
	if w == nil {
		return fmt.Errorf("table: nil ConfigWriter")
	}
	if err := w.w.usable(); err != nil {
		return err
	}
	if c == nil {
		return fmt.Errorf("table: write %s: row %d: nil configuration", w.w.path, w.w.total)
	}
	sys, err := particles.SystemByName(c.System)
	if err != nil {
		return fmt.Errorf("table: write %s: configuration %d: field system: %w", w.w.path, c.ID, err)
	}
	if len(c.Positions) != sys.Flat() {
		return fmt.Errorf("table: write %s: configuration %d: field positions: %d values, want %d (%d particles × %d dims)",
			w.w.path, c.ID, len(c.Positions), sys.Flat(), sys.Particles, sys.Dim)
	}
	for k, v := range c.Positions {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return fmt.Errorf("table: write %s: configuration %d: field positions[%d]: non-finite value %v", w.w.path, c.ID, k, v)
		}
	}
	w.id.Append(c.ID)
	appendString(w.split, c.Split)
	w.system.Append(sys.Name)
	w.nParticles.Append(int32(sys.Particles))
	w.dm.Append(int32(sys.Dim))
	w.pos.Append(true)
	w.posv.AppendValues(c.Positions, nil)
	appendFloat(w.energy, c.Energy)
	return nil
}

// Commit writes the remaining rows and the footer, then atomically renames the file onto its
// path. On error nothing is left behind.
func (w *ConfigWriter) Commit() error {
	if w == nil {
		return fmt.Errorf("table: nil ConfigWriter")
	}
	return w.w.commit()
}

// Abort discards everything written so far; no file is left at the path. Safe to call more
// than once and after Commit (then a no-op).
func (w *ConfigWriter) Abort() {
	if w != nil {
		w.w.abort()
	}
}

// ReadConfigs reads a whole configuration table. See ScanConfigs for large files.
func ReadConfigs(path string) ([]particles.Config, error) {
	var out []particles.Config
	err := ScanConfigs(path, BatchRows, func(cs []particles.Config) error {
		out = append(out, cs...)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// ScanConfigs streams a configuration table to fn in file order, at most batch rows per call
// (batch ≤ 0 means BatchRows); fn may keep the slice. Every row is checked (known system,
// n_particles and dim matching it, len(positions) = n_particles·dim); errors name the file,
// row index, id and column. A null energy reads as NaN.
func ScanConfigs(path string, batch int, fn func([]particles.Config) error) error {
	s, err := openSource(path, batch)
	if err != nil {
		return err
	}
	defer s.close()
	idx, err := bindSchema(path, s.schema, ConfigSchemaTag, configColumns)
	if err != nil {
		return err
	}
	var row int64
	return s.each(func(rec arrow.RecordBatch) error {
		cs, err := decodeConfigs(path, rec, idx, row)
		if err != nil {
			return err
		}
		row += rec.NumRows()
		return fn(cs)
	})
}

func decodeConfigs(path string, rec arrow.RecordBatch, idx map[string]int, row0 int64) (out []particles.Config, err error) {
	defer catch(path, &err)
	col := func(name string) arrow.Array { return rec.Column(idx[name]) }
	id := intAccessor(col(colID))
	split := stringAccessor(col(colSplit))
	system := stringAccessor(col(colSystem))
	nPart := intAccessor(col(colNParticles))
	dim := intAccessor(col(colDim))
	energy := floatAccessor(col(colEnergy))
	pl, ok := listAccessor(col(colPositions))
	if !ok {
		return nil, fmt.Errorf("table: read %s: column %q is not a list array", path, colPositions)
	}
	posv := floatValues(pl.child)

	n := int(rec.NumRows())
	out = make([]particles.Config, n)
	for i := range n {
		c := &out[i]
		r := row0 + int64(i)
		v, ok := id(i)
		if !ok {
			return nil, fmt.Errorf("table: read %s: row %d: column %q: null id", path, r, colID)
		}
		c.ID = v
		bad := func(column, format string, a ...any) error {
			return fmt.Errorf("table: read %s: row %d (id %d): column %q: %s", path, r, c.ID, column, fmt.Sprintf(format, a...))
		}
		c.Split, _ = split(i)
		name, ok := system(i)
		if !ok {
			return nil, bad(colSystem, "null")
		}
		sys, err := particles.SystemByName(name)
		if err != nil {
			return nil, bad(colSystem, "%v", err)
		}
		c.System = sys.Name
		if v, ok := nPart(i); !ok || v != int64(sys.Particles) {
			return nil, bad(colNParticles, "%s, want %d for system %s", fmtInt(v, ok), sys.Particles, sys.Name)
		}
		if v, ok := dim(i); !ok || v != int64(sys.Dim) {
			return nil, bad(colDim, "%s, want %d for system %s", fmtInt(v, ok), sys.Dim, sys.Name)
		}
		if c.Positions, err = pl.floats(i, posv); err != nil {
			return nil, bad(colPositions, "%v", err)
		}
		if c.Positions == nil {
			return nil, bad(colPositions, "null")
		}
		if len(c.Positions) != sys.Flat() {
			return nil, bad(colPositions, "%d values, want n_particles·dim = %d", len(c.Positions), sys.Flat())
		}
		c.Energy = nanIfNull(energy.get(i))
	}
	return out, nil
}

// fmtInt formats an integer cell, "null" when ok is false.
func fmtInt(v int64, ok bool) string {
	if !ok {
		return "null"
	}
	return fmt.Sprint(v)
}
