package cnf

import (
	"strings"
	"testing"

	"github.com/gomlx/gomlx/pkg/core/dtypes"
)

// TestExactTraceModes: Config.ExactTraceMode "loop" and "replicate" give the same exact trace
// (the strategies differ in cost only), and an unknown mode is refused by New.
func TestExactTraceModes(t *testing.T) {
	b := backendT(t)
	ctx := seededContext()
	x := particleData(t, 2, 4, 2, dtypes.Float64, 3)
	var traces [][]float64
	for i, mode := range []string{ExactTraceLoop, " Replicate ", ExactTraceAuto} {
		m, err := New(b, ctx, smallParticle(dtypes.Float64), Config{Trace: TraceExact, ExactTraceMode: mode, DType: dtypes.Float64})
		if err != nil {
			t.Fatalf("mode %q: %v", mode, err)
		}
		if i == 0 {
			energize(t, m, x, 300) // shared ctx: the same variables for every mode
		}
		traces = append(traces, f64(evalAug(t, m, x, nil, 0.4, 0)[1]))
	}
	for i := 1; i < len(traces); i++ {
		if d := maxAbsDiff(traces[0], traces[i]); d > 1e-10 {
			t.Errorf("mode %d: exact trace differs from the loop strategy by %g", i, d)
		}
	}
	_, err := New(b, ctx, smallParticle(dtypes.Float64), Config{Trace: TraceExact, ExactTraceMode: "bogus", DType: dtypes.Float64})
	if err == nil || !strings.Contains(err.Error(), "ExactTraceMode") {
		t.Errorf("unknown ExactTraceMode: got error %v", err)
	}
}
