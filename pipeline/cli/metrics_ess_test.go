package cli

import (
	"encoding/json"
	"math"
	"path/filepath"
	"strings"
	"testing"

	"github.com/enflow/enflow/etl/particles"
	"github.com/enflow/enflow/etl/table"
	"github.com/enflow/enflow/pipeline/metrics"
)

func writeLogQTable(t *testing.T, path string, cs []particles.Config, logQ func(i int, c particles.Config) float64) {
	t.Helper()
	w, err := table.NewConfigRecordWriter(path, table.ConfigColumns{LogQ: true})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Abort()
	for i, c := range cs {
		if err := w.Write(&table.ConfigRecord{Config: c, LogQ: logQ(i, c), StateID: -1}); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
}

func TestMetricsESSCLI(t *testing.T) {
	dir := t.TempDir()
	cs := shippedConfigsForBG(t, particles.DW4, "DEM_test_split_DW4.npy", 500)
	// A "flow" equal to the target at T = 2 (up to a constant): ESS = n at T = 2.
	exact := filepath.Join(dir, "exact.parquet")
	writeLogQTable(t, exact, cs, func(_ int, c particles.Config) float64 { return -c.Energy/2 + 17 })
	code, stdout, stderr := runCLIForMetrics(t, "metrics", "ess", "--in", exact, "--system", "dw4", "--temperature", "2", "--json", "--bins", "10")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var got struct {
		N          int     `json:"n"`
		ESS        float64 `json:"ess"`
		Frac       float64 `json:"ess_fraction"`
		Plain      float64 `json:"mean_u_samples"`
		Reweighted float64 `json:"mean_u_reweighted"`
		Sign       string  `json:"sign_convention"`
		Hist       struct {
			Samples    []float64 `json:"mass_samples"`
			Reweighted []float64 `json:"mass_reweighted"`
		} `json:"u_histogram"`
	}
	if err := json.Unmarshal([]byte(stdout), &got); err != nil {
		t.Fatalf("%v: %s", err, stdout)
	}
	if got.N != 500 || math.Abs(got.Frac-1) > 1e-9 || math.Abs(got.Plain-got.Reweighted) > 1e-9 ||
		got.Sign != "log w = -u(x)/T - log q_X(x)" || len(got.Hist.Samples) != 10 {
		t.Fatalf("summary %+v", got)
	}
	// At T = 1 the same log q is a proposal too hot for the target: compare with the library.
	code, stdout, stderr = runCLIForMetrics(t, "metrics", "ess", "--in", exact, "--system", "dw4", "--json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if err := json.Unmarshal([]byte(stdout), &got); err != nil {
		t.Fatal(err)
	}
	u, lq := make([]float64, len(cs)), make([]float64, len(cs))
	for i, c := range cs {
		u[i], lq[i] = c.Energy, -c.Energy/2+17
	}
	logw, _ := metrics.LogWeights(u, lq, 1)
	ess, _ := metrics.KishESS(logw)
	mean, _, _ := metrics.ReweightedMean(logw, u)
	t.Logf("DW4 test rows, q ∝ exp(−u/2), target exp(−u): ESS/n %.4f, mean u %.4f → %.4f", got.Frac, got.Plain, got.Reweighted)
	if math.Abs(got.ESS-ess) > 1e-9*ess || math.Abs(got.Reweighted-mean) > 1e-9 || !(got.Frac < 1) || !(got.Reweighted < got.Plain) {
		t.Fatalf("summary %+v, library ESS %v mean %v", got, ess, mean)
	}
	// Forward mode and text output.
	code, stdout, stderr = runCLIForMetrics(t, "metrics", "ess", "--in", exact, "--system", "dw4", "--temperature", "2", "--forward")
	if code != 0 || !strings.Contains(stdout, "forward") || !strings.Contains(stdout, "ess_fraction:") {
		t.Fatalf("exit %d: %s %s", code, stdout, stderr)
	}

	plain := filepath.Join(dir, "plain.parquet")
	writeConfigTableForBG(t, plain, cs[:3])
	nullQ := filepath.Join(dir, "null.arrow")
	writeLogQTable(t, nullQ, cs[:3], func(i int, _ particles.Config) float64 {
		if i == 2 {
			return math.NaN()
		}
		return 0
	})
	tests := []struct {
		name    string
		args    []string
		code    int
		wantErr string
	}{
		{"no log_q column", []string{"--in", plain, "--system", "dw4"}, 1, `no "log_q" column`},
		{"null log_q", []string{"--in", nullQ, "--system", "dw4"}, 1, `row 2 (id 2): column "log_q": null`},
		{"wrong system", []string{"--in", exact, "--system", "lj13"}, 1, "row 0 (id 0): field system: dw4, want lj13"},
		{"unknown system", []string{"--in", exact, "--system", "lj55"}, 2, `unknown system "lj55"`},
		{"bad temperature", []string{"--in", exact, "--system", "dw4", "--temperature", "-1"}, 2, "temperature must be finite and > 0"},
		{"no input", []string{"--system", "dw4"}, 2, "--in is required"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, _, stderr := runCLIForMetrics(t, append([]string{"metrics", "ess"}, tc.args...)...)
			if code != tc.code || !strings.Contains(stderr, tc.wantErr) {
				t.Fatalf("exit %d, stderr %q; want %d and %q", code, stderr, tc.code, tc.wantErr)
			}
		})
	}
}
