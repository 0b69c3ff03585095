package jobs

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/enflow/enflow/etl/particles"
	"github.com/enflow/enflow/etl/table"
)

// writeTinyParticles writes DIR/{sys}_{train,val,test}.parquet with mean-free Gaussian
// configurations (std 1.5) and their energies.
func writeTinyParticles(t testing.TB, dir string, sys particles.System, sizes map[string]int, seed uint64) {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, 11))
	id := int64(0)
	for _, split := range []string{"train", "val", "test"} {
		w, err := table.NewConfigWriter(filepath.Join(dir, sys.Name+"_"+split+".parquet"))
		if err != nil {
			t.Fatal(err)
		}
		for range sizes[split] {
			pos := make([]float64, sys.Flat())
			for i := range pos {
				pos[i] = 1.5 * rng.NormFloat64()
			}
			particles.RemoveMean(pos, sys.Dim)
			e, _ := sys.Energy(pos)
			if err := w.Write(&particles.Config{ID: id, Split: split, System: sys.Name, Positions: pos, Energy: e}); err != nil {
				t.Fatal(err)
			}
			id++
		}
		if err := w.Commit(); err != nil {
			t.Fatal(err)
		}
	}
}

// fakeExec emulates enflow train, eval and sample: it writes the files the runner reads
// (result.json, metrics.parquet, samples) and records the calls.
type fakeExec struct {
	mu    sync.Mutex
	calls [][]string
	// fail, if set, is called first; a non-nil error fails the call.
	fail func(args []string) error
	// checkpointOnly makes train write a checkpoint but no result and fail (a killed run).
	checkpointOnly func(args []string) bool
}

func flagValue(args []string, name string) string {
	for i := 0; i+1 < len(args); i++ {
		if args[i] == name {
			return args[i+1]
		}
	}
	return ""
}

func hasFlag(args []string, name string) bool {
	for _, a := range args {
		if a == name {
			return true
		}
	}
	return false
}

func (f *fakeExec) Enflow(ctx context.Context, c Call) ([]byte, error) {
	f.mu.Lock()
	f.calls = append(f.calls, append([]string(nil), c.Args...))
	f.mu.Unlock()
	if f.fail != nil {
		if err := f.fail(c.Args); err != nil {
			return nil, &ExecError{Args: c.Args, ExitCode: 1, Err: err}
		}
	}
	switch c.Args[0] {
	case "train":
		out := flagValue(c.Args, "--out")
		if err := os.MkdirAll(out, 0o755); err != nil {
			return nil, err
		}
		if err := os.WriteFile(filepath.Join(out, "checkpoint-n0000000-step-1.json"), []byte("{}"), 0o644); err != nil {
			return nil, err
		}
		if f.checkpointOnly != nil && f.checkpointOnly(c.Args) {
			return nil, &ExecError{Args: c.Args, ExitCode: -1, Err: fmt.Errorf("killed")}
		}
		n, _ := strconv.Atoi(flagValue(c.Args, "--n-data"))
		seed, _ := strconv.Atoi(flagValue(c.Args, "--seed"))
		nll := 10 + 1/float64(n) + float64(seed)/100
		if strings.Contains(flagValue(c.Args, "--model"), "enf") {
			nll -= 2
		}
		if from := flagValue(c.Args, "--init-from"); from != "" {
			if _, err := os.Stat(filepath.Join(from, "result.json")); err != nil {
				return nil, fmt.Errorf("fake enflow: --init-from %s: %w", from, err)
			}
			nll -= 1 // fine-tuned
		}
		w, err := table.NewRowWriter(filepath.Join(out, "metrics.parquet"), []table.Col{
			{Name: "epoch", Type: table.Int64}, {Name: "step", Type: table.Int64}, {Name: "train_nll", Type: table.Float64},
			{Name: "val_nll", Type: table.Float64}, {Name: "test_nll", Type: table.Float64}, {Name: "wall_s", Type: table.Float64},
		}, map[string]string{"enflow.schema": "train-metrics/v1"})
		if err != nil {
			return nil, err
		}
		for e := range 3 {
			if err := w.Append(e, 2*(e+1), nll+float64(3-e), nll+0.5+float64(2-e)/2, nll+float64(2-e)/2, 0.1); err != nil {
				return nil, err
			}
		}
		if err := w.Commit(); err != nil {
			return nil, err
		}
		res := map[string]any{"epochs": 3, "steps": 6, "best_epoch": 2, "best_val_nll": nll + 0.5, "test_nll": nll,
			"last_train_nll": nll + 1, "wall_s": 0.3, "interrupted": false}
		b, _ := json.Marshal(res)
		if err := os.WriteFile(filepath.Join(out, "result.json"), b, 0o644); err != nil {
			return nil, err
		}
		return append(b, '\n'), nil
	case "sample":
		out := flagValue(c.Args, "--out")
		n, _ := strconv.Atoi(flagValue(c.Args, "--n"))
		w, err := table.NewConfigWriter(out)
		if err != nil {
			return nil, err
		}
		rng := rand.New(rand.NewPCG(3, 4))
		for i := range n {
			pos := make([]float64, particles.DW4.Flat())
			for k := range pos {
				pos[k] = 2 * rng.NormFloat64()
			}
			particles.RemoveMean(pos, 2)
			e, _ := particles.DW4.Energy(pos)
			if err := w.Write(&particles.Config{ID: int64(i), Split: "sample", System: "dw4", Positions: pos, Energy: e}); err != nil {
				return nil, err
			}
		}
		return []byte(`{"n":` + strconv.Itoa(n) + "}\n"), w.Commit()
	case "metrics":
		if len(c.Args) < 2 || c.Args[1] != "ess" || flagValue(c.Args, "--in") == "" {
			return nil, fmt.Errorf("fake enflow: bad metrics call %v", c.Args)
		}
		return []byte(`{"n": 16, "n_infinite_u": 0, "ess": 4.5, "ess_fraction": 0.28125, "mean_u_samples": -10.5,` +
			` "mean_u_reweighted": -12.25, "mean_u_reweighted_stderr": 0.5, "max_log_w": 3.1, "system": "dw4", "energy": "dw4",` +
			` "temperature": ` + flagValue(c.Args, "--temperature") + `, "sign_convention": "log w = -u(x)/T - log q_X(x)"}` + "\n"), nil
	case "minimize":
		if flagValue(c.Args, "--in") == "" || flagValue(c.Args, "--out") == "" {
			return nil, fmt.Errorf("fake enflow: bad minimize call %v", c.Args)
		}
		// The minimised table: the input rows (the first --limit), "minimised" by halving
		// their positions, in the states 0, 1, 2 in turn (the last row failed: no state).
		recs, _, err := table.ReadConfigRecords(flagValue(c.Args, "--in"))
		if err != nil {
			return nil, err
		}
		if n, _ := strconv.Atoi(flagValue(c.Args, "--limit")); n > 0 && n < len(recs) {
			recs = recs[:n]
		}
		w, err := table.NewConfigRecordWriter(flagValue(c.Args, "--out"), table.ConfigColumns{StateID: true})
		if err != nil {
			return nil, err
		}
		defer w.Abort()
		for i := range recs {
			r := recs[i]
			r.Positions = append([]float64(nil), r.Positions...)
			for k := range r.Positions {
				r.Positions[k] /= 2
			}
			r.StateID, r.LogQ, r.Energy = int64(i%3), math.NaN(), []float64{-13.1, -12.9, -8}[i%3]
			if i == len(recs)-1 {
				r.StateID, r.Energy = -1, math.NaN()
			}
			if err := w.Write(&r); err != nil {
				return nil, err
			}
		}
		if err := w.Commit(); err != nil {
			return nil, err
		}
		return []byte(`{"system": "dw4", "energy": "dw4", "n": 16, "converged": 15, "minima": 14, "failed": 1, "states": 3,` +
			` "metastable_states": 2, "state_list": [{"id": 0, "energy": -13.1, "count": 9, "is_minimum": true, "min_eigenvalue": 2.5},` +
			` {"id": 1, "energy": -12.9, "count": 5, "is_minimum": true, "min_eigenvalue": 1.5},` +
			` {"id": 2, "energy": -8.0, "count": 1, "is_minimum": false, "min_eigenvalue": -0.5}], "dist_tol": 0.001, "energy_tol": 1e-05}` + "\n"), nil
	case "eval":
		return []byte(`{"nll": 9.5, "n": 40, "batches": 2, "nfe": 12, "trace": "exact", "solver": "dopri5", "rtol": 0.0001, "atol": 0.0001}` + "\n"), nil
	}
	return nil, fmt.Errorf("fake enflow: unknown command %v", c.Args)
}

func (f *fakeExec) count(cmd string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, c := range f.calls {
		if c[0] == cmd {
			n++
		}
	}
	return n
}

// testSpec is a small spec over DW4 (two models × two sizes, energy + nll evaluations).
const testSpec = `
name = "unit-test"
max_attempts = 2
[train]
epochs = 3
max_steps_per_epoch = 2

[[experiment]]
dataset = "dw4"
models = ["kernel", "enf"]
n_data = [50, 100]

[[evaluation]]
kind = "energy"
n = 16

[[evaluation]]
kind = "nll"
models = ["enf"]
trace = "exact"
`

// newTestOptions parses spec text and returns run options over fresh data and state
// directories (with a fake executor).
func newTestOptions(t *testing.T, specText string) (Options, *fakeExec) {
	t.Helper()
	dir := t.TempDir()
	spec, err := ParseSpec(filepath.Join(dir, "spec.toml"), []byte(specText))
	if err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(dir, "data")
	writeTinyParticles(t, data, particles.DW4, map[string]int{"train": 100, "val": 20, "test": 20}, 1)
	fx := &fakeExec{}
	return Options{Spec: spec, StateDir: filepath.Join(dir, "state"), DataDir: data, Exec: fx,
		Code: CodeInfo{Version: "test", GitRev: "0123456789abcdef"}}, fx
}

// resultCounts returns the number of result rows per unit over all parts of a state dir and
// the number of parts per unit.
func resultCounts(t *testing.T, state string) (rows, parts map[string]int) {
	t.Helper()
	files, _, err := ListParts(filepath.Join(state, ResultsDirName))
	if err != nil {
		t.Fatal(err)
	}
	rows, parts = map[string]int{}, map[string]int{}
	for _, f := range files {
		parts[unitOfPart(filepath.Base(f))]++
		rs, err := ReadResultsFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rs {
			rows[r.Unit]++
		}
	}
	return rows, parts
}
