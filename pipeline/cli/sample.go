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
		Name:    "sample",
		Summary: "draw samples from a trained model into a particle-configuration Parquet/Arrow file",
		Run:     runSample,
	})
}

func runSample(ctx context.Context, env *Env, args []string) error {
	if isQM9Checkpoint(args) { // QM9 E-NF (enflow import-torch): qm9_sample.go
		return runQM9Sample(ctx, env, args)
	}
	var (
		dir, which, out, backendSpec string
		n, batch                     int
		seed                         uint64
		o                            train.CNFOverrides
		asJSON                       bool
	)
	fs := NewFlagSet(env, "sample", "--checkpoint DIR --n N [--seed S] --out FILE.parquet|FILE.arrow [flags]")
	fs.StringVar(&dir, "checkpoint", "", "run `directory` of enflow train (or its best/ subdirectory)")
	fs.StringVar(&which, "which", "", "`checkpoint`: best (default when present) or last")
	fs.IntVar(&n, "n", 0, "number of `samples`")
	fs.Uint64Var(&seed, "seed", 1, "random `seed`")
	fs.StringVar(&out, "out", "", "output `file` (.parquet or .arrow, particle-configuration schema)")
	fs.IntVar(&batch, "batch", 100, "samples per model call")
	fs.StringVar(&o.Solver, "solver", "", "ODE `solver` (default: the model's)")
	fs.Float64Var(&o.RTol, "rtol", 0, "relative `tolerance` (default: the model's)")
	fs.Float64Var(&o.ATol, "atol", 0, "absolute `tolerance` (default: the model's)")
	fs.IntVar(&o.Steps, "steps", 0, "fixed-step solver `steps`")
	fs.StringVar(&backendSpec, "backend", "", "GoMLX `backend` (default $GOMLX_BACKEND, else SimpleGo)")
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
	}
	b, err := backend.New(backendSpec)
	if err != nil {
		return fmt.Errorf("%w: --backend: %v", ErrUsage, err)
	}
	defer b.Finalize()
	rep, err := train.SampleRun(ctx, train.SampleOptions{
		Backend: b, Dir: dir, Which: which, N: n, Seed: seed, Batch: batch, Out: out, Override: o,
	})
	if err != nil {
		return err
	}
	return Summary(env, asJSON, map[string]any{
		"n":           rep.N,
		"out":         rep.Out,
		"checkpoint":  rep.Dir,
		"mean_energy": nanToNil(rep.MeanEnergy),
		"nfe":         rep.NFE,
		"wall_s":      math.Round(rep.Wall.Seconds()*1000) / 1000,
	})
}
