package cli

import (
	"context"
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/enflow/enflow/gomlx_models/backend"
	"github.com/enflow/enflow/pipeline/train"
)

func init() {
	Register(&Command{
		Name:    "eval",
		Summary: "NLL of a model (run directory or imported checkpoint) on a split or a molecule file",
		Run:     runEval,
	})
}

func runEval(ctx context.Context, env *Env, args []string) error {
	var (
		dir, which, split, data, backendSpec string
		ids, order, perMol, dtype            string
		o                                    train.CNFOverrides
		batch, limit                         int
		seed                                 uint64
		deterministic, asJSON, quiet         bool
	)
	fs := NewFlagSet(env, "eval", "--checkpoint DIR [--split test|val|train | --data FILE] [flags]")
	fs.StringVar(&dir, "checkpoint", "", "model `directory`: a run of enflow train (or its best/), or an enflow import-torch output")
	fs.StringVar(&which, "which", "", "`checkpoint`: best (default when present) or last")
	fs.StringVar(&split, "split", "test", "`split`: test, val or train (of the run's data; particle runs: the first n-data train rows)")
	fs.StringVar(&data, "data", "", "particle models: ETL data `directory` (default: the run's); molecule models: a molecule table "+
		"(.parquet/.arrow) or Cormorant .npz to evaluate instead of a split")
	fs.StringVar(&o.Trace, "trace", "", "trace `estimator`: exact or hutchinson (default: the run's test trace)")
	fs.StringVar(&o.Solver, "solver", "", "ODE `solver`: dopri5, rk4, rk4classic, euler (default: the model's)")
	fs.Float64Var(&o.RTol, "rtol", 0, "relative `tolerance` (default: the model's, 1e-4 as en_flows)")
	fs.Float64Var(&o.ATol, "atol", 0, "absolute `tolerance` (default: the model's)")
	fs.IntVar(&o.Steps, "steps", 0, "fixed-step solver `steps`")
	fs.IntVar(&batch, "batch", 0, "evaluation batch `size` (default 100; molecules: 32)")
	fs.Uint64Var(&seed, "seed", 1, "`seed` of the Hutchinson (and dequantizer) noise")
	fs.StringVar(&backendSpec, "backend", "", "engine (GoMLX `backend`): go, xla:cpu, xla:cuda (default $GOMLX_BACKEND, else automatic: XLA when built in and its plugin is found, else SimpleGo)")
	fs.IntVar(&limit, "limit", 0, "evaluate only the first `N` rows / molecules (quick checks; default all)")
	fs.StringVar(&ids, "ids", "", "molecule models: evaluate only these comma-separated molecule `ids`")
	fs.BoolVar(&deterministic, "deterministic", false, "molecule models: dequantizer noise ε = 0 (u = mu) instead of ε ~ N(0, I)")
	fs.StringVar(&order, "order", "size", "molecule models: batching `order`: size (one size per batch, no padding) or data "+
		"(file order, padded to the batch's largest molecule as en_flows; fewer distinct shapes for compiled backends)")
	fs.StringVar(&perMol, "per-molecule", "", "molecule models: write the per-molecule terms of the bound to this CSV `file`")
	fs.StringVar(&dtype, "dtype", "", "`dtype` float32 or float64 (default: the model's)")
	fs.BoolVar(&quiet, "quiet", false, "no progress on stderr")
	fs.BoolVar(&asJSON, "json", false, "print the summary as one JSON object")
	if err := Parse(fs, args); err != nil {
		return err
	}
	if dir == "" {
		return fmt.Errorf("%w: --checkpoint is required", ErrUsage)
	}
	if limit < 0 || batch < 0 {
		return fmt.Errorf("%w: --batch and --limit must be ≥ 0", ErrUsage)
	}
	if dtype != "" && dtype != "float32" && dtype != "float64" {
		return fmt.Errorf("%w: --dtype %q: want float32 or float64", ErrUsage, dtype)
	}
	var idList []int64
	if ids != "" {
		for _, f := range strings.Split(ids, ",") {
			id, err := strconv.ParseInt(strings.TrimSpace(f), 10, 64)
			if err != nil {
				return fmt.Errorf("%w: --ids: %v", ErrUsage, err)
			}
			idList = append(idList, id)
		}
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
	if o.Solver != "" && o.Solver != "dopri5" && o.Steps <= 0 {
		return fmt.Errorf("%w: --solver %s needs --steps", ErrUsage, o.Solver)
	}
	b, err := backend.New(backendSpec)
	if err != nil {
		return fmt.Errorf("%w: --backend: %v", ErrUsage, err)
	}
	defer b.Finalize()
	eo := train.EvalOptions{
		Backend: b, Dir: dir, Which: which, Split: split, Override: o, Batch: batch, Seed: seed, Limit: limit,
		IDs: idList, Deterministic: deterministic, PerMolecule: perMol, Order: order, DType: dtype,
	}
	if !quiet {
		eo.Progress = env.Stderr
	}
	if strings.HasSuffix(strings.ToLower(data), ".parquet") || strings.HasSuffix(strings.ToLower(data), ".arrow") ||
		strings.HasSuffix(strings.ToLower(data), ".npz") {
		eo.Data = data
	} else {
		eo.DataDir = data
	}
	rep, err := train.EvaluateRun(ctx, eo)
	if err != nil {
		return err
	}
	c := rep.Spec.CNF
	res := map[string]any{
		"nll":        nanToNil(rep.NLL),
		"n":          rep.N,
		"batches":    rep.Batches,
		"nfe":        rep.NFE,
		"wall_s":     math.Round(rep.Wall.Seconds()*1000) / 1000,
		"split":      rep.Split,
		"checkpoint": rep.Dir,
		"kind":       rep.Spec.Kind,
		"trace":      c.Trace,
		"solver":     c.Solver,
		"dtype":      rep.Spec.DType,
		"engine":     backend.Name(b),
	}
	if dims := rep.Spec.DensityDims(); dims > 0 {
		// Both conventions: nll includes the Gaussian prior's normaliser (E-NF, DEM); bgflow's
		// (Köhler et al.) drops it.
		res["nll_dims"] = dims
		res["nll_without_normaliser"] = nanToNil(rep.NLL - rep.Spec.GaussianNormaliser())
	}
	if c.Solver == "" || c.Solver == "dopri5" {
		res["rtol"], res["atol"] = c.RTol, c.ATol
	} else {
		res["steps"] = c.Steps
	}
	if rep.Means != nil {
		res["data"] = rep.Data
		res["deterministic"] = deterministic
		for k, v := range rep.Means {
			res["mean_"+k] = v
		}
	}
	return Summary(env, asJSON, res)
}
