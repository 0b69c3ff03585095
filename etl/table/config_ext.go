package table

import (
	"fmt"
	"math"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"

	"github.com/enflow/enflow/etl/particles"
)

// Optional columns of the particle-configuration table (schema tag particles/v1). A file may
// carry any subset of them after the ConfigSchema columns; ReadConfigs and ScanConfigs (and
// every reader that selects columns by name) ignore them, so existing readers keep working.
// ReadConfigRecords and ScanConfigRecords read them when present.
const (
	// ColLogQ is log q_X(x), the log density (nats) of the configuration under the flow that
	// generated it, in the flow's own coordinates (for E-NF: the mean-free subspace).
	// float64, nullable.
	ColLogQ = "log_q"
	// ColStateID is the metastable state assigned by `enflow minimize` (0 = lowest energy);
	// null for a configuration whose minimisation did not converge. int64, nullable.
	ColStateID = "state_id"
)

// ConfigColumns selects the optional columns of a configuration table.
type ConfigColumns struct {
	LogQ, StateID bool
}

// ConfigRecord is a configuration with its optional columns.
type ConfigRecord struct {
	particles.Config
	// LogQ is the log_q column; NaN when null or absent.
	LogQ float64
	// StateID is the state_id column; −1 when null or absent.
	StateID int64
}

var configOptionalColumns = []colSpec{{ColLogQ, kindFloat}, {ColStateID, kindInt}}

// bindConfigOptional returns the column index of each optional column the schema has,
// after checking its type.
func bindConfigOptional(path string, schema *arrow.Schema) (map[string]int, error) {
	var present []colSpec
	for _, c := range configOptionalColumns {
		if len(schema.FieldIndices(c.name)) > 0 {
			present = append(present, c)
		}
	}
	return bindSchema(path, schema, ConfigSchemaTag, present)
}

// ConfigSchemaWith is ConfigSchema followed by the selected optional columns.
func ConfigSchemaWith(cols ConfigColumns) *arrow.Schema {
	if !cols.LogQ && !cols.StateID {
		return ConfigSchema
	}
	fields := append([]arrow.Field(nil), ConfigSchema.Fields()...)
	units := map[string]string{colPositions: "reduced units", colEnergy: "reduced units"}
	if cols.LogQ {
		fields = append(fields, arrow.Field{Name: ColLogQ, Type: arrow.PrimitiveTypes.Float64, Nullable: true})
		units[ColLogQ] = "nats"
	}
	if cols.StateID {
		fields = append(fields, arrow.Field{Name: ColStateID, Type: arrow.PrimitiveTypes.Int64, Nullable: true})
	}
	md := arrow.NewMetadata([]string{MetaSchema, MetaUnits}, []string{ConfigSchemaTag, unitsJSON(units)})
	return arrow.NewSchema(fields, &md)
}

// ConfigRecordWriter writes configuration tables with optional columns, atomically like
// ConfigWriter (same checks and error messages). It is not safe for concurrent use.
type ConfigRecordWriter struct {
	cw    *ConfigWriter
	cols  ConfigColumns
	logQ  *array.Float64Builder
	state *array.Int64Builder
}

// NewConfigRecordWriter starts writing path (.parquet or .arrow) with the selected
// optional columns.
func NewConfigRecordWriter(path string, cols ConfigColumns) (*ConfigRecordWriter, error) {
	schema := ConfigSchemaWith(cols)
	cw, err := newConfigWriter(path, schema)
	if err != nil {
		return nil, err
	}
	w := &ConfigRecordWriter{cw: cw, cols: cols}
	next := len(ConfigSchema.Fields())
	b := cw.w.b
	if cols.LogQ {
		w.logQ = b.Field(next).(*array.Float64Builder)
		next++
	}
	if cols.StateID {
		w.state = b.Field(next).(*array.Int64Builder)
	}
	return w, nil
}

// Write appends r. A NaN LogQ and a negative StateID are stored as null; the fields of
// columns the writer does not have are ignored.
func (w *ConfigRecordWriter) Write(r *ConfigRecord) error {
	if w == nil {
		return fmt.Errorf("table: nil ConfigRecordWriter")
	}
	if r == nil {
		return w.cw.appendConfig(nil)
	}
	if err := w.cw.appendConfig(&r.Config); err != nil {
		return err
	}
	if w.logQ != nil {
		appendFloat(w.logQ, r.LogQ)
	}
	if w.state != nil {
		if r.StateID < 0 {
			w.state.AppendNull()
		} else {
			w.state.Append(r.StateID)
		}
	}
	return w.cw.w.rowDone()
}

// Commit finishes the file (see ConfigWriter.Commit).
func (w *ConfigRecordWriter) Commit() error {
	if w == nil {
		return fmt.Errorf("table: nil ConfigRecordWriter")
	}
	return w.cw.Commit()
}

// Abort discards the file (see ConfigWriter.Abort).
func (w *ConfigRecordWriter) Abort() {
	if w != nil {
		w.cw.Abort()
	}
}

// ReadConfigRecords reads a whole configuration table with its optional columns and
// reports which of them the file has.
func ReadConfigRecords(path string) ([]ConfigRecord, ConfigColumns, error) {
	var out []ConfigRecord
	var cols ConfigColumns
	err := ScanConfigRecords(path, BatchRows, func(rs []ConfigRecord, c ConfigColumns) error {
		out = append(out, rs...)
		cols = c
		return nil
	})
	if err != nil {
		return nil, ConfigColumns{}, err
	}
	if out == nil {
		// An empty file still reports its columns.
		_, cols, err = configRecordColumns(path)
		if err != nil {
			return nil, ConfigColumns{}, err
		}
	}
	return out, cols, nil
}

func configRecordColumns(path string) (map[string]int, ConfigColumns, error) {
	s, err := openSource(path, 1)
	if err != nil {
		return nil, ConfigColumns{}, err
	}
	defer s.close()
	if _, err := bindSchema(path, s.schema, ConfigSchemaTag, configColumns); err != nil {
		return nil, ConfigColumns{}, err
	}
	opt, err := bindConfigOptional(path, s.schema)
	if err != nil {
		return nil, ConfigColumns{}, err
	}
	_, q := opt[ColLogQ]
	_, st := opt[ColStateID]
	return opt, ConfigColumns{LogQ: q, StateID: st}, nil
}

// ScanConfigRecords is ScanConfigs with the optional columns: fn receives each batch and
// the optional columns the file has.
func ScanConfigRecords(path string, batch int, fn func([]ConfigRecord, ConfigColumns) error) error {
	s, err := openSource(path, batch)
	if err != nil {
		return err
	}
	defer s.close()
	idx, err := bindSchema(path, s.schema, ConfigSchemaTag, configColumns)
	if err != nil {
		return err
	}
	opt, err := bindConfigOptional(path, s.schema)
	if err != nil {
		return err
	}
	jq, hasQ := opt[ColLogQ]
	js, hasS := opt[ColStateID]
	cols := ConfigColumns{LogQ: hasQ, StateID: hasS}
	var row int64
	return s.each(func(rec arrow.RecordBatch) error {
		cs, err := decodeConfigs(path, rec, idx, row)
		if err != nil {
			return err
		}
		rs, err := decodeConfigOptional(path, rec, cs, row, jq, js, cols)
		if err != nil {
			return err
		}
		row += rec.NumRows()
		return fn(rs, cols)
	})
}

// decodeConfigOptional adds the optional columns (indices jq, js when present) to cs.
func decodeConfigOptional(path string, rec arrow.RecordBatch, cs []particles.Config, row0 int64, jq, js int, cols ConfigColumns) (rs []ConfigRecord, err error) {
	defer catch(path, &err)
	var logQ floatCol
	var state intCol
	if cols.LogQ {
		logQ = floatAccessor(rec.Column(jq))
	}
	if cols.StateID {
		state = intAccessor(rec.Column(js))
	}
	rs = make([]ConfigRecord, len(cs))
	for i := range cs {
		rs[i] = ConfigRecord{Config: cs[i], LogQ: math.NaN(), StateID: -1}
		if cols.LogQ {
			rs[i].LogQ = nanIfNull(logQ.get(i))
		}
		if cols.StateID {
			if v, ok := state(i); ok {
				if v < 0 {
					return nil, fmt.Errorf("table: read %s: row %d (id %d): column %q: negative state %d",
						path, row0+int64(i), cs[i].ID, ColStateID, v)
				}
				rs[i].StateID = v
			}
		}
	}
	return rs, nil
}
