package jobs

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/enflow/enflow/etl/particles"
)

// The Slurm test (TestSlurmArray) runs a one-node Slurm cluster on loopback: munged,
// slurmctld and slurmd started as child processes with a slurm.conf, a munge key and all
// state in a temporary directory. It needs root and Debian's slurm-wlm and munge
// (scripts/slurm/setup.sh installs them); `./just test-slurm` runs both.
const (
	slurmEnv = "ENFLOW_SLURM" // "1" runs TestSlurmArray
	// slurmMaxTasksEnv, if set to N, throttles the array to N tasks at a time (--array=0-3%N).
	slurmMaxTasksEnv = "ENFLOW_SLURM_MAX_TASKS"
	slurmShards      = 4
	slurmTimeout     = 8 * time.Minute // per array submission
)

// slurmCluster is a running one-node cluster.
type slurmCluster struct {
	dir  string
	conf string
	env  []string // SLURM_CONF for the client commands
	bins map[string]string
}

// slurmSkipOrFail skips the test, or fails it in CI: there a cluster that cannot start is an error.
func slurmSkipOrFail(t *testing.T, format string, args ...any) {
	t.Helper()
	if os.Getenv("CI") != "" {
		t.Fatalf("CI: "+format, args...)
	}
	t.Skipf(format, args...)
}

// lookSlurmBin finds a command on PATH or in /usr/sbin (Debian's daemons).
func lookSlurmBin(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	p := filepath.Join("/usr/sbin", name)
	if fi, err := os.Stat(p); err == nil && fi.Mode()&0o111 != 0 {
		return p, nil
	}
	return "", fmt.Errorf("%s not found on PATH or in /usr/sbin", name)
}

// freeLoopbackPort returns a TCP port that is free on 127.0.0.1 now.
func freeLoopbackPort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("finding a free loopback port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// startDaemon starts a daemon in the foreground as a child process and stops it (SIGTERM,
// then SIGKILL after 10 s) when the test ends.
func startDaemon(t *testing.T, logPath, bin string, args ...string) {
	t.Helper()
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		logf.Close()
		slurmSkipOrFail(t, "starting %s: %v", filepath.Base(bin), err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		logf.Close()
		close(done)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
		}
	})
}

// startSlurm configures and starts munged, slurmctld and slurmd in a temporary directory.
// It skips the test when they cannot start (fails it in CI).
func startSlurm(t *testing.T) *slurmCluster {
	t.Helper()
	c := &slurmCluster{bins: map[string]string{}}
	for _, name := range []string{"munged", "slurmctld", "slurmd", "sbatch", "squeue", "scancel", "scontrol", "sinfo"} {
		p, err := lookSlurmBin(name)
		if err != nil {
			slurmSkipOrFail(t, "Slurm is not installed (run scripts/slurm/setup.sh as root): %v", err)
		}
		c.bins[name] = p
	}
	// Short paths: the munge socket path must fit in a sockaddr_un.
	dir, err := os.MkdirTemp("", "enflow-slurm-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	c.dir = dir
	for _, d := range []string{"munge", "state", "spool", "log"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	key := make([]byte, 1024)
	if _, err := rand.Read(key); err != nil {
		t.Fatal(err)
	}
	keyPath := filepath.Join(dir, "munge", "munge.key")
	if err := os.WriteFile(keyPath, key, 0o600); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "munge", "munge.socket")
	startDaemon(t, filepath.Join(dir, "log", "munged.out"), c.bins["munged"], "--foreground", "--force",
		"--key-file="+keyPath, "--socket="+sock, "--pid-file="+filepath.Join(dir, "munge", "munged.pid"),
		"--log-file="+filepath.Join(dir, "log", "munged.log"), "--seed-file="+filepath.Join(dir, "munge", "munged.seed"))
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if _, err := os.Stat(sock); err == nil {
			break
		}
		if time.Now().After(deadline) {
			slurmSkipOrFail(t, "munged did not create its socket within 10 s:\n%s", readLogs(dir, "munged.out", "munged.log"))
		}
	}

	c.conf = filepath.Join(dir, "slurm.conf")
	conf := fmt.Sprintf(`# One-node cluster on loopback for pipeline/jobs TestSlurmArray.
ClusterName=enflowtest
SlurmctldHost=localhost(127.0.0.1)
SlurmUser=root
SlurmdUser=root
SlurmctldPort=%d
SlurmdPort=%d
CommunicationParameters=NoCtldInAddrAny,NoInAddrAny
AuthType=auth/munge
AuthInfo=socket=%[3]s
CredType=cred/munge
StateSaveLocation=%[4]s/state
SlurmdSpoolDir=%[4]s/spool
SlurmctldPidFile=%[4]s/slurmctld.pid
SlurmdPidFile=%[4]s/slurmd.pid
SlurmctldLogFile=%[4]s/log/slurmctld.log
SlurmdLogFile=%[4]s/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/backfill
MpiDefault=none
MailProg=/bin/true
ReturnToService=2
KillWait=10
InactiveLimit=0
MinJobAge=600
SlurmctldTimeout=30
SlurmdTimeout=30
NodeName=localhost NodeAddr=127.0.0.1 CPUs=2 State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
`, freeLoopbackPort(t), freeLoopbackPort(t), sock, dir)
	if err := os.WriteFile(c.conf, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	c.env = append(os.Environ(), "SLURM_CONF="+c.conf)
	startDaemon(t, filepath.Join(dir, "log", "slurmctld.out"), c.bins["slurmctld"], "-D", "-i", "-f", c.conf)
	startDaemon(t, filepath.Join(dir, "log", "slurmd.out"), c.bins["slurmd"], "-D", "-f", c.conf, "-N", "localhost")
	t.Cleanup(func() {
		// Cancel whatever is left before the daemons stop (cleanups run last-in first-out).
		_ = c.cmd(context.Background(), "scancel", "--quiet", "-u", "root").Run()
	})
	var state string
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(250 * time.Millisecond) {
		out, err := c.cmd(context.Background(), "sinfo", "-h", "-N", "-o", "%t").Output()
		state = strings.TrimSpace(string(out))
		if err == nil && state == "idle" {
			break
		}
		if time.Now().After(deadline) {
			slurmSkipOrFail(t, "the Slurm node is not idle 60 s after start (sinfo: %q, %v):\n%s", state, err,
				readLogs(dir, "slurmctld.out", "slurmctld.log", "slurmd.out", "slurmd.log"))
		}
	}
	return c
}

// readLogs returns the last lines of the named files in DIR/log.
func readLogs(dir string, names ...string) string {
	var b strings.Builder
	for _, n := range names {
		text, err := os.ReadFile(filepath.Join(dir, "log", n))
		if err != nil {
			continue
		}
		lines := strings.Split(strings.TrimSpace(string(text)), "\n")
		if len(lines) > 20 {
			lines = lines[len(lines)-20:]
		}
		fmt.Fprintf(&b, "--- %s\n%s\n", n, strings.Join(lines, "\n"))
	}
	return b.String()
}

func (c *slurmCluster) cmd(ctx context.Context, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, c.bins[name], args...)
	cmd.Env = c.env
	return cmd
}

// submit runs sbatch on the script and returns the array job's ID.
func (c *slurmCluster) submit(t *testing.T, script string) string {
	t.Helper()
	args := []string{"--parsable"}
	if n := os.Getenv(slurmMaxTasksEnv); n != "" {
		args = append(args, fmt.Sprintf("--array=0-%d%%%s", slurmShards-1, n))
	}
	out, err := c.cmd(context.Background(), "sbatch", append(args, script)...).CombinedOutput()
	if err != nil {
		t.Fatalf("sbatch %s: %v\n%s", script, err, out)
	}
	id, _, _ := strings.Cut(strings.TrimSpace(string(out)), ";")
	if _, err := strconv.Atoi(id); err != nil {
		t.Fatalf("sbatch --parsable printed %q", out)
	}
	return id
}

// wait polls squeue until the job has no pending or running task.
func (c *slurmCluster) wait(t *testing.T, id string, timeout time.Duration) {
	t.Helper()
	for deadline := time.Now().Add(timeout); ; time.Sleep(500 * time.Millisecond) {
		out, err := c.cmd(context.Background(), "squeue", "-h", "-j", id).Output()
		if err == nil && strings.TrimSpace(string(out)) == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("job %s still queued after %v (squeue: %q, %v):\n%s", id, timeout, out, err,
				readLogs(c.dir, "slurmctld.log", "slurmd.log"))
		}
	}
}

// taskStates returns the JobState of every array task of job id (from scontrol, which keeps
// finished jobs for MinJobAge; there is no accounting database).
func (c *slurmCluster) taskStates(t *testing.T, id string) map[int]string {
	t.Helper()
	out, err := c.cmd(context.Background(), "scontrol", "-o", "show", "job", id).Output()
	if err != nil {
		t.Fatalf("scontrol show job %s: %v", id, err)
	}
	states := map[int]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		task, state := -1, ""
		for _, f := range strings.Fields(line) {
			k, v, _ := strings.Cut(f, "=")
			switch k {
			case "ArrayTaskId":
				if n, err := strconv.Atoi(v); err == nil {
					task = n
				}
			case "JobState":
				state = v
			}
		}
		if task >= 0 {
			states[task] = state
		}
	}
	return states
}

// slurmScript is the batch script of the test: one array task per shard, all sharing the
// state directory. README's cluster section shows it.
func slurmScript(logDir, enflow, spec, data, state string) string {
	return fmt.Sprintf(`#!/bin/bash
#SBATCH --job-name=enflow-mini
#SBATCH --array=0-%d
#SBATCH --cpus-per-task=1
#SBATCH --output=%s/slurm-%%A_%%a.log
export ENFLOW_CODE_VERSION=slurm-test
exec %s jobs run %s \
  --shard "${SLURM_ARRAY_TASK_ID}/${SLURM_ARRAY_TASK_COUNT}" \
  --data %s --state %s
`, slurmShards-1, logDir, enflow, spec, data, state)
}

// miniSpec returns mini.toml, or a copy with the gaussian stand-in for the kernel baseline in
// a build without it, with old replaced by new (if old is not empty).
func miniSpec(t *testing.T, bin, data, dir, name, old, new string) string {
	t.Helper()
	src, err := filepath.Abs(filepath.Join("..", "..", "jobs", "mini.toml"))
	if err != nil {
		t.Fatal(err)
	}
	text, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "jobs", "status", src, "--data", data, "--state", filepath.Join(dir, "probe"), "--json")
	cmd.Env = append(os.Environ(), CodeVersionEnv+"=slurm-test")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("jobs status: %v", err)
	}
	var st StatusReport
	if err := json.Unmarshal(out, &st); err != nil {
		t.Fatalf("jobs status --json: %v\n%s", err, out)
	}
	if st.Counts[OutcomeUnsupported] > 0 {
		text = bytes.Replace(text, []byte(`"kernel"`), []byte(`"gaussian"`), 1)
	}
	if old != "" {
		if !bytes.Contains(text, []byte(old)) {
			t.Fatalf("mini.toml has no %q", old)
		}
		text = bytes.Replace(text, []byte(old), []byte(new), 1)
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, text, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// checkExactlyOnce checks that every unit of the plan has exactly one results part with no
// duplicated rows, and returns the attempts (started, killed-or-interrupted) per unit.
func checkExactlyOnce(t *testing.T, plan *Plan, state string) map[string][2]int {
	t.Helper()
	rows, parts := resultCounts(t, state)
	seen := map[string]bool{}
	files, _, err := ListParts(filepath.Join(state, ResultsDirName))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		rs, err := ReadResultsFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rs {
			if k := r.Unit + "/" + r.Metric; seen[k] {
				t.Errorf("duplicated result %s", k)
			} else {
				seen[k] = true
			}
		}
	}
	att := map[string][2]int{}
	for _, u := range plan.Units {
		if parts[u.ID] != 1 || rows[u.ID] == 0 {
			t.Errorf("unit %s (%s %s): %d results parts with %d rows, want 1 part", u.ID, u.Kind, u.Model, parts[u.ID], rows[u.ID])
		}
		as, err := readAttempts(filepath.Join(state, unitsDirName, u.ID))
		if err != nil {
			t.Fatal(err)
		}
		started, failed, killed, _ := attemptStats(as)
		interrupted, ok := 0, 0
		for _, a := range as {
			switch a.Outcome {
			case "interrupted":
				interrupted++
			case "ok":
				ok++
			}
		}
		if failed != 0 || ok != 1 {
			t.Errorf("unit %s: %d failed and %d ok attempts, want 0 and 1", u.ID, failed, ok)
		}
		att[u.ID] = [2]int{started, killed + interrupted}
	}
	if len(parts) != len(plan.Units) {
		t.Errorf("results parts for %d units, want %d", len(parts), len(plan.Units))
	}
	return att
}

// checkReport runs enflow report on the state directory: it must see every unit's rows.
func checkReport(t *testing.T, bin, state string) {
	t.Helper()
	rows, _ := resultCounts(t, state)
	total := 0
	for _, n := range rows {
		total += n
	}
	out, err := exec.Command(bin, "report", "--results", state, "--out", filepath.Join(state, "report.html"),
		"--md", filepath.Join(state, "report.md"), "--json").Output()
	if err != nil {
		var xe *exec.ExitError
		if errors.As(err, &xe) {
			t.Fatalf("enflow report: %v\n%s", err, xe.Stderr)
		}
		t.Fatalf("enflow report: %v", err)
	}
	var sum struct {
		Rows  int `json:"rows"`
		Units int `json:"units"`
	}
	if err := json.Unmarshal(out, &sum); err != nil {
		t.Fatalf("enflow report --json: %v\n%s", err, out)
	}
	if sum.Units != len(rows) || sum.Rows != total {
		t.Errorf("enflow report saw %d units and %d rows, want %d and %d", sum.Units, sum.Rows, len(rows), total)
	}
}

// TestSlurmArray submits jobs/mini.toml to a one-node Slurm cluster as an array of 4 shards
// and checks that every unit ran exactly once and enflow report sees all results; then, in a
// fresh state directory with longer training, it cancels the array task of a training unit
// while the unit is midway (it has a checkpoint), resubmits the array, and checks that no
// unit was lost or duplicated and the cancelled one resumed.
func TestSlurmArray(t *testing.T) {
	if os.Getenv(slurmEnv) != "1" {
		t.Skipf("the Slurm cluster test runs with %s=1 (./just test-slurm)", slurmEnv)
	}
	if os.Geteuid() != 0 {
		t.Skip("the Slurm cluster test needs root (slurmd runs jobs as root in a one-node cluster)")
	}
	testStart := time.Now()
	bin := buildEnflow(t)
	cl := startSlurm(t)
	t.Logf("Slurm cluster up in %s (%.1f s)", cl.dir, time.Since(testStart).Seconds())

	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	writeTinyParticles(t, data, particles.DW4, map[string]int{"train": 100, "val": 40, "test": 40}, 5)
	plan := func(spec string) *Plan {
		s, err := LoadSpec(spec)
		if err != nil {
			t.Fatal(err)
		}
		p, err := Expand(s, PlanOptions{DataDir: data, Code: CodeInfo{Version: "slurm-test"}})
		if err != nil {
			t.Fatal(err)
		}
		if len(p.Units) != 4 {
			t.Fatalf("%s: %d units, want 4", spec, len(p.Units))
		}
		return p
	}

	// 1. The array runs the spec: every unit once.
	spec1 := miniSpec(t, bin, data, dir, "mini.toml", "", "")
	plan1 := plan(spec1)
	state1 := filepath.Join(dir, "state1")
	script1 := filepath.Join(dir, "mini.sbatch")
	if err := os.WriteFile(script1, []byte(slurmScript(dir, bin, spec1, data, state1)), 0o755); err != nil {
		t.Fatal(err)
	}
	var assign []string
	for _, u := range plan1.Units {
		for i := range slurmShards {
			if (Shard{i, slurmShards}).Contains(u) {
				assign = append(assign, fmt.Sprintf("%s %s→task %d", u.Kind, u.Model, i))
			}
		}
	}
	t.Logf("units by array task: %s", strings.Join(assign, ", "))
	start := time.Now()
	id := cl.submit(t, script1)
	cl.wait(t, id, slurmTimeout)
	t.Logf("array %s (mini.toml, %d shards) finished in %.1f s", id, slurmShards, time.Since(start).Seconds())
	for task, st := range cl.taskStates(t, id) {
		if st != "COMPLETED" {
			log, _ := os.ReadFile(filepath.Join(dir, fmt.Sprintf("slurm-%s_%d.log", id, task)))
			t.Errorf("array task %d: %s; log:\n%s", task, st, log)
		}
	}
	if n := len(cl.taskStates(t, id)); n != slurmShards {
		t.Errorf("scontrol shows %d array tasks, want %d", n, slurmShards)
	}
	for u, a := range checkExactlyOnce(t, plan1, state1) {
		if a[0] != 1 {
			t.Errorf("unit %s started %d times, want 1", u, a[0])
		}
	}
	checkReport(t, bin, state1)
	if t.Failed() {
		return
	}

	// 2. Cancel the task of the E-NF training unit midway, then resubmit the array.
	spec2 := miniSpec(t, bin, data, dir, "mini-long.toml", "epochs = 3", "epochs = 12")
	plan2 := plan(spec2)
	state2 := filepath.Join(dir, "state2")
	script2 := filepath.Join(dir, "mini-long.sbatch")
	if err := os.WriteFile(script2, []byte(slurmScript(dir, bin, spec2, data, state2)), 0o755); err != nil {
		t.Fatal(err)
	}
	var victim *Unit
	for _, u := range plan2.Units {
		if u.Kind == KindTrain && u.Model == "enf" {
			victim = u
		}
	}
	if victim == nil {
		t.Fatal("mini.toml has no E-NF training unit")
	}
	task := -1
	for i := range slurmShards {
		if (Shard{i, slurmShards}).Contains(victim) {
			task = i
		}
	}
	results2 := filepath.Join(state2, ResultsDirName)
	runDir := filepath.Join(state2, unitsDirName, victim.ID, runDirName)
	start = time.Now()
	id = cl.submit(t, script2)
	for {
		time.Sleep(20 * time.Millisecond)
		_, finished, err := ListParts(results2)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Fatal(err)
		}
		if finished[victim.ID] != "" || time.Since(start) > slurmTimeout {
			t.Fatalf("the E-NF training unit finished (or %v passed) before its task could be cancelled midway", slurmTimeout)
		}
		if ckpts, _ := filepath.Glob(filepath.Join(runDir, "checkpoint-*.json")); len(ckpts) > 0 {
			break
		}
	}
	if out, err := cl.cmd(context.Background(), "scancel", fmt.Sprintf("%s_%d", id, task)).CombinedOutput(); err != nil {
		t.Fatalf("scancel %s_%d: %v\n%s", id, task, err, out)
	}
	t.Logf("cancelled array task %s_%d %.1f s after submission, with unit %s checkpointed", id, task,
		time.Since(start).Seconds(), victim.ID)
	cl.wait(t, id, slurmTimeout)
	if st := cl.taskStates(t, id)[task]; st != "CANCELLED" {
		t.Errorf("cancelled task %d: %s, want CANCELLED", task, st)
	}
	if _, finished, _ := ListParts(results2); finished[victim.ID] != "" {
		t.Fatalf("the cancelled unit %s has results: it was not cancelled midway", victim.ID)
	}
	id2 := cl.submit(t, script2)
	cl.wait(t, id2, slurmTimeout)
	t.Logf("arrays %s (one task cancelled) and %s (resubmitted) finished in %.1f s", id, id2, time.Since(start).Seconds())
	for task, st := range cl.taskStates(t, id2) {
		if st != "COMPLETED" {
			log, _ := os.ReadFile(filepath.Join(dir, fmt.Sprintf("slurm-%s_%d.log", id2, task)))
			t.Errorf("resubmitted array task %d: %s; log:\n%s", task, st, log)
		}
	}
	for u, a := range checkExactlyOnce(t, plan2, state2) {
		want := [2]int{1, 0}
		if u == victim.ID {
			want = [2]int{2, 1} // the cancelled attempt (interrupted, or killed) and the resumed one
		}
		if a != want {
			t.Errorf("unit %s: %d attempts started, %d interrupted or killed; want %d, %d", u, a[0], a[1], want[0], want[1])
		}
	}
	as, err := readAttempts(filepath.Join(state2, unitsDirName, victim.ID))
	if err != nil {
		t.Fatal(err)
	}
	if last := as[len(as)-1]; last.Outcome != "ok" || !last.Resumed {
		// Allowed only when the checkpoint was torn by the kill: the unit then restarted cleanly.
		if aside, _ := filepath.Glob(runDir + ".failed-*"); len(aside) == 0 {
			t.Errorf("the cancelled unit neither resumed from its checkpoint nor restarted cleanly: last attempt %+v", last)
		}
		t.Logf("the cancelled unit's checkpoint could not be resumed; it restarted cleanly")
	}
	checkReport(t, bin, state2)
	t.Logf("TestSlurmArray took %.1f s", time.Since(testStart).Seconds())
}
