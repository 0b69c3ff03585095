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
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The tests below run the real enflow binary on a tiny DW4 problem with the real E-NF (EGNN
// 8×1, rk4 with 2 steps, float64) and compare runs that are killed or terminated and then
// resumed with an uninterrupted run of the same seed.

// buildEnflow builds ./pipeline/cmd/enflow into dir.
func buildEnflow(t *testing.T, dir string) string {
	t.Helper()
	path := filepath.Join(dir, "enflow")
	cmd := exec.Command("go", "build", "-o", path, "./pipeline/cmd/enflow")
	cmd.Dir = filepath.Join("..", "..")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return path
}

// trainArgs are the flags of the tiny run. (--eval-batch is left at its default: a resumed
// run does not restore it from run.json, so a non-default value would change the evaluation
// batches after a resume.)
func trainArgs(dataDir, out string) []string {
	return []string{"train", "--dataset", "dw4", "--data", dataDir, "--out", out, "--n-data", "40",
		"--epochs", "8", "--test-every", "2", "--batch", "10",
		"--hidden", "8", "--layers", "1", "--solver", "rk4", "--steps", "2", "--dtype", "float64",
		"--lr", "5e-3", "--seed", "3", "--keep", "2", "--no-progress", "--json"}
}

func resumeArgs(out string) []string {
	return []string{"train", "--out", out, "--resume", "--no-progress", "--json"}
}

// runEnflow runs the binary to completion.
func runEnflow(t *testing.T, bin string, args ...string) (stdout string) {
	t.Helper()
	cmd := exec.Command(bin, args...)
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
	cmd.Stdout, cmd.Stderr = &bytes.Buffer{}, stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return cmd
}

// waitForCheckpoint waits until dir holds a checkpoint other than those in seen (or the process
// ended: done is closed).
func waitForCheckpoint(t *testing.T, dir string, seen map[string]bool, done <-chan struct{}) bool {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		l, _ := listCheckpoints(dir)
		for _, c := range l {
			if !seen[c] {
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
// wall times), same result, same parameters.
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
	near := func(a, b float64) bool {
		return (math.IsNaN(a) && math.IsNaN(b)) || math.Abs(a-b) <= 1e-9*math.Max(1, math.Abs(b))
	}
	for i := range want {
		g, w := got[i], want[i]
		if g.Epoch != w.Epoch || g.Step != w.Step || g.NFEForward != w.NFEForward || g.NFEEval != w.NFEEval ||
			!near(g.TrainNLL, w.TrainNLL) || !near(g.TrainLoss, w.TrainLoss) || !near(g.ValNLL, w.ValNLL) ||
			!near(g.TestNLL, w.TestNLL) || !near(g.GradNorm, w.GradNorm) || !near(g.LR, w.LR) {
			t.Errorf("epoch %d:\n resumed       %+v\n uninterrupted %+v", i, g, w)
		}
	}
	gp, wp := enfParams(t, dir), enfParams(t, refDir)
	if len(gp) != len(wp) || len(wp) == 0 {
		t.Fatalf("%d parameters, uninterrupted run has %d", len(gp), len(wp))
	}
	for i := range wp {
		if !near(gp[i], wp[i]) {
			t.Fatalf("parameter %d: %.15g resumed, %.15g uninterrupted", i, gp[i], wp[i])
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
	for _, k := range []string{"epochs", "steps", "best_epoch", "best_val_nll", "test_nll", "interrupted"} {
		if fmt.Sprint(gr[k]) != fmt.Sprint(wr[k]) {
			t.Errorf("result.json %s: %v resumed, %v uninterrupted", k, gr[k], wr[k])
		}
	}
}

// TestKillResume runs the reference once and then the two interruption scenarios.
func TestKillResume(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the enflow binary; skipped in -short mode")
	}
	tmp := t.TempDir()
	bin := buildEnflow(t, tmp)
	dataDir := filepath.Join(tmp, "data")
	writeTinyDW4(t, dataDir, map[string]int{"train": 40, "val": 20, "test": 20})
	refDir := filepath.Join(tmp, "ref")
	start := time.Now()
	ref := parseSummary(t, runEnflow(t, bin, trainArgs(dataDir, refDir)...))
	refWall := time.Since(start)
	if ref.Epochs != 8 || ref.Steps != 32 || ref.Interrupted || ref.TestNLL == nil {
		t.Fatalf("reference run: %+v", ref)
	}
	t.Logf("uninterrupted run: %v", refWall)
	t.Run("SIGKILL at random times", func(t *testing.T) { killAndResume(t, bin, dataDir, refDir, refWall) })
	t.Run("SIGTERM and SIGINT", func(t *testing.T) { terminateAndResume(t, bin, dataDir, refDir, refWall) })
}

// killAndResume SIGKILLs `enflow train` at random times after its first checkpoint,
// resumes it with --resume after each kill, and requires the final parameters, metrics and
// result to equal those of an uninterrupted run with the same seed. The kill times are drawn
// from ENFLOW_KILL_SEED (logged; random by default).
func killAndResume(t *testing.T, bin, dataDir, refDir string, refWall time.Duration) {
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
		args := trainArgs(dataDir, dir)
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
	if res.Interrupted || res.Epochs != 8 || res.Steps != 32 {
		t.Fatalf("final resume: %+v", res)
	}
	compareRuns(t, dir, refDir)
}

// terminateAndResume sends SIGTERM (and then SIGINT to the resumed run): the process must
// stop cleanly, exit non-zero with a checkpoint of its exact position and an "interrupted"
// result, and a resume must end exactly like the uninterrupted run.
func terminateAndResume(t *testing.T, bin, dataDir, refDir string, refWall time.Duration) {
	dir := filepath.Join(t.TempDir(), "run")
	for i, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT} {
		args := trainArgs(dataDir, dir)
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
	if res.Interrupted || res.Epochs != 8 {
		t.Fatalf("final resume: %+v", res)
	}
	compareRuns(t, dir, refDir)
}
