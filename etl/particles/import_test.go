package particles

import (
	"errors"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/enflow/enflow/etl/npy"
	"github.com/enflow/enflow/internal/shared"
)

// checkConfigs verifies split name, system, mean-freeness and energies of cs.
func checkConfigs(t *testing.T, sys System, split string, cs []Config) {
	t.Helper()
	for i, c := range cs {
		if c.Split != split || c.System != sys.Name || len(c.Positions) != sys.Flat() {
			t.Fatalf("%s[%d]: split %q system %q %d coordinates", split, i, c.Split, c.System, len(c.Positions))
		}
		for k := range sys.Dim {
			m := 0.0
			for p := range sys.Particles {
				m += c.Positions[p*sys.Dim+k]
			}
			if math.Abs(m) > 1e-9 {
				t.Fatalf("%s[%d] not mean-free: dim %d sums to %v", split, i, k, m)
			}
		}
		if e, _ := sys.Energy(c.Positions); e != c.Energy {
			t.Fatalf("%s[%d]: energy %v, recomputed %v", split, i, c.Energy, e)
		}
	}
}

func ids(cs []Config) []int64 {
	out := make([]int64, len(cs))
	for i, c := range cs {
		out[i] = c.ID
	}
	return out
}

func TestImportShipped(t *testing.T) {
	tests := []struct {
		sys        System
		dir        string
		layout     string
		counts     [3]int // train, val, test
		meanEnergy float64
	}{
		{DW4, "dw4", LayoutSplitFiles, [3]int{100000, 10000, 10000}, refMeanDW4},
		{LJ13, "lj13", LayoutLJ13DEM, [3]int{10000, 1000, 1000}, refMeanLJ13},
	}
	for _, tc := range tests {
		t.Run(tc.sys.Name, func(t *testing.T) {
			dir := shared.Require(t, "data", tc.dir)
			d, err := Import(tc.sys, []string{dir})
			if err != nil {
				t.Fatal(err)
			}
			if d.Layout != tc.layout {
				t.Fatalf("layout %q, want %q", d.Layout, tc.layout)
			}
			for i, name := range SplitNames {
				cs := d.Split(name)
				if len(cs) != tc.counts[i] {
					t.Fatalf("%s has %d rows, want %d", name, len(cs), tc.counts[i])
				}
				checkConfigs(t, tc.sys, name, cs)
				m := MeanEnergy(cs)
				t.Logf("%s %s: %d rows from %s, mean energy %.4f", tc.sys.Name, name, len(cs), d.Sources[name], m)
				// 1000-row splits have a standard error of ≈ 0.13 (LJ13); allow 0.3 there.
				tol := 0.05
				if len(cs) <= EvalRows {
					tol = 0.3
				}
				if math.Abs(m-tc.meanEnergy) > tol {
					t.Errorf("%s mean energy %.4f, want %.2f ± %.2f", name, m, tc.meanEnergy, tol)
				}
			}
		})
	}
}

func TestImportShippedLJ13Mapping(t *testing.T) {
	dir := shared.Require(t, "data", "lj13")
	d, err := Import(LJ13, []string{dir})
	if err != nil {
		t.Fatal(err)
	}
	// idx_LJ13 starts 83633, 64140, 44688, 87155, 12590, 56582, 56852, 18292, 6303, 5276: the
	// first entries below 10,000 are 6303 and 5276.
	if got := ids(d.Train[:2]); !slices.Equal(got, []int64{6303, 5276}) {
		t.Errorf("train starts with rows %v, want [6303 5276]", got)
	}
	sorted := slices.Sorted(slices.Values(ids(d.Train)))
	for i, v := range sorted {
		if v != int64(i) {
			t.Fatalf("train rows are not a permutation of the DEM val file: sorted[%d] = %d", i, v)
		}
	}
	want := make([]int64, EvalRows)
	for i := range want {
		want[i] = int64(i)
	}
	if !slices.Equal(ids(d.Test), want) {
		t.Error("test is not DEM test rows 0..999 in order")
	}
	if d.Val[0].ID != 1000 || d.Val[999].ID != 1999 {
		t.Errorf("val rows %d..%d, want 1000..1999", d.Val[0].ID, d.Val[999].ID)
	}
	if !strings.Contains(d.Sources[SplitTrain], "DEM_val_split_LJ13-1000.npy") || !strings.Contains(d.Sources[SplitTest], "DEM_test_split_LJ13-1000.npy") {
		t.Errorf("sources %v", d.Sources)
	}
}

// writeRows writes n random rows of sys to path with the given trailing shape.
func writeRows(t *testing.T, path string, n int, shape []int, seed uint64, poison bool) [][]float64 {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, 0))
	f := 1
	for _, d := range shape {
		f *= d
	}
	data := make([]float32, n*f)
	rows := make([][]float64, n)
	for r := range n {
		rows[r] = make([]float64, f)
		for k := range f {
			v := float32(3 + 2*rng.NormFloat64() + float64(k)) // spread out, not centred
			data[r*f+k] = v
			rows[r][k] = float64(v)
		}
	}
	if poison {
		data[len(data)/2] = float32(math.NaN())
	}
	if err := npy.Write(path, data, append([]int{n}, shape...)...); err != nil {
		t.Fatal(err)
	}
	return rows
}

func TestImportLayouts(t *testing.T) {
	type want struct {
		layout     string
		train      [2]int64 // first and last source row
		nTrain     int
		val, test  [2]int64
		nVal, nTst int
	}
	tests := []struct {
		name  string
		sys   System
		setup func(t *testing.T, dir string) []string
		want  want
	}{
		{"dw4 single file", DW4, func(t *testing.T, dir string) []string {
			writeRows(t, filepath.Join(dir, "dw4-data.npy"), 2500, []int{8}, 1, false)
			return []string{dir}
		}, want{LayoutSingleFile, [2]int64{0, 499}, 500, [2]int64{500, 1499}, [2]int64{1500, 2499}, 1000, 1000}},
		{"lj13 single file 3-D", LJ13, func(t *testing.T, dir string) []string {
			p := filepath.Join(dir, "samples.npy")
			writeRows(t, p, 2300, []int{13, 3}, 2, false)
			return []string{p}
		}, want{LayoutSingleFile, [2]int64{2000, 2299}, 300, [2]int64{1000, 1999}, [2]int64{0, 999}, 1000, 1000}},
		{"split files, other system skipped", DW4, func(t *testing.T, dir string) []string {
			writeRows(t, filepath.Join(dir, "a_train_split_DW4.npy"), 30, []int{8}, 3, false)
			writeRows(t, filepath.Join(dir, "a_val_split_DW4.npy"), 20, []int{8}, 4, false)
			writeRows(t, filepath.Join(dir, "a_test_split_DW4.npy"), 10, []int{8}, 5, false)
			writeRows(t, filepath.Join(dir, "a_test_split_LJ13.npy"), 10, []int{39}, 5, false)
			return []string{dir}
		}, want{LayoutSplitFiles, [2]int64{0, 29}, 30, [2]int64{0, 19}, [2]int64{0, 9}, 20, 10}},
		{"lj13 original layout", LJ13, func(t *testing.T, dir string) []string {
			writeRows(t, filepath.Join(dir, "all_data_LJ13.npy"), 2100, []int{39}, 6, false)
			writeRows(t, filepath.Join(dir, "holdout_data_LJ13.npy"), 5, []int{39}, 7, false)
			if err := npy.Write(filepath.Join(dir, "idx_LJ13.npy"), []int64{3, 0, 4, 2, 1}); err != nil {
				t.Fatal(err)
			}
			return []string{dir}
		}, want{LayoutLJ13Original, [2]int64{3, 1}, 5, [2]int64{1000, 1999}, [2]int64{0, 999}, 1000, 1000}},
		{"lj13 DEM val/test with idx", LJ13, func(t *testing.T, dir string) []string {
			writeRows(t, filepath.Join(dir, "x_val_split_LJ13.npy"), 4, []int{39}, 8, false)
			writeRows(t, filepath.Join(dir, "x_test_split_LJ13.npy"), 2000, []int{39}, 9, false)
			if err := npy.Write(filepath.Join(dir, "idx_LJ13.npy"), []int64{5, 2, 6, 0, 3, 1, 4}); err != nil {
				t.Fatal(err)
			}
			return []string{dir}
		}, want{LayoutLJ13DEM, [2]int64{2, 1}, 4, [2]int64{1000, 1999}, [2]int64{0, 999}, 1000, 1000}},
		{"lj13 DEM val/test without idx", LJ13, func(t *testing.T, dir string) []string {
			v := filepath.Join(dir, "x_val_split_LJ13.npy")
			te := filepath.Join(dir, "x_test_split_LJ13.npy")
			writeRows(t, v, 4, []int{39}, 8, false)
			writeRows(t, te, 2000, []int{39}, 9, false)
			return []string{v, te}
		}, want{LayoutLJ13DEM, [2]int64{0, 3}, 4, [2]int64{1000, 1999}, [2]int64{0, 999}, 1000, 1000}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			inputs := tc.setup(t, dir)
			d, err := Import(tc.sys, inputs)
			if err != nil {
				t.Fatal(err)
			}
			if d.Layout != tc.want.layout {
				t.Fatalf("layout %q, want %q", d.Layout, tc.want.layout)
			}
			for _, s := range []struct {
				name   string
				n      int
				bounds [2]int64
			}{{SplitTrain, tc.want.nTrain, tc.want.train}, {SplitVal, tc.want.nVal, tc.want.val}, {SplitTest, tc.want.nTst, tc.want.test}} {
				cs := d.Split(s.name)
				if len(cs) != s.n {
					t.Fatalf("%s: %d rows, want %d", s.name, len(cs), s.n)
				}
				if cs[0].ID != s.bounds[0] || cs[len(cs)-1].ID != s.bounds[1] {
					t.Errorf("%s: rows %d..%d, want %d..%d", s.name, cs[0].ID, cs[len(cs)-1].ID, s.bounds[0], s.bounds[1])
				}
				checkConfigs(t, tc.sys, s.name, cs)
			}
		})
	}
}

// TestImportCentresRows checks positions against the source rows minus their means.
func TestImportCentresRows(t *testing.T) {
	dir := t.TempDir()
	rows := writeRows(t, filepath.Join(dir, "one.npy"), 2010, []int{4, 2}, 10, false)
	d, err := Import(DW4, []string{dir})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range append(d.Train[:3], d.Test[997:]...) {
		src := rows[c.ID]
		for k := range 2 {
			m := (src[k] + src[2+k] + src[4+k] + src[6+k]) / 4
			for p := range 4 {
				if got, want := c.Positions[2*p+k], src[2*p+k]-m; math.Abs(got-want) > 1e-12 {
					t.Fatalf("row %d particle %d dim %d: %v, want %v", c.ID, p, k, got, want)
				}
			}
		}
	}
}

func TestImportErrors(t *testing.T) {
	tests := []struct {
		name    string
		sys     System
		setup   func(t *testing.T, dir string) []string
		wantErr string
		wantIs  error
	}{
		{"missing input", DW4, func(t *testing.T, dir string) []string { return []string{filepath.Join(dir, "nope")} }, "no such file", os.ErrNotExist},
		{"empty directory", DW4, func(t *testing.T, dir string) []string { return []string{dir} }, "holds no .npy files", nil},
		{"wrong width", DW4, func(t *testing.T, dir string) []string {
			writeRows(t, filepath.Join(dir, "d.npy"), 2500, []int{9}, 1, false)
			return []string{dir}
		}, "want (N, 8) or (N, 4, 2)", npy.ErrShape},
		{"NaN in data", DW4, func(t *testing.T, dir string) []string {
			writeRows(t, filepath.Join(dir, "d.npy"), 2500, []int{8}, 1, true)
			return []string{dir}
		}, "d.npy", npy.ErrNonFinite},
		{"too few rows", DW4, func(t *testing.T, dir string) []string {
			writeRows(t, filepath.Join(dir, "d.npy"), 2000, []int{8}, 1, false)
			return []string{dir}
		}, "need > 2000", nil},
		{"corrupt file", DW4, func(t *testing.T, dir string) []string {
			p := filepath.Join(dir, "d.npy")
			if err := os.WriteFile(p, []byte("PK\x03\x04 this is a zip"), 0o644); err != nil {
				t.Fatal(err)
			}
			return []string{p}
		}, "d.npy", npy.ErrBadMagic},
		{"ambiguous", DW4, func(t *testing.T, dir string) []string {
			writeRows(t, filepath.Join(dir, "a_train_split.npy"), 3, []int{8}, 1, false)
			writeRows(t, filepath.Join(dir, "b_train_split.npy"), 3, []int{8}, 1, false)
			return []string{dir}
		}, "ambiguous", nil},
		{"no layout", DW4, func(t *testing.T, dir string) []string {
			writeRows(t, filepath.Join(dir, "a_val_split.npy"), 3, []int{8}, 1, false)
			writeRows(t, filepath.Join(dir, "a_test_split.npy"), 3, []int{8}, 1, false)
			return []string{dir}
		}, "cannot tell the layout", nil},
		{"idx not a permutation", LJ13, func(t *testing.T, dir string) []string {
			writeRows(t, filepath.Join(dir, "x_val_split.npy"), 3, []int{39}, 1, false)
			writeRows(t, filepath.Join(dir, "x_test_split.npy"), 2000, []int{39}, 2, false)
			if err := npy.Write(filepath.Join(dir, "idx_LJ13.npy"), []int64{0, 1, 1, 2}); err != nil {
				t.Fatal(err)
			}
			return []string{dir}
		}, "not a permutation", nil},
		{"original layout without idx", LJ13, func(t *testing.T, dir string) []string {
			writeRows(t, filepath.Join(dir, "all_data_LJ13.npy"), 2000, []int{39}, 1, false)
			writeRows(t, filepath.Join(dir, "holdout_data_LJ13.npy"), 3, []int{39}, 2, false)
			return []string{dir}
		}, "needs idx_LJ13.npy", nil},
		{"unknown system", System{Name: "lj55", Particles: 55, Dim: 3}, func(t *testing.T, dir string) []string { return []string{dir} }, "unknown system", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			_, err := Import(tc.sys, tc.setup(t, dir))
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err = %v, want %q", err, tc.wantErr)
			}
			if tc.wantIs != nil && !errors.Is(err, tc.wantIs) {
				t.Fatalf("err = %v, want errors.Is %v", err, tc.wantIs)
			}
		})
	}
}
