package train

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/enflow/enflow/etl/molecule"
)

// The tests below run the real enflow binary on tiny problems — DW4 with the particle E-NF, and
// QM9-format molecules with the joint atom-type + position E-NF — (EGNN 8×1, rk4 with 2 steps,
// float64) and compare runs that are killed or terminated and then resumed with an
// uninterrupted run of the same seed.

// enflowBin is the binary the kill tests share: built once per test process into a temporary
// directory that TestMain removes.
var enflowBin struct {
	once      sync.Once
	dir, path string
	err       error
}

// buildEnflow builds ./pipeline/cmd/enflow (once per test process) and returns its path.
func buildEnflow(t *testing.T) string {
	t.Helper()
	b := &enflowBin
	b.once.Do(func() {
		if b.dir, b.err = os.MkdirTemp("", "enflow-train-test-"); b.err != nil {
			return
		}
		b.path = filepath.Join(b.dir, "enflow")
		cmd := exec.Command("go", "build", "-o", b.path, "./pipeline/cmd/enflow")
		cmd.Dir = filepath.Join("..", "..")
		if out, err := cmd.CombinedOutput(); err != nil {
			b.err = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if b.err != nil {
		t.Fatal(b.err)
	}
	return b.path
}

func TestMain(m *testing.M) {
	code := m.Run()
	if enflowBin.dir != "" {
		_ = os.RemoveAll(enflowBin.dir)
	}
	os.Exit(code)
}

// killCase is one tiny training run of the kill tests: the flags of its fresh start (given the
// run directory) and the epochs and optimizer steps it ends with.
type killCase struct {
	args   func(out string) []string
	epochs int
	steps  int64
}

// dw4KillCase trains the particle E-NF on DW4 for 8 epochs of 4 batches.
func dw4KillCase(dataDir string) killCase {
	return killCase{epochs: 8, steps: 32, args: func(out string) []string {
		return []string{"train", "--dataset", "dw4", "--data", dataDir, "--out", out, "--n-data", "40",
			"--epochs", "8", "--test-every", "2", "--batch", "10",
			"--hidden", "8", "--layers", "1", "--solver", "rk4", "--steps", "2", "--dtype", "float64",
			"--lr", "5e-3", "--seed", "3", "--keep", "2", "--no-progress", "--json"}
	}}
}

func resumeArgs(out string) []string {
	return []string{"train", "--out", out, "--resume", "--no-progress", "--json"}
}

// childEnv is the environment of the binary's runs: the test's own, less $GOMLX_BACKEND. The
// binary is built without build tags (SimpleGo only), so an engine the test process was asked
// for (the XLA suite sets GOMLX_BACKEND=xla:cpu) would only make every run a usage error.
func childEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "GOMLX_BACKEND=") {
			env = append(env, kv)
		}
	}
	return env
}

// runEnflow runs the binary to completion.
func runEnflow(t *testing.T, bin string, args ...string) (stdout string) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = childEnv()
	var so, se bytes.Buffer
	cmd.Stdout, cmd.Stderr = &so, &se
	if err := cmd.Run(); err != nil {
		t.Fatalf("enflow %s: %v\n%s", strings.Join(args, " "), err, se.String())
	}
	return so.String()
}

// startEnflow starts the binary; the caller waits.
func startEnflow(t *testing.T, bin string, stderr *bytes.Buffer, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = childEnv()
	cmd.Stdout, cmd.Stderr = &bytes.Buffer{}, stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return cmd
}

// waitForCheckpoint waits until dir holds a complete checkpoint other than those in seen (or
// the process ended: done is closed). GoMLX creates a checkpoint's JSON file before it writes
// the data and then the JSON itself, and a kill during that save leaves the checkpoint
// incomplete (a resume moves it aside): a kill "after the first checkpoint" waits until the
// whole checkpoint checks out.
func waitForCheckpoint(t *testing.T, dir string, seen map[string]bool, done <-chan struct{}) bool {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		l, _ := listCheckpoints(dir)
		for _, c := range l {
			if !seen[c] && checkCheckpoint(dir, c) == nil {
				return true
			}
		}
		select {
		case <-done:
			return false
		case <-time.After(20 * time.Millisecond):
		}
	}
	t.Fatalf("no new checkpoint in %s after 2 minutes", dir)
	return false
}

// runSummary is the --json output of enflow train.
type runSummary struct {
	Epochs      int      `json:"epochs"`
	Steps       int64    `json:"steps"`
	BestEpoch   int      `json:"best_epoch"`
	TestNLL     *float64 `json:"test_nll"`
	Interrupted bool     `json:"interrupted"`
}

func parseSummary(t *testing.T, s string) runSummary {
	t.Helper()
	var r runSummary
	if err := json.Unmarshal([]byte(s), &r); err != nil {
		t.Fatalf("summary %q: %v", s, err)
	}
	return r
}

// compareRuns checks that run dir ended exactly like the reference: same metrics rows (but
// wall times), same result, same model.json, and the same variables in its last and best
// checkpoints — the model parameters and everything else a checkpoint holds (AdamW moments,
// step counters, the adaptive clipping queue, the context's RNG state).
func compareRuns(t *testing.T, dir, refDir string) {
	t.Helper()
	got, err := ReadMetricsCSV(dir)
	if err != nil {
		t.Fatal(err)
	}
	want, err := ReadMetricsCSV(refDir)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("%d metric rows, uninterrupted run has %d", len(got), len(want))
	}
	for i := range want {
		g, w := got[i], want[i]
		if g.Epoch != w.Epoch || g.Step != w.Step || g.NFEForward != w.NFEForward || g.NFEEval != w.NFEEval ||
			!near(g.TrainNLL, w.TrainNLL) || !near(g.TrainLoss, w.TrainLoss) || !near(g.ValNLL, w.ValNLL) ||
			!near(g.TestNLL, w.TestNLL) || !near(g.GradNorm, w.GradNorm) || !near(g.LR, w.LR) ||
			!near(g.JS, w.JS) || !near(g.AtomStable, w.AtomStable) || !near(g.MolStable, w.MolStable) {
			t.Errorf("epoch %d:\n resumed       %+v\n uninterrupted %+v", i, g, w)
		}
	}
	gs, gerr := os.ReadFile(filepath.Join(dir, ModelFileName))
	ws, werr := os.ReadFile(filepath.Join(refDir, ModelFileName))
	if gerr != nil || werr != nil || !bytes.Equal(gs, ws) { // the architecture and p(M) (QM9)
		t.Errorf("%s differs from the uninterrupted run's (%v, %v):\n%s\nvs\n%s", ModelFileName, gerr, werr, gs, ws)
	}
	for _, which := range []string{"last", "best"} {
		gv, wv := checkpointVariables(t, dir, which), checkpointVariables(t, refDir, which)
		for name, w := range wv {
			g, ok := gv[name]
			switch {
			case !ok:
				t.Errorf("%s checkpoint: variable %s missing after the resume", which, name)
			case g.exact != w.exact:
				t.Errorf("%s checkpoint: variable %s: %s resumed, %s uninterrupted", which, name, g.exact, w.exact)
			case len(g.floats) != len(w.floats):
				t.Errorf("%s checkpoint: variable %s has %d values, uninterrupted %d", which, name, len(g.floats), len(w.floats))
			default:
				for i := range w.floats {
					if !near(g.floats[i], w.floats[i]) {
						t.Errorf("%s checkpoint: variable %s[%d]: %.15g resumed, %.15g uninterrupted", which, name, i, g.floats[i], w.floats[i])
						break
					}
				}
			}
		}
		for name := range gv {
			if _, ok := wv[name]; !ok {
				t.Errorf("%s checkpoint: variable %s only after the resume", which, name)
			}
		}
	}
	var gr, wr map[string]any
	for _, x := range []struct {
		dir string
		m   *map[string]any
	}{{dir, &gr}, {refDir, &wr}} {
		data, err := os.ReadFile(filepath.Join(x.dir, ResultFileName))
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(data, x.m); err != nil {
			t.Fatal(err)
		}
	}
	for _, k := range []string{"epochs", "steps", "best_epoch", "best_val_nll", "test_nll", "interrupted", "mol_stable", "js_div", "recoveries"} {
		if fmt.Sprint(gr[k]) != fmt.Sprint(wr[k]) {
			t.Errorf("result.json %s: %v resumed, %v uninterrupted", k, gr[k], wr[k])
		}
	}
}

// near is equality up to rounding in the last digits (NaN equals NaN).
func near(a, b float64) bool {
	return (math.IsNaN(a) && math.IsNaN(b)) || math.Abs(a-b) <= 1e-9*math.Max(1, math.Abs(b))
}

// checkpointVar is one checkpoint variable: float values, or any other dtype's (step counters,
// RNG state) printed, to be compared exactly.
type checkpointVar struct {
	floats []float64
	exact  string
}

// checkpointVariables returns every variable of a run's last or best checkpoint, by scope and
// name.
func checkpointVariables(t *testing.T, dir, which string) map[string]checkpointVar {
	t.Helper()
	lm, err := loadCheckpoint(dir, which, true)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]checkpointVar{}
	for v := range lm.Ctx.IterVariables() {
		val, err := v.Value()
		if err != nil {
			t.Fatalf("%s: variable %s: %v", dir, v.ScopeAndName(), err)
		}
		var cv checkpointVar
		if !val.DType().IsFloat() {
			cv.exact = fmt.Sprintf("%s %v", val.DType(), val.Value())
		} else if cv.floats, err = floatsOf(val); err != nil {
			t.Fatalf("%s: variable %s: %v", dir, v.ScopeAndName(), err)
		}
		out[v.ScopeAndName()] = cv
	}
	if len(out) == 0 {
		t.Fatalf("%s: no variables in the %s checkpoint", dir, which)
	}
	return out
}

// TestKillResume runs the DW4 reference once and then the two interruption scenarios.
func TestKillResume(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the enflow binary; skipped in -short mode")
	}
	tmp := t.TempDir()
	dataDir := filepath.Join(tmp, "data")
	writeTinyDW4(t, dataDir, map[string]int{"train": 40, "val": 20, "test": 20})
	testKillResume(t, tmp, dw4KillCase(dataDir))
}

// testKillResume builds the binary, runs kc uninterrupted into tmp/ref, and then runs the
// SIGKILL and the SIGTERM/SIGINT scenarios against it.
func testKillResume(t *testing.T, tmp string, kc killCase) {
	t.Helper()
	bin := buildEnflow(t)
	refDir := filepath.Join(tmp, "ref")
	start := time.Now()
	ref := parseSummary(t, runEnflow(t, bin, kc.args(refDir)...))
	refWall := time.Since(start)
	if ref.Epochs != kc.epochs || ref.Steps != kc.steps || ref.Interrupted || ref.TestNLL == nil {
		t.Fatalf("reference run: %+v", ref)
	}
	t.Logf("uninterrupted run: %v", refWall)
	t.Run("SIGKILL at random times", func(t *testing.T) { killAndResume(t, bin, kc, refDir, refWall) })
	t.Run("SIGTERM and SIGINT", func(t *testing.T) { terminateAndResume(t, bin, kc, refDir, refWall) })
}

// killAndResume SIGKILLs `enflow train` at random times after its first checkpoint,
// resumes it with --resume after each kill, and requires the final parameters, metrics and
// result to equal those of an uninterrupted run with the same seed. The kill times are drawn
// from ENFLOW_KILL_SEED (logged; random by default).
func killAndResume(t *testing.T, bin string, kc killCase, refDir string, refWall time.Duration) {
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("ENFLOW_KILL_SEED"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("ENFLOW_KILL_SEED: %v", err)
		}
		seed = v
	}
	t.Logf("kill times from ENFLOW_KILL_SEED=%d", seed)
	rng := rand.New(rand.NewPCG(seed, 1))

	dir := filepath.Join(t.TempDir(), "run")
	kills := 0
segments:
	for attempt := 0; kills < 3 && attempt < 6; attempt++ {
		args := kc.args(dir)
		if attempt > 0 {
			args = resumeArgs(dir)
		}
		seen := map[string]bool{}
		if l, _ := listCheckpoints(dir); len(l) > 0 {
			for _, c := range l {
				seen[c] = true
			}
		}
		var stderr bytes.Buffer
		cmd := startEnflow(t, bin, &stderr, args...)
		done := make(chan struct{})
		waitErr := make(chan error, 1)
		go func() { waitErr <- cmd.Wait(); close(done) }()
		// The first kill comes after the first checkpoint, later ones after the resumed
		// process wrote a checkpoint of its own, then after a random part of a run's time.
		if !waitForCheckpoint(t, dir, seen, done) {
			if err := <-waitErr; err != nil {
				t.Fatalf("run ended before a checkpoint: %v\n%s", err, stderr.String())
			}
			break segments // finished: nothing left to kill
		}
		delay := time.Duration(rng.Float64() * float64(refWall) / 3)
		select {
		case err := <-waitErr:
			if err != nil {
				t.Fatalf("run failed: %v\n%s", err, stderr.String())
			}
			t.Logf("segment %d finished before its kill", attempt)
			break segments
		case <-time.After(delay):
			if err := cmd.Process.Signal(syscall.SIGKILL); err != nil && !errors.Is(err, os.ErrProcessDone) {
				t.Fatal(err)
			}
			err := <-waitErr
			var ee *exec.ExitError
			if errors.As(err, &ee) && !ee.Exited() {
				kills++
				l, _ := listCheckpoints(dir)
				t.Logf("kill %d after %v; checkpoints: %v", kills, delay, l)
			} else if err != nil {
				t.Fatalf("run failed: %v\n%s", err, stderr.String())
			}
		}
	}
	if kills == 0 {
		t.Fatal("no kill landed during training")
	}
	res := parseSummary(t, runEnflow(t, bin, resumeArgs(dir)...))
	if res.Interrupted || res.Epochs != kc.epochs || res.Steps != kc.steps {
		t.Fatalf("final resume: %+v", res)
	}
	compareRuns(t, dir, refDir)
}

// terminateAndResume sends SIGTERM (and then SIGINT to the resumed run): the process must
// stop cleanly, exit non-zero with a checkpoint of its exact position and an "interrupted"
// result, and a resume must end exactly like the uninterrupted run.
func terminateAndResume(t *testing.T, bin string, kc killCase, refDir string, refWall time.Duration) {
	dir := filepath.Join(t.TempDir(), "run")
	for i, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT} {
		args := kc.args(dir)
		if i > 0 {
			args = resumeArgs(dir)
		}
		seen := map[string]bool{}
		if l, _ := listCheckpoints(dir); len(l) > 0 {
			for _, c := range l {
				seen[c] = true
			}
		}
		var stderr bytes.Buffer
		cmd := startEnflow(t, bin, &stderr, args...)
		done := make(chan struct{})
		waitErr := make(chan error, 1)
		go func() { waitErr <- cmd.Wait(); close(done) }()
		if !waitForCheckpoint(t, dir, seen, done) {
			t.Fatalf("run ended before its first checkpoint: %v\n%s", <-waitErr, stderr.String())
		}
		time.Sleep(refWall / 10)
		sent := time.Now()
		if err := cmd.Process.Signal(sig); err != nil {
			t.Fatal(err)
		}
		var err error
		select {
		case err = <-waitErr:
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			t.Fatalf("%v: no exit 30 s after the signal\n%s", sig, stderr.String())
		}
		var ee *exec.ExitError
		if !errors.As(err, &ee) || !ee.Exited() || ee.ExitCode() != 1 {
			t.Fatalf("%v: want a clean exit with status 1, got %v\n%s", sig, err, stderr.String())
		}
		if !strings.Contains(stderr.String(), "interrupted; checkpoint written") || !strings.Contains(stderr.String(), ErrInterrupted.Error()) {
			t.Errorf("%v: stderr lacks the interruption messages:\n%s", sig, stderr.String())
		}
		data, rerr := os.ReadFile(filepath.Join(dir, ResultFileName))
		if rerr != nil || !bytes.Contains(data, []byte(`"interrupted": true`)) {
			t.Errorf("%v: result.json %s (%v)", sig, data, rerr)
		}
		lm, lerr := LoadCheckpoint(dir, "last")
		if lerr != nil {
			t.Fatalf("%v: newest checkpoint not loadable: %v", sig, lerr)
		}
		st, _, serr := loadRunState(lm.Ctx)
		if serr != nil || st == nil {
			t.Fatalf("%v: no run state in the checkpoint: %v", sig, serr)
		}
		t.Logf("%v: exited %v after the signal at epoch %d, batch %d (step %d)", sig, time.Since(sent).Round(time.Millisecond), st.Epoch, st.Batch, st.Step)
	}
	res := parseSummary(t, runEnflow(t, bin, resumeArgs(dir)...))
	if res.Interrupted || res.Epochs != kc.epochs || res.Steps != kc.steps {
		t.Fatalf("final resume: %+v", res)
	}
	compareRuns(t, dir, refDir)
}

// TestQM9KillResume is TestKillResume for `enflow train --dataset qm9`, the joint atom-type +
// position E-NF: the variational dequantizer, ActNorm's data-dependent initialisation, the
// adaptive clipping queue (on by default for qm9), AdamW's state, the data-order RNG, p(M) and
// the per-evaluation stability samples must all come back from a checkpoint unchanged.
func TestQM9KillResume(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the enflow binary; skipped in -short mode")
	}
	tmp := t.TempDir()
	dataDir := filepath.Join(tmp, "data")
	writeTinyQM9(t, dataDir, map[string]int{"train": 4, "val": 1, "test": 1})
	testKillResume(t, tmp, qm9KillCase(dataDir))
}

// qm9KillCase trains the molecule E-NF on 24 molecules for 6 epochs of 4 batches, evaluating
// (bound and 4 sampled molecules' stability) every 2 epochs. The qm9 defaults left on: adaptive
// clipping seeded at 3000, Gaussian Hutchinson noise, the ODE regulariser.
func qm9KillCase(dataDir string) killCase {
	return killCase{epochs: 6, steps: 24, args: func(out string) []string {
		return []string{"train", "--dataset", "qm9", "--data", dataDir, "--out", out,
			"--epochs", "6", "--test-every", "2", "--batch", "6", "--eval-batch", "6", "--stability-samples", "4",
			"--hidden", "8", "--layers", "1", "--solver", "rk4", "--steps", "2", "--dtype", "float64",
			"--lr", "5e-3", "--seed", "3", "--keep", "2", "--no-progress", "--json"}
	}}
}

// tinyMolecules are small H/C/N/O molecules of 3 to 5 atoms (approximate geometries, Å).
var tinyMolecules = []struct {
	name string
	z    []int
	pos  [][3]float64
}{
	{"water", []int{8, 1, 1}, [][3]float64{{0, 0, 0.117}, {0, 0.757, -0.469}, {0, -0.757, -0.469}}},
	{"hydrogen cyanide", []int{1, 6, 7}, [][3]float64{{0, 0, -1.064}, {0, 0, 0}, {0, 0, 1.156}}},
	{"carbon dioxide", []int{8, 6, 8}, [][3]float64{{0, 0, -1.16}, {0, 0, 0}, {0, 0, 1.16}}},
	{"ammonia", []int{7, 1, 1, 1}, [][3]float64{
		{0, 0, 0.116}, {0.939, 0, -0.271}, {-0.470, 0.813, -0.271}, {-0.470, -0.813, -0.271}}},
	{"formaldehyde", []int{6, 8, 1, 1}, [][3]float64{
		{0, 0, -0.529}, {0, 0, 0.676}, {0, 0.935, -1.111}, {0, -0.935, -1.111}}},
	{"methane", []int{6, 1, 1, 1, 1}, [][3]float64{
		{0, 0, 0}, {0.629, 0.629, 0.629}, {-0.629, -0.629, 0.629}, {-0.629, 0.629, -0.629}, {0.629, -0.629, -0.629}}},
}

// writeTinyQM9 writes DIR/qm9_{train,valid,test}.parquet (the layout of `enflow etl qm9`) with
// copies[split] randomly displaced copies of each of tinyMolecules, so that every split has
// every size of p(M).
func writeTinyQM9(t *testing.T, dir string, copies map[string]int) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(7, 13))
	id := int64(1)
	for _, split := range []string{"train", "val", "test"} {
		var mols []molecule.Molecule
		for range copies[split] {
			for _, tm := range tinyMolecules {
				m := molecule.Molecule{ID: id, Split: split, Name: tm.name, Z: slices.Clone(tm.z), Omega1: math.NaN()}
				if split == "val" {
					m.Split = "valid"
				}
				for k := range m.Props {
					m.Props[k] = math.NaN()
				}
				for _, p := range tm.pos {
					m.Positions = append(m.Positions, [3]float64{
						p[0] + 0.05*rng.NormFloat64(), p[1] + 0.05*rng.NormFloat64(), p[2] + 0.05*rng.NormFloat64()})
				}
				mols = append(mols, m)
				id++
			}
		}
		writeMoleculeTable(t, MoleculeSplitPath(dir, SystemQM9, split), mols)
	}
}
