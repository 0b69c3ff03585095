package cli

import (
	"context"
	"fmt"
	"math"

	"github.com/enflow/enflow/gomlx_models/backend"
	"github.com/enflow/enflow/pipeline/train"
)

func init() {
	Register(&Command{
		Name:    "eval",
		Summary: "NLL of a trained model (run directory) on the test, val or train split",
		Run:     runEval,
	})
}

func runEval(ctx context.Context, env *Env, args []string) error {
	if isQM9Checkpoint(args) { // QM9 E-NF (enflow import-torch): qm9_eval.go
		return runQM9Eval(ctx, env, args)
	}
	var (
		dir, which, split, data, backendSpec string
		o                                    train.CNFOverrides
		batch, limit                         int
		seed                                 uint64
		asJSON                               bool
	)
	fs := NewFlagSet(env, "eval", "--checkpoint DIR [--split test|val|train] [--trace exact|hutchinson] [flags]")
	fs.StringVar(&dir, "checkpoint", "", "run `directory` of enflow train (or its best/ subdirectory)")
	fs.StringVar(&which, "which", "", "`checkpoint`: best (default when present) or last")
	fs.StringVar(&split, "split", "test", "`split`: test, val or train (the run's first n-data rows)")
	fs.StringVar(&data, "data", "", "ETL data `directory` (default: the run's, from run.json)")
	fs.StringVar(&o.Trace, "trace", "", "trace `estimator`: exact or hutchinson (default: the run's test trace)")
	fs.StringVar(&o.Solver, "solver", "", "ODE `solver` (default: the model's)")
	fs.Float64Var(&o.RTol, "rtol", 0, "relative `tolerance` (default: the model's, 1e-4 as en_flows)")
	fs.Float64Var(&o.ATol, "atol", 0, "absolute `tolerance` (default: the model's)")
	fs.IntVar(&o.Steps, "steps", 0, "fixed-step solver `steps`")
	fs.IntVar(&batch, "batch", 100, "evaluation batch `size` (NLL = mean over batches of the batch mean)")
	fs.Uint64Var(&seed, "seed", 1, "`seed` of the Hutchinson noise")
	fs.StringVar(&backendSpec, "backend", "", "GoMLX `backend` (default $GOMLX_BACKEND, else SimpleGo)")
	fs.IntVar(&limit, "limit", 0, "evaluate only the first `N` rows of the split (quick checks; default all)")
	fs.BoolVar(&asJSON, "json", false, "print the summary as one JSON object")
	if err := Parse(fs, args); err != nil {
		return err
	}
	if dir == "" {
		return fmt.Errorf("%w: --checkpoint is required", ErrUsage)
	}
	if o.Trace == "" {
		if info, err := train.LoadRunInfo(dir); err == nil {
			if split == "val" {
				o.Trace = info.ValTrace
			} else {
				o.Trace = info.TestTrace
			}
		}
	}
	b, err := backend.New(backendSpec)
	if err != nil {
		return fmt.Errorf("%w: --backend: %v", ErrUsage, err)
	}
	defer b.Finalize()
	rep, err := train.EvaluateRun(ctx, train.EvalOptions{
		Backend: b, Dir: dir, Which: which, Split: split, DataDir: data, Override: o, Batch: batch, Seed: seed, Limit: limit,
	})
	if err != nil {
		return err
	}
	return Summary(env, asJSON, map[string]any{
		"nll":        nanToNil(rep.NLL),
		"n":          rep.N,
		"batches":    rep.Batches,
		"nfe":        rep.NFE,
		"wall_s":     math.Round(rep.Wall.Seconds()*1000) / 1000,
		"split":      rep.Split,
		"checkpoint": rep.Dir,
		"trace":      rep.Spec.CNF.Trace,
		"solver":     rep.Spec.CNF.Solver,
		"rtol":       rep.Spec.CNF.RTol,
		"atol":       rep.Spec.CNF.ATol,
	})
}
