package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/enflow/enflow/etl/atomicfile"
	"github.com/enflow/enflow/internal/shared"
)

func init() {
	Register(&Command{
		Name:    "demo",
		Summary: "the main job: ETL of the shipped data, statistics, QM9 metrics, and a small DW4 E-NF trained, evaluated and sampled",
		Run:     runDemo,
	})
}

// demoStep is one command of the demo pipeline; its JSON summary is kept in the report.
type demoStep struct {
	name string
	args []string
}

func runDemo(ctx context.Context, env *Env, args []string) error {
	fs := NewFlagSet(env, "demo", "[--shared DIR] [--out DIR] [--steps N]")
	sharedDir := fs.String("shared", shared.Dir(), "the shared data folder (QM9 test split, DW4/LJ13 samples)")
	out := fs.String("out", "out/demo", "output `directory`")
	steps := fs.Int("steps", 10, "training `batches` of the small DW4 flow (0 skips training)")
	spec := fs.String("jobs", "jobs/mini.toml", "miniature batch-job `spec` run at the end, followed by the HTML report (\"\" skips)")
	asJSON := fs.Bool("json", false, "print the summary as one JSON object")
	if err := Parse(fs, args); err != nil {
		return err
	}
	if *sharedDir == "" {
		return fmt.Errorf("%w: no shared data folder found; pass --shared DIR", ErrUsage)
	}
	npz := filepath.Join(*sharedDir, "data", "qm9", "cormorant_qm9_test.npz")
	if _, err := os.Stat(npz); err != nil {
		return fmt.Errorf("demo: shared data: %w", err)
	}
	data := filepath.Join(*out, "data")
	run := filepath.Join(*out, "dw4_run")
	plan := []demoStep{
		{"etl_qm9", []string{"etl", "qm9", "--npz", npz, "--positional", "--out", data, "--json"}},
		{"etl_dw4", []string{"etl", "particles", "--system", "dw4", "--data", filepath.Join(*sharedDir, "data", "dw4"), "--out", data, "--json"}},
		{"etl_lj13", []string{"etl", "particles", "--system", "lj13", "--data", filepath.Join(*sharedDir, "data", "lj13"), "--out", data, "--json"}},
		{"stats_qm9", []string{"stats", "--in", filepath.Join(data, "qm9_test.parquet"), "--json"}},
		{"stability_qm9_test", []string{"metrics", "stability", "--in", filepath.Join(data, "qm9_test.parquet"), "--json"}},
		{"js_qm9_19_atoms", []string{"metrics", "js", "--in", filepath.Join(data, "qm9_test.parquet"), "--json"}},
		{"stats_dw4_train", []string{"stats", "--in", filepath.Join(data, "dw4_train.parquet"), "--json"}},
	}
	if *steps > 0 {
		os.RemoveAll(run) // the demo always trains from scratch
		plan = append(plan,
			demoStep{"train_dw4", []string{"train", "--dataset", "dw4", "--data", data, "--out", run,
				"--n-data", "1000", "--epochs", "1", "--test-every", "1", "--max-steps-per-epoch", strconv.Itoa(*steps),
				"--eval-n", "200", "--no-progress", "--json"}},
			demoStep{"eval_dw4_test", []string{"eval", "--checkpoint", run, "--split", "test", "--trace", "exact", "--limit", "200", "--json"}},
			demoStep{"sample_dw4", []string{"sample", "--checkpoint", run, "--n", "200", "--seed", "1",
				"--out", filepath.Join(*out, "dw4_samples.parquet"), "--json"}},
			demoStep{"stats_dw4_samples", []string{"stats", "--in", filepath.Join(*out, "dw4_samples.parquet"), "--json"}},
		)
	}
	if *spec != "" {
		if _, err := os.Stat(*spec); err != nil {
			return fmt.Errorf("demo: --jobs: %w", err)
		}
		jobsDir := filepath.Join(*out, "jobs")
		os.RemoveAll(jobsDir) // the demo always recomputes
		plan = append(plan,
			demoStep{"jobs_mini", []string{"jobs", "run", *spec, "--data", data, "--state", jobsDir, "--json"}},
			demoStep{"report", []string{"report", "--results", jobsDir, "--out", filepath.Join(*out, "report.html"),
				"--md", filepath.Join(*out, "report.md"), "--json"}},
		)
	}
	report := map[string]any{}
	start := time.Now()
	for i, st := range plan {
		fmt.Fprintf(env.Stderr, "demo [%d/%d] enflow %s\n", i+1, len(plan), strings.Join(st.args, " "))
		var buf bytes.Buffer
		t0 := time.Now()
		if code := Main(ctx, st.args, &buf, env.Stderr); code != 0 {
			return fmt.Errorf("demo: step %s (enflow %s) failed with exit code %d", st.name, strings.Join(st.args, " "), code)
		}
		var summary map[string]any
		if err := json.Unmarshal(buf.Bytes(), &summary); err != nil {
			return fmt.Errorf("demo: step %s: its --json output is not one JSON object: %w", st.name, err)
		}
		summary["step_wall_s"] = time.Since(t0).Seconds()
		report[st.name] = summary
	}
	report["wall_s"] = time.Since(start).Seconds()
	report["out"] = *out
	path := filepath.Join(*out, "demo_summary.json")
	blob, err := json.MarshalIndent(report, "", "  ")
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	if err := atomicfile.WriteFile(path, append(blob, '\n')); err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	if *asJSON {
		return WriteJSON(env.Stdout, report)
	}
	printDemoHighlights(env, report, path)
	return nil
}

// printDemoHighlights prints the handful of numbers a reader checks first.
func printDemoHighlights(env *Env, r map[string]any, path string) {
	get := func(step, key string) any {
		if m, ok := r[step].(map[string]any); ok {
			return m[key]
		}
		return nil
	}
	w := env.Stdout
	fmt.Fprintf(w, "enflow demo finished in %.1f s; full summary: %s\n", r["wall_s"], path)
	fmt.Fprintf(w, "  QM9 test split: %v molecules; atom stability %v, molecule stability %v (paper's data: 0.99 / 0.952)\n",
		get("stability_qm9_test", "n_molecules"), get("stability_qm9_test", "atom_stable"), get("stability_qm9_test", "mol_stable"))
	fmt.Fprintf(w, "  QM9 19-atom relative distances: JS vs reference histogram %v over %v molecules\n",
		get("js_qm9_19_atoms", "js"), get("js_qm9_19_atoms", "n_molecules"))
	if _, ok := r["train_dw4"]; ok {
		fmt.Fprintf(w, "  DW4 E-NF (a few batches only): test NLL %v nats (exact trace) on %v configurations\n",
			get("eval_dw4_test", "nll"), get("eval_dw4_test", "n"))
	}
	if html := get("report", "html"); html != nil {
		fmt.Fprintf(w, "  report of the miniature batch job (paper tables next to ours): %v\n", html)
	}
}
