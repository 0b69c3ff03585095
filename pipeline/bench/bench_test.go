package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/enflow/enflow/gomlx_models/backend"
)

func TestSelect(t *testing.T) {
	got, err := Select([]string{"dw4/*"})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) < 5 || got[0] != "dw4/forward" {
		t.Fatalf("Select(dw4/*) = %v", got)
	}
	if _, err := Select([]string{"nope/*"}); err == nil {
		t.Fatal("Select(nope/*) succeeded")
	}
	all, err := Select(nil)
	if err != nil || len(all) != len(registry) {
		t.Fatalf("Select(nil) = %v, %v; want every case", all, err)
	}
}

// TestRunSmoke runs the cheap DW4 cases once on a small batch on the test backend and checks the
// JSON fields.
func TestRunSmoke(t *testing.T) {
	var emitted []Result
	res, err := Run(context.Background(), Options{
		Backends: []string{""}, Cases: []string{"dw4/forward", "dw4/vjp", "dw4/adjoint_stage", "dw4/train_iter"},
		Repeats: 1, Batch: 8, Emit: func(r Result) { emitted = append(emitted, r) },
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != 4 || len(emitted) != 4 {
		t.Fatalf("got %d results (%d emitted), want 4", len(res), len(emitted))
	}
	for _, r := range res {
		if r.Error != "" {
			t.Errorf("%s: %s", r.Case, r.Error)
			continue
		}
		if r.MS <= 0 || r.NFE <= 0 || r.PeakMB <= 0 || r.Batch != 8 || r.Repeats != 1 {
			t.Errorf("%s: implausible result %+v", r.Case, r)
		}
		var buf bytes.Buffer
		if err := json.NewEncoder(&buf).Encode(r); err != nil {
			t.Fatal(err)
		}
		for _, key := range []string{`"case":`, `"backend":`, `"ms":`, `"nfe":`, `"peak_mb":`} {
			if !strings.Contains(buf.String(), key) {
				t.Errorf("%s: JSON %s lacks %s", r.Case, buf.String(), key)
			}
		}
	}
	if tr := res[3]; tr.Error == "" && (tr.NFEForward <= 0 || tr.NFEBackward <= 0 || tr.NFE != tr.NFEForward+tr.NFEBackward) {
		t.Errorf("train_iter NFE split %d + %d != %d", tr.NFEForward, tr.NFEBackward, tr.NFE)
	}
}

func TestVmHWM(t *testing.T) {
	if _, err := os.Stat("/proc/self/status"); err != nil {
		t.Skip("no /proc")
	}
	if VmHWMKiB() <= 0 {
		t.Fatal("VmHWM not found in /proc/self/status")
	}
}

// BenchmarkCases wraps the suite for `go test -bench`: every case matching $ENFLOW_BENCH_CASES
// (comma-separated globs; default the cheap dynamics cases) on $GOMLX_BACKEND (default SimpleGo).
// Each b.N iteration is one op of the case (one evaluation, one training iteration, one sampling
// run); nfe/op and cpu-ms/op are reported as extra metrics.
//
//	go test -run '^$' -bench . -benchtime 5x ./pipeline/bench/
//	ENFLOW_BENCH_CASES='dw4/*' go test -run '^$' -bench . -benchtime 3x ./pipeline/bench/
func BenchmarkCases(b *testing.B) {
	patterns := []string{"*/forward", "*/vjp", "dw4/adjoint_stage", "dw4/train_iter"}
	if s := os.Getenv("ENFLOW_BENCH_CASES"); s != "" {
		patterns = strings.Split(s, ",")
	}
	names, err := Select(patterns)
	if err != nil {
		b.Fatal(err)
	}
	be, err := backend.New("")
	if err != nil {
		b.Fatal(err)
	}
	defer be.Finalize()
	opts := Options{Repeats: 1}
	opts.defaults()
	data := &dataCache{}
	for _, name := range names {
		r := lookup(name)
		b.Run(name, func(b *testing.B) {
			env := &caseEnv{ctx: context.Background(), b: be, opts: &opts, data: data, backend: backend.Name(be),
				logf: func(format string, args ...any) { b.Logf(format, args...) }}
			op, cleanup, err := r.setup(env)
			if err != nil {
				b.Skipf("%s: %v", name, err)
			}
			if cleanup != nil {
				defer cleanup()
			}
			if _, err := op(-1); err != nil { // compile
				b.Fatal(err)
			}
			nfe, rep := 0, 0
			b.ResetTimer()
			c0 := cpuTime()
			for b.Loop() {
				st, err := op(rep)
				if err != nil {
					b.Fatal(err)
				}
				nfe += st.nfe
				rep++
			}
			b.ReportMetric(float64(nfe)/float64(max(rep, 1)), "nfe/op")
			b.ReportMetric(ms(cpuTime()-c0)/float64(max(rep, 1)), "cpu-ms/op")
		})
	}
}

// TestMeasureGroupInterleaves checks that the cases of a group are warmed up first, then timed
// in rounds (one run of each per repeat), and that speedup, first-run/compile times and the
// sampling fields are filled.
func TestMeasureGroupInterleaves(t *testing.T) {
	var order []string
	mk := func(name string, perMol time.Duration, baseline string) *runner {
		return &runner{name: name, unit: "molecule", group: "g", baseline: baseline,
			setup: func(env *caseEnv) (func(int) (opStats, error), func(), error) {
				return func(rep int) (opStats, error) {
					order = append(order, fmt.Sprintf("%s%d", name, rep))
					d := 4 * perMol
					if rep < 0 {
						d += 30 * time.Millisecond // "compilation"
					}
					time.Sleep(d)
					return opStats{nfe: 10, perOp: 4, molecules: 4, solves: 2, shapes: 2, moleculeNFE: 40}, nil
				}, nil, nil
			}}
	}
	opts := Options{Repeats: 3}
	opts.defaults()
	var runs []*caseRun
	for _, r := range []*runner{mk("fast", 2*time.Millisecond, "slow"), mk("slow", 8*time.Millisecond, "")} {
		runs = append(runs, &caseRun{r: r, env: &caseEnv{ctx: context.Background(), opts: &opts, backend: "test", logf: t.Logf}})
	}
	res := measureGroup(runs)
	want := "fast-1 slow-1 fast0 slow0 fast1 slow1 fast2 slow2"
	if got := strings.Join(order, " "); got != want {
		t.Errorf("run order %q, want %q", got, want)
	}
	fast, slow := res[0], res[1]
	if fast.Error != "" || slow.Error != "" {
		t.Fatal(fast.Error, slow.Error)
	}
	if fast.Baseline != "slow" || fast.Speedup < 2 || fast.Speedup > 6 || slow.Speedup != 0 {
		t.Errorf("speedup %v vs %q (slow: %v), want ≈4", fast.Speedup, fast.Baseline, slow.Speedup)
	}
	if fast.Molecules != 4 || fast.Solves != 2 || fast.Shapes != 2 || fast.NFEPerMolecule != 10 || fast.MolPerS <= 0 {
		t.Errorf("sampling fields %+v", fast)
	}
	if fast.CompileMS < 20 || fast.FirstRunMS < fast.CompileMS || fast.MS < 1.5 {
		t.Errorf("first run %v ms, compile %v ms, ms %v", fast.FirstRunMS, fast.CompileMS, fast.MS)
	}
}
