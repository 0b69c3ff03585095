package particles

import (
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/enflow/enflow/etl/npy"
)

// Split names.
const (
	SplitTrain = "train"
	SplitVal   = "val"
	SplitTest  = "test"
)

// SplitNames lists the splits in output order.
var SplitNames = []string{SplitTrain, SplitVal, SplitTest}

// Input layouts recognised by Import.
const (
	// LayoutSplitFiles: separate train/val/test files (DEM naming *train_split*, *val_split*,
	// *test_split*), kept as given, rows in file order.
	LayoutSplitFiles = "split-files"
	// LayoutLJ13DEM: the shipped DEM LJ13 val and test files only (no train file); see Import.
	LayoutLJ13DEM = "lj13-dem-val-test"
	// LayoutLJ13Original: en_flows' all_data_LJ13.npy + holdout_data_LJ13.npy + idx_LJ13.npy.
	LayoutLJ13Original = "lj13-original"
	// LayoutSingleFile: one file holding all samples, split by the reference code's rule.
	LayoutSingleFile = "single-file"
)

// Sizes of the reference code's evaluation splits.
const (
	EvalRows = 1000 // rows in the val and in the test split of the reference protocol
)

// Dataset is one system's data split into train, val and test. Every configuration is
// mean-free (per spatial dimension, over particles), finite, and carries its energy under
// System.Energy and its row index in its source file as ID.
type Dataset struct {
	System System
	Layout string
	// Sources describes, per split name, where its rows came from (file and row selection).
	Sources map[string]string
	Train   []Config
	Val     []Config
	Test    []Config
}

// Split returns the configurations of the named split (nil for an unknown name).
func (d *Dataset) Split(name string) []Config {
	switch name {
	case SplitTrain:
		return d.Train
	case SplitVal:
		return d.Val
	case SplitTest:
		return d.Test
	}
	return nil
}

// MeanEnergy returns the mean Energy of cs (NaN when empty).
func MeanEnergy(cs []Config) float64 {
	if len(cs) == 0 {
		return math.NaN()
	}
	s := 0.0
	for i := range cs {
		s += cs[i].Energy
	}
	return s / float64(len(cs))
}

// inputRole classifies an input file by its base name.
type inputRole int

const (
	roleOther inputRole = iota
	roleTrain
	roleVal
	roleTest
	roleIdx
	roleAll
	roleHoldout
)

func classify(path string) inputRole {
	b := strings.ToLower(filepath.Base(path))
	switch {
	case strings.Contains(b, "train_split"):
		return roleTrain
	case strings.Contains(b, "val_split"):
		return roleVal
	case strings.Contains(b, "test_split"):
		return roleTest
	case strings.HasPrefix(b, "idx_") || strings.Contains(b, "_idx"):
		return roleIdx
	case strings.HasPrefix(b, "all_data"):
		return roleAll
	case strings.HasPrefix(b, "holdout_data"):
		return roleHoldout
	}
	return roleOther
}

// ExpandInputs turns directories into the .npy files they hold (sorted, non-recursive) and
// keeps plain files. In directories, files naming the other system ("lj13" when importing
// dw4 and vice versa) and files marked "different_energy" are skipped.
func ExpandInputs(sys System, inputs []string) ([]string, error) {
	var files []string
	for _, in := range inputs {
		st, err := os.Stat(in)
		if err != nil {
			return nil, fmt.Errorf("particles: input: %w", err)
		}
		if !st.IsDir() {
			files = append(files, in)
			continue
		}
		matches, err := filepath.Glob(filepath.Join(in, "*.npy"))
		if err != nil {
			return nil, fmt.Errorf("particles: input %s: %w", in, err)
		}
		slices.Sort(matches)
		for _, m := range matches {
			b := strings.ToLower(filepath.Base(m))
			other := DW4.Name
			if sys.Name == DW4.Name {
				other = LJ13.Name
			}
			if strings.Contains(b, other) || strings.Contains(b, "different_energy") {
				slog.Info("particles: skipping file of another system or energy", "file", m)
				continue
			}
			files = append(files, m)
		}
		if len(matches) == 0 {
			return nil, fmt.Errorf("particles: input directory %s holds no .npy files", in)
		}
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("particles: no input files for %s", sys.Name)
	}
	return files, nil
}

// Import reads sample files of sys and splits them. inputs are files or directories (see
// ExpandInputs). The layout is chosen from the file names:
//
//   - LayoutSplitFiles — files named *train_split*, *val_split*, *test_split* (all three),
//     e.g. the shipped DEM_{train,val,test}_split_DW4.npy: each split is its file, in file
//     order, nothing dropped. (The reference protocol uses the first n_data train rows and
//     1000-row val/test sets; the DEM files hold 10,000-row val/test sets drawn from the same
//     distribution, which we keep whole so evaluation is less noisy. Take the first
//     EvalRows rows to mirror the paper exactly.)
//   - LayoutLJ13DEM — LJ13 with only *val_split* and *test_split* files (the shipped
//     DEM_{val,test}_split_LJ13-1000.npy, 10,000 rows each). The reference code reads
//     test = all_data[0:1000], val = all_data[1000:2000] and train = holdout_data[idx[:n]]
//     with idx = idx_LJ13.npy. We substitute all_data := the DEM test file and holdout_data :=
//     the DEM val file: test = DEM_test[0:1000], val = DEM_test[1000:2000], train = DEM_val
//     rows in the order of the idx_LJ13 entries that are < 10,000 (a permutation of all its
//     rows). The reference formula and the 1000-row evaluation sets are then reproduced
//     exactly, the first n rows of train are the training set of a run with n_data = n (up
//     to the largest sweep value, 10,000), and train never overlaps val/test (different
//     files). Without an idx file the DEM val file order is kept (logged).
//   - LayoutLJ13Original — all_data_LJ13.npy + holdout_data_LJ13.npy + idx_LJ13.npy: the
//     reference split verbatim (train = holdout[idx], all of it).
//   - LayoutSingleFile — exactly one data file. DW4 (reference rule for dw4-dataidx):
//     train = rows[0:N−2000], val = rows[N−2000:N−1000], test = rows[N−1000:N]. LJ13 (the
//     all_data rule): test = rows[0:1000], val = rows[1000:2000], train = rows[2000:N].
//
// Data files must have shape (N, Particles·Dim) or (N, Particles, Dim) and finite values.
// Note: the original DW4 file dw4-dataidx.npy is a pickled object array and is rejected
// (unsupported dtype); convert it to a plain float array first.
func Import(sys System, inputs []string) (*Dataset, error) {
	if sys.Potential() == nil {
		return nil, fmt.Errorf("particles: import: unknown system %q", sys.Name)
	}
	files, err := ExpandInputs(sys, inputs)
	if err != nil {
		return nil, err
	}
	byRole := map[inputRole][]string{}
	for _, f := range files {
		r := classify(f)
		byRole[r] = append(byRole[r], f)
	}
	for r, fs := range byRole {
		if r != roleOther && len(fs) > 1 {
			return nil, fmt.Errorf("particles: import %s: ambiguous inputs %v play the same role", sys.Name, fs)
		}
	}
	one := func(r inputRole) string {
		if fs := byRole[r]; len(fs) == 1 {
			return fs[0]
		}
		return ""
	}
	train, val, test := one(roleTrain), one(roleVal), one(roleTest)
	idx, all, holdout := one(roleIdx), one(roleAll), one(roleHoldout)
	ignore := func(used ...string) {
		for _, f := range files {
			if !slices.Contains(used, f) {
				slog.Info("particles: input not used by this layout", "file", f)
			}
		}
	}

	d := &Dataset{System: sys, Sources: map[string]string{}}
	switch {
	case train != "" && val != "" && test != "":
		d.Layout = LayoutSplitFiles
		ignore(train, val, test)
		for _, s := range []struct {
			name, file string
			dst        *[]Config
		}{{SplitTrain, train, &d.Train}, {SplitVal, val, &d.Val}, {SplitTest, test, &d.Test}} {
			rows, err := readRows(sys, s.file)
			if err != nil {
				return nil, err
			}
			*s.dst = buildConfigs(sys, s.name, rows, seq(len(rows)))
			d.Sources[s.name] = fmt.Sprintf("%s (all %d rows)", s.file, len(rows))
		}

	case sys.Name == LJ13.Name && train == "" && val != "" && test != "":
		d.Layout = LayoutLJ13DEM
		ignore(val, test, idx)
		tRows, err := readRows(sys, test)
		if err != nil {
			return nil, err
		}
		if len(tRows) < 2*EvalRows {
			return nil, fmt.Errorf("particles: import lj13: %s has %d rows, need ≥ %d for test and val", test, len(tRows), 2*EvalRows)
		}
		vRows, err := readRows(sys, val)
		if err != nil {
			return nil, err
		}
		order, how, err := holdoutOrder(idx, len(vRows))
		if err != nil {
			return nil, err
		}
		d.Test = buildConfigs(sys, SplitTest, tRows, seq(EvalRows))
		d.Val = buildConfigs(sys, SplitVal, tRows, seqFrom(EvalRows, 2*EvalRows))
		d.Train = buildConfigs(sys, SplitTrain, vRows, order)
		d.Sources[SplitTest] = fmt.Sprintf("%s rows [0:%d]", test, EvalRows)
		d.Sources[SplitVal] = fmt.Sprintf("%s rows [%d:%d]", test, EvalRows, 2*EvalRows)
		d.Sources[SplitTrain] = fmt.Sprintf("%s, %d rows %s", val, len(order), how)

	case sys.Name == LJ13.Name && all != "" && holdout != "":
		d.Layout = LayoutLJ13Original
		ignore(all, holdout, idx)
		aRows, err := readRows(sys, all)
		if err != nil {
			return nil, err
		}
		if len(aRows) < 2*EvalRows {
			return nil, fmt.Errorf("particles: import lj13: %s has %d rows, need ≥ %d for test and val", all, len(aRows), 2*EvalRows)
		}
		hRows, err := readRows(sys, holdout)
		if err != nil {
			return nil, err
		}
		if idx == "" {
			return nil, fmt.Errorf("particles: import lj13: layout %s needs idx_LJ13.npy beside %s", LayoutLJ13Original, holdout)
		}
		order, how, err := holdoutOrder(idx, len(hRows))
		if err != nil {
			return nil, err
		}
		d.Test = buildConfigs(sys, SplitTest, aRows, seq(EvalRows))
		d.Val = buildConfigs(sys, SplitVal, aRows, seqFrom(EvalRows, 2*EvalRows))
		d.Train = buildConfigs(sys, SplitTrain, hRows, order)
		d.Sources[SplitTest] = fmt.Sprintf("%s rows [0:%d]", all, EvalRows)
		d.Sources[SplitVal] = fmt.Sprintf("%s rows [%d:%d]", all, EvalRows, 2*EvalRows)
		d.Sources[SplitTrain] = fmt.Sprintf("%s, %d rows %s", holdout, len(order), how)

	case len(files)-len(byRole[roleIdx]) == 1:
		d.Layout = LayoutSingleFile
		var file string
		for _, f := range files {
			if classify(f) != roleIdx {
				file = f
			}
		}
		ignore(file)
		rows, err := readRows(sys, file)
		if err != nil {
			return nil, err
		}
		n := len(rows)
		if n <= 2*EvalRows {
			return nil, fmt.Errorf("particles: import %s: %s has %d rows, need > %d for train, val and test", sys.Name, file, n, 2*EvalRows)
		}
		if sys.Name == DW4.Name {
			d.Train = buildConfigs(sys, SplitTrain, rows, seq(n-2*EvalRows))
			d.Val = buildConfigs(sys, SplitVal, rows, seqFrom(n-2*EvalRows, n-EvalRows))
			d.Test = buildConfigs(sys, SplitTest, rows, seqFrom(n-EvalRows, n))
			d.Sources[SplitTrain] = fmt.Sprintf("%s rows [0:%d]", file, n-2*EvalRows)
			d.Sources[SplitVal] = fmt.Sprintf("%s rows [%d:%d]", file, n-2*EvalRows, n-EvalRows)
			d.Sources[SplitTest] = fmt.Sprintf("%s rows [%d:%d]", file, n-EvalRows, n)
		} else {
			d.Test = buildConfigs(sys, SplitTest, rows, seq(EvalRows))
			d.Val = buildConfigs(sys, SplitVal, rows, seqFrom(EvalRows, 2*EvalRows))
			d.Train = buildConfigs(sys, SplitTrain, rows, seqFrom(2*EvalRows, n))
			d.Sources[SplitTest] = fmt.Sprintf("%s rows [0:%d]", file, EvalRows)
			d.Sources[SplitVal] = fmt.Sprintf("%s rows [%d:%d]", file, EvalRows, 2*EvalRows)
			d.Sources[SplitTrain] = fmt.Sprintf("%s rows [%d:%d]", file, 2*EvalRows, n)
		}

	default:
		return nil, fmt.Errorf("particles: import %s: cannot tell the layout of %v: want *train_split*/*val_split*/*test_split* files, "+
			"(lj13) *val_split* + *test_split* [+ idx_LJ13.npy], (lj13) all_data_LJ13.npy + holdout_data_LJ13.npy + idx_LJ13.npy, "+
			"or exactly one data file", sys.Name, files)
	}
	return d, nil
}

// holdoutOrder returns the row order of the training split drawn from a holdout file of n
// rows: the entries of the idx permutation file that are < n, in idx order. Without an idx
// file it is 0..n−1.
func holdoutOrder(idxFile string, n int) ([]int, string, error) {
	if idxFile == "" {
		slog.Warn("particles: no idx_LJ13.npy among the inputs; lj13 train keeps the file order")
		return seq(n), "in file order (no idx file)", nil
	}
	idx, _, err := npy.ReadInt64(idxFile, npy.Want{Shape: []int{-1}})
	if err != nil {
		return nil, "", fmt.Errorf("particles: import: %w", err)
	}
	seen := make([]bool, len(idx))
	order := make([]int, 0, n)
	for i, v := range idx {
		if v < 0 || v >= int64(len(idx)) || seen[v] {
			return nil, "", fmt.Errorf("particles: import: %s: entry %d = %d: not a permutation of 0..%d", idxFile, i, v, len(idx)-1)
		}
		seen[v] = true
		if v < int64(n) {
			order = append(order, int(v))
		}
	}
	if len(order) != n {
		return nil, "", fmt.Errorf("particles: import: %s has %d entries, fewer than the %d holdout rows", idxFile, len(idx), n)
	}
	return order, fmt.Sprintf("in the order of %s entries < %d", filepath.Base(idxFile), n), nil
}

// readRows reads a data file of sys: shape (N, P·D) or (N, P, D), finite values.
func readRows(sys System, file string) ([][]float64, error) {
	vals, shape, err := npy.ReadFloat64(file, npy.Want{Finite: true})
	if err != nil {
		return nil, fmt.Errorf("particles: import %s: %w", sys.Name, err)
	}
	f := sys.Flat()
	ok := len(shape) == 2 && shape[1] == f || len(shape) == 3 && shape[1] == sys.Particles && shape[2] == sys.Dim
	if !ok {
		return nil, fmt.Errorf("particles: import %s: %s: shape %s, want (N, %d) or (N, %d, %d): %w",
			sys.Name, file, npy.ShapeString(shape), f, sys.Particles, sys.Dim, npy.ErrShape)
	}
	rows := make([][]float64, shape[0])
	for r := range rows {
		rows[r] = vals[r*f : (r+1)*f : (r+1)*f]
	}
	return rows, nil
}

// buildConfigs centres rows[order[i]] (in place) and wraps them as configurations.
func buildConfigs(sys System, split string, rows [][]float64, order []int) []Config {
	pot := sys.Potential()
	out := make([]Config, len(order))
	for i, r := range order {
		x := slices.Clone(rows[r])
		RemoveMean(x, sys.Dim)
		out[i] = Config{ID: int64(r), Split: split, System: sys.Name, Positions: x, Energy: pot.EnergyGrad(x, sys.Dim, nil)}
	}
	return out
}

func seq(n int) []int { return seqFrom(0, n) }

func seqFrom(a, b int) []int {
	s := make([]int, 0, max(0, b-a))
	for i := a; i < b; i++ {
		s = append(s, i)
	}
	return s
}
