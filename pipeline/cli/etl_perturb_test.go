package cli

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/enflow/enflow/etl/particles"
	"github.com/enflow/enflow/etl/table"
)

func TestETLPerturbCLI(t *testing.T) {
	dir := t.TempDir()
	cs := shippedConfigsForBG(t, particles.DW4, "DEM_test_split_DW4.npy", 5)
	low := 0
	for i, c := range cs {
		if c.Energy < cs[low].Energy {
			low = i
		}
	}
	in := filepath.Join(dir, "in.parquet")
	writeConfigTableForBG(t, in, cs)
	out := filepath.Join(dir, "disc")
	code, stdout, stderr := runCLIForMetrics(t, "etl", "perturb", "--system", "dw4", "--in", in, "--std", "0.001",
		"--n-train", "30", "--n-val", "5", "--n-test", "7", "--seed", "2", "--out", out, "--json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var sum struct {
		Center int64 `json:"center_id"`
	}
	if err := json.Unmarshal([]byte(lastLine(stdout)), &sum); err != nil || sum.Center != cs[low].ID {
		t.Fatalf("summary %q (%v): want center id %d, the lowest energy", stdout, err, cs[low].ID)
	}
	seen := map[int64]bool{}
	for _, p := range []struct {
		split string
		n     int
	}{{"train", 30}, {"val", 5}, {"test", 7}} {
		got, err := table.ReadConfigs(filepath.Join(out, "dw4_"+p.split+".parquet"))
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != p.n {
			t.Fatalf("%s: %d rows, want %d", p.split, len(got), p.n)
		}
		for _, c := range got {
			if c.Split != p.split || seen[c.ID] || math.Abs(c.Energy-cs[low].Energy) > 0.1 {
				t.Fatalf("%s row id %d: split %q, energy %v (center %v), duplicate %v", p.split, c.ID, c.Split, c.Energy, cs[low].Energy, seen[c.ID])
			}
			seen[c.ID] = true
		}
	}
	for _, tc := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"other system", []string{"--system", "lj13", "--in", in}, 1, "field system: dw4, want lj13"},
		{"no such id", []string{"--system", "dw4", "--in", in, "--id", "99"}, 1, "no row with id 99"},
		{"negative std", []string{"--system", "dw4", "--in", in, "--std", "-1"}, 2, "--std must be finite and ≥ 0"},
		{"zero rows", []string{"--system", "dw4", "--in", in, "--n-val", "0"}, 2, "must be positive"},
		{"missing input", []string{"--system", "dw4", "--in", filepath.Join(dir, "nope.parquet")}, 1, "nope.parquet"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := filepath.Join(t.TempDir(), "o")
			code, _, stderr := runCLIForMetrics(t, append([]string{"etl", "perturb", "--out", o}, tc.args...)...)
			if code != tc.code || !strings.Contains(stderr, tc.want) {
				t.Fatalf("exit %d, stderr %q; want %d and %q", code, stderr, tc.code, tc.want)
			}
			if _, err := os.Stat(o); !os.IsNotExist(err) {
				t.Fatalf("%s exists after an error", o)
			}
		})
	}
}
