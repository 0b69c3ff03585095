package export

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/enflow/enflow/etl/particles"
	"github.com/enflow/enflow/etl/table"
	"github.com/enflow/enflow/pipeline/jobs"
)

// SamplesSchemaTag is the enflow.schema tag of exported samples.
const SamplesSchemaTag = "samples/v1"

// Options configures Results.
type Options struct {
	// Dedupe keeps, for each (unit, metric), only the most recently recorded row. The runner
	// never writes a unit twice; this guards against merged or copied results directories.
	Dedupe bool
	// AllUnits keeps the rows and samples of stale units: units of a spec whose manifest in
	// the state directory (STATE/manifests, written by every jobs run) no longer lists them
	// because the spec, its data or the code changed. By default they are left out, as in
	// enflow report; a results file or a directory without manifests exports every row.
	AllUnits bool
}

// Stats describes an export.
type Stats struct {
	Out    string `json:"out"`
	Format string `json:"format"`
	Rows   int    `json:"rows"`
	Units  int    `json:"units"`
	Files  int    `json:"files"` // input files read
	// StaleUnits and StaleRows count the stale units (and their rows, or samples) left out,
	// or included with Options.AllUnits; see Options.AllUnits.
	StaleUnits int `json:"stale_units"`
	StaleRows  int `json:"stale_rows"`
}

// Results exports the results at src (a state directory, a results directory of parts, or a
// results/v1 file) to out (.arrow or .parquet, by extension), atomically. Rows of stale units
// are left out unless o.AllUnits (see Options.AllUnits); Stats counts them either way.
func Results(src, out string, o Options) (*Stats, error) {
	format, err := table.FormatOf(out)
	if err != nil {
		return nil, fmt.Errorf("export: %w", err)
	}
	files, err := jobs.ResolveResults(src)
	if err != nil {
		return nil, fmt.Errorf("export: %w", err)
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("export: no results under %s (no results/part-*.parquet)", src)
	}
	rows, staleRows, err := jobs.ReadCurrentResults(src)
	if err != nil {
		return nil, fmt.Errorf("export: %w", err)
	}
	stale := jobs.StaleOf(staleRows)
	if o.AllUnits {
		rows = append(rows, staleRows...)
	}
	if o.Dedupe {
		rows = dedupe(rows)
	}
	sort.SliceStable(rows, func(i, j int) bool {
		if !rows[i].RecordedAt.Equal(rows[j].RecordedAt) {
			return rows[i].RecordedAt.Before(rows[j].RecordedAt)
		}
		return rows[i].Unit < rows[j].Unit
	})
	if err := jobs.WriteResults(out, rows); err != nil {
		return nil, fmt.Errorf("export: %w", err)
	}
	units := map[string]bool{}
	for _, r := range rows {
		units[r.Unit] = true
	}
	return &Stats{Out: out, Format: format.String(), Rows: len(rows), Units: len(units), Files: len(files),
		StaleUnits: len(stale.Units), StaleRows: stale.Rows}, nil
}

func dedupe(rows []jobs.Row) []jobs.Row {
	type key struct{ unit, metric string }
	latest := map[key]int{}
	for i, r := range rows {
		k := key{r.Unit, r.Metric}
		if j, ok := latest[k]; !ok || rows[j].RecordedAt.Before(r.RecordedAt) {
			latest[k] = i
		}
	}
	out := make([]jobs.Row, 0, len(latest))
	for i, r := range rows {
		if latest[key{r.Unit, r.Metric}] == i {
			out = append(out, r)
		}
	}
	return out
}

// sampleUnit is the metadata of one sample file.
type sampleUnit struct {
	unit, parent, spec, dataset, model string
	nData, seed                        int64
	path                               string
}

// samplesFields is the Arrow schema of samples/v1.
var samplesFields = []arrow.Field{
	{Name: "unit", Type: arrow.BinaryTypes.String},
	{Name: "parent_unit", Type: arrow.BinaryTypes.String, Nullable: true},
	{Name: "spec_name", Type: arrow.BinaryTypes.String, Nullable: true},
	{Name: "dataset", Type: arrow.BinaryTypes.String},
	{Name: "model", Type: arrow.BinaryTypes.String, Nullable: true},
	{Name: "n_data", Type: arrow.PrimitiveTypes.Int64, Nullable: true},
	{Name: "seed", Type: arrow.PrimitiveTypes.Int64, Nullable: true},
	{Name: "sample_id", Type: arrow.PrimitiveTypes.Int64},
	{Name: "n_particles", Type: arrow.PrimitiveTypes.Int32},
	{Name: "dim", Type: arrow.PrimitiveTypes.Int32},
	{Name: "positions", Type: arrow.ListOf(arrow.PrimitiveTypes.Float64)},
	{Name: "energy", Type: arrow.PrimitiveTypes.Float64, Nullable: true},
}

// SamplesSchema returns the Arrow schema of exported samples.
func SamplesSchema() *arrow.Schema {
	md := arrow.NewMetadata([]string{"enflow.schema"}, []string{SamplesSchemaTag})
	return arrow.NewSchema(samplesFields, &md)
}

// Samples exports the particle samples of the finished units of a state directory (or one
// particles/v1 sample file) to out (.arrow or .parquet), atomically. The samples of stale
// units are left out unless o.AllUnits (o.Dedupe does not apply); Stats.StaleRows counts
// their samples.
func Samples(src, out string, o Options) (*Stats, error) {
	if _, err := table.FormatOf(out); err != nil {
		return nil, fmt.Errorf("export: %w", err)
	}
	fi, err := os.Stat(src)
	if err != nil {
		return nil, fmt.Errorf("export: %w", err)
	}
	var units, stale []sampleUnit
	if fi.IsDir() {
		if units, err = stateSamples(src); err != nil {
			return nil, err
		}
		if units, stale, err = splitStaleSamples(src, units); err != nil {
			return nil, err
		}
	} else {
		units = []sampleUnit{{unit: filepath.Base(src), path: src, seed: -1}}
	}
	if len(units) == 0 && (!o.AllUnits || len(stale) == 0) {
		if len(stale) > 0 {
			return nil, fmt.Errorf("export: no samples of current finished units under %s (%d stale units have samples: --all-units exports them)", src, len(stale))
		}
		return nil, fmt.Errorf("export: no samples of finished units under %s", src)
	}
	st := &Stats{Out: out, Units: len(units), Files: len(units), StaleUnits: len(stale)}
	if o.AllUnits {
		st.Units, st.Files = len(units)+len(stale), len(units)+len(stale)
	}
	err = table.WriteRecords(out, SamplesSchema(), func(b *array.RecordBuilder) error {
		for k, u := range append(units, stale...) {
			cfgs, err := table.ReadConfigs(u.path)
			if err != nil {
				return fmt.Errorf("export: samples of unit %s: %w", u.unit, err)
			}
			if k >= len(units) { // stale: counted, written only with AllUnits
				st.StaleRows += len(cfgs)
				if !o.AllUnits {
					continue
				}
			}
			for i := range cfgs {
				if err := appendSample(b, &u, &cfgs[i]); err != nil {
					return fmt.Errorf("export: %s row %d: %w", u.path, i, err)
				}
				st.Rows++
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	f, _ := table.FormatOf(out)
	st.Format = f.String()
	return st, nil
}

func appendSample(b *array.RecordBuilder, u *sampleUnit, c *particles.Config) error {
	ds := u.dataset
	if ds == "" {
		ds = c.System
	}
	sys, err := particles.SystemByName(ds)
	if err != nil {
		return err
	}
	if len(c.Positions) != sys.Flat() {
		return fmt.Errorf("%d coordinates, want %d", len(c.Positions), sys.Flat())
	}
	str := func(i int, s string) {
		sb := b.Field(i).(*array.StringBuilder)
		if s == "" && samplesFields[i].Nullable {
			sb.AppendNull()
		} else {
			sb.Append(s)
		}
	}
	i64 := func(i int, v int64, null bool) {
		ib := b.Field(i).(*array.Int64Builder)
		if null {
			ib.AppendNull()
		} else {
			ib.Append(v)
		}
	}
	str(0, u.unit)
	str(1, u.parent)
	str(2, u.spec)
	str(3, sys.Name)
	str(4, u.model)
	i64(5, u.nData, u.nData == 0)
	i64(6, u.seed, u.seed < 0)
	i64(7, c.ID, false)
	b.Field(8).(*array.Int32Builder).Append(int32(sys.Particles))
	b.Field(9).(*array.Int32Builder).Append(int32(sys.Dim))
	lb := b.Field(10).(*array.ListBuilder)
	lb.Append(true)
	lb.ValueBuilder().(*array.Float64Builder).AppendValues(c.Positions, nil)
	fb := b.Field(11).(*array.Float64Builder)
	if math.IsNaN(c.Energy) || math.IsInf(c.Energy, 0) {
		fb.AppendNull()
	} else {
		fb.Append(c.Energy)
	}
	return nil
}

// stateSamples lists the samples.parquet of the finished units of a state directory, with
// their metadata from unit.json.
func stateSamples(state string) ([]sampleUnit, error) {
	_, finished, err := jobs.ListParts(filepath.Join(state, jobs.ResultsDirName))
	if err != nil {
		return nil, fmt.Errorf("export: %w", err)
	}
	matches, err := filepath.Glob(filepath.Join(state, "units", "*", "samples.parquet"))
	if err != nil {
		return nil, fmt.Errorf("export: %w", err)
	}
	sort.Strings(matches)
	var out []sampleUnit
	for _, m := range matches {
		dir := filepath.Dir(m)
		id := filepath.Base(dir)
		if finished[id] == "" {
			continue
		}
		u := sampleUnit{unit: id, path: m, seed: -1}
		b, err := os.ReadFile(filepath.Join(dir, "unit.json"))
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("export: %w", err)
		}
		if err == nil {
			var doc struct {
				Spec   string         `json:"spec"`
				Parent string         `json:"parent"`
				Unit   map[string]any `json:"unit"`
			}
			if err := json.Unmarshal(b, &doc); err != nil {
				return nil, fmt.Errorf("export: %s: %w", filepath.Join(dir, "unit.json"), err)
			}
			u.spec, u.parent = doc.Spec, doc.Parent
			if doc.Parent != "" {
				// Attached evaluation: dataset, model, n_data and seed are the training unit's.
				if pb, err := os.ReadFile(filepath.Join(state, "units", doc.Parent, "unit.json")); err == nil {
					var pd struct {
						Unit map[string]any `json:"unit"`
					}
					if json.Unmarshal(pb, &pd) == nil {
						fillMeta(&u, pd.Unit)
					}
				}
			} else {
				fillMeta(&u, doc.Unit)
			}
		}
		out = append(out, u)
	}
	return out, nil
}

// splitStaleSamples separates the sample files of stale units (units of a spec with a
// manifest in the state directory that are not in it, see jobs.SplitStale) from the others.
// Units without a spec name, and specs without a manifest, are current.
func splitStaleSamples(state string, units []sampleUnit) (current, stale []sampleUnit, err error) {
	ms, err := jobs.ReadManifests(state)
	if err != nil {
		return nil, nil, fmt.Errorf("export: %w", err)
	}
	ids := map[string]map[string]bool{}
	for name, m := range ms {
		ids[name] = m.IDs()
	}
	for _, u := range units {
		if in, ok := ids[u.spec]; ok && !in[u.unit] {
			stale = append(stale, u)
		} else {
			current = append(current, u)
		}
	}
	return current, stale, nil
}

func fillMeta(u *sampleUnit, m map[string]any) {
	if s, ok := m["dataset"].(string); ok {
		u.dataset = s
	}
	if s, ok := m["model"].(string); ok {
		u.model = s
	}
	if f, ok := m["n_data"].(float64); ok {
		u.nData = int64(f)
	}
	if f, ok := m["seed"].(float64); ok {
		u.seed = int64(f)
	}
}
