package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/enflow/enflow/etl/atomicfile"
	"github.com/enflow/enflow/gomlx_models/backend"
	"github.com/enflow/enflow/internal/shared"
)

func init() {
	Register(&Command{
		Name: "demo",
		Summary: "the main job: QM9 molecules sampled from the published E-NF (stability, validity, SDF, pictures), " +
			"ETL of the shipped data, statistics, QM9 metrics, and a small DW4 E-NF trained, evaluated and sampled",
		Run: runDemo,
	})
}

// demoStep is one command of the demo pipeline; its JSON summary is kept in the report.
type demoStep struct {
	name string
	args []string
	// engineEnv, when set, is the $GOMLX_BACKEND the step runs with (for the job runner, whose
	// child processes resolve their engine from the environment).
	engineEnv string
	// run, when set, replaces `enflow args…` (args are then only shown).
	run func(ctx context.Context) (map[string]any, error)
}

// demoParticleEngine is the engine of the demo's DW4 steps unless --backend or $GOMLX_BACKEND
// says otherwise: their models are so small that XLA would spend the time compiling.
const demoParticleEngine = "go"

func runDemo(ctx context.Context, env *Env, args []string) error {
	fs := NewFlagSet(env, "demo", "[--shared DIR] [--out DIR] [--molecules N] [--steps N] [--backend SPEC]")
	sharedDir := fs.String("shared", shared.Dir(), "the shared data folder (QM9 test split, DW4/LJ13 samples, the published QM9 checkpoint)")
	out := fs.String("out", "out/demo", "output `directory`")
	molecules := fs.Int("molecules", 20, "`N` QM9 molecules sampled from the published E-NF checkpoint (0 skips the molecule steps)")
	steps := fs.Int("steps", 10, "training `batches` of the small DW4 flow (0 skips training)")
	spec := fs.String("jobs", "jobs/mini.toml", "miniature batch-job `spec` run at the end, followed by the HTML report (\"\" skips)")
	engine := fs.String("backend", "", "engine `spec` of every model step (default $GOMLX_BACKEND, else: QM9 sampling automatic "+
		"(XLA when built in and its plugin is found), the DW4 steps SimpleGo)")
	asJSON := fs.Bool("json", false, "print the summary as one JSON object")
	if err := Parse(fs, args); err != nil {
		return err
	}
	switch {
	case *sharedDir == "":
		return fmt.Errorf("%w: no shared data folder found; pass --shared DIR", ErrUsage)
	case *molecules < 0:
		return fmt.Errorf("%w: --molecules must be ≥ 0", ErrUsage)
	}
	npz := filepath.Join(*sharedDir, "data", "qm9", "cormorant_qm9_test.npz")
	if _, err := os.Stat(npz); err != nil {
		return fmt.Errorf("demo: shared data: %w", err)
	}
	// One engine for everything when asked for; else the fastest for each part (measured: QM9
	// sampling is ≈2× faster on XLA, the tiny DW4 models are all compilation there).
	moleculeEngine := strings.TrimSpace(*engine)
	if moleculeEngine == "" {
		moleculeEngine = strings.TrimSpace(os.Getenv(backend.EnvVar))
	}
	particleEngine := moleculeEngine
	if particleEngine == "" {
		particleEngine = demoParticleEngine
	}
	data := filepath.Join(*out, "data")
	qm9Test := filepath.Join(data, "qm9_test.parquet")
	run := filepath.Join(*out, "dw4_run")
	plan := []demoStep{
		{name: "etl_qm9", args: []string{"etl", "qm9", "--npz", npz, "--positional", "--out", data, "--json"}},
	}
	if *molecules > 0 {
		molSteps, err := demoMoleculeSteps(env, *sharedDir, *out, qm9Test, *molecules, moleculeEngine)
		if err != nil {
			return err
		}
		plan = append(plan, molSteps...)
	}
	plan = append(plan,
		demoStep{name: "etl_dw4", args: []string{"etl", "particles", "--system", "dw4", "--data", filepath.Join(*sharedDir, "data", "dw4"), "--out", data, "--json"}},
		demoStep{name: "etl_lj13", args: []string{"etl", "particles", "--system", "lj13", "--data", filepath.Join(*sharedDir, "data", "lj13"), "--out", data, "--json"}},
		demoStep{name: "stats_qm9", args: []string{"stats", "--in", qm9Test, "--json"}},
		demoStep{name: "stability_qm9_test", args: []string{"metrics", "stability", "--in", qm9Test, "--json"}},
		demoStep{name: "js_qm9_19_atoms", args: []string{"metrics", "js", "--in", qm9Test, "--json"}},
		demoStep{name: "stats_dw4_train", args: []string{"stats", "--in", filepath.Join(data, "dw4_train.parquet"), "--json"}},
	)
	if *steps > 0 {
		if err := os.RemoveAll(run); err != nil { // the demo always trains from scratch
			return fmt.Errorf("demo: %w", err)
		}
		plan = append(plan,
			demoStep{name: "train_dw4", args: []string{"train", "--dataset", "dw4", "--data", data, "--out", run,
				"--n-data", "1000", "--epochs", "1", "--test-every", "1", "--max-steps-per-epoch", strconv.Itoa(*steps),
				"--eval-n", "200", "--no-progress", "--backend", particleEngine, "--json"}},
			demoStep{name: "eval_dw4_test", args: []string{"eval", "--checkpoint", run, "--split", "test", "--trace", "exact", "--limit", "200",
				"--backend", particleEngine, "--json"}},
			demoStep{name: "sample_dw4", args: []string{"sample", "--checkpoint", run, "--n", "200", "--seed", "1",
				"--out", filepath.Join(*out, "dw4_samples.parquet"), "--backend", particleEngine, "--json"}},
			demoStep{name: "stats_dw4_samples", args: []string{"stats", "--in", filepath.Join(*out, "dw4_samples.parquet"), "--json"}},
		)
	}
	if *spec != "" {
		if _, err := os.Stat(*spec); err != nil {
			return fmt.Errorf("demo: --jobs: %w", err)
		}
		jobsDir := filepath.Join(*out, "jobs")
		if err := os.RemoveAll(jobsDir); err != nil { // the demo always recomputes
			return fmt.Errorf("demo: %w", err)
		}
		plan = append(plan,
			demoStep{name: "jobs_mini", args: []string{"jobs", "run", *spec, "--data", data, "--state", jobsDir, "--json"},
				engineEnv: particleEngine},
			demoStep{name: "report", args: []string{"report", "--results", jobsDir, "--out", filepath.Join(*out, "report.html"),
				"--md", filepath.Join(*out, "report.md"), "--json"}},
		)
	}
	report := map[string]any{}
	start := time.Now()
	for i, st := range plan {
		fmt.Fprintf(env.Stderr, "demo [%d/%d] enflow %s\n", i+1, len(plan), strings.Join(st.args, " "))
		t0 := time.Now()
		summary, err := runDemoStep(ctx, env, st)
		if err != nil {
			return err
		}
		summary["step_wall_s"] = math.Round(time.Since(t0).Seconds()*1000) / 1000
		report[st.name] = summary
	}
	report["wall_s"] = math.Round(time.Since(start).Seconds()*1000) / 1000
	report["out"] = *out
	report["engines"] = map[string]any{"molecules": engineLabel(moleculeEngine), "particles": particleEngine}
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

// engineLabel names an engine spec for the summary ("" is the automatic choice).
func engineLabel(spec string) string {
	if spec == "" {
		return "automatic"
	}
	return spec
}

// demoMoleculeSteps are the steps that show the product: the published QM9 checkpoint
// imported, n molecules sampled from it, their stability and (with RDKit) validity, an SDF
// file and an HTML page of pictures compared with the QM9 test split qm9Test.
func demoMoleculeSteps(env *Env, sharedDir, out, qm9Test string, n int, engine string) ([]demoStep, error) {
	pre := filepath.Join(sharedDir, "data", "pretrained", "en_flows_qm9")
	files := map[string]string{}
	for _, f := range []string{"flow.npy", "dequantizer.npy", "args.pickle"} {
		p := filepath.Join(pre, f)
		if _, err := os.Stat(p); err != nil {
			return nil, fmt.Errorf("demo: the published QM9 checkpoint (--molecules 0 skips the molecule steps): %w", err)
		}
		files[f] = p
	}
	model := filepath.Join(out, "enf_qm9")
	if err := os.RemoveAll(model); err != nil { // import-torch wants a new or empty directory
		return nil, fmt.Errorf("demo: %w", err)
	}
	samples := filepath.Join(out, "qm9_samples.parquet")
	sample := []string{"sample", "--checkpoint", model, "--n", strconv.Itoa(n), "--seed", "1", "--out", samples}
	if engine != "" {
		sample = append(sample, "--backend", engine)
	}
	return []demoStep{
		{name: "import_qm9_published", args: []string{"import-torch", "--flow", files["flow.npy"], "--dequantizer", files["dequantizer.npy"],
			"--args", files["args.pickle"], "--out", model, "--json"}},
		{name: "sample_qm9", args: append(sample, "--json")},
		{name: "stability_qm9_samples", args: []string{"metrics", "stability", "--in", samples, "--json"}},
		{name: "validity_qm9_samples", args: []string{"metrics", "validity", "--in", samples, "--json"},
			run: func(ctx context.Context) (map[string]any, error) { return demoValidity(ctx, env, samples) }},
		{name: "export_qm9_sdf", args: []string{"export", "--samples", samples, "--format", "sdf",
			"--out", filepath.Join(out, "qm9_samples.sdf"), "--json"}},
		{name: "molecules_html", args: []string{"report", "molecules", "--in", samples, "--data", qm9Test,
			"--title", "enflow demo: QM9 molecules sampled from the published E-NF", "--out", filepath.Join(out, "molecules.html"), "--json"}},
	}, nil
}

// demoValidity is `enflow metrics validity --in samples --json`, except that a missing RDKit
// is no error: the demo then records the step as skipped, with the reason.
func demoValidity(ctx context.Context, env *Env, samples string) (map[string]any, error) {
	skip := func(reason string) (map[string]any, error) {
		fmt.Fprintf(env.Stderr, "demo: validity skipped: %s\n", reason)
		return map[string]any{"skipped": true, "reason": reason}, nil
	}
	py, looked := findVenvPython()
	if py == "" {
		return skip(fmt.Sprintf("%v (looked for %s)", errNoRDKit, strings.Join(looked[:min(len(looked), 3)], ", ")))
	}
	res, err := RunValidity(ctx, py, samples, "", false, env.Stderr)
	if errors.Is(err, errNoRDKit) {
		return skip(err.Error())
	}
	if err != nil {
		return nil, fmt.Errorf("demo: step validity_qm9_samples: validity of %s: %w", samples, err)
	}
	blob, err := json.Marshal(res)
	if err != nil {
		return nil, fmt.Errorf("demo: step validity_qm9_samples: %w", err)
	}
	var m map[string]any
	if err := json.Unmarshal(blob, &m); err != nil {
		return nil, fmt.Errorf("demo: step validity_qm9_samples: %w", err)
	}
	m["in"] = samples
	return m, nil
}

// runDemoStep runs one step and returns its JSON summary.
func runDemoStep(ctx context.Context, env *Env, st demoStep) (map[string]any, error) {
	if st.run != nil {
		return st.run(ctx)
	}
	if st.engineEnv != "" {
		restore, err := setEnv(backend.EnvVar, st.engineEnv)
		if err != nil {
			return nil, fmt.Errorf("demo: step %s: %w", st.name, err)
		}
		defer restore()
	}
	var buf bytes.Buffer
	if code := Main(ctx, st.args, &buf, env.Stderr); code != 0 {
		return nil, fmt.Errorf("demo: step %s (enflow %s) failed with exit code %d", st.name, strings.Join(st.args, " "), code)
	}
	var summary map[string]any
	if err := json.Unmarshal(buf.Bytes(), &summary); err != nil {
		return nil, fmt.Errorf("demo: step %s: its --json output is not one JSON object: %w", st.name, err)
	}
	return summary, nil
}

// setEnv sets the environment variable key to value and returns the function that restores
// its previous state.
func setEnv(key, value string) (func(), error) {
	old, had := os.LookupEnv(key)
	if err := os.Setenv(key, value); err != nil {
		return nil, fmt.Errorf("setting $%s: %w", key, err)
	}
	return func() {
		if had {
			_ = os.Setenv(key, old)
		} else {
			_ = os.Unsetenv(key)
		}
	}, nil
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
	if _, ok := r["sample_qm9"]; ok {
		fmt.Fprintf(w, "  QM9 molecules sampled from the published E-NF checkpoint: %v on %v in %s s\n",
			get("sample_qm9", "n"), get("sample_qm9", "engine"), fmtNum(get("sample_qm9", "step_wall_s"), 'f', 1))
		fmt.Fprintf(w, "    atom stability %s (%v/%v), molecule stability %s (%v/%v); paper (10,000 samples): 0.85 / 0.049\n",
			fmtFrac(get("stability_qm9_samples", "atom_stable")), get("stability_qm9_samples", "n_stable_atoms"), get("stability_qm9_samples", "n_atoms"),
			fmtFrac(get("stability_qm9_samples", "mol_stable")), get("stability_qm9_samples", "n_stable_molecules"), get("stability_qm9_samples", "n_molecules"))
		if skipped, _ := get("validity_qm9_samples", "skipped").(bool); skipped {
			fmt.Fprintf(w, "    validity: skipped, RDKit is not set up (./just setup-py installs it)\n")
		} else {
			fmt.Fprintf(w, "    RDKit validity %s (%v/%v), uniqueness %s (%v/%v); EDM Table 2 for the E-NF: validity 0.402\n",
				fmtFrac(get("validity_qm9_samples", "validity")), get("validity_qm9_samples", "n_valid"), get("validity_qm9_samples", "n_molecules"),
				fmtFrac(get("validity_qm9_samples", "uniqueness")), get("validity_qm9_samples", "n_unique"), get("validity_qm9_samples", "n_valid"))
		}
		fmt.Fprintf(w, "    SDF: %v\n", get("export_qm9_sdf", "out"))
		fmt.Fprintf(w, "    pictures: %v\n", get("molecules_html", "url"))
	}
	fmt.Fprintf(w, "  QM9 test split: %v molecules; atom stability %s, molecule stability %s (paper's data: 0.99 / 0.952)\n",
		get("stability_qm9_test", "n_molecules"), fmtFrac(get("stability_qm9_test", "atom_stable")), fmtFrac(get("stability_qm9_test", "mol_stable")))
	fmt.Fprintf(w, "  QM9 19-atom relative distances: JS vs reference histogram %s over %v molecules (paper: 3.6e-05)\n",
		fmtNum(get("js_qm9_19_atoms", "js"), 'g', 3), get("js_qm9_19_atoms", "n_molecules"))
	if _, ok := r["train_dw4"]; ok {
		fmt.Fprintf(w, "  DW4 E-NF (a few batches only): test NLL %s nats (exact trace) on %v configurations\n",
			fmtNum(get("eval_dw4_test", "nll"), 'f', 3), get("eval_dw4_test", "n"))
	}
	if html := get("report", "html"); html != nil {
		fmt.Fprintf(w, "  report of the miniature batch job (paper tables next to ours): %v\n", html)
	}
}

// fmtFrac prints a fraction with three decimals ("–" when it is missing or not a number).
func fmtFrac(v any) string { return fmtNum(v, 'f', 3) }

// fmtNum prints a number of a JSON summary with strconv's format and precision ("–" when it
// is missing or not a number).
func fmtNum(v any, format byte, prec int) string {
	if f, ok := v.(float64); ok {
		return strconv.FormatFloat(f, format, prec, 64)
	}
	return "–"
}
