package table

import (
	"fmt"
	"math"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
)

// ColType is the type of a RowWriter column.
type ColType int

// Column types of RowWriter. Every column is nullable.
const (
	String  ColType = iota + 1 // Arrow utf8 / DuckDB VARCHAR
	Int64                      // Arrow int64 / DuckDB BIGINT
	Float64                    // Arrow float64 / DuckDB DOUBLE; NaN is written as null
	Bool                       // Arrow bool / DuckDB BOOLEAN
)

func (t ColType) String() string {
	switch t {
	case String:
		return "string"
	case Int64:
		return "int64"
	case Float64:
		return "float64"
	case Bool:
		return "bool"
	}
	return fmt.Sprintf("ColType(%d)", int(t))
}

func (t ColType) arrow() (arrow.DataType, bool) {
	switch t {
	case String:
		return arrow.BinaryTypes.String, true
	case Int64:
		return arrow.PrimitiveTypes.Int64, true
	case Float64:
		return arrow.PrimitiveTypes.Float64, true
	case Bool:
		return arrow.FixedWidthTypes.Boolean, true
	}
	return nil, false
}

// Col is one RowWriter column.
type Col struct {
	Name string
	Type ColType
}

// RowWriter writes a flat table (results, metrics, samples summaries) row by row to a Parquet
// or Arrow IPC file, streaming and atomically like MoleculeWriter:
//
//	w, err := table.NewRowWriter("out/metrics.parquet",
//		[]table.Col{{"model", table.String}, {"epoch", table.Int64}, {"nll", table.Float64}},
//		map[string]string{"enflow.schema": "metrics/v1"})
//	if err != nil { … }
//	defer w.Abort()
//	if err := w.Append("enf", 10, 1.25); err != nil { … }
//	return w.Commit()
//
// It is not safe for concurrent use.
type RowWriter struct {
	w    *batchWriter
	cols []Col
}

// NewRowWriter starts writing path (.parquet or .arrow) with the given columns and optional
// schema key-value metadata. Column names must be non-empty and distinct up to case.
func NewRowWriter(path string, cols []Col, metadata map[string]string) (*RowWriter, error) {
	if len(cols) == 0 {
		return nil, fmt.Errorf("table: write %s: no columns", path)
	}
	fields := make([]arrow.Field, len(cols))
	for i, c := range cols {
		dt, ok := c.Type.arrow()
		if !ok {
			return nil, fmt.Errorf("table: write %s: column %q: unknown type %v", path, c.Name, c.Type)
		}
		fields[i] = arrow.Field{Name: c.Name, Type: dt, Nullable: true}
	}
	var md *arrow.Metadata
	if len(metadata) > 0 {
		m := arrow.MetadataFrom(metadata)
		md = &m
	}
	schema := arrow.NewSchema(fields, md)
	if err := checkColumnNames(schema); err != nil {
		return nil, fmt.Errorf("table: write %s: %w", path, err)
	}
	bw, err := newBatchWriter(path, schema)
	if err != nil {
		return nil, err
	}
	return &RowWriter{w: bw, cols: append([]Col(nil), cols...)}, nil
}

// Append writes one row: one value per column, in column order. Accepted Go values: for
// String, string; for Int64, any signed or unsigned integer type (uint64 above MaxInt64 is an
// error); for Float64, float64, float32 or any integer; for Bool, bool; nil is null
// everywhere. A rejected row (wrong count or type) is not written and the writer stays usable.
func (w *RowWriter) Append(values ...any) error {
	if w == nil {
		return fmt.Errorf("table: nil RowWriter")
	}
	if err := w.w.usable(); err != nil {
		return err
	}
	if len(values) != len(w.cols) {
		return fmt.Errorf("table: write %s: row %d: %d values for %d columns", w.w.path, w.w.total, len(values), len(w.cols))
	}
	// Convert everything first so that a bad value leaves no partial row in the builders.
	conv := make([]any, len(values))
	for i, v := range values {
		c, err := convert(w.cols[i].Type, v)
		if err != nil {
			return fmt.Errorf("table: write %s: row %d: column %q: %w", w.w.path, w.w.total, w.cols[i].Name, err)
		}
		conv[i] = c
	}
	for i, v := range conv {
		switch b := w.w.b.Field(i).(type) {
		case *array.StringBuilder:
			if v == nil {
				b.AppendNull()
			} else {
				b.Append(v.(string))
			}
		case *array.Int64Builder:
			if v == nil {
				b.AppendNull()
			} else {
				b.Append(v.(int64))
			}
		case *array.Float64Builder:
			if v == nil {
				b.AppendNull()
			} else {
				appendFloat(b, v.(float64))
			}
		case *array.BooleanBuilder:
			if v == nil {
				b.AppendNull()
			} else {
				b.Append(v.(bool))
			}
		}
	}
	return w.w.rowDone()
}

// convert maps a Go value to the canonical Go type of column type t (nil stays nil).
func convert(t ColType, v any) (any, error) {
	if v == nil {
		return nil, nil
	}
	switch t {
	case String:
		if s, ok := v.(string); ok {
			return s, nil
		}
	case Bool:
		if b, ok := v.(bool); ok {
			return b, nil
		}
	case Int64:
		if i, ok, err := toInt64(v); ok {
			return i, err
		}
	case Float64:
		switch x := v.(type) {
		case float64:
			return x, nil
		case float32:
			return float64(x), nil
		}
		if i, ok, err := toInt64(v); ok {
			return float64(i), err
		}
	}
	return nil, fmt.Errorf("cannot store %T in a %v column", v, t)
}

func toInt64(v any) (int64, bool, error) {
	switch x := v.(type) {
	case int:
		return int64(x), true, nil
	case int8:
		return int64(x), true, nil
	case int16:
		return int64(x), true, nil
	case int32:
		return int64(x), true, nil
	case int64:
		return x, true, nil
	case uint:
		return uintToInt64(uint64(x))
	case uint8:
		return int64(x), true, nil
	case uint16:
		return int64(x), true, nil
	case uint32:
		return int64(x), true, nil
	case uint64:
		return uintToInt64(x)
	}
	return 0, false, nil
}

func uintToInt64(x uint64) (int64, bool, error) {
	if x > math.MaxInt64 {
		return 0, true, fmt.Errorf("value %d overflows int64", x)
	}
	return int64(x), true, nil
}

// Commit writes the remaining rows and the footer, then atomically renames the file onto its
// path. On error nothing is left behind.
func (w *RowWriter) Commit() error {
	if w == nil {
		return fmt.Errorf("table: nil RowWriter")
	}
	return w.w.commit()
}

// Abort discards everything; no file is left at the path. Safe after Commit (a no-op).
func (w *RowWriter) Abort() {
	if w != nil {
		w.w.abort()
	}
}
