package table

import (
	"errors"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/apache/arrow-go/v18/arrow"

	"github.com/enflow/enflow/etl/molecule"
	"github.com/enflow/enflow/etl/particles"
)

func TestFormatOf(t *testing.T) {
	tests := []struct {
		path    string
		want    Format
		wantErr bool
	}{
		{"a/b.parquet", Parquet, false},
		{"B.PARQUET", Parquet, false},
		{"x.pq", Parquet, false},
		{"x.arrow", ArrowIPC, false},
		{"x.feather", ArrowIPC, false},
		{"x.csv", 0, true},
		{"noext", 0, true},
	}
	for _, tc := range tests {
		got, err := FormatOf(tc.path)
		if (err != nil) != tc.wantErr || got != tc.want {
			t.Errorf("FormatOf(%q) = %v, %v; want %v, err %v", tc.path, got, err, tc.want, tc.wantErr)
		}
		if err != nil && !strings.Contains(err.Error(), tc.path) {
			t.Errorf("FormatOf(%q) error %q does not name the path", tc.path, err)
		}
	}
}

func TestMoleculeSchema(t *testing.T) {
	if err := checkColumnNames(MoleculeSchema); err != nil {
		t.Fatalf("molecule schema: %v", err)
	}
	if err := checkColumnNames(ConfigSchema); err != nil {
		t.Fatalf("config schema: %v", err)
	}
	for k, p := range molecule.PropertyNames {
		if got := MoleculeSchema.Field(6 + k).Name; got != p {
			t.Errorf("property column %d is %q, want %q", k, got, p)
		}
	}
	tests := []struct {
		schema *arrow.Schema
		tag    string
	}{{MoleculeSchema, MoleculeSchemaTag}, {ConfigSchema, ConfigSchemaTag}}
	for _, tc := range tests {
		md := tc.schema.Metadata()
		if i := md.FindKey(MetaSchema); i < 0 || md.Values()[i] != tc.tag {
			t.Errorf("schema tag missing or wrong, want %q: %v", tc.tag, md)
		}
		if md.FindKey(MetaUnits) < 0 {
			t.Errorf("%s: no %s metadata", tc.tag, MetaUnits)
		}
	}
}

func TestMoleculeRoundTrip(t *testing.T) {
	empty := sparseMolecule(7, 3)
	empty.Freqs = []float64{} // empty, not null
	allNaN := sparseMolecule(8, 2)
	for k := range allNaN.Props {
		allNaN.Props[k] = math.NaN()
	}
	inf := synthMolecule(9, 4)
	inf.Props[3] = math.Inf(1)
	var many []molecule.Molecule
	for i := range 2*BatchRows + 5 {
		if i%5 == 0 {
			many = append(many, sparseMolecule(int64(i+1), 1+i%molecule.MaxAtoms))
		} else {
			many = append(many, synthMolecule(int64(i+1), 1+i%molecule.MaxAtoms))
		}
	}
	tests := []struct {
		name string
		ms   []molecule.Molecule
	}{
		{"empty table", nil},
		{"one atom", []molecule.Molecule{synthMolecule(1, 1)}},
		{"29 atoms", []molecule.Molecule{synthMolecule(133885, molecule.MaxAtoms)}},
		{"nulls and NaN", []molecule.Molecule{sparseMolecule(2, 5), allNaN, inf}},
		{"empty optional fields", []molecule.Molecule{empty, synthMolecule(10, 2)}},
		{"several batches", many},
	}
	for _, ext := range formats {
		for _, tc := range tests {
			t.Run(ext+"/"+tc.name, func(t *testing.T) {
				checkedMem(t)
				path := tempPath(t, "qm9"+ext)
				writeMolecules(t, path, tc.ms)
				got, err := ReadMolecules(path)
				if err != nil {
					t.Fatal(err)
				}
				if len(got) != len(tc.ms) {
					t.Fatalf("read %d molecules, want %d", len(got), len(tc.ms))
				}
				for i := range got {
					if d := diffMolecule(&got[i], &tc.ms[i]); d != "" {
						t.Fatalf("row %d (id %d): %s", i, tc.ms[i].ID, d)
					}
				}
				if entries := dirEntries(t, filepath.Dir(path)); len(entries) != 1 {
					t.Errorf("directory holds %v, want only the table", entries)
				}
			})
		}
	}
}

func TestConfigRoundTrip(t *testing.T) {
	nanEnergy := synthConfig(3, particles.DW4)
	nanEnergy.Energy = math.NaN()
	noSplit := synthConfig(4, particles.LJ13)
	noSplit.Split = ""
	var many []particles.Config
	for i := range BatchRows + 100 {
		many = append(many, synthConfig(int64(i), particles.LJ13))
	}
	tests := []struct {
		name string
		cs   []particles.Config
	}{
		{"empty table", nil},
		{"dw4", []particles.Config{synthConfig(0, particles.DW4), synthConfig(1, particles.DW4)}},
		{"lj13", []particles.Config{synthConfig(0, particles.LJ13)}},
		{"NaN energy and empty split", []particles.Config{nanEnergy, noSplit}},
		{"several batches", many},
	}
	for _, ext := range formats {
		for _, tc := range tests {
			t.Run(ext+"/"+tc.name, func(t *testing.T) {
				checkedMem(t)
				path := tempPath(t, "conf"+ext)
				writeConfigs(t, path, tc.cs)
				got, err := ReadConfigs(path)
				if err != nil {
					t.Fatal(err)
				}
				if len(got) != len(tc.cs) {
					t.Fatalf("read %d configs, want %d", len(got), len(tc.cs))
				}
				for i := range got {
					g, w := got[i], tc.cs[i]
					if g.ID != w.ID || g.Split != w.Split || g.System != w.System || !sameFloat(g.Energy, w.Energy) || !sameFloats(g.Positions, w.Positions) {
						t.Fatalf("row %d: got %+v, want %+v", i, g, w)
					}
				}
			})
		}
	}
}

func TestConfigSystemCanonical(t *testing.T) {
	c := synthConfig(1, particles.DW4)
	c.System = "DW4"
	path := tempPath(t, "c.parquet")
	writeConfigs(t, path, []particles.Config{c})
	got, err := ReadConfigs(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].System != "dw4" {
		t.Fatalf("got %+v, want system stored as canonical \"dw4\"", got)
	}
}

func TestWriteRejectsInvalid(t *testing.T) {
	noAtoms := synthMolecule(101, 2)
	noAtoms.Z, noAtoms.Positions = nil, nil
	badZ := synthMolecule(102, 2)
	badZ.Z[1] = molecule.MaxZ + 1
	nanPos := synthMolecule(103, 3)
	nanPos.Positions[2][1] = math.NaN()
	short := synthMolecule(104, 3)
	short.Positions = short.Positions[:2]
	badMull := synthMolecule(105, 3)
	badMull.Mulliken = badMull.Mulliken[:1]
	tooMany := synthMolecule(106, molecule.MaxMoleculeAtoms+1)
	molTests := []struct {
		name string
		m    *molecule.Molecule
		want string
	}{
		{"nil", nil, "nil molecule"},
		{"no atoms", &noAtoms, "molecule 101"},
		{"unknown element", &badZ, "molecule 102"},
		{"NaN coordinate", &nanPos, "molecule 103"},
		{"positions length", &short, "molecule 104"},
		{"mulliken length", &badMull, "molecule 105"},
		{"too many atoms", &tooMany, "molecule 106"},
	}
	badSys := synthConfig(201, particles.DW4)
	badSys.System = "lj55"
	badLen := synthConfig(202, particles.DW4)
	badLen.Positions = badLen.Positions[:5]
	infPos := synthConfig(203, particles.LJ13)
	infPos.Positions[4] = math.Inf(-1)
	confTests := []struct {
		name string
		c    *particles.Config
		want string
	}{
		{"nil", nil, "nil configuration"},
		{"unknown system", &badSys, "configuration 201"},
		{"positions length", &badLen, "configuration 202"},
		{"infinite coordinate", &infPos, "configuration 203"},
	}
	for _, ext := range formats {
		t.Run(ext+"/molecules", func(t *testing.T) {
			path := tempPath(t, "m"+ext)
			w, err := NewMoleculeWriter(path)
			if err != nil {
				t.Fatal(err)
			}
			defer w.Abort()
			good := synthMolecule(1, 3)
			for _, tc := range molTests {
				err := w.Write(tc.m)
				if err == nil || !strings.Contains(err.Error(), tc.want) {
					t.Errorf("%s: Write error %v, want one containing %q", tc.name, err, tc.want)
				}
				if err := w.Write(&good); err != nil {
					t.Fatalf("%s: writer unusable after a rejected row: %v", tc.name, err)
				}
			}
			if err := w.Commit(); err != nil {
				t.Fatal(err)
			}
			got, err := ReadMolecules(path)
			if err != nil || len(got) != len(molTests) {
				t.Fatalf("read %d molecules (err %v), want %d valid ones", len(got), err, len(molTests))
			}
		})
		t.Run(ext+"/configs", func(t *testing.T) {
			path := tempPath(t, "c"+ext)
			w, err := NewConfigWriter(path)
			if err != nil {
				t.Fatal(err)
			}
			defer w.Abort()
			for _, tc := range confTests {
				err := w.Write(tc.c)
				if err == nil || !strings.Contains(err.Error(), tc.want) {
					t.Errorf("%s: Write error %v, want one containing %q", tc.name, err, tc.want)
				}
			}
			if err := w.Commit(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestWriterLifecycle(t *testing.T) {
	for _, ext := range formats {
		t.Run(ext, func(t *testing.T) {
			path := tempPath(t, "m"+ext)
			w, err := NewMoleculeWriter(path)
			if err != nil {
				t.Fatal(err)
			}
			m := synthMolecule(1, 2)
			if err := w.Write(&m); err != nil {
				t.Fatal(err)
			}
			if err := w.Commit(); err != nil {
				t.Fatal(err)
			}
			if err := w.Write(&m); err == nil {
				t.Error("Write after Commit succeeded")
			}
			if err := w.Commit(); err == nil {
				t.Error("second Commit succeeded")
			}
			w.Abort() // no-op after Commit: the file must stay
			if _, err := ReadMolecules(path); err != nil {
				t.Errorf("file damaged by Abort after Commit: %v", err)
			}
		})
	}
	if _, err := NewMoleculeWriter(tempPath(t, "m.csv")); err == nil {
		t.Error("NewMoleculeWriter accepted a .csv path")
	}
}

func TestAbortLeavesNothing(t *testing.T) {
	type writer interface {
		Commit() error
		Abort()
	}
	tests := []struct {
		name string
		open func(path string) (writer, error)
		fill func(w writer) error
	}{
		{"molecules", func(p string) (writer, error) { return NewMoleculeWriter(p) }, func(w writer) error {
			for i := range BatchRows + 10 { // at least one batch already on disk
				m := synthMolecule(int64(i), 3)
				if err := w.(*MoleculeWriter).Write(&m); err != nil {
					return err
				}
			}
			return nil
		}},
		{"configs", func(p string) (writer, error) { return NewConfigWriter(p) }, func(w writer) error {
			c := synthConfig(1, particles.DW4)
			return w.(*ConfigWriter).Write(&c)
		}},
		{"rows", func(p string) (writer, error) {
			return NewRowWriter(p, []Col{{"a", Int64}}, nil)
		}, func(w writer) error { return w.(*RowWriter).Append(1) }},
	}
	for _, ext := range formats {
		for _, tc := range tests {
			t.Run(ext+"/"+tc.name, func(t *testing.T) {
				checkedMem(t)
				dir := t.TempDir()
				path := filepath.Join(dir, "t"+ext)
				w, err := tc.open(path)
				if err != nil {
					t.Fatal(err)
				}
				if err := tc.fill(w); err != nil {
					t.Fatal(err)
				}
				w.Abort()
				w.Abort() // idempotent
				if names := dirEntries(t, dir); len(names) != 0 {
					t.Fatalf("after Abort the directory holds %v", names)
				}
				if err := w.Commit(); err == nil {
					t.Error("Commit after Abort succeeded")
				}
				if names := dirEntries(t, dir); len(names) != 0 {
					t.Fatalf("after Commit-after-Abort the directory holds %v", names)
				}
			})
		}
	}
	t.Run("keeps previous file", func(t *testing.T) {
		path := tempPath(t, "m.parquet")
		old := []molecule.Molecule{synthMolecule(1, 2)}
		writeMolecules(t, path, old)
		w, err := NewMoleculeWriter(path)
		if err != nil {
			t.Fatal(err)
		}
		m := synthMolecule(2, 3)
		if err := w.Write(&m); err != nil {
			t.Fatal(err)
		}
		w.Abort()
		got, err := ReadMolecules(path)
		if err != nil || len(got) != 1 || got[0].ID != 1 {
			t.Fatalf("previous file not intact: %d molecules, err %v", len(got), err)
		}
	})
}

func TestScanMoleculesBatches(t *testing.T) {
	const n = 3*BatchRows + 123
	ms := make([]molecule.Molecule, n)
	for i := range ms {
		ms[i] = synthMolecule(int64(i+1), 1+i%molecule.MaxAtoms)
	}
	dir := t.TempDir()
	errStop := errors.New("stop")
	tests := []struct {
		batch     int
		stopAfter int // calls; 0: scan everything
	}{
		{batch: 0}, {batch: 1}, {batch: 3, stopAfter: 300}, {batch: 7}, {batch: 1000}, {batch: BatchRows},
		{batch: 5000}, {batch: 2 * n},
	}
	for _, ext := range formats {
		path := filepath.Join(dir, "m"+ext)
		writeMolecules(t, path, ms)
		for _, tc := range tests {
			t.Run(ext+"/batch="+strconv.Itoa(tc.batch), func(t *testing.T) {
				checkedMem(t)
				limit := tc.batch
				if limit <= 0 {
					limit = BatchRows
				}
				var next, calls int
				err := ScanMolecules(path, tc.batch, func(got []molecule.Molecule) error {
					calls++
					if len(got) == 0 || len(got) > limit {
						t.Fatalf("call %d: %d molecules, want 1..%d", calls, len(got), limit)
					}
					for i := range got {
						if d := diffMolecule(&got[i], &ms[next]); d != "" {
							t.Fatalf("row %d: %s", next, d)
						}
						next++
					}
					if calls == tc.stopAfter {
						return errStop
					}
					return nil
				})
				switch {
				case tc.stopAfter > 0:
					if !errors.Is(err, errStop) || calls != tc.stopAfter {
						t.Fatalf("err %v after %d calls, want the callback's error after %d", err, calls, tc.stopAfter)
					}
				case err != nil:
					t.Fatal(err)
				case next != n:
					t.Fatalf("scanned %d molecules, want %d", next, n)
				case calls < (n+limit-1)/limit:
					t.Fatalf("%d calls for %d rows in batches of %d", calls, n, limit)
				}
			})
		}
	}
}

// TestScanMoleculesMemoryBounded checks that the Arrow memory held while scanning does not
// grow with the file: the peak during the callbacks is the same for a file of 2 and of 8
// row groups, and well below the size of the whole table.
func TestScanMoleculesMemoryBounded(t *testing.T) {
	dir := t.TempDir()
	mk := func(n int) []molecule.Molecule {
		ms := make([]molecule.Molecule, n)
		for i := range ms {
			ms[i] = synthMolecule(int64(i+1), 1+i%molecule.MaxAtoms)
		}
		return ms
	}
	small, big := mk(2*BatchRows), mk(8*BatchRows)
	bigArrow := filepath.Join(dir, "big.arrow")
	writeMolecules(t, bigArrow, big)
	st, err := os.Stat(bigArrow)
	if err != nil {
		t.Fatal(err)
	}
	whole := int(st.Size()) // uncompressed IPC ≈ the table's size in memory
	for _, ext := range formats {
		t.Run(ext, func(t *testing.T) {
			peak := func(ms []molecule.Molecule, name string) int {
				path := filepath.Join(dir, name+ext)
				if _, err := os.Stat(path); err != nil {
					writeMolecules(t, path, ms)
				}
				ca := memory.NewCheckedAllocator(memory.NewGoAllocator())
				prev := mem
				mem = ca
				defer func() { mem = prev }()
				p, rows := 0, 0
				err := ScanMolecules(path, 500, func(got []molecule.Molecule) error {
					p = max(p, ca.CurrentAlloc())
					rows += len(got)
					return nil
				})
				if err != nil || rows != len(ms) {
					t.Fatalf("scan %s: %d rows, err %v", path, rows, err)
				}
				ca.AssertSize(t, 0)
				return p
			}
			ps, pb := peak(small, "small"), peak(big, "big")
			t.Logf("peak Arrow memory: %d KiB (2 row groups), %d KiB (8 row groups); whole table %d KiB", ps>>10, pb>>10, whole>>10)
			if pb > ps+ps/4 {
				t.Errorf("peak grows with the file: %d KiB for 4× the rows vs %d KiB", pb>>10, ps>>10)
			}
			if pb > whole/3 {
				t.Errorf("peak %d KiB is not small against the whole table (%d KiB)", pb>>10, whole>>10)
			}
		})
	}
}

func TestLargeRoundTrip(t *testing.T) {
	const n = 20000
	ms := make([]molecule.Molecule, n)
	for i := range ms {
		ms[i] = synthMolecule(int64(i+1), 1+(i*7)%molecule.MaxAtoms)
	}
	for _, ext := range formats {
		t.Run(ext, func(t *testing.T) {
			path := tempPath(t, "qm9"+ext)
			start := time.Now()
			writeMolecules(t, path, ms)
			wrote := time.Since(start)
			got, err := ReadMolecules(path)
			if err != nil {
				t.Fatal(err)
			}
			read := time.Since(start) - wrote
			if len(got) != n {
				t.Fatalf("read %d molecules, want %d", len(got), n)
			}
			for i := range got {
				if d := diffMolecule(&got[i], &ms[i]); d != "" {
					t.Fatalf("row %d: %s", i, d)
				}
			}
			st, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%d molecules: write %v, read %v, %.1f MiB", n, wrote, read, float64(st.Size())/(1<<20))
			if wrote+read > 10*time.Second {
				t.Errorf("round trip of %d molecules took %v, want < 10 s", n, wrote+read)
			}
		})
	}
}

// TestMoleculeGeneralElementsAndOptionalColumns writes molecules outside QM9 (S, Cl, Xe, more
// than 29 atoms) with formal charges, bonds and properties, and reads them back unchanged;
// invalid optional fields are rejected.
func TestMoleculeGeneralElementsAndOptionalColumns(t *testing.T) {
	big := synthMolecule(2, 40)
	for i := range big.Z {
		big.Z[i] = 6
	}
	small := synthMolecule(1, 3)
	small.Z = []int{16, 17, 54}
	small.Name = "thio chloride"
	small.Source = "a.sdf#1"
	small.FormalCharges = []int{0, -1, 1}
	small.Bonds = []molecule.Bond{{A: 0, B: 1, Order: 1}, {A: 1, B: 2, Order: 2}}
	small.Properties = map[string]any{"energy": -1.25, "tag": "x y"}
	for _, ext := range []string{"parquet", "arrow"} {
		t.Run(ext, func(t *testing.T) {
			path := tempPath(t, "general."+ext)
			writeMolecules(t, path, []molecule.Molecule{small, big})
			got, err := ReadMolecules(path)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != 2 {
				t.Fatalf("%d molecules, want 2", len(got))
			}
			for k, want := range []molecule.Molecule{small, big} {
				if !reflect.DeepEqual(got[k].Z, want.Z) || !reflect.DeepEqual(got[k].Positions, want.Positions) ||
					!reflect.DeepEqual(got[k].FormalCharges, want.FormalCharges) || !reflect.DeepEqual(got[k].Bonds, want.Bonds) ||
					!reflect.DeepEqual(got[k].Properties, want.Properties) || got[k].Name != want.Name || got[k].Source != want.Source {
					t.Errorf("molecule %d read back as %+v, want %+v", k, got[k], want)
				}
			}
		})
	}
	bad := []struct {
		name string
		edit func(m *molecule.Molecule)
		want string
	}{
		{"z 119", func(m *molecule.Molecule) { m.Z[0] = 119 }, "unknown atomic number 119"},
		{"charges length", func(m *molecule.Molecule) { m.FormalCharges = []int{1} }, "field formal_charges"},
		{"bond atom", func(m *molecule.Molecule) { m.Bonds = []molecule.Bond{{A: 0, B: 3, Order: 1}} }, "field bonds"},
		{"bond order", func(m *molecule.Molecule) { m.Bonds = []molecule.Bond{{A: 0, B: 1, Order: 0}} }, "order 0"},
		{"NaN property", func(m *molecule.Molecule) { m.Properties = map[string]any{"e": math.NaN()} }, "non-finite"},
		{"too many atoms", func(m *molecule.Molecule) { *m = synthMolecule(1, molecule.MaxMoleculeAtoms+1) }, "more than 4096"},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			m := synthMolecule(1, 3)
			tc.edit(&m)
			err := m.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Validate = %v, want error containing %q", err, tc.want)
			}
		})
	}
}
