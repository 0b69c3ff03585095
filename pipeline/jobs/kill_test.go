package jobs

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/enflow/enflow/etl/particles"
	"github.com/enflow/enflow/etl/table"
)

// enflowBuild is the enflow binary shared by the tests of one test process (built once; the
// directory is removed by TestMain).
var enflowBuild struct {
	once sync.Once
	dir  string
	bin  string
	err  error
}

// buildEnflow builds the enflow binary (once per test process) and returns its path.
func buildEnflow(t *testing.T) string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("CI=true: the go tool is needed to build enflow: %v", err)
		}
		t.Skipf("no go tool on PATH: %v", err)
	}
	b := &enflowBuild
	b.once.Do(func() {
		if b.dir, b.err = os.MkdirTemp("", "enflow-jobs-test-"); b.err != nil {
			return
		}
		b.bin = filepath.Join(b.dir, "enflow")
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, goBin, "build", "-ldflags=-s -w", "-o", b.bin, "github.com/enflow/enflow/pipeline/cmd/enflow")
		start := time.Now()
		if out, err := cmd.CombinedOutput(); err != nil {
			b.err = fmt.Errorf("go build enflow: %v\n%s", err, out)
			return
		}
		t.Logf("built enflow in %.1f s", time.Since(start).Seconds())
	})
	if b.err != nil {
		t.Fatal(b.err)
	}
	return b.bin
}

func TestMain(m *testing.M) {
	code := m.Run()
	if enflowBuild.dir != "" {
		_ = os.RemoveAll(enflowBuild.dir)
	}
	os.Exit(code)
}

// TestMiniSpecKillAndResume runs `enflow jobs run jobs/mini.toml` as a child process, SIGKILLs
// it after its first unit finished and while the second training unit is midway (it has a
// checkpoint), and runs it again: the rerun completes without redoing finished units, resumes
// the killed training from its checkpoint, and writes every unit's results exactly once.
func TestMiniSpecKillAndResume(t *testing.T) {
	if testing.Short() {
		t.Skip("builds enflow and trains two small models; skipped in -short mode")
	}
	bin := buildEnflow(t)
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	writeTinyParticles(t, data, particles.DW4, map[string]int{"train": 100, "val": 40, "test": 40}, 5)
	state := filepath.Join(dir, "state")
	specPath, err := filepath.Abs(filepath.Join("..", "..", "jobs", "mini.toml"))
	if err != nil {
		t.Fatal(err)
	}
	env := append(os.Environ(), CodeVersionEnv+"=kill-test")
	enflow := func(ctx context.Context, args ...string) *exec.Cmd {
		cmd := exec.CommandContext(ctx, bin, args...)
		cmd.Env = env
		return cmd
	}

	// A build without the spec's baseline model: run the same spec with the stand-in model.
	var st StatusReport
	out, err := enflow(context.Background(), "jobs", "status", specPath, "--data", data, "--state", state, "--json").Output()
	if err != nil {
		t.Fatalf("jobs status: %v", err)
	}
	if err := json.Unmarshal(out, &st); err != nil {
		t.Fatalf("jobs status --json: %v\n%s", err, out)
	}
	if st.Counts[OutcomeUnsupported] > 0 {
		text, err := os.ReadFile(specPath)
		if err != nil {
			t.Fatal(err)
		}
		specPath = filepath.Join(dir, "mini.toml")
		if err := os.WriteFile(specPath, bytes.Replace(text, []byte(`"kernel"`), []byte(`"gaussian"`), 1), 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("this build has no kernel model: running mini.toml with the gaussian stand-in")
	}
	spec, err := LoadSpec(specPath)
	if err != nil {
		t.Fatal(err)
	}
	plan, err := Expand(spec, PlanOptions{DataDir: data, Code: CodeInfo{Version: "kill-test"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(plan.Units) != 4 || plan.Units[0].Kind != KindTrain || plan.Units[2].Kind != KindTrain || plan.Units[2].Model != "enf" {
		t.Fatalf("unexpected plan of mini.toml: %d units", len(plan.Units))
	}
	first, second := plan.Units[0], plan.Units[2]
	results := filepath.Join(state, ResultsDirName)
	secondRun := filepath.Join(state, unitsDirName, second.ID, runDirName)

	// Run 1, killed.
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var log1 bytes.Buffer
	run1 := enflow(ctx, "jobs", "run", specPath, "--data", data, "--state", state, "--json")
	run1.Stderr = &log1
	if err := run1.Start(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	killed := false
	for !killed {
		time.Sleep(10 * time.Millisecond)
		_, finished, err := ListParts(results)
		if err != nil {
			t.Fatal(err)
		}
		if finished[second.ID] != "" || time.Since(start) > 2*time.Minute {
			_ = run1.Process.Kill()
			_ = run1.Wait()
			t.Fatalf("the second training unit finished (or 2 min passed) before it could be killed midway; log:\n%s", log1.String())
		}
		ckpts, _ := filepath.Glob(filepath.Join(secondRun, "checkpoint-*.json"))
		if finished[first.ID] != "" && len(ckpts) > 0 {
			if err := run1.Process.Signal(syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			killed = true
		}
	}
	_ = run1.Wait()
	t.Logf("killed the runner after %.1f s, with the second training unit checkpointed", time.Since(start).Seconds())
	// The training child dies with the runner (Pdeathsig) and releases the unit's lock.
	lockPath := filepath.Join(state, unitsDirName, second.ID, lockFileName)
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if held, _ := Probe(lockPath, LockOptions{}); !held {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the unit lock is still held 15 s after the runner was killed: the training child survived")
		}
	}
	_, finished1, err := ListParts(results)
	if err != nil {
		t.Fatal(err)
	}
	firstPart := finished1[first.ID]
	firstInfo, err := os.Stat(firstPart)
	if err != nil {
		t.Fatal(err)
	}

	// Run 2 completes.
	sum, log2 := runJobsJSON(t, enflow(ctx, "jobs", "run", specPath, "--data", data, "--state", state, "--json"))
	t.Logf("rerun: %v in %.1f s", sum.Counts, sum.WallS)
	reports := map[string]UnitReport{}
	for _, r := range sum.Reports {
		reports[r.ID] = r
	}
	if got := reports[first.ID].Outcome; got != OutcomeDone {
		t.Errorf("first unit (finished before the kill): %s in the rerun, want done", got)
	}
	rs := reports[second.ID]
	if rs.Outcome != OutcomeRan {
		t.Fatalf("killed unit: %s (%s) in the rerun, want ran", rs.Outcome, rs.Error)
	}
	if !rs.Resumed {
		// Allowed only when the checkpoint was torn by the kill: the unit then restarted cleanly.
		aside, _ := filepath.Glob(secondRun + ".failed-*")
		if len(aside) == 0 {
			t.Errorf("killed unit neither resumed nor restarted cleanly")
		}
		t.Logf("the killed unit's checkpoint could not be resumed; it restarted cleanly")
	}
	if !strings.Contains(log2, "resum") {
		t.Errorf("rerun log does not mention resuming:\n%s", log2)
	}
	if sum.Count(OutcomeRan)+sum.Count(OutcomeDone) != 4 {
		t.Errorf("rerun counts %v", sum.Counts)
	}

	// Results: one part per unit, the first one untouched, no duplicated rows.
	parts, finished, err := ListParts(results)
	if err != nil {
		t.Fatal(err)
	}
	if len(parts) != 4 || len(finished) != 4 {
		t.Errorf("%d result parts for %d units, want 4 and 4", len(parts), len(finished))
	}
	if fi, err := os.Stat(firstPart); err != nil || !fi.ModTime().Equal(firstInfo.ModTime()) || finished[first.ID] != firstPart {
		t.Errorf("the first unit's results part was rewritten or replaced")
	}
	wantRows := map[string]int{KindTrain: 11, KindEnergy: 9} // train: with nll_dims and both conventions
	seen := map[string]bool{}
	for _, p := range parts {
		n := 0
		err := table.ScanRecords(p, 0, func(rec arrow.RecordBatch) error {
			n += int(rec.NumRows())
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		rows, err := ReadResultsFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if len(rows) == 0 || n != len(rows) || n != wantRows[rows[0].UnitKind] {
			t.Errorf("%s: %d rows (ScanRecords %d), want %d", filepath.Base(p), len(rows), n, wantRows[rows[0].UnitKind])
		}
		for _, r := range rows {
			k := r.Unit + "/" + r.Metric
			if seen[k] {
				t.Errorf("duplicated result %s", k)
			}
			seen[k] = true
			if r.Unit == second.ID && r.Metric == "epochs" && r.Value != 3 {
				t.Errorf("resumed training recorded %g epochs, want 3", r.Value)
			}
		}
	}
	attempts, err := readAttempts(filepath.Join(state, unitsDirName, first.ID))
	if err != nil {
		t.Fatal(err)
	}
	if started, _, _, _ := attemptStats(attempts); started != 1 {
		t.Errorf("the first unit was started %d times, want 1", started)
	}
	attempts, err = readAttempts(filepath.Join(state, unitsDirName, second.ID))
	if err != nil {
		t.Fatal(err)
	}
	if started, failed, killedN, _ := attemptStats(attempts); started != 2 || failed != 0 || killedN != 1 {
		t.Errorf("killed unit attempts: %d started, %d failed, %d killed; want 2, 0, 1", started, failed, killedN)
	}

	// A third run has nothing to do.
	out, err = enflow(ctx, "jobs", "run", specPath, "--data", data, "--state", state, "--json").Output()
	if err != nil {
		t.Fatalf("third run: %v", err)
	}
	var sum3 Summary
	if err := json.Unmarshal(out, &sum3); err != nil {
		t.Fatal(err)
	}
	if sum3.Count(OutcomeDone) != 4 {
		t.Errorf("third run counts %v, want 4 done", sum3.Counts)
	}
}

// runJobsJSON runs an `enflow jobs run … --json` command to completion and returns its
// decoded Summary and its stderr (the scheduler's log).
func runJobsJSON(t *testing.T, cmd *exec.Cmd) (Summary, string) {
	t.Helper()
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("rerun: %v\n%s", err, stderr.String())
	}
	var sum Summary
	if err := json.Unmarshal(out, &sum); err != nil {
		t.Fatalf("rerun --json: %v\n%s", err, out)
	}
	return sum, stderr.String()
}
