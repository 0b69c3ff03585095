package jobs

import (
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/enflow/enflow/etl/table"
)

// arrowRecord is the record batch type of table.ScanRecords.
type arrowRecord = arrow.RecordBatch

// ResultsSchemaTag is the enflow.schema tag of the results table (see pipeline/export/doc.go
// for the column documentation).
const ResultsSchemaTag = "results/v1"

// ResultsDirName is the results directory inside a state directory.
const ResultsDirName = "results"

// Row is one row of the results table: one metric of one unit, with the run's metadata.
// Nullable numbers use NaN (Value, WallS) or 0 (NData) / -1 (Seed) for null.
type Row struct {
	Unit       string // unit ID (16 hex digits)
	UnitHash   string // full SHA-256 of the unit's identity
	ParentUnit string // attached evaluations: the training unit's ID
	SpecName   string
	SpecPath   string
	UnitKind   string // train, nll, energy, stability, js
	Dataset    string
	Model      string
	NData      int64 // 0 = null
	Seed       int64 // -1 = null
	Label      string
	Metric     string
	Value      float64 // NaN = null
	Detail     string  // JSON (curves, histograms, per-element details) or ""
	UnitSpec   string  // canonical JSON of the normalized unit spec
	Artifact   string  // run directory or sample file, relative to the state directory
	Code       string  // code version used in the identity
	GitRev     string
	GoVersion  string
	Backend    string
	Host       string
	StartedAt  time.Time
	EndedAt    time.Time
	WallS      float64
	Attempt    int64
	Resumed    bool
	RecordedAt time.Time
}

var tsType = &arrow.TimestampType{Unit: arrow.Microsecond, TimeZone: "UTC"}

// resultsFields is the Arrow schema of the results table, in order.
var resultsFields = []arrow.Field{
	{Name: "unit", Type: arrow.BinaryTypes.String},
	{Name: "unit_hash", Type: arrow.BinaryTypes.String},
	{Name: "parent_unit", Type: arrow.BinaryTypes.String, Nullable: true},
	{Name: "spec_name", Type: arrow.BinaryTypes.String},
	{Name: "spec_path", Type: arrow.BinaryTypes.String, Nullable: true},
	{Name: "unit_kind", Type: arrow.BinaryTypes.String},
	{Name: "dataset", Type: arrow.BinaryTypes.String},
	{Name: "model", Type: arrow.BinaryTypes.String, Nullable: true},
	{Name: "n_data", Type: arrow.PrimitiveTypes.Int64, Nullable: true},
	{Name: "seed", Type: arrow.PrimitiveTypes.Int64, Nullable: true},
	{Name: "label", Type: arrow.BinaryTypes.String, Nullable: true},
	{Name: "metric", Type: arrow.BinaryTypes.String},
	{Name: "value", Type: arrow.PrimitiveTypes.Float64, Nullable: true},
	{Name: "detail", Type: arrow.BinaryTypes.String, Nullable: true},
	{Name: "unit_spec", Type: arrow.BinaryTypes.String},
	{Name: "artifact", Type: arrow.BinaryTypes.String, Nullable: true},
	{Name: "code_version", Type: arrow.BinaryTypes.String},
	{Name: "git_rev", Type: arrow.BinaryTypes.String, Nullable: true},
	{Name: "go_version", Type: arrow.BinaryTypes.String},
	{Name: "backend", Type: arrow.BinaryTypes.String},
	{Name: "host", Type: arrow.BinaryTypes.String},
	{Name: "started_at", Type: tsType},
	{Name: "ended_at", Type: tsType},
	{Name: "wall_s", Type: arrow.PrimitiveTypes.Float64, Nullable: true},
	{Name: "attempt", Type: arrow.PrimitiveTypes.Int64},
	{Name: "resumed", Type: arrow.FixedWidthTypes.Boolean},
	{Name: "recorded_at", Type: tsType},
}

// ResultsSchema returns the Arrow schema of the results table (with its enflow.schema tag).
func ResultsSchema() *arrow.Schema {
	md := arrow.NewMetadata([]string{"enflow.schema"}, []string{ResultsSchemaTag})
	return arrow.NewSchema(resultsFields, &md)
}

// ResultsColumns returns the column names of the results table, in order.
func ResultsColumns() []string {
	out := make([]string, len(resultsFields))
	for i, f := range resultsFields {
		out[i] = f.Name
	}
	return out
}

// WriteResults writes rows as one results table (.parquet or .arrow, atomically).
func WriteResults(path string, rows []Row) error {
	return table.WriteRecords(path, ResultsSchema(), func(b *array.RecordBuilder) error {
		for i := range rows {
			appendRow(b, &rows[i])
		}
		return nil
	})
}

func appendRow(b *array.RecordBuilder, r *Row) {
	col := 0
	str := func(s string, nullable bool) {
		sb := b.Field(col).(*array.StringBuilder)
		if s == "" && nullable {
			sb.AppendNull()
		} else {
			sb.Append(s)
		}
		col++
	}
	i64 := func(v int64, null bool) {
		ib := b.Field(col).(*array.Int64Builder)
		if null {
			ib.AppendNull()
		} else {
			ib.Append(v)
		}
		col++
	}
	f64 := func(v float64) {
		fb := b.Field(col).(*array.Float64Builder)
		if math.IsNaN(v) || math.IsInf(v, 0) {
			fb.AppendNull()
		} else {
			fb.Append(v)
		}
		col++
	}
	ts := func(t time.Time) {
		tb := b.Field(col).(*array.TimestampBuilder)
		tb.Append(arrow.Timestamp(t.UTC().UnixMicro()))
		col++
	}
	str(r.Unit, false)
	str(r.UnitHash, false)
	str(r.ParentUnit, true)
	str(r.SpecName, false)
	str(r.SpecPath, true)
	str(r.UnitKind, false)
	str(r.Dataset, false)
	str(r.Model, true)
	i64(r.NData, r.NData == 0)
	i64(r.Seed, r.Seed < 0)
	str(r.Label, true)
	str(r.Metric, false)
	f64(r.Value)
	str(r.Detail, true)
	str(r.UnitSpec, false)
	str(r.Artifact, true)
	str(r.Code, false)
	str(r.GitRev, true)
	str(r.GoVersion, false)
	str(r.Backend, false)
	str(r.Host, false)
	ts(r.StartedAt)
	ts(r.EndedAt)
	f64(r.WallS)
	i64(r.Attempt, false)
	b.Field(col).(*array.BooleanBuilder).Append(r.Resumed)
	col++
	ts(r.RecordedAt)
}

// PartName is the file name of a unit's results part: part-<UTC timestamp>-<unit ID>.parquet.
// Parts are never rewritten; DuckDB reads them all as 'results/*.parquet'.
func PartName(t time.Time, unitID string) string {
	return fmt.Sprintf("part-%s-%s.parquet", t.UTC().Format("20060102T150405.000000Z"), unitID)
}

// unitOfPart returns the unit ID of a part file name ("" if not a part).
func unitOfPart(name string) string {
	if !strings.HasPrefix(name, "part-") || !strings.HasSuffix(name, ".parquet") {
		return ""
	}
	s := strings.TrimSuffix(name, ".parquet")
	i := strings.LastIndexByte(s, '-')
	if i < 0 {
		return ""
	}
	return s[i+1:]
}

// ListParts returns the part files of a results directory, sorted by name (= time), and the
// unit IDs that have a part.
func ListParts(dir string) (parts []string, units map[string]string, err error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, map[string]string{}, nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("jobs: listing results: %w", err)
	}
	units = map[string]string{}
	for _, e := range entries {
		if e.IsDir() {
			continue
		}
		if id := unitOfPart(e.Name()); id != "" {
			p := filepath.Join(dir, e.Name())
			parts = append(parts, p)
			if _, dup := units[id]; !dup {
				units[id] = p
			}
		}
	}
	sort.Strings(parts)
	return parts, units, nil
}

// ResolveResults maps a --results argument to the files to read: a results/v1 file (.parquet
// or .arrow), a results directory (its part-*.parquet files), or a state directory (its
// results/ directory).
func ResolveResults(path string) ([]string, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("jobs: results: %w", err)
	}
	if !fi.IsDir() {
		return []string{path}, nil
	}
	dir := path
	if sub := filepath.Join(path, ResultsDirName); isDir(sub) {
		dir = sub
	}
	parts, _, err := ListParts(dir)
	if err != nil {
		return nil, err
	}
	return parts, nil
}

func isDir(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.IsDir()
}

// ReadResults reads all rows of the results files at path (see ResolveResults), in file order.
func ReadResults(path string) ([]Row, error) {
	files, err := ResolveResults(path)
	if err != nil {
		return nil, err
	}
	var rows []Row
	for _, f := range files {
		rs, err := ReadResultsFile(f)
		if err != nil {
			return nil, err
		}
		rows = append(rows, rs...)
	}
	return rows, nil
}

// ReadResultsFile reads one results/v1 table (Parquet or Arrow IPC, also after a DuckDB
// rewrite: columns are found by name and timestamps of any unit are accepted).
func ReadResultsFile(path string) ([]Row, error) {
	sc, err := table.Schema(path)
	if err != nil {
		return nil, fmt.Errorf("jobs: results %s: %w", path, err)
	}
	md := sc.Metadata()
	if i := md.FindKey("enflow.schema"); i >= 0 && md.Values()[i] != ResultsSchemaTag {
		return nil, fmt.Errorf("jobs: %s is a %q table, not %s", path, md.Values()[i], ResultsSchemaTag)
	}
	for _, name := range []string{"unit", "metric", "value", "unit_kind", "dataset"} {
		if len(sc.FieldIndices(name)) == 0 {
			return nil, fmt.Errorf("jobs: %s: not a results table: no column %q", path, name)
		}
	}
	var rows []Row
	err = table.ScanRecords(path, 0, func(rec arrow.RecordBatch) error {
		get := func(name string) arrow.Array {
			is := rec.Schema().FieldIndices(name)
			if len(is) == 0 {
				return nil
			}
			return rec.Column(is[0])
		}
		cols := map[string]arrow.Array{}
		for _, n := range ResultsColumns() {
			cols[n] = get(n)
		}
		for i := 0; i < int(rec.NumRows()); i++ {
			r := Row{
				Unit: strAt(cols["unit"], i), UnitHash: strAt(cols["unit_hash"], i), ParentUnit: strAt(cols["parent_unit"], i),
				SpecName: strAt(cols["spec_name"], i), SpecPath: strAt(cols["spec_path"], i), UnitKind: strAt(cols["unit_kind"], i),
				Dataset: strAt(cols["dataset"], i), Model: strAt(cols["model"], i), Label: strAt(cols["label"], i),
				Metric: strAt(cols["metric"], i), Detail: strAt(cols["detail"], i), UnitSpec: strAt(cols["unit_spec"], i),
				Artifact: strAt(cols["artifact"], i), Code: strAt(cols["code_version"], i), GitRev: strAt(cols["git_rev"], i),
				GoVersion: strAt(cols["go_version"], i), Backend: strAt(cols["backend"], i), Host: strAt(cols["host"], i),
				Value: floatAt(cols["value"], i), WallS: floatAt(cols["wall_s"], i),
				NData: intAt(cols["n_data"], i, 0), Seed: intAt(cols["seed"], i, -1), Attempt: intAt(cols["attempt"], i, 0),
				StartedAt: timeAt(cols["started_at"], i), EndedAt: timeAt(cols["ended_at"], i), RecordedAt: timeAt(cols["recorded_at"], i),
			}
			if b, ok := cols["resumed"].(*array.Boolean); ok && b.IsValid(i) {
				r.Resumed = b.Value(i)
			}
			rows = append(rows, r)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("jobs: reading results %s: %w", path, err)
	}
	return rows, nil
}

func strAt(a arrow.Array, i int) string {
	if a == nil || a.IsNull(i) {
		return ""
	}
	switch x := a.(type) {
	case *array.String:
		return x.Value(i)
	case *array.LargeString:
		return x.Value(i)
	case *array.StringView:
		return x.Value(i)
	}
	return a.ValueStr(i)
}

func floatAt(a arrow.Array, i int) float64 {
	if a == nil || a.IsNull(i) {
		return math.NaN()
	}
	switch x := a.(type) {
	case *array.Float64:
		return x.Value(i)
	case *array.Float32:
		return float64(x.Value(i))
	}
	return math.NaN()
}

func intAt(a arrow.Array, i int, null int64) int64 {
	if a == nil || a.IsNull(i) {
		return null
	}
	switch x := a.(type) {
	case *array.Int64:
		return x.Value(i)
	case *array.Int32:
		return int64(x.Value(i))
	case *array.Uint64:
		return int64(x.Value(i))
	case *array.Uint32:
		return int64(x.Value(i))
	}
	return null
}

func timeAt(a arrow.Array, i int) time.Time {
	if a == nil || a.IsNull(i) {
		return time.Time{}
	}
	if x, ok := a.(*array.Timestamp); ok {
		unit := x.DataType().(*arrow.TimestampType).Unit
		return x.Value(i).ToTime(unit).UTC()
	}
	if t, err := time.Parse(time.RFC3339Nano, strAt(a, i)); err == nil {
		return t.UTC()
	}
	return time.Time{}
}
