package cli

import (
	"context"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/enflow/enflow/etl/molecule"
	"github.com/enflow/enflow/etl/table"
	"github.com/enflow/enflow/gomlx_models/backend"
	"github.com/enflow/enflow/gomlx_models/qm9"
	"github.com/enflow/enflow/pipeline/metrics"
)

func runQM9Sample(ctx context.Context, env *Env, args []string) error {
	var (
		dir, out, backendSpec string
		o                     qm9Overrides
		n, batch, buckets     int
		seed                  uint64
		asJSON, quiet         bool
	)
	fs := NewFlagSet(env, "sample", "--checkpoint QM9DIR --n N --out FILE.parquet [--seed S] [flags]")
	fs.StringVar(&dir, "checkpoint", "", "QM9 model `directory` (enflow import-torch output)")
	fs.IntVar(&n, "n", 0, "number of `molecules`")
	fs.Uint64Var(&seed, "seed", 1, "random `seed` (molecule sizes and prior draws)")
	fs.StringVar(&out, "out", "", "output molecule table `file` (.parquet or .arrow)")
	fs.IntVar(&batch, "batch", qm9.DefaultSampleBatch, "molecules per ODE solve at most (molecules of one size share a solve; 1 = one at a time)")
	fs.IntVar(&buckets, "buckets", 0, "merge the drawn sizes into at most `K` ranges padded to their largest size "+
		"(fewer compiled graph shapes, more padded compute; 0 = one group per size, no padding)")
	o.register(fs, false)
	fs.StringVar(&backendSpec, "backend", "", "GoMLX `backend` (default $GOMLX_BACKEND, else SimpleGo)")
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
	case buckets < 0:
		return fmt.Errorf("%w: --buckets must be ≥ 0", ErrUsage)
	}
	spec, cfg, lctx, err := o.config(dir)
	if err != nil {
		return err
	}
	b, err := backend.New(backendSpec)
	if err != nil {
		return fmt.Errorf("%w: --backend: %v", ErrUsage, err)
	}
	defer b.Finalize()
	m, err := qm9.New(b, lctx, cfg)
	if err != nil {
		return err
	}
	w, err := table.NewMoleculeWriter(out)
	if err != nil {
		return err
	}
	defer w.Abort()
	start := time.Now()
	var st metrics.Stability
	written := 0
	// Each batch is written (and scored) as soon as it is decoded: memory stays bounded by the
	// batch, not by --n. Rows come in batch order (largest molecules first); id is the draw index.
	emit := func(mols []molecule.Molecule, _ [][]int) error {
		for i := range mols {
			if err := w.Write(&mols[i]); err != nil {
				return err
			}
			if _, err := st.AddMolecule(&mols[i]); err != nil {
				return err
			}
		}
		written += len(mols)
		return nil
	}
	res, err := m.Sample(ctx, qm9.SampleOptions{N: n, Seed: seed, Batch: batch, Buckets: buckets, Emit: emit,
		Progress: func(done, total int, bi qm9.BatchInfo) {
			if quiet {
				return
			}
			el := time.Since(start)
			fmt.Fprintf(env.Stderr, "sample: %d/%d molecules (batch %d × %d atoms%s, %d NFE, %s%s), elapsed %s\n",
				done, total, bi.Molecules, bi.Atoms, padded(bi), bi.NFE, bi.Wall.Round(time.Millisecond), retried(bi.Retried), el.Round(time.Second))
		}})
	if err != nil {
		return err
	}
	if err := w.Commit(); err != nil {
		return err
	}
	return Summary(env, asJSON, map[string]any{
		"n":                  written,
		"out":                out,
		"checkpoint":         dir,
		"seed":               seed,
		"solver":             spec.CNF.Solver,
		"rtol":               spec.CNF.RTol,
		"atol":               spec.CNF.ATol,
		"dtype":              strings.ToLower(cfg.DType.String()),
		"failed":             res.Failed,
		"charge_consistency": nanToNil(res.ChargeConsistency()),
		"atom_stable":        nanToNil(st.AtomStable()),
		"mol_stable":         nanToNil(st.MolStable()),
		"nfe":                res.NFE,
		"solves":             res.Solves,
		"batch":              batch,
		"buckets":            buckets,
		"wall_s":             math.Round(res.Wall.Seconds()*1000) / 1000,
	})
}

func padded(bi qm9.BatchInfo) string {
	if bi.MinAtoms < bi.Atoms {
		return fmt.Sprintf(", padded from ≥ %d", bi.MinAtoms)
	}
	return ""
}

func retried(r bool) string {
	if r {
		return ", batch solve failed: redrawn one by one"
	}
	return ""
}
