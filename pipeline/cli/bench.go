package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/enflow/enflow/etl/atomicfile"
	"github.com/enflow/enflow/gomlx_models/qm9"
	"github.com/enflow/enflow/internal/shared"
	"github.com/enflow/enflow/pipeline/bench"
)

func init() {
	Register(&Command{
		Name:    "bench",
		Summary: "performance suite: dynamics, VJPs, adjoint stages, training iterations, exact-trace eval, QM9 sampling",
		Run:     runBench,
	})
}

func runBench(ctx context.Context, env *Env, args []string) error {
	fs := NewFlagSet(env, "bench", "[--json] [--backend SPEC[;SPEC]] [--cases PATTERN[,PATTERN]] [--repeats N] [--out FILE]")
	backends := fs.String("backend", "", "backend `specs` separated by ';' (e.g. 'go:parallelism=-1;xla:cpu'; a spec's own options use ','); "+
		"default: every available one (SimpleGo, and XLA CPU when built with -tags xla and a PJRT plugin is found)")
	cases := fs.String("cases", "", "comma-separated case `patterns` (path.Match globs, e.g. 'dw4/*,qm9/forward'); default: "+
		strings.Join(bench.DefaultCases, ","))
	repeats := fs.Int("repeats", 5, "timed runs per case (after one warm-up run); ms is the median")
	batch := fs.Int("batch", 100, "particle batch size (DW4/LJ13 cases)")
	sharedDir := fs.String("shared", shared.Dir(), "the shared data `folder` (DW4/LJ13 samples, published QM9 checkpoint)")
	qm9Dir := fs.String("qm9", "", "published en_flows QM9 checkpoint `dir` (default <shared>/data/pretrained/en_flows_qm9)")
	qm9N := fs.Int("qm9-molecules", 100, "molecules drawn from p(N) for the QM9 sampling cases (qm9/sample_*)")
	qm9Single := fs.Int("qm9-single", 0, "molecules for qm9/sample_single: the first sizes of the same draw (0 = all of them)")
	qm9Buckets := fs.Int("qm9-buckets", 4, "padded size ranges of qm9/sample_bucketed")
	qm9Workers := fs.Int("qm9-workers", 0, fmt.Sprintf("concurrent CNF solves of the QM9 sampling cases (0 = the sampler's default, %d; 1 = one after another)", qm9.DefaultSampleWorkers))
	out := fs.String("out", "", "also write all results as a JSON array to `file`")
	list := fs.Bool("list", false, "list the cases and the available backends, then exit")
	asJSON := fs.Bool("json", false, "print one JSON object per case and backend on stdout (JSON Lines), progress on stderr")
	quiet := fs.Bool("quiet", false, "no progress lines on stderr")
	if err := Parse(fs, args); err != nil {
		return err
	}
	if *list {
		for _, c := range bench.CaseNames() {
			fmt.Fprintln(env.Stdout, c)
		}
		fmt.Fprintf(env.Stdout, "backends available: %s\n", strings.Join(bench.Available(), ", "))
		return nil
	}
	if *repeats < 1 || *batch < 1 || *qm9N < 1 || *qm9Buckets < 1 {
		return fmt.Errorf("%w: --repeats, --batch, --qm9-molecules and --qm9-buckets must be ≥ 1", ErrUsage)
	}
	if *qm9Single < 0 || *qm9Workers < 0 {
		return fmt.Errorf("%w: --qm9-single and --qm9-workers must be ≥ 0", ErrUsage)
	}
	opts := bench.Options{
		Backends: benchSplitList(strings.ReplaceAll(*backends, ",", "\x00"), ";"), Cases: benchSplitList(*cases, ","), Repeats: *repeats, Batch: *batch,
		Shared: *sharedDir, QM9Dir: *qm9Dir, QM9Molecules: *qm9N, QM9SingleMolecules: *qm9Single, QM9Buckets: *qm9Buckets, QM9Workers: *qm9Workers, Log: env.Stderr,
	}
	if *quiet {
		opts.Log = nil
	}
	if _, err := bench.Select(opts.Cases); err != nil {
		return fmt.Errorf("%w: %v", ErrUsage, err)
	}
	var emitErr error
	opts.Emit = func(r bench.Result) {
		if *asJSON {
			if err := WriteJSON(env.Stdout, r); err != nil && emitErr == nil {
				emitErr = err
			}
			return
		}
		line := fmt.Sprintf("%-26s %-10s %10.3f ms  cpu %10.3f ms  nfe %4d  peak %7.1f MB  hwm %7.1f MB  compile %8.0f ms",
			r.Case, r.Backend, r.MS, r.CPUMS, r.NFE, r.PeakMB, r.VmHWMMB, r.CompileMS)
		if r.Molecules > 0 {
			line += fmt.Sprintf("  %d molecules  %.3g mol/s  %.3g mol/cpu-s", r.Molecules, r.MolPerS, r.MolPerCPUS)
		}
		if r.Baseline != "" {
			line += fmt.Sprintf("  speedup %.3g× (cpu %.3g×) vs %s", r.Speedup, r.SpeedupCPU, r.Baseline)
		}
		if r.Error != "" {
			line = fmt.Sprintf("%-26s %-10s ERROR %s", r.Case, r.Backend, r.Error)
		}
		fmt.Fprintln(env.Stdout, line)
	}
	results, err := bench.Run(ctx, opts)
	if *out != "" && len(results) > 0 {
		data, merr := json.MarshalIndent(results, "", "  ")
		if merr != nil {
			return merr
		}
		if werr := atomicfile.WriteFile(*out, append(data, '\n')); werr != nil {
			return werr
		}
	}
	if err != nil {
		return err
	}
	if emitErr != nil {
		return emitErr
	}
	failed := 0
	for _, r := range results {
		if r.Error != "" {
			failed++
		}
	}
	if failed > 0 {
		fmt.Fprintf(env.Stderr, "enflow bench: %d of %d cases failed\n", failed, len(results))
	}
	return nil
}

// benchSplitList splits s on sep, trims the parts and drops empty ones; NUL bytes (used to
// protect commas inside backend specs) become commas again.
func benchSplitList(s, sep string) []string {
	var out []string
	for _, p := range strings.Split(s, sep) {
		if p = strings.TrimSpace(strings.ReplaceAll(p, "\x00", ",")); p != "" {
			out = append(out, p)
		}
	}
	return out
}
