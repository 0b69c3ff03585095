package cli

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/enflow/enflow/etl/atomicfile"
	"github.com/enflow/enflow/etl/molecule"
	etlqm9 "github.com/enflow/enflow/etl/qm9"
	"github.com/enflow/enflow/etl/table"
	"github.com/enflow/enflow/gomlx_models/backend"
	"github.com/enflow/enflow/gomlx_models/cnf"
	"github.com/enflow/enflow/gomlx_models/qm9"
	"github.com/gomlx/gomlx/pkg/core/dtypes"
	mlctx "github.com/gomlx/gomlx/pkg/ml/context"
)

// QM9 checkpoints (kind "qm9" in model.json, written by import-torch) are evaluated and sampled
// by the functions in this file and qm9_sample.go; `enflow eval` and `enflow sample` hand over to
// them when --checkpoint points at such a directory.

// checkpointArg returns the value of --checkpoint/-checkpoint in args ("" if absent).
func checkpointArg(args []string) string {
	for i, a := range args {
		for _, p := range []string{"--checkpoint", "-checkpoint"} {
			if a == p && i+1 < len(args) {
				return args[i+1]
			}
			if v, ok := strings.CutPrefix(a, p+"="); ok {
				return v
			}
		}
	}
	return ""
}

// isQM9Checkpoint reports whether args name a QM9 checkpoint directory.
func isQM9Checkpoint(args []string) bool {
	dir := checkpointArg(args)
	return dir != "" && qm9.IsCheckpoint(dir)
}

// qm9Overrides are the solver flags shared by QM9 eval and sample.
type qm9Overrides struct {
	solver, trace, dtype string
	rtol, atol           float64
	steps                int
}

func (o *qm9Overrides) register(fs interface {
	StringVar(*string, string, string, string)
	Float64Var(*float64, string, float64, string)
	IntVar(*int, string, int, string)
}, withTrace bool) {
	fs.StringVar(&o.solver, "solver", "", "ODE `solver`: dopri5, rk4, rk4classic, euler (default: the model's, dopri5)")
	fs.Float64Var(&o.rtol, "rtol", 0, "dopri5 relative `tolerance` (default: the model's, 1e-4 as en_flows)")
	fs.Float64Var(&o.atol, "atol", 0, "dopri5 absolute `tolerance` (default: the model's, 1e-4)")
	fs.IntVar(&o.steps, "steps", 0, "`steps` of fixed-step solvers")
	fs.StringVar(&o.dtype, "dtype", "", "`dtype` float32 or float64 (default: the model's)")
	if withTrace {
		fs.StringVar(&o.trace, "trace", "", "trace `estimator`: hutchinson (default, as en_flows) or exact")
	}
}

// config loads the checkpoint and applies the overrides.
func (o *qm9Overrides) config(dir string) (*qm9.Spec, qm9.Config, *mlctx.Context, error) {
	var dt dtypes.DType
	switch o.dtype {
	case "":
	case "float32":
		dt = dtypes.Float32
	case "float64":
		dt = dtypes.Float64
	default:
		return nil, qm9.Config{}, nil, fmt.Errorf("%w: --dtype %q: want float32 or float64", ErrUsage, o.dtype)
	}
	spec, ctx, err := qm9.LoadCheckpoint(dir, dt)
	if err != nil {
		return nil, qm9.Config{}, nil, err
	}
	if o.solver != "" {
		spec.CNF.Solver = o.solver
	}
	if o.rtol > 0 {
		spec.CNF.RTol = o.rtol
	}
	if o.atol > 0 {
		spec.CNF.ATol = o.atol
	}
	if o.steps > 0 {
		spec.CNF.Steps = o.steps
	}
	if o.trace != "" {
		spec.CNF.Trace = o.trace
	}
	if spec.CNF.Trace == cnf.TraceExact {
		// en_flows integrates the regulariser only with its Hutchinson noise; it plays no part
		// in the NLL, so the exact-trace evaluation leaves it out.
		spec.CNF.RegWeight = 0
	}
	if spec.CNF.Solver != "dopri5" && spec.CNF.Steps <= 0 {
		return nil, qm9.Config{}, nil, fmt.Errorf("%w: --solver %s needs --steps", ErrUsage, spec.CNF.Solver)
	}
	cfg, err := spec.Config(dt)
	if err != nil {
		return nil, qm9.Config{}, nil, err
	}
	cfg.CNF.ExactTraceMode = os.Getenv(cnf.ExactTraceEnv)
	return spec, cfg, ctx, nil
}

// errStopMolecules ends a molecule scan early (--limit reached).
var errStopMolecules = errors.New("enough molecules")

// scanQM9Molecules calls fn for every molecule of a molecule table (.parquet/.arrow, streamed
// in record batches) or of a Cormorant npz split (read whole: npz arrays are not streamable).
func scanQM9Molecules(ctx context.Context, path string, fn func(m *molecule.Molecule) error) error {
	if strings.EqualFold(filepath.Ext(path), ".npz") {
		mols, err := etlqm9.ReadNPZ(path, etlqm9.SplitFromFileName(path))
		if err != nil {
			return err
		}
		for i := range mols {
			if err := fn(&mols[i]); err != nil {
				return err
			}
		}
		return nil
	}
	return table.ScanMolecules(path, 256, func(ms []molecule.Molecule) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		for i := range ms {
			if err := fn(&ms[i]); err != nil {
				return err
			}
		}
		return nil
	})
}

// sizeBatcher groups a stream of molecules into evaluation batches. By size, it keeps one
// bucket per atom count and emits a bucket when it holds batch molecules (the rest, in
// ascending size, at Flush); in data order it emits every batch consecutive molecules. Memory
// is bounded by the batch size times the number of distinct sizes (29 for QM9), not by the
// dataset.
type sizeBatcher struct {
	batch   int
	bySize  bool
	buckets map[int][]molecule.Molecule
	emit    func([]molecule.Molecule) error
}

func (b *sizeBatcher) add(m *molecule.Molecule) error {
	key := 0
	if b.bySize {
		key = m.NAtoms()
	}
	if b.buckets == nil {
		b.buckets = map[int][]molecule.Molecule{}
	}
	bk := append(b.buckets[key], *m)
	if len(bk) < b.batch {
		b.buckets[key] = bk
		return nil
	}
	delete(b.buckets, key)
	return b.emit(bk)
}

func (b *sizeBatcher) flush() error {
	keys := make([]int, 0, len(b.buckets))
	for k := range b.buckets {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		bk := b.buckets[k]
		delete(b.buckets, k)
		if err := b.emit(bk); err != nil {
			return err
		}
	}
	return nil
}

// qm9EvalSums accumulates the terms of the bound over molecules.
type qm9EvalSums struct {
	n                                           int
	nll, logPZ, deltaLogP, actNorm, logQ, logPN float64
}

func (a *qm9EvalSums) add(t *qm9.Terms) {
	a.n++
	a.nll -= t.LogP
	a.logPZ += t.LogPZ
	a.deltaLogP += t.DeltaLogP
	a.actNorm += t.ActNorm
	a.logQ += t.LogQ
	a.logPN += t.LogPN
}

func (a *qm9EvalSums) meanNLL() float64 {
	if a.n == 0 {
		return math.NaN()
	}
	return a.nll / float64(a.n)
}

func runQM9Eval(ctx context.Context, env *Env, args []string) error {
	var (
		dir, data, backendSpec, perMol, ids, order string
		o                                          qm9Overrides
		batch, limit                               int
		seed                                       uint64
		deterministic, asJSON, quiet               bool
	)
	fs := NewFlagSet(env, "eval", "--checkpoint QM9DIR --data qm9_test.parquet [--deterministic] [flags]")
	fs.StringVar(&dir, "checkpoint", "", "QM9 model `directory` (enflow import-torch output)")
	fs.StringVar(&data, "data", "", "QM9 molecules: molecule table `file` (.parquet/.arrow, enflow etl qm9) or Cormorant .npz")
	fs.IntVar(&limit, "limit", 0, "evaluate only the first `n` molecules of the file (0 = all)")
	fs.StringVar(&ids, "ids", "", "evaluate only these comma-separated gdb `ids`")
	fs.BoolVar(&deterministic, "deterministic", false, "dequantizer noise ε = 0 (u = mu) instead of ε ~ N(0, I)")
	o.register(fs, true)
	fs.IntVar(&batch, "batch", 32, "molecules per batch")
	fs.StringVar(&order, "order", "size", "batching `order`: size (molecules of one size per batch, no padding) or data "+
		"(file order, padded to the batch's largest molecule as en_flows; fewer distinct shapes for compiled backends)")
	fs.Uint64Var(&seed, "seed", 1, "`seed` of the dequantizer and Hutchinson noise")
	fs.StringVar(&perMol, "per-molecule", "", "write per-molecule terms of the bound to this CSV `file`")
	fs.StringVar(&backendSpec, "backend", "", "GoMLX `backend` (default $GOMLX_BACKEND, else SimpleGo)")
	fs.BoolVar(&quiet, "quiet", false, "no progress on stderr")
	fs.BoolVar(&asJSON, "json", false, "print the summary as one JSON object")
	if err := Parse(fs, args); err != nil {
		return err
	}
	if dir == "" || data == "" {
		return fmt.Errorf("%w: --checkpoint and --data are required", ErrUsage)
	}
	if batch <= 0 || limit < 0 {
		return fmt.Errorf("%w: --batch must be positive and --limit ≥ 0", ErrUsage)
	}
	if order != "size" && order != "data" {
		return fmt.Errorf("%w: --order %q: want size or data", ErrUsage, order)
	}
	spec, cfg, lctx, err := o.config(dir)
	if err != nil {
		return err
	}
	var want map[int64]bool
	if ids != "" {
		want = map[int64]bool{}
		for _, f := range strings.Split(ids, ",") {
			id, err := strconv.ParseInt(strings.TrimSpace(f), 10, 64)
			if err != nil {
				return fmt.Errorf("%w: --ids: %v", ErrUsage, err)
			}
			want[id] = true
		}
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
	var csvOut *atomicfile.File
	if perMol != "" {
		if csvOut, err = atomicfile.Create(perMol); err != nil {
			return fmt.Errorf("writing %s: %w", perMol, err)
		}
		defer csvOut.Abort()
		if _, err := csvOut.WriteString(perMoleculeHeader); err != nil {
			return fmt.Errorf("writing %s: %w", perMol, err)
		}
	}
	start := time.Now()
	var sums qm9EvalSums
	nfe, nBatches, seen := 0, 0, 0
	// Molecules stream from the file into size buckets; each full bucket is evaluated and
	// dropped, so memory is bounded by the batch size, not by the file.
	batcher := &sizeBatcher{batch: batch, bySize: order == "size", emit: func(sub []molecule.Molecule) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		bi := nBatches
		nBatches++
		bt, err := qm9.NewBatch(sub)
		if err != nil {
			return err
		}
		terms, st, err := m.LogLikelihood(bt, qm9.EvalOptions{Deterministic: deterministic, Seed: seed + uint64(bi)*0x9e3779b97f4a7c15})
		if err != nil {
			return fmt.Errorf("batch %d (%d molecules of %d atoms, ids %d…%d): %w", bi, bt.B, bt.N, sub[0].ID, sub[len(sub)-1].ID, err)
		}
		nfe += st.Forward.NFE
		for i := range terms {
			sums.add(&terms[i])
			if csvOut != nil {
				if _, err := csvOut.WriteString(perMoleculeRow(&terms[i])); err != nil {
					return fmt.Errorf("writing %s: %w", perMol, err)
				}
			}
		}
		if !quiet {
			fmt.Fprintf(env.Stderr, "eval: batch %d (%d × %d atoms): running NLL %.4f over %d molecules, %s\n",
				bi+1, bt.B, bt.N, sums.meanNLL(), sums.n, time.Since(start).Round(time.Second))
		}
		return nil
	}}
	err = scanQM9Molecules(ctx, data, func(mol *molecule.Molecule) error {
		if want != nil {
			if !want[mol.ID] {
				return nil
			}
			delete(want, mol.ID)
		}
		if err := batcher.add(mol); err != nil {
			return err
		}
		seen++
		if limit > 0 && seen >= limit {
			return errStopMolecules
		}
		return nil
	})
	if err != nil && !errors.Is(err, errStopMolecules) {
		return err
	}
	if err := batcher.flush(); err != nil {
		return err
	}
	if len(want) > 0 {
		return fmt.Errorf("--ids: %d ids not found in %s", len(want), data)
	}
	if sums.n == 0 {
		return fmt.Errorf("%s: no molecules to evaluate", data)
	}
	if csvOut != nil {
		if err := csvOut.Commit(); err != nil {
			return fmt.Errorf("writing %s: %w", perMol, err)
		}
	}
	res := map[string]any{
		"nll":           nanToNil(sums.meanNLL()),
		"n":             sums.n,
		"batches":       nBatches,
		"nfe":           nfe,
		"wall_s":        math.Round(time.Since(start).Seconds()*1000) / 1000,
		"checkpoint":    dir,
		"data":          data,
		"trace":         spec.CNF.Trace,
		"solver":        spec.CNF.Solver,
		"deterministic": deterministic,
		"dtype":         strings.ToLower(cfg.DType.String()),
	}
	if spec.CNF.Solver == "dopri5" {
		res["rtol"], res["atol"] = spec.CNF.RTol, spec.CNF.ATol
	} else {
		res["steps"] = spec.CNF.Steps
	}
	for k, v := range map[string]float64{"log_pz": sums.logPZ, "delta_logp": sums.deltaLogP,
		"actnorm_logdet": sums.actNorm, "log_q": sums.logQ, "log_pn": sums.logPN} {
		res["mean_"+k] = v / float64(sums.n)
	}
	return Summary(env, asJSON, res)
}

// perMoleculeHeader is the header of --per-molecule CSV files.
const perMoleculeHeader = "id,n_atoms,nll,log_pz,delta_logp,actnorm_logdet,log_q,log_pn\n"

func perMoleculeRow(t *qm9.Terms) string {
	return fmt.Sprintf("%d,%d,%.9g,%.9g,%.9g,%.9g,%.9g,%.9g\n", t.ID, t.NAtoms, -t.LogP, t.LogPZ, t.DeltaLogP, t.ActNorm, t.LogQ, t.LogPN)
}
