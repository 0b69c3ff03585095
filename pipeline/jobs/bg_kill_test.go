package jobs

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/enflow/enflow/etl/particles"
	"github.com/enflow/enflow/pipeline/train"
)

// bgKillSpec is a two-stage RealNVP unit whose stage 2 is long enough (100 epochs of a few
// milliseconds each) to be killed midway, with two attached evaluations.
const bgKillSpec = `
name = "bg-kill"
max_attempts = 2
[train]
epochs = 2
test-every = 1
batch = 20
max-steps-per-epoch = 2
eval-n = 20
eval-batch = 20
hidden = 8
layers = 2
dtype = "float32"

[[experiment]]
dataset = "dw4"
data_dir = "bg"
models = ["realnvp"]
n_data = [60]
finetune = { objective = "ml+kl", lambda = "1.0:0.5", epochs = 100, test-every = 50, kl-samples = 16 }

[[evaluation]]
kind = "nll"
split = "train"

[[evaluation]]
kind = "ess"
n = 64
`

// bgKillStage2Epochs is the finetune epochs of bgKillSpec.
const bgKillStage2Epochs = 100

// fileStamp is what a file looked like: size, modification time and content hash.
type fileStamp struct {
	size  int64
	mtime time.Time
	sum   string
}

// stampTree records every regular file below dir (relative path → stamp).
func stampTree(t *testing.T, dir string) map[string]fileStamp {
	t.Helper()
	out := map[string]fileStamp{}
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		sum := sha256.Sum256(b)
		out[rel] = fileStamp{size: fi.Size(), mtime: fi.ModTime(), sum: hex.EncodeToString(sum[:])}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// attemptSection returns the part of a unit's log.txt written by attempt n (from its
// "=== attempt n " header to the next header).
func attemptSection(log string, n int) string {
	head := "=== attempt " + strconv.Itoa(n) + " "
	i := strings.Index(log, head)
	if i < 0 {
		return ""
	}
	s := log[i+len(head):]
	if j := strings.Index(s, "\n=== attempt "); j >= 0 {
		s = s[:j]
	}
	return s
}

// resumedEpoch matches enflow train's "resuming" log line (slog text format).
var resumedEpoch = regexp.MustCompile(`msg=resuming .*\bepoch=(\d+)`)

// TestBGStage2KillResume runs bgKillSpec with the real enflow binary, SIGKILLs the process
// group of `enflow jobs run` (the runner and its enflow train child) once stage 1 is complete
// and stage 2 (finetune/) has written checkpoints, and runs it again: the second attempt is ok
// and resumed, stage 1 is not run again (its files are byte-for-byte those of the first
// attempt), stage 2 continues from its checkpointed epoch, and every unit has exactly one
// results part without duplicated rows.
func TestBGStage2KillResume(t *testing.T) {
	if testing.Short() {
		t.Skip("builds enflow, trains a tiny RealNVP in two stages and kills it; skipped in -short mode")
	}
	bin := buildEnflow(t)
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	writeTinyParticles(t, filepath.Join(data, "bg"), particles.DW4, map[string]int{"train": 60, "val": 20, "test": 20}, 7)
	specPath := filepath.Join(dir, "bg-kill.toml")
	if err := os.WriteFile(specPath, []byte(bgKillSpec), 0o644); err != nil {
		t.Fatal(err)
	}
	state := filepath.Join(dir, "state")
	const codeVersion = "bg-kill-test"
	spec, err := LoadSpec(specPath)
	if err != nil {
		t.Fatal(err)
	}
	plan, err := Expand(spec, PlanOptions{DataDir: data, Code: CodeInfo{Version: codeVersion}})
	if err != nil {
		t.Fatal(err)
	}
	if len(plan.Units) != 3 || plan.Units[0].Kind != KindTrain || plan.Units[0].Finetune == nil {
		t.Fatalf("unexpected plan of bgKillSpec: %d units", len(plan.Units))
	}
	tu := plan.Units[0]
	unitDir := filepath.Join(state, unitsDirName, tu.ID)
	stage1, stage2 := filepath.Join(unitDir, runDirName), filepath.Join(unitDir, finetuneDirName)
	results := filepath.Join(state, ResultsDirName)

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	env := append(os.Environ(), CodeVersionEnv+"="+codeVersion, "GOMLX_BACKEND=go")
	enflow := func(args ...string) *exec.Cmd {
		cmd := exec.CommandContext(ctx, bin, args...)
		cmd.Env = env
		return cmd
	}
	runArgs := []string{"jobs", "run", specPath, "--data", data, "--state", state, "--json"}

	// Attempt 1, in its own process group, killed with the group during stage 2.
	var log1 bytes.Buffer
	run1 := enflow(runArgs...)
	run1.Stderr = &log1
	run1.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := run1.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- run1.Wait() }()
	start := time.Now()
	deadline := time.After(90 * time.Second)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	var ckpts []string
poll:
	for {
		select {
		case err := <-exited:
			t.Fatalf("jobs run exited (%v) before stage 2 could be killed midway; log:\n%s", err, log1.String())
		case <-deadline:
			_ = syscall.Kill(-run1.Process.Pid, syscall.SIGKILL)
			<-exited
			t.Fatalf("stage 2 wrote no two checkpoints within 90 s; log:\n%s", log1.String())
		case <-tick.C:
		}
		if complete, _ := trainState(stage1); !complete {
			continue
		}
		// Two checkpoints: the older one was fsynced before the newer one was started, so
		// stage 2 has a complete checkpoint after epoch ≥ 1 even if the kill tears the newest.
		ckpts, _ = filepath.Glob(filepath.Join(stage2, "checkpoint-*.json"))
		if len(ckpts) >= 2 {
			if err := syscall.Kill(-run1.Process.Pid, syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			break poll
		}
	}
	<-exited
	t.Logf("killed the process group after %.1f s, stage 2 with %d checkpoints", time.Since(start).Seconds(), len(ckpts))
	if complete, _ := trainState(stage2); complete {
		t.Fatalf("stage 2 completed before the kill: make bgKillSpec's finetune longer")
	}
	if _, finished, err := ListParts(results); err != nil {
		t.Fatal(err)
	} else if len(finished) != 0 {
		t.Fatalf("results before the rerun: %v, want none", finished)
	}
	// The whole group was killed: the unit's lock is released once the training child is gone.
	for lockDeadline := time.Now().Add(15 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		held, who := Probe(filepath.Join(unitDir, lockFileName), LockOptions{})
		if !held {
			break
		}
		if time.Now().After(lockDeadline) {
			t.Fatalf("the unit lock is still held 15 s after the group was killed: %s", who)
		}
	}
	before := stampTree(t, stage1)
	if len(before) == 0 {
		t.Fatal("stage 1 left no files")
	}

	var st StatusReport
	out, err := enflow("jobs", "status", specPath, "--data", data, "--state", state, "--json").Output()
	if err != nil {
		t.Fatalf("jobs status: %v", err)
	}
	if err := json.Unmarshal(out, &st); err != nil {
		t.Fatalf("jobs status --json: %v\n%s", err, out)
	}
	if u := st.Units[0]; u.ID != tu.ID || u.State != StatePartial || !strings.Contains(u.Detail, "stage 2: ") ||
		!strings.Contains(u.Detail, "1 attempt(s) killed") {
		t.Errorf("status of the killed unit: %s %q, want partial in stage 2 with 1 killed attempt", u.State, u.Detail)
	}

	// Attempt 2 completes.
	rerunStart := time.Now()
	sum, _ := runJobsJSON(t, enflow(runArgs...))
	t.Logf("rerun: %v in %.1f s", sum.Counts, time.Since(rerunStart).Seconds())
	if sum.Count(OutcomeRan) != 3 {
		t.Fatalf("rerun counts %v, want 3 ran", sum.Counts)
	}
	if r := sum.Reports[0]; r.ID != tu.ID || !r.Resumed {
		t.Errorf("rerun of the training unit: %+v, want resumed", r)
	}

	// attempts.jsonl: attempt 1 started and never ended (killed), attempt 2 ok and resumed.
	attempts, err := readAttempts(unitDir)
	if err != nil {
		t.Fatal(err)
	}
	if started, failed, killed, _ := attemptStats(attempts); started != 2 || failed != 0 || killed != 1 {
		t.Errorf("attempts: %d started, %d failed, %d killed; want 2, 0, 1", started, failed, killed)
	}
	var a2 *attempt
	for i := range attempts {
		if attempts[i].Attempt == 2 && attempts[i].Outcome != "started" {
			a2 = &attempts[i]
		}
	}
	if a2 == nil || a2.Outcome != "ok" || !a2.Resumed {
		t.Fatalf("attempt 2 %+v, want ok and resumed", a2)
	}

	// Stage 1 was not run again: its files are exactly those of attempt 1, all older than
	// attempt 2.
	after := stampTree(t, stage1)
	for rel, b := range before {
		a, ok := after[rel]
		switch {
		case !ok:
			t.Errorf("stage 1 file %s disappeared", rel)
		case a != b:
			t.Errorf("stage 1 file %s changed: %+v → %+v", rel, b, a)
		case !b.mtime.Before(a2.Started):
			t.Errorf("stage 1 file %s dated %v, not before attempt 2 (%v)", rel, b.mtime, a2.Started)
		}
	}
	for rel := range after {
		if _, ok := before[rel]; !ok {
			t.Errorf("stage 1 gained file %s in attempt 2", rel)
		}
	}

	// Stage 2 resumed from a checkpointed epoch: attempt 2 ran one training command, the
	// --resume of finetune/, which logged the epoch it resumed at.
	logText, err := os.ReadFile(filepath.Join(unitDir, logFileName))
	if err != nil {
		t.Fatal(err)
	}
	sec := attemptSection(string(logText), 2)
	var trainCmds []string
	sc := bufio.NewScanner(strings.NewReader(sec))
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		if l := sc.Text(); strings.HasPrefix(l, "--- enflow train ") {
			trainCmds = append(trainCmds, l)
		}
	}
	if len(trainCmds) != 1 || !strings.Contains(trainCmds[0], " --out "+stage2+" ") || !strings.HasSuffix(trainCmds[0], " --resume") {
		t.Errorf("attempt 2 training commands %q, want one --resume of %s", trainCmds, stage2)
	}
	m := resumedEpoch.FindStringSubmatch(sec)
	if m == nil {
		t.Fatalf("attempt 2's log has no resuming line:\n%s", sec)
	}
	if e, _ := strconv.Atoi(m[1]); e < 1 || e >= bgKillStage2Epochs {
		t.Errorf("stage 2 resumed at epoch %d, want 1 ≤ epoch < %d", e, bgKillStage2Epochs)
	} else {
		t.Logf("stage 2 resumed at epoch %d", e)
	}
	// Its metrics hold every epoch exactly once.
	curve, err := ReadCurve(filepath.Join(stage2, train.MetricsParquet))
	if err != nil {
		t.Fatal(err)
	}
	if len(curve.Epoch) != bgKillStage2Epochs {
		t.Errorf("stage 2 metrics: %d epochs, want %d", len(curve.Epoch), bgKillStage2Epochs)
	}
	for i, e := range curve.Epoch {
		if e != int64(i) {
			t.Errorf("stage 2 metrics row %d is epoch %d", i, e)
			break
		}
	}

	// Results: one part per unit, no duplicated rows; the train unit's rows say resumed.
	parts, finished, err := ListParts(results)
	if err != nil {
		t.Fatal(err)
	}
	if len(parts) != len(plan.Units) || len(finished) != len(plan.Units) {
		t.Errorf("%d results parts for %d units, want %d of each", len(parts), len(finished), len(plan.Units))
	}
	seen := map[string]bool{}
	for _, p := range parts {
		rows, err := ReadResultsFile(p)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rows {
			k := r.Unit + "/" + r.Metric
			if seen[k] {
				t.Errorf("duplicated result %s", k)
			}
			seen[k] = true
			if r.Unit != tu.ID {
				continue
			}
			if r.Attempt != 2 || !r.Resumed {
				t.Errorf("train row %s: attempt %d, resumed %v; want 2, true", r.Metric, r.Attempt, r.Resumed)
			}
			switch r.Metric {
			case "epochs":
				if r.Value != bgKillStage2Epochs {
					t.Errorf("stage 2 recorded %v epochs, want %d", r.Value, bgKillStage2Epochs)
				}
			case Stage1Prefix + "epochs":
				if r.Value != 2 {
					t.Errorf("stage 1 recorded %v epochs, want 2", r.Value)
				}
			}
		}
	}
	if len(seen) == 0 {
		t.Error("no result rows")
	}
}
