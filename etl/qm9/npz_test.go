package qm9

import (
	"archive/zip"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/sbinet/npyio/npz"

	"github.com/enflow/enflow/etl/molecule"
)

func TestReadNPZRealTestSplit(t *testing.T) {
	mols := testSplitMolecules(t)
	if len(mols) != 13083 {
		t.Fatalf("%d molecules, want 13083", len(mols))
	}
	atoms := 0
	perZ := map[int]int{}
	ids := make([]int64, len(mols))
	positional := 0
	for i := range mols {
		m := &mols[i]
		if err := m.ValidateQM9(); err != nil {
			t.Fatal(err)
		}
		if m.Split != Test {
			t.Fatalf("molecule %d split %q", m.ID, m.Split)
		}
		if math.IsNaN(m.Omega1) || m.Omega1 <= 0 || m.Props[9] <= 0 {
			t.Fatalf("molecule %d omega1 %v zpve %v", m.ID, m.Omega1, m.Props[9])
		}
		atoms += m.NAtoms()
		for _, z := range m.Z {
			perZ[z]++
		}
		ids[i] = m.ID
		if IsPositional(m) {
			positional++
		}
	}
	if atoms != 235883 {
		t.Errorf("%d atoms, want 235883", atoms)
	}
	want := map[int]int{1: 120847, 6: 83118, 7: 13297, 8: 18289, 9: 332}
	for z, n := range want {
		if perZ[z] != n {
			t.Errorf("Z=%d: %d atoms, want %d", z, perZ[z], n)
		}
	}
	if !slices.IsSorted(ids) {
		t.Error("npz rows are not sorted by id")
	}
	published := readIDList(t, sharedFile(t, "qm9/cormorant_split_test_gdb_ids.txt"))
	slices.Sort(published)
	if !slices.Equal(ids, published) {
		t.Error("npz ids differ from the published test split")
	}
	if positional != 1813 || len(FilterPositional(mols)) != 1813 {
		t.Errorf("%d positional molecules, want 1813", positional)
	}
}

// npzArrays renders molecules as the Cormorant npz arrays (keys with the .npy suffix).
func npzArrays(mols []molecule.Molecule) map[string]any {
	n := len(mols)
	numAtoms := make([]int64, n)
	index := make([]int64, n)
	charges := make([][molecule.MaxAtoms]int64, n)
	positions := make([][molecule.MaxAtoms][3]float32, n)
	props := make([][]float32, molecule.NumProperties)
	for k := range props {
		props[k] = make([]float32, n)
	}
	omega1 := make([]float32, n)
	thermo := make([]float64, n)
	for i, m := range mols {
		numAtoms[i] = int64(m.NAtoms())
		index[i] = m.ID
		for j, z := range m.Z {
			charges[i][j] = int64(z)
			for k := range 3 {
				positions[i][j][k] = float32(m.Positions[j][k])
			}
		}
		for k := range props {
			props[k][i] = float32(m.Props[k])
		}
		omega1[i] = float32(m.Omega1)
	}
	arrays := map[string]any{
		"num_atoms.npy": numAtoms,
		"index.npy":     index,
		"charges.npy":   charges,
		"positions.npy": positions,
		"omega1.npy":    omega1,
		"U0_thermo.npy": thermo,
	}
	for k, name := range molecule.PropertyNames {
		arrays[name+".npy"] = props[k]
	}
	return arrays
}

func writeNPZ(t *testing.T, path string, arrays map[string]any) {
	t.Helper()
	if err := npz.Write(path, arrays); err != nil {
		t.Fatal(err)
	}
}

// writeZipEntries writes a zip whose entries hold raw bytes (for malformed npy members).
func writeZipEntries(t *testing.T, path string, entries map[string][]byte) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	zw := zip.NewWriter(f)
	for name, data := range entries {
		w, err := zw.Create(name)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write(data); err != nil {
			t.Fatal(err)
		}
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestReadNPZRoundTrip(t *testing.T) {
	mols := testSplitMolecules(t)[:300]
	path := filepath.Join(t.TempDir(), "valid.npz")
	writeNPZ(t, path, npzArrays(mols))
	got, err := ReadNPZ(path, SplitFromFileName(path))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(mols) {
		t.Fatalf("%d molecules, want %d", len(got), len(mols))
	}
	for i := range mols {
		a, b := &mols[i], &got[i]
		if a.ID != b.ID || !slices.Equal(a.Z, b.Z) || !slices.Equal(a.Positions, b.Positions) || a.Props != b.Props || a.Omega1 != b.Omega1 {
			t.Fatalf("record %d differs: %+v vs %+v", i, a, b)
		}
		if b.Split != Valid {
			t.Fatalf("split %q", b.Split)
		}
	}
}

func TestReadNPZErrors(t *testing.T) {
	base := testSplitMolecules(t)[:20]
	type mutate func(map[string]any)
	setCharge := func(row, atom int, z int64) mutate {
		return func(a map[string]any) { a["charges.npy"].([][molecule.MaxAtoms]int64)[row][atom] = z }
	}
	tests := []struct {
		name string
		edit mutate
		want []string // substrings of the error
	}{
		{"missing omega1", func(a map[string]any) { delete(a, "omega1.npy") }, []string{"key omega1", "missing"}},
		{"missing positions", func(a map[string]any) { delete(a, "positions.npy") }, []string{"key positions", "missing"}},
		{"charges as float", func(a map[string]any) {
			a["charges.npy"] = make([][molecule.MaxAtoms]float32, len(base))
		}, []string{"key charges", "dtype <f4, want an integer dtype"}},
		{"positions as int", func(a map[string]any) {
			a["positions.npy"] = make([][molecule.MaxAtoms][3]int64, len(base))
		}, []string{"key positions", "dtype <i8, want a float dtype"}},
		{"positions 2-D coordinates", func(a map[string]any) {
			a["positions.npy"] = make([][molecule.MaxAtoms][2]float32, len(base))
		}, []string{"key positions", "shape [20 29 2], want (20, 29, 3)"}},
		{"charges one row short", func(a map[string]any) {
			a["charges.npy"] = a["charges.npy"].([][molecule.MaxAtoms]int64)[1:]
		}, []string{"key charges", "shape [19 29]"}},
		{"property one row short", func(a map[string]any) { a["homo.npy"] = a["homo.npy"].([]float32)[1:] }, []string{"key homo", "want (20,)"}},
		{"index 2-D", func(a map[string]any) { a["index.npy"] = make([][1]int64, len(base)) }, []string{"key index", "shape [20 1]"}},
		{"num_atoms too large", func(a map[string]any) { a["num_atoms.npy"].([]int64)[5]++ }, []string{"key charges", "record 5 (id ", "non-zero"}},
		{"num_atoms too small", func(a map[string]any) { a["num_atoms.npy"].([]int64)[6]-- }, []string{"key charges", "record 6 (id "}},
		{"num_atoms zero", func(a map[string]any) { a["num_atoms.npy"].([]int64)[2] = 0 }, []string{"key num_atoms", "record 2", "0 atoms"}},
		{"num_atoms over width", func(a map[string]any) { a["num_atoms.npy"].([]int64)[2] = 30 }, []string{"key num_atoms", "record 2", "30 atoms"}},
		{"unknown atomic number", setCharge(3, 0, 17), []string{"key charges", "record 3", "unknown atomic number 17"}},
		{"negative atomic number", setCharge(4, 1, -6), []string{"key charges", "record 4", "unknown atomic number -6"}},
		{"NaN position", func(a map[string]any) {
			a["positions.npy"].([][molecule.MaxAtoms][3]float32)[7][2][1] = float32(math.NaN())
		}, []string{"key positions", "record 7", "atom 2", "non-finite coordinate y"}},
		{"duplicate id", func(a map[string]any) {
			ix := a["index.npy"].([]int64)
			ix[9] = ix[8]
		}, []string{"key index", "record 9", "repeated (first in record 8)"}},
		{"negative id", func(a map[string]any) { a["index.npy"].([]int64)[1] = -4 }, []string{"key index", "record 1", "positive"}},
	}
	dir := t.TempDir()
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			arrays := npzArrays(base)
			tc.edit(arrays)
			path := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "_")+".npz")
			writeNPZ(t, path, arrays)
			_, err := ReadNPZ(path, Test)
			if err == nil {
				t.Fatal("no error")
			}
			msg := err.Error()
			for _, w := range append(tc.want, filepath.Base(path)) {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q does not contain %q", msg, w)
				}
			}
		})
	}
}

func TestReadNPZMalformedFiles(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.npz")
	writeNPZ(t, good, npzArrays(testSplitMolecules(t)[:5]))
	data, err := os.ReadFile(good)
	if err != nil {
		t.Fatal(err)
	}
	header := func(descr, shape string) []byte {
		dict := "{'descr': '" + descr + "', 'fortran_order': False, 'shape': " + shape + ", }"
		for (10+len(dict)+1)%16 != 0 {
			dict += " "
		}
		dict += "\n"
		return append([]byte{0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, byte(len(dict)), byte(len(dict) >> 8)}, dict...)
	}
	tests := []struct {
		name  string
		write func(path string)
		want  string
	}{
		{"not a zip", func(p string) { os.WriteFile(p, []byte("hello"), 0o644) }, "zip"},
		{"truncated zip", func(p string) { os.WriteFile(p, data[:len(data)/2], 0o644) }, "zip"},
		{"missing file", func(p string) {}, "no such file"},
		{"header without newline", func(p string) {
			writeZipEntries(t, p, map[string][]byte{"num_atoms.npy": {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, 4, 0, 'a', 'b', 'c', 'd'}})
		}, "key num_atoms: malformed npy header"},
		{"not npy", func(p string) {
			writeZipEntries(t, p, map[string][]byte{"num_atoms.npy": []byte("PK not numpy at all")})
		}, "key num_atoms: npy: not a valid NumPy file format"},
		{"data truncated", func(p string) {
			writeZipEntries(t, p, map[string][]byte{"num_atoms.npy": append(header("<i8", "(5,)"), make([]byte, 12)...)})
		}, "key num_atoms: data truncated"},
		{"string dtype", func(p string) {
			writeZipEntries(t, p, map[string][]byte{"num_atoms.npy": append(header("<U3", "(1,)"), make([]byte, 12)...)})
		}, "key num_atoms: dtype <U3"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "_")+".npz")
			tc.write(p)
			_, err := ReadNPZ(p, "")
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), filepath.Base(p)) {
				t.Errorf("error %v, want one containing %q and the file name", err, tc.want)
			}
		})
	}
}

func TestReadNPZOtherDtypes(t *testing.T) {
	mols := testSplitMolecules(t)[:3]
	arrays := npzArrays(mols)
	// Narrow integer and float64 dtypes are accepted.
	na := arrays["num_atoms.npy"].([]int64)
	narrow := make([]uint8, len(na))
	for i, v := range na {
		narrow[i] = uint8(v)
	}
	arrays["num_atoms.npy"] = narrow
	om := arrays["omega1.npy"].([]float32)
	wide := make([]float64, len(om))
	for i, v := range om {
		wide[i] = float64(v)
	}
	arrays["omega1.npy"] = wide
	path := filepath.Join(t.TempDir(), "x.npz")
	writeNPZ(t, path, arrays)
	got, err := ReadNPZ(path, "")
	if err != nil {
		t.Fatal(err)
	}
	if got[2].NAtoms() != mols[2].NAtoms() || got[2].Omega1 != mols[2].Omega1 {
		t.Errorf("decoded %d atoms omega1 %v", got[2].NAtoms(), got[2].Omega1)
	}
	for _, d := range []string{"<i8", ">f4", "|u1", "=f8"} {
		if _, _, _, err := parseDtype(d); err != nil {
			t.Errorf("parseDtype(%q): %v", d, err)
		}
	}
	for _, d := range []string{"", "<", "<fx", "O"} {
		if _, _, _, err := parseDtype(d); err == nil {
			t.Errorf("parseDtype(%q): want error", d)
		}
	}
}

func TestSplitFromFileName(t *testing.T) {
	tests := map[string]string{
		"train.npz":                   Train,
		"/data/qm9/valid.npz":         Valid,
		"qm9_val.npz":                 Valid,
		"cormorant_qm9_test.npz":      Test,
		"QM9-Train-2024.npz":          Train,
		"testing.npz":                 "",
		"train_test.npz":              "",
		"test_test.npz":               Test,
		"molecules.npz":               "",
		"/tmp/test/train_subset.npz":  Train,
		"contest.npz":                 "",
		"qm9_validation_shard_01.npz": Valid,
	}
	for in, want := range tests {
		if got := SplitFromFileName(in); got != want {
			t.Errorf("SplitFromFileName(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestReadArrayBigEndian(t *testing.T) {
	dict := "{'descr': '>f4', 'fortran_order': False, 'shape': (2,), }"
	for (10+len(dict)+1)%16 != 0 {
		dict += " "
	}
	dict += "\n"
	data := append([]byte{0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, byte(len(dict)), 0}, dict...)
	data = append(data, 0x3f, 0xc0, 0, 0, 0xc0, 0x20, 0, 0) // 1.5, -2.5 big-endian
	path := filepath.Join(t.TempDir(), "be.npz")
	writeZipEntries(t, path, map[string][]byte{"omega1.npy": data})
	r, err := npz.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	a, err := readArray(r, "omega1", kindFloat)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(a.floats, []float64{1.5, -2.5}) {
		t.Errorf("decoded %v, want [1.5 -2.5]", a.floats)
	}
	if _, err := readArray(r, "omega1", kindInt); err == nil || !strings.Contains(err.Error(), "dtype >f4") {
		t.Errorf("float read as int: %v", err)
	}
}
