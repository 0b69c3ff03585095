package export

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/enflow/enflow/etl/particles"
	"github.com/enflow/enflow/etl/table"
	"github.com/enflow/enflow/pipeline/jobs"
)

// fixture is a state directory with two finished units (a training unit and its energy
// evaluation with samples) and one unit whose samples exist but which is not finished.
type fixture struct {
	state   string
	rows    []jobs.Row // all result rows, in part order
	samples []particles.Config
}

func baseRow(unit, kind string, t0 time.Time) jobs.Row {
	return jobs.Row{
		Unit: unit, UnitHash: unit + "000000000000000000000000000000000000000000000000", SpecName: "t", SpecPath: "/x/t.toml",
		UnitKind: kind, Dataset: "dw4", Model: "enf", NData: 100, Seed: 1, UnitSpec: `{"kind":"` + kind + `"}`,
		Code: "git:abc+dirty", GitRev: "abc", GoVersion: "go1.26", Backend: "default", Host: "h",
		StartedAt: t0, EndedAt: t0.Add(1500 * time.Millisecond), WallS: 1.5, Attempt: 1, RecordedAt: t0.Add(2 * time.Second),
	}
}

func writeFixture(t *testing.T) *fixture {
	t.Helper()
	f := &fixture{state: t.TempDir()}
	t0 := time.Date(2026, 11, 23, 10, 0, 0, 123456000, time.UTC)
	trainID, evalID, orphanID := "aaaaaaaaaaaaaaaa", "bbbbbbbbbbbbbbbb", "cccccccccccccccc"
	var train []jobs.Row
	for _, m := range []struct {
		name   string
		value  float64
		detail string
	}{
		{"test_nll", 8.25, ""}, {"best_val_nll", 8.5, ""}, {"epochs", 3, ""},
		{"curve", math.NaN(), `{"epoch":[0,1,2],"train_nll":[12,10,9],"val_nll":[11,null,9.5]}`},
	} {
		r := baseRow(trainID, jobs.KindTrain, t0)
		r.Metric, r.Value, r.Detail, r.Artifact = m.name, m.value, m.detail, "units/"+trainID+"/run"
		train = append(train, r)
	}
	var ev []jobs.Row
	for _, m := range []string{"mean_energy", "frac_finite"} {
		r := baseRow(evalID, jobs.KindEnergy, t0.Add(time.Minute))
		r.Metric, r.Value, r.ParentUnit, r.Resumed, r.Attempt = m, -20.5, trainID, true, 2
		ev = append(ev, r)
	}
	ev[1].Value = 0.8
	results := filepath.Join(f.state, jobs.ResultsDirName)
	for _, p := range []struct {
		rows []jobs.Row
		t    time.Time
	}{{train, t0}, {ev, t0.Add(time.Minute)}} {
		if err := jobs.WriteResults(filepath.Join(results, jobs.PartName(p.t, p.rows[0].Unit)), p.rows); err != nil {
			t.Fatal(err)
		}
	}
	f.rows = append(append([]jobs.Row{}, train...), ev...)

	writeJSON := func(path string, v any) {
		b, _ := json.Marshal(v)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	writeJSON(filepath.Join(f.state, "units", trainID, "unit.json"), map[string]any{"spec": "t",
		"unit": map[string]any{"kind": "train", "dataset": "dw4", "model": "enf", "n_data": 100, "seed": 1}})
	writeJSON(filepath.Join(f.state, "units", evalID, "unit.json"), map[string]any{"spec": "t", "parent": trainID,
		"unit": map[string]any{"kind": "energy", "n": 5}})
	writeJSON(filepath.Join(f.state, "units", orphanID, "unit.json"), map[string]any{"spec": "t",
		"unit": map[string]any{"kind": "energy", "dataset": "dw4"}})
	for _, id := range []string{evalID, orphanID} {
		w, err := table.NewConfigWriter(filepath.Join(f.state, "units", id, "samples.parquet"))
		if err != nil {
			t.Fatal(err)
		}
		for i := range 5 {
			pos := []float64{float64(i), 0, -float64(i), 0, 1, 1, -1, -1}
			e := float64(-i)
			if i == 3 {
				e = math.NaN()
			}
			c := particles.Config{ID: int64(i), Split: "sample", System: "dw4", Positions: pos, Energy: e}
			if id == evalID {
				f.samples = append(f.samples, c)
			}
			if err := w.Write(&c); err != nil {
				t.Fatal(err)
			}
		}
		if err := w.Commit(); err != nil {
			t.Fatal(err)
		}
	}
	return f
}

func sameRow(a, b jobs.Row) bool {
	na, nb := math.IsNaN(a.Value), math.IsNaN(b.Value)
	a.Value, b.Value = 0, 0
	return na == nb && reflect.DeepEqual(a, b)
}

func TestExportRoundTrip(t *testing.T) {
	f := writeFixture(t)
	out := t.TempDir()
	for _, src := range []string{f.state, filepath.Join(f.state, jobs.ResultsDirName)} {
		for _, ext := range []string{"parquet", "arrow"} {
			path := filepath.Join(out, "res."+ext)
			st, err := Results(src, path, Options{})
			if err != nil {
				t.Fatal(err)
			}
			if st.Rows != len(f.rows) || st.Units != 2 || st.Files != 2 || st.Format != ext {
				t.Errorf("%s → %s: stats %+v", src, ext, st)
			}
			got, err := jobs.ReadResultsFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(f.rows) {
				t.Fatalf("%s: %d rows, want %d", ext, len(got), len(f.rows))
			}
			for i := range got {
				if !sameRow(got[i], f.rows[i]) {
					t.Errorf("%s row %d:\n got %+v\nwant %+v", ext, i, got[i], f.rows[i])
				}
			}
			// An exported file reads back as results too (e.g. for enflow report).
			again, err := jobs.ReadResults(path)
			if err != nil || len(again) != len(got) {
				t.Errorf("ReadResults(%s): %d rows, %v", path, len(again), err)
			}
		}
	}
	st, err := Samples(f.state, filepath.Join(out, "s.parquet"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if st.Rows != 5 || st.Units != 1 {
		t.Errorf("samples stats %+v: want only the finished unit's 5 samples", st)
	}
	for _, bad := range []struct{ src, out string }{
		{f.state, filepath.Join(out, "x.csv")},
		{filepath.Join(f.state, "nope"), filepath.Join(out, "x.parquet")},
		{t.TempDir(), filepath.Join(out, "x.parquet")},
	} {
		if _, err := Results(bad.src, bad.out, Options{}); err == nil {
			t.Errorf("Results(%s, %s) accepted", bad.src, bad.out)
		}
	}
}

// TestExportStaleUnits: a unit the manifest of its spec no longer lists (the spec was edited
// and run again) is left out of both exports by default, counted, and put back by AllUnits;
// the same directory without a manifest exports everything.
func TestExportStaleUnits(t *testing.T) {
	f := writeFixture(t)
	trainID := f.rows[0].Unit
	m := &jobs.Manifest{Schema: jobs.ManifestSchema, Spec: "t", Units: []jobs.UnitRef{{ID: trainID, Kind: jobs.KindTrain}}}
	if err := jobs.WriteManifest(f.state, m); err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	for _, tc := range []struct {
		name             string
		all              bool
		rows, units      int
		staleU, staleRow int
	}{
		{"default", false, 4, 1, 1, 2},
		{"all units", true, 6, 2, 1, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(out, tc.name+".parquet")
			st, err := Results(f.state, path, Options{AllUnits: tc.all})
			if err != nil {
				t.Fatal(err)
			}
			if st.Rows != tc.rows || st.Units != tc.units || st.StaleUnits != tc.staleU || st.StaleRows != tc.staleRow {
				t.Errorf("results stats %+v, want rows %d units %d stale %d/%d", st, tc.rows, tc.units, tc.staleU, tc.staleRow)
			}
			got, err := jobs.ReadResultsFile(path)
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range got {
				if !tc.all && r.Unit != trainID {
					t.Errorf("stale unit %s exported", r.Unit)
				}
			}
			sp := filepath.Join(out, tc.name+"-samples.parquet")
			ss, err := Samples(f.state, sp, Options{AllUnits: tc.all})
			if !tc.all {
				// The only finished unit with samples is the stale evaluation.
				if err == nil || !strings.Contains(err.Error(), "--all-units") {
					t.Fatalf("samples of a stale unit only: err %v, want one naming --all-units", err)
				}
				if _, serr := os.Stat(sp); !os.IsNotExist(serr) {
					t.Errorf("failed samples export left %s (%v)", sp, serr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if ss.Rows != 5 || ss.Units != 1 || ss.StaleUnits != 1 || ss.StaleRows != 5 {
				t.Errorf("samples stats %+v, want 5 rows of 1 stale unit", ss)
			}
		})
	}
	// The evaluation listed again: nothing is stale.
	m.Units = append(m.Units, jobs.UnitRef{ID: f.rows[len(f.rows)-1].Unit, Kind: jobs.KindEnergy, Parent: trainID})
	if err := jobs.WriteManifest(f.state, m); err != nil {
		t.Fatal(err)
	}
	st, err := Results(f.state, filepath.Join(out, "listed.parquet"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	ss, err := Samples(f.state, filepath.Join(out, "listed-samples.parquet"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if st.Rows != len(f.rows) || st.StaleUnits != 0 || ss.Rows != 5 || ss.StaleUnits != 0 {
		t.Errorf("every unit listed: results %+v, samples %+v", st, ss)
	}
}

func TestExportDedupe(t *testing.T) {
	f := writeFixture(t)
	// A copied part (e.g. two state directories merged) duplicates the training unit's rows.
	results := filepath.Join(f.state, jobs.ResultsDirName)
	dup := f.rows[:4]
	later := make([]jobs.Row, len(dup))
	copy(later, dup)
	for i := range later {
		later[i].RecordedAt = later[i].RecordedAt.Add(time.Hour)
		later[i].Value = 1
	}
	if err := jobs.WriteResults(filepath.Join(results, jobs.PartName(time.Now(), dup[0].Unit)), later); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		dedupe bool
		rows   int
	}{{false, len(f.rows) + 4}, {true, len(f.rows)}} {
		path := filepath.Join(t.TempDir(), "r.parquet")
		st, err := Results(f.state, path, Options{Dedupe: tc.dedupe})
		if err != nil {
			t.Fatal(err)
		}
		if st.Rows != tc.rows {
			t.Errorf("dedupe=%v: %d rows, want %d", tc.dedupe, st.Rows, tc.rows)
		}
		if tc.dedupe {
			rows, _ := jobs.ReadResultsFile(path)
			for _, r := range rows {
				if r.Unit == dup[0].Unit && r.Metric == "test_nll" && r.Value != 1 {
					t.Errorf("dedupe kept the older row (value %g)", r.Value)
				}
			}
		}
	}
}

// jsTools returns the node binary and tools/js, skipping when they are missing unless CI=true.
func jsTools(t *testing.T) (node, dir string) {
	t.Helper()
	dir, err := filepath.Abs(filepath.Join("..", "..", "tools", "js"))
	if err != nil {
		t.Fatal(err)
	}
	node, nodeErr := exec.LookPath("node")
	_, modErr := os.Stat(filepath.Join(dir, "node_modules"))
	if nodeErr != nil || modErr != nil {
		msg := fmt.Sprintf("DuckDB check needs node on PATH (%v) and %s/node_modules (%v); install with: cd tools/js && npm ci", nodeErr, dir, modErr)
		if os.Getenv("CI") == "true" {
			t.Fatal("CI=true: " + msg)
		}
		t.Skip(msg)
	}
	return node, dir
}

type sqlResult struct {
	Columns []string         `json:"columns"`
	Types   []string         `json:"types"`
	Rows    []map[string]any `json:"rows"`
}

type arrowSummary struct {
	Rows     int               `json:"rows"`
	Metadata map[string]string `json:"metadata"`
	Fields   []struct {
		Name     string `json:"name"`
		Type     string `json:"type"`
		Nullable bool   `json:"nullable"`
	} `json:"fields"`
	NonNull     map[string]int      `json:"non_null"`
	Sums        map[string]float64  `json:"sums"`
	Distinct    map[string][]string `json:"distinct"`
	ListLengths map[string]int      `json:"list_lengths"`
}

type jsOutput struct {
	Versions map[string]string       `json:"versions"`
	SQL      map[string]sqlResult    `json:"sql"`
	Arrow    map[string]arrowSummary `json:"arrow"`
}

func lit(s string) string { return "'" + s + "'" }

// TestExportDuckDB queries the exported files (and the raw results parts) with DuckDB and
// Arrow JS through node (tools/js/query_exports.mjs).
func TestExportDuckDB(t *testing.T) {
	node, dir := jsTools(t)
	f := writeFixture(t)
	out := t.TempDir()
	resPQ, resArrow := filepath.Join(out, "results.parquet"), filepath.Join(out, "results.arrow")
	smpPQ, smpArrow := filepath.Join(out, "samples.parquet"), filepath.Join(out, "samples.arrow")
	for _, p := range []string{resPQ, resArrow} {
		if _, err := Results(f.state, p, Options{}); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range []string{smpPQ, smpArrow} {
		if _, err := Samples(f.state, p, Options{}); err != nil {
			t.Fatal(err)
		}
	}
	glob := filepath.Join(f.state, jobs.ResultsDirName, "*.parquet")
	queries := map[string]string{
		"count":    "SELECT count(*) AS n, count(DISTINCT unit) AS units, count(value) AS vals FROM " + lit(resPQ),
		"glob":     "SELECT count(*) AS n, count(DISTINCT unit) AS units FROM " + lit(glob),
		"describe": "DESCRIBE SELECT * FROM " + lit(resPQ),
		"nll": "SELECT value, n_data, seed, resumed, attempt, epoch(started_at) AS started, wall_s FROM " + lit(resPQ) +
			" WHERE unit_kind = 'train' AND metric = 'test_nll'",
		"energy": "SELECT parent_unit, bool_and(resumed) AS resumed, max(attempt) AS attempt, count(*) AS n FROM " + lit(resPQ) +
			" WHERE unit_kind = 'energy' GROUP BY ALL",
		"curve": "SELECT len(from_json(detail, '{\"epoch\":[\"BIGINT\"]}').epoch) AS epochs FROM " + lit(resPQ) + " WHERE metric = 'curve'",
		"meta":  "SELECT decode(value) AS v FROM parquet_kv_metadata(" + lit(resPQ) + ") WHERE decode(key) = 'enflow.schema'",
		"samples": "SELECT model, n_data, seed, parent_unit, count(*) AS n, count(energy) AS finite, sum(len(positions)) AS coords, " +
			"min(n_particles) AS np FROM " + lit(smpPQ) + " GROUP BY ALL",
		"samples_meta": "SELECT decode(value) AS v FROM parquet_kv_metadata(" + lit(smpPQ) + ") WHERE decode(key) = 'enflow.schema'",
	}
	args := []string{filepath.Join(dir, "query_exports.mjs")}
	for name, q := range queries {
		args = append(args, "--sql", name+"="+q)
	}
	args = append(args, "--arrow", resArrow, "--arrow", smpArrow)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, args...)
	cmd.Dir = dir
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("node query_exports.mjs: %v\n%s", err, stderr.String())
	}
	var res jsOutput
	if err := json.Unmarshal(stdout.Bytes(), &res); err != nil {
		t.Fatalf("query_exports.mjs output: %v\n%s", err, stdout.String())
	}
	t.Logf("versions %v", res.Versions)
	one := func(name string) map[string]any {
		t.Helper()
		r, ok := res.SQL[name]
		if !ok || len(r.Rows) != 1 {
			t.Fatalf("query %s: %+v", name, r)
		}
		return r.Rows[0]
	}
	check := func(what string, got, want any) {
		t.Helper()
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s: got %v (%T), want %v (%T)", what, got, got, want, want)
		}
	}
	c := one("count")
	check("rows", c["n"], float64(len(f.rows)))
	check("units", c["units"], 2.0)
	check("non-null values (the curve row is null)", c["vals"], float64(len(f.rows)-1))
	g := one("glob")
	check("rows over results/*.parquet", g["n"], float64(len(f.rows)))
	types := map[string]string{}
	for _, r := range res.SQL["describe"].Rows {
		types[r["column_name"].(string)] = r["column_type"].(string)
	}
	for col, want := range map[string]string{
		"unit": "VARCHAR", "n_data": "BIGINT", "value": "DOUBLE", "started_at": "TIMESTAMP WITH TIME ZONE",
		"resumed": "BOOLEAN", "detail": "VARCHAR", "attempt": "BIGINT",
	} {
		check("DuckDB type of "+col, types[col], want)
	}
	if len(types) != len(jobs.ResultsColumns()) {
		t.Errorf("DuckDB sees %d columns, the schema has %d", len(types), len(jobs.ResultsColumns()))
	}
	n := one("nll")
	check("test_nll", n["value"], 8.25)
	check("n_data", n["n_data"], 100.0)
	check("seed", n["seed"], 1.0)
	check("resumed", n["resumed"], false)
	check("started_at (epoch seconds)", n["started"], float64(time.Date(2026, 11, 23, 10, 0, 0, 123456000, time.UTC).UnixMicro())/1e6)
	check("wall_s", n["wall_s"], 1.5)
	e := one("energy")
	check("energy parent", e["parent_unit"], "aaaaaaaaaaaaaaaa")
	check("energy resumed", e["resumed"], true)
	check("energy attempt", e["attempt"], 2.0)
	check("curve epochs", one("curve")["epochs"], 3.0)
	check("results schema tag", one("meta")["v"], jobs.ResultsSchemaTag)
	s := one("samples")
	check("samples model", s["model"], "enf")
	check("samples n_data (from the training unit)", s["n_data"], 100.0)
	check("samples parent", s["parent_unit"], "aaaaaaaaaaaaaaaa")
	check("samples rows", s["n"], 5.0)
	check("samples finite energies", s["finite"], 4.0)
	check("samples coordinates", s["coords"], 40.0)
	check("samples n_particles", s["np"], 4.0)
	check("samples schema tag", one("samples_meta")["v"], SamplesSchemaTag)

	ra := res.Arrow[resArrow]
	check("arrow results rows", ra.Rows, len(f.rows))
	check("arrow results schema", ra.Metadata["enflow.schema"], jobs.ResultsSchemaTag)
	check("arrow results metrics", ra.Distinct["metric"], []string{"best_val_nll", "curve", "epochs", "frac_finite", "mean_energy", "test_nll"})
	check("arrow results non-null parent_unit", ra.NonNull["parent_unit"], 2)
	if len(ra.Fields) != len(jobs.ResultsColumns()) {
		t.Errorf("arrow results: %d fields", len(ra.Fields))
	}
	for i, fld := range ra.Fields {
		if fld.Name != jobs.ResultsColumns()[i] {
			t.Errorf("arrow results field %d is %s, want %s", i, fld.Name, jobs.ResultsColumns()[i])
		}
	}
	sa := res.Arrow[smpArrow]
	check("arrow samples rows", sa.Rows, 5)
	check("arrow samples schema", sa.Metadata["enflow.schema"], SamplesSchemaTag)
	check("arrow samples positions", sa.ListLengths["positions"], 40)
	check("arrow samples energies", sa.NonNull["energy"], 4)
	check("arrow samples sum of ids", sa.Sums["sample_id"], 10.0)
}
