package cli

import (
	"context"
	"fmt"
	"math"

	"github.com/enflow/enflow/gomlx_models/backend"
	"github.com/enflow/enflow/gomlx_models/qm9"
	"github.com/enflow/enflow/pipeline/train"
)

func init() {
	Register(&Command{
		Name:    "sample",
		Summary: "draw samples from a model into a Parquet/Arrow table (particle configurations or molecules)",
		Run:     runSample,
	})
}

func runSample(ctx context.Context, env *Env, args []string) error {
	var (
		dir, which, out, backendSpec, dtype string
		n, batch, buckets, workers          int
		seed                                uint64
		o                                   train.CNFOverrides
		asJSON, quiet, logWeights           bool
	)
	fs := NewFlagSet(env, "sample", "--checkpoint DIR --n N [--seed S] --out FILE.parquet|FILE.arrow [flags]")
	fs.StringVar(&dir, "checkpoint", "", "model `directory`: a run of enflow train (or its best/), or an enflow import-torch output")
	fs.StringVar(&which, "which", "", "`checkpoint`: best (default when present) or last")
	fs.IntVar(&n, "n", 0, "number of `samples` (configurations or molecules)")
	fs.Uint64Var(&seed, "seed", 1, "random `seed` (molecules: sizes and prior draws)")
	fs.StringVar(&out, "out", "", "output `file` (.parquet or .arrow): particle-configuration or molecule table")
	fs.IntVar(&batch, "batch", 100, "samples per model call at most (molecules of one size share a solve; 1 = one at a time)")
	fs.IntVar(&buckets, "buckets", AutoBuckets, "molecule models: merge the drawn sizes into at most `K` ranges padded to their largest size "+
		"(fewer compiled graph shapes, more padded compute; 0 = one group per size, no padding; -1 = auto: 2, 4 or 8 on XLA by --n, 0 on SimpleGo)")
	fs.IntVar(&workers, "workers", 0, fmt.Sprintf("molecule models: CNF `solves` run at once (results do not depend on it; 0 = %d, 1 = one after another)", qm9.DefaultSampleWorkers))
	fs.StringVar(&o.Solver, "solver", "", "ODE `solver` (default: the model's)")
	fs.Float64Var(&o.RTol, "rtol", 0, "relative `tolerance` (default: the model's)")
	fs.Float64Var(&o.ATol, "atol", 0, "absolute `tolerance` (default: the model's)")
	fs.IntVar(&o.Steps, "steps", 0, "fixed-step solver `steps`")
	fs.StringVar(&dtype, "dtype", "", "`dtype` float32 or float64 (default: the model's)")
	fs.StringVar(&backendSpec, "backend", "", "engine (GoMLX `backend`): go, xla:cpu, xla:cuda (default $GOMLX_BACKEND, else automatic: XLA when built in and its plugin is found, else SimpleGo)")
	fs.BoolVar(&logWeights, "log-weights", false, "particle models: also write log_q, the flow's log density of each sample "+
		"(nats; exact trace), for importance weights log w = −u/T − log q (enflow metrics ess)")
	fs.StringVar(&o.Trace, "trace", "", "trace `estimator` of --log-weights: exact (the default there) or analytic (kernel dynamics)")
	fs.BoolVar(&quiet, "quiet", false, "no progress on stderr")
	fs.BoolVar(&asJSON, "json", false, "print the summary as one JSON object")
	if err := Parse(fs, args); err != nil {
		return err
	}
	switch {
	case dir == "":
		return fmt.Errorf("%w: --checkpoint is required", ErrUsage)
	case n <= 0:
		return fmt.Errorf("%w: --n must be positive", ErrUsage)
	case out == "":
		return fmt.Errorf("%w: --out is required", ErrUsage)
	case batch <= 0:
		return fmt.Errorf("%w: --batch must be positive", ErrUsage)
	case buckets < AutoBuckets:
		return fmt.Errorf("%w: --buckets must be ≥ 0, or -1 for auto", ErrUsage)
	case workers < 0:
		return fmt.Errorf("%w: --workers must be ≥ 0", ErrUsage)
	case dtype != "" && dtype != "float32" && dtype != "float64":
		return fmt.Errorf("%w: --dtype %q: want float32 or float64", ErrUsage, dtype)
	}
	if o.Solver != "" && o.Solver != "dopri5" && o.Steps <= 0 {
		return fmt.Errorf("%w: --solver %s needs --steps", ErrUsage, o.Solver)
	}
	b, err := backend.New(backendSpec)
	if err != nil {
		return fmt.Errorf("%w: --backend: %v", ErrUsage, err)
	}
	defer b.Finalize()
	buckets = resolveSampleBuckets(buckets, n, b)
	so := train.SampleOptions{
		Backend: b, Dir: dir, Which: which, N: n, Seed: seed, Batch: batch, Out: out, Override: o, Buckets: buckets, Workers: workers, DType: dtype,
		LogWeights: logWeights,
	}
	if !quiet {
		so.Progress = env.Stderr
	}
	rep, err := train.SampleRun(ctx, so)
	if err != nil {
		return err
	}
	res := map[string]any{
		"n":          rep.N,
		"out":        rep.Out,
		"checkpoint": rep.Dir,
		"kind":       rep.Spec.Kind,
		"seed":       seed,
		"nfe":        rep.NFE,
		"wall_s":     math.Round(rep.Wall.Seconds()*1000) / 1000,
		"solver":     rep.Spec.CNF.Solver,
		"rtol":       rep.Spec.CNF.RTol,
		"atol":       rep.Spec.CNF.ATol,
		"dtype":      rep.Spec.DType,
		"engine":     backend.Name(b),
	}
	if m := rep.Molecules; m != nil {
		res["failed"] = m.Failed
		res["charge_consistency"] = nanToNil(m.ChargeConsistency)
		res["atom_stable"] = nanToNil(m.AtomStable)
		res["mol_stable"] = nanToNil(m.MolStable)
		res["solves"] = m.Solves
		res["batch"] = batch
		res["buckets"] = buckets
	} else {
		res["mean_energy"] = nanToNil(rep.MeanEnergy)
		res["log_weights"] = logWeights
	}
	return Summary(env, asJSON, res)
}
