package table

// (Not named *_js_test.go: that suffix would restrict the file to GOOS=js.)

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
	"strconv"
	"testing"
	"time"

	"github.com/enflow/enflow/etl/molecule"
	"github.com/enflow/enflow/etl/particles"
)

// jsSummary is what tools/js/check_tables.mjs reports for one file.
type jsSummary struct {
	Schema      string                    `json:"schema"`
	Metadata    map[string]string         `json:"metadata"`
	Columns     []string                  `json:"columns"`
	Types       map[string]string         `json:"types"`
	Rows        int64                     `json:"rows"`
	MinID       int64                     `json:"min_id"`
	MaxID       int64                     `json:"max_id"`
	Sums        map[string]int64          `json:"sums"`
	NonNull     map[string]int64          `json:"non_null"`
	RowsByID    map[string]map[string]any `json:"rows_by_id"`
	Lowercase   map[string]map[string]any `json:"lowercase"`
	RowGroups   int                       `json:"row_groups"`
	Compression string                    `json:"compression"`
	Batches     int                       `json:"batches"`
}

type jsReport struct {
	Versions map[string]string `json:"versions"`
	Parquet  *jsSummary        `json:"parquet"`
	Arrow    *jsSummary        `json:"arrow"`
}

// jsTools returns the node binary and the tools/js directory, skipping the test when they
// are missing, unless CI=true, where a missing toolchain is a failure.
func jsTools(t *testing.T) (node, dir string) {
	t.Helper()
	dir, err := filepath.Abs(filepath.Join("..", "..", "tools", "js"))
	if err != nil {
		t.Fatal(err)
	}
	node, nodeErr := exec.LookPath("node")
	_, modErr := os.Stat(filepath.Join(dir, "node_modules"))
	if nodeErr != nil || modErr != nil {
		msg := fmt.Sprintf("JS cross-check needs node on PATH (%v) and %s/node_modules (%v); install with: cd tools/js && npm ci", nodeErr, dir, modErr)
		if os.Getenv("CI") == "true" {
			t.Fatal("CI=true: " + msg)
		}
		t.Skip(msg)
	}
	return node, dir
}

func runCheckTables(t *testing.T, node, dir string, args ...string) jsReport {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, append([]string{filepath.Join(dir, "check_tables.mjs")}, args...)...)
	cmd.Dir = dir
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("node check_tables.mjs %v: %v\nstderr:\n%s", args, err, stderr.String())
	}
	var rep jsReport
	if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil {
		t.Fatalf("check_tables.mjs output is not the expected JSON: %v\n%s", err, stdout.String())
	}
	t.Logf("versions: %v", rep.Versions)
	return rep
}

// asJSON round-trips v through encoding/json, giving the generic form (float64 numbers,
// []any, map[string]any) the script's output decodes to, for exact comparison.
func asJSON(t *testing.T, v any) any {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var out any
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

func nullIfNaN(v float64) any {
	if math.IsNaN(v) {
		return nil
	}
	return v
}

func nullIfEmpty(s string) any {
	if s == "" {
		return nil
	}
	return s
}

func nullIfNil(v []float64) any {
	if v == nil {
		return nil
	}
	return v
}

// moleculeRow is the row the JS readers should report for m (all columns).
func moleculeRow(m *molecule.Molecule) map[string]any {
	r := map[string]any{
		"id": m.ID, "split": nullIfEmpty(m.Split), "n_atoms": len(m.Z), "z": m.Z, "positions": m.Positions,
		"mulliken": nullIfNil(m.Mulliken), "omega1": nullIfNaN(m.Omega1), "freqs": nullIfNil(m.Freqs),
		"smiles": nullIfEmpty(m.SMILES[0]), "smiles_relaxed": nullIfEmpty(m.SMILES[1]),
		"inchi": nullIfEmpty(m.InChI[0]), "inchi_relaxed": nullIfEmpty(m.InChI[1]),
		// Optional columns of etl/molfile molecules; null for these synthetic QM9-like rows.
		"name": nullIfEmpty(m.Name), "source": nullIfEmpty(m.Source), "formal_charges": nil, "bonds": nil, "properties": nil,
	}
	for k, p := range molecule.PropertyNames {
		r[p] = nullIfNaN(m.Props[k])
	}
	return r
}

func TestDuckDBAndArrowJS(t *testing.T) {
	node, dir := jsTools(t)
	tmp := t.TempDir()

	t.Run("molecules", func(t *testing.T) {
		const n = BatchRows + 10 // two row groups / record batches
		ms := make([]molecule.Molecule, n)
		for i := range ms {
			id := int64(i + 1)
			switch {
			case i == 0:
				ms[i] = synthMolecule(id, 1)
			case i == 1:
				ms[i] = synthMolecule(id, molecule.MaxAtoms)
			case i%4 == 2:
				ms[i] = sparseMolecule(id, 1+i%molecule.MaxAtoms)
			default:
				ms[i] = synthMolecule(id, 1+i%molecule.MaxAtoms)
			}
		}
		ms[3].Freqs = []float64{} // empty list, not null
		pq, arw := filepath.Join(tmp, "qm9.parquet"), filepath.Join(tmp, "qm9.arrow")
		writeMolecules(t, pq, ms)
		writeMolecules(t, arw, ms)
		probes := []int{0, 1, 2, 3, BatchRows + 5, n - 1} // row indices
		rewritten := filepath.Join(tmp, "duckdb-rewrite.parquet")
		args := []string{"--parquet", pq, "--arrow", arw, "--rewrite", rewritten}
		for _, p := range probes {
			args = append(args, "--id", strconv.FormatInt(ms[p].ID, 10))
		}
		rep := runCheckTables(t, node, dir, args...)

		// Expected values, computed in Go.
		sums := map[string]int64{}
		nonNull := map[string]int64{}
		for i := range ms {
			m := &ms[i]
			sums["n_atoms"] += int64(len(m.Z))
			sums["len_z"] += int64(len(m.Z))
			sums["len_positions"] += int64(len(m.Positions))
			sums["len_coords"] += 3 * int64(len(m.Positions))
			sums["len_mulliken"] += int64(len(m.Mulliken))
			sums["len_freqs"] += int64(len(m.Freqs))
			for _, z := range m.Z {
				sums["z"] += int64(z)
			}
			count := func(col string, present bool) {
				if _, ok := nonNull[col]; !ok {
					nonNull[col] = 0 // every nullable column is reported, even when all null
				}
				if present {
					nonNull[col]++
				}
			}
			count("split", m.Split != "")
			count("mulliken", m.Mulliken != nil)
			count("freqs", m.Freqs != nil)
			count("omega1", !math.IsNaN(m.Omega1))
			count("smiles", m.SMILES[0] != "")
			count("smiles_relaxed", m.SMILES[1] != "")
			count("inchi", m.InChI[0] != "")
			count("inchi_relaxed", m.InChI[1] != "")
			for k, p := range molecule.PropertyNames {
				count(p, !math.IsNaN(m.Props[k]))
			}
		}
		var columns []string
		for _, f := range MoleculeSchema.Fields() {
			columns = append(columns, f.Name)
		}
		metadata := map[string]string{}
		md := MoleculeSchema.Metadata()
		for i, k := range md.Keys() {
			metadata[k] = md.Values()[i]
		}
		rowsByID := map[string]map[string]any{}
		lowercase := map[string]map[string]any{}
		for _, p := range probes {
			m := &ms[p]
			key := strconv.FormatInt(m.ID, 10)
			rowsByID[key] = moleculeRow(m)
			lc := map[string]any{}
			for _, name := range []string{"A", "B", "C", "U0", "U", "H", "G", "Cv", "gap"} {
				lc[name] = moleculeRow(m)[name]
			}
			lowercase[key] = lc
		}

		for _, tc := range []struct {
			reader string
			got    *jsSummary
			types  map[string]string
		}{
			{"DuckDB (parquet)", rep.Parquet, map[string]string{"id": "BIGINT", "split": "VARCHAR", "n_atoms": "INTEGER",
				"z": "INTEGER[]", "positions": "DOUBLE[][]", "mulliken": "DOUBLE[]", "U0": "DOUBLE", "freqs": "DOUBLE[]", "smiles": "VARCHAR"}},
			{"apache-arrow (arrow)", rep.Arrow, map[string]string{"id": "Int64", "split": "Utf8", "n_atoms": "Int32",
				"z": "List<Int32>", "positions": "List<FixedSizeList[3]<Float64>>", "mulliken": "List<Float64>", "U0": "Float64"}},
		} {
			got := tc.got
			if got == nil {
				t.Errorf("%s: no summary in the output", tc.reader)
				continue
			}
			check := func(what string, g, w any) {
				t.Helper()
				if !reflect.DeepEqual(asJSON(t, g), asJSON(t, w)) {
					t.Errorf("%s: %s = %v, want %v", tc.reader, what, g, w)
				}
			}
			check("schema", got.Schema, MoleculeSchemaTag)
			check("metadata", got.Metadata, metadata)
			check("columns", got.Columns, columns)
			check("rows", got.Rows, n)
			check("min_id", got.MinID, ms[0].ID)
			check("max_id", got.MaxID, ms[n-1].ID)
			check("sums", got.Sums, sums)
			check("non_null", got.NonNull, nonNull)
			for col, typ := range tc.types {
				check("type of "+col, got.Types[col], typ)
			}
			for key, want := range rowsByID {
				g := got.RowsByID[key]
				for col, w := range want {
					check(fmt.Sprintf("id %s column %s", key, col), g[col], w)
				}
				if len(g) != len(want) {
					t.Errorf("%s: id %s: %d columns, want %d", tc.reader, key, len(g), len(want))
				}
			}
		}
		if p := rep.Parquet; p != nil {
			if !reflect.DeepEqual(asJSON(t, p.Lowercase), asJSON(t, lowercase)) {
				t.Errorf("DuckDB lowercase column names resolved to %v, want %v", p.Lowercase, lowercase)
			}
			if p.RowGroups != 2 || p.Compression != "ZSTD" {
				t.Errorf("parquet: %d row groups compressed with %q, want 2 with ZSTD", p.RowGroups, p.Compression)
			}
		}
		if a := rep.Arrow; a != nil && a.Batches != 2 {
			t.Errorf("arrow: %d record batches, want 2", a.Batches)
		}

		// A file DuckDB wrote (no enflow metadata, no ARROW:schema, nested lists instead of
		// fixed-size lists) reads back as the same molecules.
		if sc, err := Schema(rewritten); err == nil {
			t.Logf("DuckDB rewrite: positions %v, %s kept: %v", sc.Field(4).Type, MetaSchema, sc.Metadata().FindKey(MetaSchema) >= 0)
		}
		back, err := ReadMolecules(rewritten)
		if err != nil {
			t.Fatalf("reading the DuckDB rewrite: %v", err)
		}
		if len(back) != n {
			t.Fatalf("DuckDB rewrite: %d molecules, want %d", len(back), n)
		}
		for i := range back {
			if d := diffMolecule(&back[i], &ms[i]); d != "" {
				t.Fatalf("DuckDB rewrite: row %d: %s", i, d)
			}
		}
	})

	t.Run("configs", func(t *testing.T) {
		var cs []particles.Config
		for i := range 50 {
			sys := particles.DW4
			if i%2 == 1 {
				sys = particles.LJ13
			}
			cs = append(cs, synthConfig(int64(i), sys))
		}
		cs[4].Energy = math.NaN()
		cs[5].Split = ""
		pq, arw := filepath.Join(tmp, "c.parquet"), filepath.Join(tmp, "c.arrow")
		writeConfigs(t, pq, cs)
		writeConfigs(t, arw, cs)
		rep := runCheckTables(t, node, dir, "--parquet", pq, "--arrow", arw, "--id", "0", "--id", "4", "--id", "5")
		var sumN, sumDim, sumLen int64
		for _, c := range cs {
			sys, err := particles.SystemByName(c.System)
			if err != nil {
				t.Fatal(err)
			}
			sumN += int64(sys.Particles)
			sumDim += int64(sys.Dim)
			sumLen += int64(len(c.Positions))
		}
		wantRow := func(c particles.Config) map[string]any {
			sys, _ := particles.SystemByName(c.System)
			return map[string]any{"id": c.ID, "split": nullIfEmpty(c.Split), "system": sys.Name,
				"n_particles": sys.Particles, "dim": sys.Dim, "positions": c.Positions, "energy": nullIfNaN(c.Energy)}
		}
		for reader, got := range map[string]*jsSummary{"DuckDB (parquet)": rep.Parquet, "apache-arrow (arrow)": rep.Arrow} {
			if got == nil {
				t.Errorf("%s: no summary", reader)
				continue
			}
			want := map[string]any{
				"schema": ConfigSchemaTag, "rows": len(cs),
				"sums":       map[string]int64{"n_particles": sumN, "dim": sumDim, "len_positions": sumLen},
				"non_null":   map[string]int64{"split": int64(len(cs) - 1), "energy": int64(len(cs) - 1)},
				"rows_by_id": map[string]any{"0": wantRow(cs[0]), "4": wantRow(cs[4]), "5": wantRow(cs[5])},
			}
			gotm := map[string]any{"schema": got.Schema, "rows": got.Rows, "sums": got.Sums, "non_null": got.NonNull, "rows_by_id": got.RowsByID}
			for k := range want {
				if g, w := asJSON(t, gotm[k]), asJSON(t, want[k]); !reflect.DeepEqual(g, w) {
					t.Errorf("%s: %s = %v, want %v", reader, k, g, w)
				}
			}
		}
	})
}
