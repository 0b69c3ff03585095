package cli

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/enflow/enflow/etl/table"
)

// TestETLMCMCTimeSplit: --time-split cuts one seeded run in time into train/val/test files whose
// concatenation is exactly the unsplit run, each row labelled with its split.
func TestETLMCMCTimeSplit(t *testing.T) {
	dir := t.TempDir()
	common := []string{"etl", "mcmc", "--system", "dw4", "--n", "200", "--seed", "5", "--kernel", "metropolis",
		"--chains", "4", "--burn-in", "0", "--thin", "1", "--no-progress"}
	whole := filepath.Join(dir, "whole.parquet")
	if code, _, stderr := runCLIForMetrics(t, append(slices.Clone(common), "--out", whole)...); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	split := filepath.Join(dir, "split")
	if code, _, stderr := runCLIForMetrics(t, append(slices.Clone(common), "--out", split, "--time-split", "50,10,40")...); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	ref, err := table.ReadConfigs(whole)
	if err != nil {
		t.Fatal(err)
	}
	var got []int64
	for _, part := range []struct {
		name string
		rows int
	}{{"train", 100}, {"val", 20}, {"test", 80}} {
		cs, err := table.ReadConfigs(filepath.Join(split, "dw4_"+part.name+".parquet"))
		if err != nil {
			t.Fatal(err)
		}
		if len(cs) != part.rows {
			t.Fatalf("%s: %d rows, want %d", part.name, len(cs), part.rows)
		}
		for _, c := range cs {
			r := ref[c.ID]
			if c.Split != part.name || !slices.Equal(c.Positions, r.Positions) || c.Energy != r.Energy {
				t.Fatalf("%s row id %d (split %q) differs from the unsplit run's row", part.name, c.ID, c.Split)
			}
			got = append(got, c.ID)
		}
	}
	// Rows are chain-interleaved in time order: train holds every chain's first 25 samples.
	for i, id := range got {
		if id != int64(i) {
			t.Fatalf("row %d of train+val+test has id %d: not a cut in time", i, id)
		}
	}

	for _, tc := range []struct{ name, arg, want string }{
		{"two parts", "50,50", "want three percentages"},
		{"empty val", "50,0,50", `part 2 ("0") is not a percentage`},
		{"sum", "60,30,20", "sum to 110"},
		{"not a number", "50,x,40", `part 2 ("x")`},
		{"empty split at this n", "99.8,0.1,0.1", "leaves an empty split"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "out")
			code, _, stderr := runCLIForMetrics(t, append(slices.Clone(common), "--out", out, "--time-split", tc.arg)...)
			if code != 2 || !strings.Contains(stderr, tc.want) {
				t.Fatalf("exit %d, stderr %q; want 2 and %q", code, stderr, tc.want)
			}
			if _, err := os.Stat(out); !os.IsNotExist(err) {
				t.Fatalf("%s exists after a usage error", out)
			}
		})
	}
}
