package jobs

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/enflow/enflow/etl/particles"
)

// blockingTrain is a fake enflow whose first training writes a checkpoint and then runs until
// it is cancelled (as enflow train checkpoints and exits on SIGTERM).
type blockingTrain struct {
	*fakeExec
	blocked bool
}

func (b *blockingTrain) Enflow(ctx context.Context, c Call) ([]byte, error) {
	if c.Args[0] == "train" && !b.blocked {
		b.blocked = true
		out := flagValue(c.Args, "--out")
		if err := os.MkdirAll(out, 0o755); err != nil {
			return nil, err
		}
		if err := os.WriteFile(filepath.Join(out, "checkpoint-n0000000-step-1.json"), []byte("{}"), 0o644); err != nil {
			return nil, err
		}
		<-ctx.Done()
		return nil, &ExecError{Args: c.Args, ExitCode: 1, Err: errors.Join(ctx.Err(), errors.New("exit status 1"))}
	}
	return b.fakeExec.Enflow(ctx, c)
}

// TestRunBudget: a run with a budget interrupts the unit in progress when it is spent, starts
// no other unit and says how many are left; the next run resumes the interrupted unit.
func TestRunBudget(t *testing.T) {
	o, fx := newTestOptions(t, testSpec)
	bx := &blockingTrain{fakeExec: fx}
	o.Exec, o.Budget = bx, 300*time.Millisecond
	start := time.Now()
	sum, err := Run(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	if el := time.Since(start); el > 5*time.Second {
		t.Errorf("the budgeted run took %v", el)
	}
	if !sum.BudgetReached || sum.BudgetS != 0.3 || sum.Finished != 0 || sum.Left != sum.InShard || sum.InShard == 0 {
		t.Errorf("summary: budget_reached %v budget_s %g finished %d left %d in shard %d", sum.BudgetReached, sum.BudgetS,
			sum.Finished, sum.Left, sum.InShard)
	}
	if sum.Count(OutcomeInterrupted) != 1 || sum.Count(OutcomeRan) != 0 || fx.count("train") != 0 {
		t.Errorf("counts %v, %d other trainings started; want one interrupted unit and nothing else run", sum.Counts, fx.count("train"))
	}
	var first UnitReport
	for _, r := range sum.Reports {
		if r.Outcome == OutcomeInterrupted {
			first = r
		}
	}
	as, err := readAttempts(filepath.Join(o.StateDir, unitsDirName, first.ID))
	if err != nil {
		t.Fatal(err)
	}
	if len(as) != 2 || as[1].Outcome != "interrupted" {
		t.Errorf("attempts of the interrupted unit: %+v", as)
	}

	// The next run, without a budget, resumes it and finishes everything.
	o.Budget = 0
	sum, err = Run(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	if sum.BudgetReached || sum.Left != 0 || sum.Finished != sum.InShard {
		t.Errorf("second run: budget_reached %v, finished %d, left %d", sum.BudgetReached, sum.Finished, sum.Left)
	}
	for _, r := range sum.Reports {
		if r.ID == first.ID && (r.Outcome != OutcomeRan || !r.Resumed) {
			t.Errorf("interrupted unit in the second run: %s, resumed %v", r.Outcome, r.Resumed)
		}
	}
	rows, parts := resultCounts(t, o.StateDir)
	for id, n := range parts {
		if n != 1 || rows[id] == 0 {
			t.Errorf("unit %s: %d parts, %d rows", id, n, rows[id])
		}
	}
}

// TestJobsRunBudgetCLI runs `enflow jobs run --budget 4s` (longer if the budget ends before the
// first checkpoint) on mini.toml with longer training: it stops at the budget with exit status
// 0 and units left, and the next run finishes the spec with every unit exactly once and the
// interrupted training resumed.
func TestJobsRunBudgetCLI(t *testing.T) {
	if testing.Short() {
		t.Skip("builds enflow and trains two small models; skipped in -short mode")
	}
	bin := buildEnflow(t)
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	writeTinyParticles(t, data, particles.DW4, map[string]int{"train": 100, "val": 40, "test": 40}, 5)
	specPath := miniSpec(t, bin, data, dir, "mini-long.toml", "epochs = 3", "epochs = 12")
	spec, err := LoadSpec(specPath)
	if err != nil {
		t.Fatal(err)
	}
	plan, err := Expand(spec, PlanOptions{DataDir: data, Code: CodeInfo{Version: "slurm-test"}})
	if err != nil {
		t.Fatal(err)
	}
	var state string
	var stderr bytes.Buffer // of the last run
	run := func(extra ...string) (*Summary, float64) {
		t.Helper()
		cmd := exec.Command(bin, append([]string{"jobs", "run", specPath, "--data", data, "--state", state, "--json"}, extra...)...)
		cmd.Env = append(os.Environ(), CodeVersionEnv+"=slurm-test")
		stderr.Reset()
		cmd.Stderr = &stderr
		start := time.Now()
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("jobs run %v: %v\n%s", extra, err, stderr.Bytes())
		}
		var sum Summary
		if err := json.Unmarshal(out, &sum); err != nil {
			t.Fatalf("jobs run --json: %v\n%s", err, out)
		}
		return &sum, time.Since(start).Seconds()
	}
	// The budget must end inside a training (after its first checkpoint) for the rerun to
	// resume it: on a loaded machine the child may still be starting at 4 s, so a run whose
	// interrupted unit left no checkpoint is repeated from scratch with twice the budget.
	var sum *Summary
	var wall float64
	interrupted := ""
	for budget := 4; ; budget *= 2 {
		state = filepath.Join(dir, fmt.Sprintf("state-%ds", budget))
		sum, wall = run("--budget", fmt.Sprintf("%ds", budget))
		t.Logf("--budget %ds: %v in %.1f s; %d finished, %d left", budget, sum.Counts, wall, sum.Finished, sum.Left)
		if !sum.BudgetReached || sum.Left == 0 || sum.Finished+sum.Left != len(plan.Units) {
			t.Fatalf("budgeted run: budget_reached %v, %d finished, %d left of %d units", sum.BudgetReached, sum.Finished,
				sum.Left, len(plan.Units))
		}
		if wall > float64(budget)+60 {
			t.Errorf("the budgeted run took %.1f s", wall)
		}
		interrupted = ""
		for _, r := range sum.Reports {
			if r.Outcome == OutcomeInterrupted {
				interrupted = r.ID
			}
		}
		if interrupted == "" {
			t.Fatalf("the budgeted run interrupted no unit: %v", sum.Counts)
		}
		if _, resumable := trainState(filepath.Join(state, unitsDirName, interrupted, runDirName)); resumable {
			break
		}
		if budget >= 32 {
			t.Fatalf("--budget %ds: the interrupted unit %s left no checkpoint to resume", budget, interrupted)
		}
		t.Logf("the interrupted unit %s had not written its first checkpoint; again with a longer budget", interrupted)
	}
	sum, wall = run()
	t.Logf("rerun: %v in %.1f s", sum.Counts, wall)
	if sum.BudgetReached || sum.Left != 0 {
		t.Errorf("rerun: budget_reached %v, %d left", sum.BudgetReached, sum.Left)
	}
	for _, r := range sum.Reports {
		if r.ID == interrupted && (r.Outcome != OutcomeRan || (r.Kind == KindTrain && !r.Resumed)) {
			t.Errorf("the interrupted unit in the rerun: %s, resumed %v; its log:\n%s", r.Outcome, r.Resumed, stderr.Bytes())
		}
	}
	for u, a := range checkExactlyOnce(t, plan, state) {
		want := [2]int{1, 0}
		if u == interrupted {
			want = [2]int{2, 1}
		}
		if a != want {
			t.Errorf("unit %s: %d attempts started, %d interrupted or killed; want %d, %d", u, a[0], a[1], want[0], want[1])
		}
	}
}
