package jobs

import (
	"context"
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func outcomes(s *Summary) map[string]string {
	out := map[string]string{}
	for _, r := range s.Reports {
		out[r.ID] = r.Outcome
	}
	return out
}

// TestRunIdempotent runs a spec twice: the second run finds everything finished and writes
// nothing; every unit has exactly one results part.
func TestRunIdempotent(t *testing.T) {
	o, fx := newTestOptions(t, testSpec)
	ctx := context.Background()
	sum, err := Run(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	// 2 models × 2 sizes = 4 training units, 4 energy, 2 nll (enf only).
	if sum.Units != 10 || sum.Count(OutcomeRan) != 10 {
		t.Fatalf("first run: %d units, counts %v", sum.Units, sum.Counts)
	}
	if fx.count("train") != 4 || fx.count("sample") != 4 || fx.count("eval") != 2 {
		t.Errorf("calls: train %d sample %d eval %d", fx.count("train"), fx.count("sample"), fx.count("eval"))
	}
	rows1, parts1 := resultCounts(t, sum.StateDir)
	sum2, err := Run(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	if sum2.Count(OutcomeDone) != 10 {
		t.Errorf("second run: counts %v, want 10 done", sum2.Counts)
	}
	if fx.count("train") != 4 {
		t.Errorf("second run retrained: %d train calls", fx.count("train"))
	}
	rows2, parts2 := resultCounts(t, sum.StateDir)
	if len(parts2) != 10 {
		t.Errorf("%d units with results, want 10", len(parts2))
	}
	for id, n := range parts2 {
		if n != 1 || parts1[id] != 1 || rows2[id] != rows1[id] {
			t.Errorf("unit %s: %d parts (%d rows) after the second run, %d (%d) after the first", id, n, rows2[id], parts1[id], rows1[id])
		}
	}

	// The recorded rows: metadata and values.
	rows, err := ReadResults(sum.StateDir)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, r := range rows {
		k := r.Unit + "/" + r.Metric
		if seen[k] {
			t.Errorf("duplicate row %s", k)
		}
		seen[k] = true
		if r.Code != "test" || r.GitRev != "0123456789abcdef" || r.Host == "" || r.SpecName != "unit-test" ||
			r.StartedAt.IsZero() || r.EndedAt.Before(r.StartedAt) || r.Attempt != 1 || len(r.UnitHash) != 64 {
			t.Errorf("row metadata: %+v", r)
		}
		if r.UnitKind == KindTrain && r.Metric == "test_nll" {
			want := 10 + 1/float64(r.NData) + 0.01
			if r.Model == "enf" {
				want -= 2
			}
			if math.Abs(r.Value-want) > 1e-12 {
				t.Errorf("%s %s n=%d test_nll %g, want %g", r.Unit, r.Model, r.NData, r.Value, want)
			}
		}
		if r.UnitKind == KindTrain && r.Metric == "curve" && !strings.Contains(r.Detail, `"train_nll":[`) {
			t.Errorf("curve detail %q", r.Detail)
		}
		if r.UnitKind == KindEnergy && r.ParentUnit == "" {
			t.Errorf("energy row without parent unit")
		}
	}
	st, err := StatusOf(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	if st.Counts[OutcomeDone] != 10 {
		t.Errorf("status counts %v", st.Counts)
	}
	for _, u := range st.Units {
		if u.Kind == KindTrain && (u.Values["test_nll"] == 0 || u.Attempts != 1) {
			t.Errorf("status of %s: %+v", u.ID, u)
		}
	}
}

// TestRunSkipsLockedUnit: a unit whose lock is held by another scheduler is skipped (not
// waited for), its evaluations are blocked, and everything else runs; a later run finishes it.
func TestRunSkipsLockedUnit(t *testing.T) {
	o, fx := newTestOptions(t, testSpec)
	plan, state, err := PlanOf(o)
	if err != nil {
		t.Fatal(err)
	}
	victim := plan.Units[0]
	if victim.Kind != KindTrain {
		t.Fatalf("first unit is %s", victim.Kind)
	}
	dir := filepath.Join(state, unitsDirName, victim.ID)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, mode := range []LockMode{LockFlock, LockExclusive} {
		t.Run(string(mode), func(t *testing.T) {
			o.Lock.Mode = mode
			other, err := TryLock(filepath.Join(dir, lockFileName), LockOptions{Mode: mode, Holder: holder(os.Getpid())})
			if err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			sum, err := Run(context.Background(), o)
			other.Unlock()
			if err != nil {
				t.Fatal(err)
			}
			if time.Since(start) > 20*time.Second {
				t.Errorf("the run waited for the lock")
			}
			out := outcomes(sum)
			if out[victim.ID] != OutcomeBusy {
				t.Errorf("locked unit: %s, want busy", out[victim.ID])
			}
			for _, u := range plan.Units {
				switch {
				case u == victim:
				case u.Parent == victim:
					if out[u.ID] != OutcomeBlocked {
						t.Errorf("evaluation of the locked unit: %s, want blocked", out[u.ID])
					}
				case out[u.ID] != OutcomeRan && out[u.ID] != OutcomeDone:
					t.Errorf("unit %s: %s", u.ID, out[u.ID])
				}
			}
			if _, parts := resultCounts(t, sum.StateDir); parts[victim.ID] != 0 {
				t.Errorf("locked unit has results")
			}
		})
	}
	o.Lock.Mode = LockAuto
	trains := fx.count("train")
	sum, err := Run(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	if out := outcomes(sum); out[victim.ID] != OutcomeRan || fx.count("train") != trains+1 {
		t.Errorf("after release: %s, %d new train calls", out[victim.ID], fx.count("train")-trains)
	}
}

// TestShardRuns: two schedulers with shards 0/2 and 1/2 on one state directory together run
// every unit exactly once.
func TestShardRuns(t *testing.T) {
	o, fx := newTestOptions(t, testSpec)
	total := 0
	ran := map[string]int{}
	for i := range 2 {
		o.Shard = Shard{i, 2}
		sum, err := Run(context.Background(), o)
		if err != nil {
			t.Fatal(err)
		}
		total += sum.InShard
		for _, r := range sum.Reports {
			if r.Outcome != OutcomeRan {
				t.Errorf("shard %d: unit %s %s (%s)", i, r.ID, r.Outcome, r.Error)
			}
			ran[r.ID]++
		}
	}
	if total != 10 || len(ran) != 10 {
		t.Errorf("shards hold %d units (%d distinct), want 10", total, len(ran))
	}
	for id, n := range ran {
		if n != 1 {
			t.Errorf("unit %s ran %d times", id, n)
		}
	}
	if fx.count("train") != 4 {
		t.Errorf("%d train calls, want 4", fx.count("train"))
	}
	_, parts := resultCounts(t, o.StateDir)
	if len(parts) != 10 {
		t.Errorf("%d units with results, want 10", len(parts))
	}
}

func TestRunFailuresAndRetries(t *testing.T) {
	o, fx := newTestOptions(t, testSpec)
	broken := true
	fx.fail = func(args []string) error {
		if broken && args[0] == "train" && flagValue(args, "--model") == "kernel" {
			return errors.New("boom")
		}
		return nil
	}
	ctx := context.Background()
	for attempt := 1; attempt <= 3; attempt++ {
		sum, err := Run(ctx, o)
		if err != nil {
			t.Fatal(err)
		}
		want := OutcomeFailed
		if attempt == 3 { // max_attempts = 2
			want = OutcomeGaveUp
		}
		if sum.Count(want) != 2 || sum.Count(OutcomeBlocked) != 2 {
			t.Errorf("attempt %d: counts %v, want 2 %s and 2 blocked", attempt, sum.Counts, want)
		}
		for _, r := range sum.Reports {
			if r.Outcome == want && !strings.Contains(r.Error, "boom") {
				t.Errorf("attempt %d: error %q does not say why", attempt, r.Error)
			}
		}
	}
	st, err := StatusOf(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	if st.Counts[OutcomeGaveUp] != 2 {
		t.Errorf("status counts %v, want 2 gave-up", st.Counts)
	}
	broken = false
	o.RetryFailed = true
	sum, err := Run(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	if sum.Count(OutcomeRan) != 4 || sum.Count(OutcomeDone) != 6 {
		t.Errorf("retry: counts %v", sum.Counts)
	}
}

// TestRunResumesCheckpoint: a training unit that left a checkpoint is resumed with --resume.
func TestRunResumesCheckpoint(t *testing.T) {
	o, fx := newTestOptions(t, testSpec)
	killed := false
	fx.checkpointOnly = func(args []string) bool {
		if !killed && flagValue(args, "--model") == "enf" {
			killed = true
			return true
		}
		return false
	}
	o.MaxUnits = 5 // kernel n=50 and n=100 with their energies, then enf n=50 (killed)
	sum, err := Run(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	if sum.Count(OutcomeFailed) != 1 || sum.Count(OutcomeNotRun) == 0 {
		t.Fatalf("counts %v", sum.Counts)
	}
	st, err := StatusOf(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	if st.Counts[StatePartial] != 1 {
		t.Errorf("status counts %v, want 1 partial", st.Counts)
	}
	o.MaxUnits = 0
	sum, err = Run(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	resumed := 0
	for _, r := range sum.Reports {
		if r.Resumed {
			resumed++
		}
	}
	if sum.Count(OutcomeRan)+sum.Count(OutcomeDone) != 10 || resumed != 1 {
		t.Errorf("counts %v, %d resumed", sum.Counts, resumed)
	}
	n := 0
	for _, c := range fx.calls {
		if c[0] == "train" && hasFlag(c, "--resume") {
			n++
		}
	}
	if n != 1 {
		t.Errorf("%d train calls with --resume, want 1", n)
	}
}

func TestRunReportsUnsupportedAndMissing(t *testing.T) {
	spec := testSpec + `
[[experiment]]
dataset = "qm9-positional"
models = ["enf"]
n_data = [13832]

[[experiment]]
dataset = "lj13"
models = ["enf"]
n_data = [10]

[[evaluation]]
kind = "js"
`
	o, _ := newTestOptions(t, spec)
	o.Caps = Capabilities{Dataset: func(ds string) error {
		if ds == DatasetDW4 || ds == DatasetLJ13 {
			return nil
		}
		return errors.New("enflow train supports dw4 and lj13 only")
	}}
	sum, err := Run(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	var unsup, missing *UnitReport
	for i, r := range sum.Reports {
		switch r.Outcome {
		case OutcomeUnsupported:
			unsup = &sum.Reports[i]
		case OutcomeMissingInput:
			missing = &sum.Reports[i]
		}
	}
	if unsup == nil || unsup.Dataset != DatasetQM9Positional || !strings.Contains(unsup.Error, "dataset qm9-positional") {
		t.Errorf("unsupported unit: %+v", unsup)
	}
	if missing == nil || missing.Dataset != DatasetLJ13 || !strings.Contains(missing.Error, "lj13_train.parquet") {
		t.Errorf("missing-input unit: %+v", missing)
	}
	if sum.Count(OutcomeRan) != 10 {
		t.Errorf("the supported units did not all run: %v", sum.Counts)
	}
}
