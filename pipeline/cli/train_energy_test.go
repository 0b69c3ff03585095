package cli

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/enflow/enflow/etl/particles"
	"github.com/enflow/enflow/etl/table"
)

// writeBGDataDir writes dw4_{train,val,test}.parquet of real DW4 configurations (the shipped
// test split) into a new directory and returns it.
func writeBGDataDir(t *testing.T, n map[string]int) string {
	t.Helper()
	dir := t.TempDir()
	total := 0
	for _, k := range n {
		total += k
	}
	cs := shippedConfigsForBG(t, particles.DW4, "DEM_test_split_DW4.npy", total)
	off := 0
	for _, split := range []string{"train", "val", "test"} {
		part := cs[off : off+n[split]]
		off += n[split]
		for i := range part {
			part[i].Split = split
		}
		writeConfigTableForBG(t, filepath.Join(dir, "dw4_"+split+".parquet"), part)
	}
	return dir
}

// TestTrainEnergyFlagErrors: bad Boltzmann-generator flags are usage errors naming the flag,
// and nothing is written (the run directory is not even created).
func TestTrainEnergyFlagErrors(t *testing.T) {
	data := writeBGDataDir(t, map[string]int{"train": 20, "val": 10, "test": 10})
	base := []string{"train", "--dataset", "dw4", "--data", data, "--n-data", "20", "--model", "realnvp",
		"--epochs", "1", "--batch", "10", "--no-progress"}
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"unknown energy", []string{"--objective", "kl", "--energy", "lj55"}, "lj55"},
		{"energy of another system", []string{"--objective", "kl", "--energy", "lj13-twice"}, "lj13"},
		{"zero temperature", []string{"--objective", "kl", "--temperature", "0"}, "temperature must be finite and > 0"},
		{"negative temperature", []string{"--objective", "ml+kl", "--temperature", "-2"}, "temperature must be finite and > 0"},
		{"negative temperature with ml", []string{"--temperature", "-2"}, "temperature must be finite and > 0"},
		{"infinite temperature", []string{"--objective", "kl", "--temperature", "+Inf"}, "temperature must be finite and > 0"},
		{"lambda above 1", []string{"--objective", "ml+kl", "--lambda", "1.5"}, `"1.5" is not a number in [0, 1]`},
		{"lambda end below 0", []string{"--objective", "ml+kl", "--lambda", "1.0:-0.1"}, `"-0.1" is not a number in [0, 1]`},
		{"lambda three parts", []string{"--objective", "ml+kl", "--lambda", "1:0.5:0"}, "want λ or λstart:λend"},
		{"unknown objective", []string{"--objective", "elbo"}, "--objective"},
		{"negative kl samples", []string{"--objective", "kl", "--kl-samples", "-1"}, "--kl-samples must be ≥ 0"},
		{"unknown init checkpoint", []string{"--init-from", data, "--init-which", "worst"}, `--init-which "worst": want best or last`},
		{"init-which alone", []string{"--init-which", "last"}, "--init-which needs --init-from"},
		{"energy cut above its maximum", []string{"--objective", "kl", "--energy-cut", "1e12"}, "--energy-cut"},
		{"energy cut NaN", []string{"--objective", "kl", "--energy-cut", "NaN"}, "energy cut must be finite"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "run")
			args := append(append(append([]string{}, base...), "--out", out), tc.args...)
			code, _, stderr := runCLIForMetrics(t, args...)
			if code != 2 || !strings.Contains(stderr, tc.want) {
				t.Fatalf("exit %d, stderr %q; want exit 2 and %q", code, stderr, tc.want)
			}
			if _, err := os.Stat(out); !os.IsNotExist(err) {
				t.Fatalf("run directory %s exists after a usage error (%v)", out, err)
			}
		})
	}
}

// TestTrainKLSampleESSCLI runs the Boltzmann-generator path end to end through the CLI: a tiny
// RealNVP trained by ML+KL on DW4, sampled with log q, then reweighted by "metrics ess".
func TestTrainKLSampleESSCLI(t *testing.T) {
	data := writeBGDataDir(t, map[string]int{"train": 40, "val": 20, "test": 20})
	dir := t.TempDir()
	// ML pre-training, then ML+KL fine-tuning from its last checkpoint (the protocol of the
	// generalisation experiment).
	pre := filepath.Join(dir, "pre")
	code, _, stderr := runCLIForMetrics(t, "train", "--dataset", "dw4", "--data", data, "--n-data", "40",
		"--model", "realnvp", "--layers", "2", "--hidden", "8", "--epochs", "2", "--batch", "20", "--test-every", "1",
		"--no-progress", "--out", pre, "--backend", "go")
	if code != 0 {
		t.Fatalf("ML train exit %d: %s", code, stderr)
	}
	run := filepath.Join(dir, "run")
	code, stdout, stderr := runCLIForMetrics(t, "train", "--dataset", "dw4", "--data", data, "--n-data", "40",
		"--init-from", pre, "--init-which", "last", "--epochs", "2", "--batch", "20", "--test-every", "1",
		"--objective", "ml+kl", "--lambda", "1.0:0.5", "--kl-samples", "16", "--temperature", "1.5",
		"--no-progress", "--json", "--out", run, "--backend", "go")
	if code != 0 {
		t.Fatalf("ML+KL train exit %d: %s", code, stderr)
	}
	var res struct {
		Objective string   `json:"objective"`
		Steps     int      `json:"steps"`
		TestNLL   *float64 `json:"test_nll"`
		Dims      int      `json:"nll_dims"`
		NoNorm    *float64 `json:"test_nll_without_normaliser"`
	}
	if err := json.Unmarshal([]byte(lastLine(stdout)), &res); err != nil {
		t.Fatalf("%v: %q", err, stdout)
	}
	if res.Objective != "ml+kl" || res.Steps != 4 || res.TestNLL == nil || math.IsNaN(*res.TestNLL) {
		t.Fatalf("train summary %+v", res)
	}
	// RealNVP's density is on all N·D = 8 coordinates: the normaliser is 4·ln 2π.
	if res.Dims != 8 || res.NoNorm == nil || math.Abs(*res.TestNLL-*res.NoNorm-4*math.Log(2*math.Pi)) > 1e-9 {
		t.Fatalf("NLL conventions: dims %d, without normaliser %v, test NLL %v", res.Dims, res.NoNorm, *res.TestNLL)
	}
	// metrics.csv carries the KL columns with and without the prior term, and λ per epoch.
	csv, err := os.ReadFile(filepath.Join(run, "metrics.csv"))
	if err != nil {
		t.Fatal(err)
	}
	header := strings.SplitN(string(csv), "\n", 2)[0]
	for _, col := range []string{"train_kl", "train_kl_prior", "train_energy", "lambda"} {
		if !strings.Contains(","+header+",", ","+col+",") {
			t.Fatalf("metrics.csv header %q lacks %s", header, col)
		}
	}

	samples := filepath.Join(dir, "samples.parquet")
	code, _, stderr = runCLIForMetrics(t, "sample", "--checkpoint", run, "--n", "64", "--seed", "3",
		"--log-weights", "--out", samples, "--quiet", "--backend", "go")
	if code != 0 {
		t.Fatalf("sample exit %d: %s", code, stderr)
	}
	recs, cols, err := table.ReadConfigRecords(samples)
	if err != nil {
		t.Fatal(err)
	}
	if !cols.LogQ {
		t.Fatalf("%s has no log_q column", samples)
	}
	if len(recs) != 64 {
		t.Fatalf("%d samples, want 64", len(recs))
	}
	for i, r := range recs {
		if math.IsNaN(r.LogQ) || math.IsInf(r.LogQ, 0) || r.System != "dw4" {
			t.Fatalf("sample %d: log_q %v, system %q", i, r.LogQ, r.System)
		}
	}
	code, stdout, stderr = runCLIForMetrics(t, "metrics", "ess", "--in", samples, "--system", "dw4",
		"--temperature", "1.5", "--json")
	if code != 0 {
		t.Fatalf("metrics ess exit %d: %s", code, stderr)
	}
	var ess struct {
		N    int     `json:"n"`
		ESS  float64 `json:"ess"`
		Frac float64 `json:"ess_fraction"`
		T    float64 `json:"temperature"`
	}
	if err := json.Unmarshal([]byte(lastLine(stdout)), &ess); err != nil {
		t.Fatalf("%v: %q", err, stdout)
	}
	if ess.N != 64 || !(ess.ESS >= 1 && ess.ESS <= 64) || math.Abs(ess.Frac-ess.ESS/64) > 1e-12 || ess.T != 1.5 {
		t.Fatalf("ess summary %+v", ess)
	}
	t.Logf("tiny ML+KL RealNVP: %d steps, test NLL %.3f, reverse ESS %.2f of 64", res.Steps, *res.TestNLL, ess.ESS)
}
