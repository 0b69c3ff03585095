package table

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/ipc"

	"github.com/enflow/enflow/etl/molecule"
	"github.com/enflow/enflow/etl/particles"
)

// molRow is a JSON row of the molecule schema (a valid 3-atom molecule) for hand-built files.
func molRow(id int64) map[string]any {
	r := map[string]any{
		"id": id, "split": "train", "n_atoms": 3, "z": []int{6, 1, 1},
		"positions": [][]float64{{0, 0, 0}, {1, 0, 0}, {0, 1, 0}},
		"mulliken":  []float64{-0.2, 0.1, 0.1}, "omega1": 3000.5, "freqs": []float64{1000, 2000, 3000},
		"smiles": "C", "smiles_relaxed": "C", "inchi": nil, "inchi_relaxed": nil,
	}
	for k, p := range molecule.PropertyNames {
		r[p] = float64(k) + 0.5
	}
	return r
}

func configRow(id int64) map[string]any {
	return map[string]any{"id": id, "split": "val", "system": "dw4", "n_particles": 4, "dim": 2,
		"positions": []float64{1, 2, 3, 4, 5, 6, 7, 8}, "energy": -1.5}
}

// writeJSONRows writes rows (objects keyed by column name; absent keys are null) with schema.
func writeJSONRows(t *testing.T, path string, schema *arrow.Schema, rows []map[string]any) {
	t.Helper()
	err := WriteRecords(path, schema, func(b *array.RecordBuilder) error {
		for _, r := range rows {
			js, err := json.Marshal(r)
			if err != nil {
				return err
			}
			if err := b.UnmarshalJSON(js); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("write %s: %v", path, err)
	}
}

// withField returns schema with field name replaced by f (or removed when f is nil) and no
// metadata when dropMeta is set.
func withField(schema *arrow.Schema, name string, f *arrow.Field, dropMeta bool) *arrow.Schema {
	var fields []arrow.Field
	for _, g := range schema.Fields() {
		switch {
		case g.Name != name:
			fields = append(fields, g)
		case f != nil:
			fields = append(fields, *f)
		}
	}
	if dropMeta {
		return arrow.NewSchema(fields, nil)
	}
	md := schema.Metadata()
	return arrow.NewSchema(fields, &md)
}

func TestReadErrors(t *testing.T) {
	dir := t.TempDir()
	ms := []molecule.Molecule{synthMolecule(1, 5), synthMolecule(2, 29), synthMolecule(3, 1)}
	goodPQ, goodArrow := filepath.Join(dir, "good.parquet"), filepath.Join(dir, "good.arrow")
	writeMolecules(t, goodPQ, ms)
	writeMolecules(t, goodArrow, ms)
	confPQ := filepath.Join(dir, "conf.arrow")
	writeConfigs(t, confPQ, []particles.Config{synthConfig(1, particles.DW4)})

	// file derives a new file from bytes.
	file := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	read := func(p string) []byte {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	pq, arw := read(goodPQ), read(goodArrow)
	garbled := append([]byte(nil), pq...)
	for i := len(garbled) / 3; i < len(garbled)/3+512; i++ {
		garbled[i] ^= 0x5a
	}

	// An Arrow IPC *stream* (not file).
	streamPath := filepath.Join(dir, "stream.arrow")
	{
		f, err := os.Create(streamPath)
		if err != nil {
			t.Fatal(err)
		}
		w := ipc.NewWriter(f, ipc.WithSchema(ConfigSchema))
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		f.Close()
	}

	// Hand-built molecule tables, each broken in one way.
	build := func(name string, schema *arrow.Schema, rows ...map[string]any) string {
		p := filepath.Join(dir, name)
		writeJSONRows(t, p, schema, rows)
		return p
	}
	gapString := arrow.Field{Name: "gap", Type: arrow.BinaryTypes.String, Nullable: true}
	gapUpper := arrow.Field{Name: "GAP", Type: arrow.PrimitiveTypes.Float64, Nullable: true}
	gapText := molRow(1)
	gapText["gap"] = "0.25"
	short := molRow(5)
	short["positions"] = [][]float64{{0, 0, 0}, {1, 0, 0}}
	wrongZLen := molRow(6)
	wrongZLen["z"] = []int{6, 1}
	badMull := molRow(7)
	badMull["mulliken"] = []float64{0.1}
	badZ := molRow(8)
	badZ["z"] = []int{6, 1, 119}
	nullPos := molRow(9)
	delete(nullPos, "positions")
	twoD := molRow(10)
	twoD["positions"] = [][]float64{{0, 0, 0}, {1, 0}, {0, 1, 0}}
	nullID := molRow(0)
	delete(nullID, "id")
	nested := arrow.Field{Name: "positions", Type: arrow.ListOf(arrow.ListOf(arrow.PrimitiveTypes.Float64)), Nullable: true}
	nullable := arrow.Field{Name: "id", Type: arrow.PrimitiveTypes.Int64, Nullable: true}
	badConf := configRow(11)
	badConf["positions"] = []float64{1, 2, 3, 4, 5}
	badSys := configRow(12)
	badSys["system"] = "lj55"
	badDim := configRow(13)
	badDim["dim"] = 3

	tests := []struct {
		name    string
		path    string
		configs bool     // read with ReadConfigs instead of ReadMolecules
		want    []string // substrings of the error besides the path
	}{
		{"missing file", filepath.Join(dir, "nope.parquet"), false, []string{"no such file"}},
		{"empty file", file("empty.parquet", nil), false, []string{"not a Parquet or Arrow IPC file"}},
		{"text file", file("text.arrow", []byte("id,split\n1,train\n")), false, []string{"not a Parquet or Arrow IPC file"}},
		{"truncated parquet", file("trunc.parquet", pq[:len(pq)/2]), false, []string{"Parquet"}},
		{"truncated arrow", file("trunc.arrow", arw[:len(arw)/2]), false, []string{"Arrow IPC"}},
		{"parquet header only", file("head.parquet", pq[:4]), false, []string{"Parquet"}},
		{"garbled parquet", file("garbled.parquet", garbled), false, nil},
		{"arrow stream", streamPath, false, []string{"stream format is not supported"}},
		{"configs as molecules", confPQ, false, []string{"wrong schema", `"particles/v1"`, `want "molecule/v1"`}},
		{"molecules as configs", goodPQ, true, []string{"wrong schema", `"molecule/v1"`}},
		{"missing column", build("nogap.parquet", withField(MoleculeSchema, "gap", nil, true), molRow(1)), false, []string{`missing column "gap"`}},
		{"column case", build("GAP.arrow", withField(MoleculeSchema, "gap", &gapUpper, true), molRow(1)), false, []string{`missing column "gap"`, `found "GAP"`}},
		{"column type", build("gaptype.parquet", withField(MoleculeSchema, "gap", &gapString, false), gapText), false, []string{`column "gap" has type utf8`}},
		{"positions length", build("short.parquet", MoleculeSchema, molRow(4), short), false, []string{"row 1 (id 5)", `column "positions"`, "2 rows for n_atoms=3"}},
		{"z length", build("zlen.arrow", MoleculeSchema, wrongZLen), false, []string{"row 0 (id 6)", `column "z"`}},
		{"mulliken length", build("mull.parquet", MoleculeSchema, badMull), false, []string{"row 0 (id 7)", `column "mulliken"`}},
		{"unknown element", build("badz.arrow", MoleculeSchema, molRow(1), molRow(2), badZ), false, []string{"row 2", "molecule 8", "field z"}},
		{"null positions", build("nullpos.parquet", withField(MoleculeSchema, "positions", &nested, false), nullPos), false, []string{"row 0 (id 9)", `column "positions": null`}},
		{"2 coordinates", build("twod.parquet", withField(MoleculeSchema, "positions", &nested, false), twoD), false, []string{"(id 10)", "atom 1: 2 coordinates, want 3"}},
		{"null id", build("nullid.arrow", withField(MoleculeSchema, "id", &nullable, false), nullID), false, []string{"row 0", "null id"}},
		{"config positions length", build("c1.parquet", ConfigSchema, configRow(1), badConf), true, []string{"row 1 (id 11)", `column "positions"`, "5 values"}},
		{"config system", build("c2.arrow", ConfigSchema, badSys), true, []string{"row 0 (id 12)", `column "system"`, "lj55"}},
		{"config dim", build("c3.parquet", ConfigSchema, badDim), true, []string{"row 0 (id 13)", `column "dim": 3, want 2`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			checkedMem(t)
			var err error
			if tc.configs {
				_, err = ReadConfigs(tc.path)
			} else {
				_, err = ReadMolecules(tc.path)
			}
			if err == nil {
				t.Fatalf("reading %s succeeded", tc.path)
			}
			msg := err.Error()
			t.Log(msg)
			for _, w := range append([]string{tc.path}, tc.want...) {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q does not contain %q", msg, w)
				}
			}
			// The streaming readers fail the same way.
			if tc.configs {
				err = ScanConfigs(tc.path, 1, func([]particles.Config) error { return nil })
			} else {
				err = ScanMolecules(tc.path, 1, func([]molecule.Molecule) error { return nil })
			}
			if err == nil {
				t.Errorf("Scan of %s succeeded", tc.path)
			}
		})
	}
}

// TestReadForeignEncodings reads molecule and configuration tables written with other Arrow
// encodings of the same columns, as DuckDB, pandas or Polars produce when they rewrite a file:
// no metadata, other integer/float widths, nested lists instead of fixed-size lists,
// dictionary and large strings, columns reordered, extra columns.
func TestReadForeignEncodings(t *testing.T) {
	f64 := arrow.PrimitiveTypes.Float64
	var fields []arrow.Field
	fields = append(fields,
		arrow.Field{Name: "extra", Type: arrow.BinaryTypes.String, Nullable: true},
		arrow.Field{Name: "positions", Type: arrow.LargeListOf(arrow.ListOf(arrow.PrimitiveTypes.Float32)), Nullable: true},
		arrow.Field{Name: "z", Type: arrow.ListOf(arrow.PrimitiveTypes.Int8), Nullable: true},
		arrow.Field{Name: "id", Type: arrow.PrimitiveTypes.Int32, Nullable: true},
		arrow.Field{Name: "n_atoms", Type: arrow.PrimitiveTypes.Int64, Nullable: true},
		arrow.Field{Name: "split", Type: &arrow.DictionaryType{IndexType: arrow.PrimitiveTypes.Int32, ValueType: arrow.BinaryTypes.String}, Nullable: true},
		arrow.Field{Name: "mulliken", Type: arrow.ListOf(arrow.PrimitiveTypes.Float32), Nullable: true},
		arrow.Field{Name: "freqs", Type: arrow.LargeListOf(f64), Nullable: true},
		arrow.Field{Name: "omega1", Type: arrow.PrimitiveTypes.Float32, Nullable: true},
		arrow.Field{Name: "smiles", Type: arrow.BinaryTypes.LargeString, Nullable: true},
		arrow.Field{Name: "smiles_relaxed", Type: arrow.BinaryTypes.String, Nullable: true},
		arrow.Field{Name: "inchi", Type: arrow.BinaryTypes.String, Nullable: true},
		arrow.Field{Name: "inchi_relaxed", Type: arrow.BinaryTypes.String, Nullable: true},
	)
	for _, p := range molecule.PropertyNames {
		fields = append(fields, arrow.Field{Name: p, Type: f64, Nullable: true})
	}
	molSchema := arrow.NewSchema(fields, nil)
	confSchema := arrow.NewSchema([]arrow.Field{
		{Name: "id", Type: arrow.PrimitiveTypes.Uint32, Nullable: true},
		{Name: "split", Type: arrow.BinaryTypes.LargeString, Nullable: true},
		{Name: "system", Type: arrow.BinaryTypes.String, Nullable: true},
		{Name: "n_particles", Type: arrow.PrimitiveTypes.Int64, Nullable: true},
		{Name: "dim", Type: arrow.PrimitiveTypes.Int8, Nullable: true},
		{Name: "positions", Type: arrow.FixedSizeListOf(8, f64), Nullable: true},
		{Name: "energy", Type: arrow.PrimitiveTypes.Float32, Nullable: true},
	}, nil)

	sparse := molRow(2)
	for _, k := range []string{"split", "mulliken", "freqs", "omega1", "smiles", "gap"} {
		delete(sparse, k)
	}
	for _, ext := range formats {
		t.Run(ext, func(t *testing.T) {
			checkedMem(t)
			path := tempPath(t, "foreign"+ext)
			writeJSONRows(t, path, molSchema, []map[string]any{molRow(1), sparse})
			got, err := ReadMolecules(path)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != 2 || got[0].ID != 1 || got[1].ID != 2 {
				t.Fatalf("got %d molecules %+v", len(got), got)
			}
			m := got[0]
			if m.Split != "train" || m.Z[0] != 6 || m.Positions[2] != [3]float64{0, 1, 0} || m.Mulliken[0] != float64(float32(-0.2)) ||
				m.Omega1 != 3000.5 || m.SMILES[0] != "C" || m.InChI[0] != "" || m.Props[7] != 7.5 || len(m.Freqs) != 3 {
				t.Errorf("molecule 1 decoded as %+v", m)
			}
			s := got[1]
			if s.Split != "" || s.Mulliken != nil || s.Freqs != nil || !sameFloat(s.Omega1, nan()) || !sameFloat(s.Props[7], nan()) {
				t.Errorf("sparse molecule decoded as %+v", s)
			}

			cpath := tempPath(t, "conf"+ext)
			writeJSONRows(t, cpath, confSchema, []map[string]any{configRow(1)})
			cs, err := ReadConfigs(cpath)
			if err != nil {
				t.Fatal(err)
			}
			if len(cs) != 1 || cs[0].System != "dw4" || cs[0].Split != "val" || cs[0].Positions[7] != 8 || cs[0].Energy != -1.5 {
				t.Errorf("config decoded as %+v", cs)
			}
		})
	}
}
