package cli

import (
	"encoding/json"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/enflow/enflow/etl/npy"
	"github.com/enflow/enflow/etl/particles"
	"github.com/enflow/enflow/etl/table"
	"github.com/enflow/enflow/internal/shared"
)

// shippedConfigsForBG returns the first n rows of a shipped DEM file as mean-free
// configurations with their energies.
func shippedConfigsForBG(t *testing.T, sys particles.System, file string, n int) []particles.Config {
	t.Helper()
	path := shared.Require(t, "data", sys.Name, file)
	vals, _, err := npy.ReadFloat64(path, npy.Want{Shape: []int{-1, sys.Flat()}, Finite: true})
	if err != nil {
		t.Fatal(err)
	}
	var cs []particles.Config
	for r := 0; r < n; r++ {
		x := append([]float64(nil), vals[r*sys.Flat():(r+1)*sys.Flat()]...)
		particles.RemoveMean(x, sys.Dim)
		e, err := sys.Energy(x)
		if err != nil {
			t.Fatal(err)
		}
		cs = append(cs, particles.Config{ID: int64(r), Split: "test", System: sys.Name, Positions: x, Energy: e})
	}
	return cs
}

func writeConfigTableForBG(t *testing.T, path string, cs []particles.Config) {
	t.Helper()
	w, err := table.NewConfigWriter(path)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Abort()
	for i := range cs {
		if err := w.Write(&cs[i]); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
}

type minimizeSummaryForTest struct {
	N          int             `json:"n"`
	Converged  int             `json:"converged"`
	Minima     int             `json:"minima"`
	States     int             `json:"states"`
	Metastable int             `json:"metastable_states"`
	StateList  []minimizeState `json:"state_list"`
}

func TestMinimizeCLI(t *testing.T) {
	dir := t.TempDir()
	cs := shippedConfigsForBG(t, particles.DW4, "DEM_test_split_DW4.npy", 80)
	in := filepath.Join(dir, "dw4.parquet")
	writeConfigTableForBG(t, in, cs)

	// The same configurations rotated, reflected, translated and permuted.
	rng := rand.New(rand.NewPCG(4, 4))
	moved := make([]particles.Config, len(cs))
	for i, c := range cs {
		th := rng.Float64() * 2 * math.Pi
		co, si := math.Cos(th), math.Sin(th)
		perm := rng.Perm(4)
		x := make([]float64, 8)
		for k, p := range perm {
			a, b := c.Positions[2*p], c.Positions[2*p+1]
			x[2*k], x[2*k+1] = co*a-si*b+3, -(si*a+co*b)-1 // rotation, reflection, shift
		}
		moved[i] = particles.Config{ID: c.ID, System: "dw4", Positions: x, Energy: c.Energy}
	}
	inMoved := filepath.Join(dir, "dw4_moved.arrow")
	writeConfigTableForBG(t, inMoved, moved)

	var sums []minimizeSummaryForTest
	for _, src := range []string{in, inMoved} {
		out := strings.TrimSuffix(src, filepath.Ext(src)) + "_minima.parquet"
		code, stdout, stderr := runCLIForMetrics(t, "minimize", "--system", "dw4", "--in", src, "--out", out, "--json")
		if code != 0 {
			t.Fatalf("exit %d: %s", code, stderr)
		}
		var s minimizeSummaryForTest
		if err := json.Unmarshal([]byte(stdout), &s); err != nil {
			t.Fatalf("%v: %s", err, stdout)
		}
		total := 0
		for _, st := range s.StateList {
			total += st.Count
		}
		if s.N != len(cs) || s.Converged != len(cs) || total != len(cs) || s.Metastable < 2 {
			t.Fatalf("summary %+v", s)
		}
		sums = append(sums, s)
		recs, cols, err := table.ReadConfigRecords(out)
		if err != nil {
			t.Fatal(err)
		}
		if !cols.StateID || cols.LogQ || len(recs) != len(cs) {
			t.Fatalf("output: %d rows, columns %+v", len(recs), cols)
		}
		g := make([]float64, 8)
		for i, r := range recs {
			e := particles.DW4Potential.EnergyGrad(r.Positions, 2, g)
			gn := 0.0
			for _, v := range g {
				gn += v * v
			}
			if math.Abs(e-r.Energy) > 1e-12 || math.Sqrt(gn) > 1e-6 || r.StateID < 0 || int(r.StateID) >= s.States {
				t.Fatalf("row %d: energy %v (recomputed %v), ‖∇u‖ %.3g, state %d", i, r.Energy, e, math.Sqrt(gn), r.StateID)
			}
			if r.ID != cs[i].ID || r.Split != []string{"test", ""}[len(sums)-1] {
				t.Fatalf("row %d: id %d split %q", i, r.ID, r.Split)
			}
		}
	}
	t.Logf("DW4, %d configurations: %d states: %+v", len(cs), sums[0].States, sums[0].StateList)
	if sums[0].States != sums[1].States {
		t.Fatalf("%d states, %d for the transformed copies", sums[0].States, sums[1].States)
	}
	for i := range sums[0].StateList {
		a, b := sums[0].StateList[i], sums[1].StateList[i]
		if a.Count != b.Count || math.Abs(a.Energy-b.Energy) > 1e-6 {
			t.Errorf("state %d: %+v vs %+v", i, a, b)
		}
	}

	// Text output.
	code, stdout, stderr := runCLIForMetrics(t, "minimize", "--system", "dw4", "--in", in, "--out", filepath.Join(dir, "t.arrow"), "--limit", "5")
	if code != 0 || !strings.Contains(stdout, "configurations: 5 (converged 5") || !strings.Contains(stdout, "metastable") {
		t.Fatalf("exit %d: %s %s", code, stdout, stderr)
	}
}

func TestMinimizeCLIErrors(t *testing.T) {
	dir := t.TempDir()
	lj := filepath.Join(dir, "lj13.parquet")
	writeConfigTableForBG(t, lj, shippedConfigsForBG(t, particles.LJ13, "DEM_test_split_LJ13-1000.npy", 3))
	outDir := t.TempDir()
	out := filepath.Join(outDir, "m.parquet")
	tests := []struct {
		name    string
		args    []string
		code    int
		wantErr string
	}{
		{"LJ13 file as dw4", []string{"--system", "dw4", "--in", lj, "--out", out}, 1, "row 0 (id 0): field system: lj13, want dw4 (--system dw4)"},
		{"unknown system", []string{"--system", "lj55", "--in", lj, "--out", out}, 2, `unknown system "lj55"`},
		{"energy of another system", []string{"--system", "dw4", "--energy", "lj13-twice", "--in", lj, "--out", out}, 2, `is for system lj13, not dw4`},
		{"no system", []string{"--in", lj, "--out", out}, 2, "--system is required"},
		{"bad extension", []string{"--system", "lj13", "--in", lj, "--out", filepath.Join(outDir, "m.csv")}, 2, "unknown table extension"},
		{"missing input", []string{"--system", "lj13", "--in", filepath.Join(dir, "nope.parquet"), "--out", out}, 1, "nope.parquet"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, _, stderr := runCLIForMetrics(t, append([]string{"minimize"}, tc.args...)...)
			if code != tc.code || !strings.Contains(stderr, tc.wantErr) {
				t.Fatalf("exit %d, stderr %q; want %d and %q", code, stderr, tc.code, tc.wantErr)
			}
			if ents, _ := os.ReadDir(outDir); len(ents) != 0 {
				t.Fatalf("output directory holds %v", ents)
			}
		})
	}
	// A non-finite start (coinciding LJ particles) is reported and kept, not fatal.
	cs := shippedConfigsForBG(t, particles.LJ13, "DEM_test_split_LJ13-1000.npy", 2)
	cs[1].Positions = make([]float64, 39)
	withBad := filepath.Join(dir, "bad.parquet")
	writeConfigTableForBG(t, withBad, cs)
	badOut := filepath.Join(dir, "bad_minima.parquet")
	code, stdout, stderr := runCLIForMetrics(t, "minimize", "--system", "lj13", "--in", withBad, "--out", badOut, "--json")
	if code != 0 || !strings.Contains(stdout, `"failed":1`) || !strings.Contains(stderr, "row 1 (id 1)") {
		t.Fatalf("exit %d: %s %s", code, stdout, stderr)
	}
	recs, _, err := table.ReadConfigRecords(badOut)
	if err != nil || len(recs) != 2 || recs[1].StateID != -1 || !math.IsNaN(recs[1].Energy) || recs[0].StateID != 0 {
		t.Fatalf("output %+v, %v", recs, err)
	}

	// LJ13 with pairs counted twice runs.
	code, stdout, stderr = runCLIForMetrics(t, "minimize", "--system", "lj13", "--energy", "lj13-twice", "--in", lj, "--out", out, "--json")
	if code != 0 || !strings.Contains(stdout, `"energy":"lj13-twice"`) {
		t.Fatalf("exit %d: %s %s", code, stdout, stderr)
	}
}
