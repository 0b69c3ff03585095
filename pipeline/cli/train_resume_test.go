package cli

import (
	"testing"

	"github.com/enflow/enflow/pipeline/train"
)

// TestFillFromRunInfo checks that --resume restores the run's settings unless a flag was given
// explicitly on the command line.
func TestFillFromRunInfo(t *testing.T) {
	wd := 0.25
	info := &train.RunInfo{Dataset: "dw4", DataDir: "/d", NData: 40, LR: 1e-3, Seed: 7,
		WD: &wd, EvalBatch: 10, EvalN: 20, MaxStepsEpoch: 3, Keep: 5}
	tests := []struct {
		name string
		set  map[string]bool
		pre  trainFlags
		want trainFlags
	}{
		{"all restored", map[string]bool{}, trainFlags{wd: 1e-12, evalBatch: 100, keep: 3},
			trainFlags{wd: 0.25, evalBatch: 10, evalN: 20, maxSteps: 3, keep: 5}},
		{"explicit flags win", map[string]bool{"wd": true, "eval-batch": true, "keep": true},
			trainFlags{wd: 0.5, evalBatch: 50, keep: 9},
			trainFlags{wd: 0.5, evalBatch: 50, evalN: 20, maxSteps: 3, keep: 9}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := tc.pre
			f.fillFromRunInfo(info, tc.set)
			if f.wd != tc.want.wd || f.evalBatch != tc.want.evalBatch || f.evalN != tc.want.evalN ||
				f.maxSteps != tc.want.maxSteps || f.keep != tc.want.keep {
				t.Fatalf("got wd=%g eval-batch=%d eval-n=%d max-steps=%d keep=%d, want wd=%g eval-batch=%d eval-n=%d max-steps=%d keep=%d",
					f.wd, f.evalBatch, f.evalN, f.maxSteps, f.keep,
					tc.want.wd, tc.want.evalBatch, tc.want.evalN, tc.want.maxSteps, tc.want.keep)
			}
			if f.dataset != "dw4" || f.nData != 40 || f.lr != 1e-3 || f.seed != 7 {
				t.Fatalf("core settings not restored: %+v", f)
			}
		})
	}
}
