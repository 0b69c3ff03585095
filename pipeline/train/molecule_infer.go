package train

import (
	"context"
	"fmt"
	"io"
	"math"
	"time"

	"github.com/enflow/enflow/etl/atomicfile"
	"github.com/enflow/enflow/etl/molecule"
	"github.com/enflow/enflow/etl/table"
	"github.com/enflow/enflow/gomlx_models/cnf"
	"github.com/enflow/enflow/gomlx_models/qm9"
	"github.com/enflow/enflow/pipeline/metrics"
)

// moleculeTermSums accumulates the terms of the bound over molecules.
type moleculeTermSums struct {
	n                                           int
	nll, logPZ, deltaLogP, actNorm, logQ, logPN float64
}

func (a *moleculeTermSums) add(t *qm9.Terms) {
	a.n++
	a.nll -= t.LogP
	a.logPZ += t.LogPZ
	a.deltaLogP += t.DeltaLogP
	a.actNorm += t.ActNorm
	a.logQ += t.LogQ
	a.logPN += t.LogPN
}

func (a *moleculeTermSums) meanNLL() float64 {
	if a.n == 0 {
		return math.NaN()
	}
	return a.nll / float64(a.n)
}

// PerMoleculeHeader is the header of per-molecule CSV files (EvalOptions.PerMolecule).
const PerMoleculeHeader = "id,n_atoms,nll,log_pz,delta_logp,actnorm_logdet,log_q,log_pn\n"

func perMoleculeRow(t *qm9.Terms) string {
	return fmt.Sprintf("%d,%d,%.9g,%.9g,%.9g,%.9g,%.9g,%.9g\n", t.ID, t.NAtoms, -t.LogP, t.LogPZ, t.DeltaLogP, t.ActNorm, t.LogQ, t.LogPN)
}

// moleculeBatchSeed is the seed of evaluation batch bi (dequantizer and Hutchinson noise).
func moleculeBatchSeed(seed uint64, bi int) uint64 { return seed + uint64(bi)*0x9e3779b97f4a7c15 }

// evaluateMolecules computes the bound of a molecule model on a molecule file or split: the mean
// over molecules of −log p(x, h, M) (en_flows averages per molecule), streaming the file into
// per-size buckets so memory is bounded by the batch size.
func evaluateMolecules(ctx context.Context, o EvalOptions, lm *LoadedModel, spec ModelSpec) (*EvalReport, error) {
	start := time.Now()
	if spec.CNF.Trace == cnf.TraceExact {
		// en_flows integrates the regulariser only with its Hutchinson noise; it plays no part
		// in the NLL, so the exact-trace evaluation leaves it out.
		spec.CNF.RegWeight = 0
	}
	if spec.CNF.Solver != "" && spec.CNF.Solver != "dopri5" && spec.CNF.Steps <= 0 {
		return nil, fmt.Errorf("train: solver %s needs a number of steps", spec.CNF.Solver)
	}
	if o.Order == "" {
		o.Order = "size"
	}
	if o.Order != "size" && o.Order != "data" {
		return nil, fmt.Errorf("train: evaluation order %q: want size or data", o.Order)
	}
	data := o.Data
	if data == "" {
		dir := o.DataDir
		if dir == "" {
			info, err := LoadRunInfo(o.Dir)
			if err != nil {
				return nil, fmt.Errorf("train: no data file given and %w", err)
			}
			dir = info.DataDir
		}
		data = MoleculeSplitPath(dir, spec.System, o.Split)
	}
	bm, err := BuildModel(o.Backend, lm.Ctx, &spec)
	if err != nil {
		return nil, err
	}
	mm, ok := bm.(MoleculeModel)
	if !ok {
		return nil, fmt.Errorf("train: the %s model does not evaluate molecules", spec.Kind)
	}
	mm.SetDeterministic(o.Deterministic)
	elements := mm.Elements()
	var csvOut *atomicfile.File
	if o.PerMolecule != "" {
		if csvOut, err = atomicfile.Create(o.PerMolecule); err != nil {
			return nil, fmt.Errorf("train: writing %s: %w", o.PerMolecule, err)
		}
		defer csvOut.Abort()
		if _, err := csvOut.WriteString(PerMoleculeHeader); err != nil {
			return nil, fmt.Errorf("train: writing %s: %w", o.PerMolecule, err)
		}
	}
	var want map[int64]bool
	if len(o.IDs) > 0 {
		want = map[int64]bool{}
		for _, id := range o.IDs {
			want[id] = true
		}
	}
	var sums moleculeTermSums
	nfe, nBatches, seen := 0, 0, 0
	batcher := &SizeBatcher{Batch: o.Batch, BySize: o.Order == "size", Emit: func(sub []molecule.Molecule) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		bi := nBatches
		nBatches++
		bt, err := qm9.NewBatchOf(sub, elements)
		if err != nil {
			return fmt.Errorf("train: %s: %w", data, err)
		}
		terms, st, err := mm.Terms(&Batch{Molecules: bt}, moleculeBatchSeed(o.Seed, bi))
		if err != nil {
			return fmt.Errorf("train: %s: batch %d (%d molecules of %d atoms, ids %d…%d): %w", data, bi, bt.B, bt.N, sub[0].ID, sub[len(sub)-1].ID, err)
		}
		nfe += st.NFEForward
		for i := range terms {
			sums.add(&terms[i])
			if csvOut != nil {
				if _, err := csvOut.WriteString(perMoleculeRow(&terms[i])); err != nil {
					return fmt.Errorf("train: writing %s: %w", o.PerMolecule, err)
				}
			}
		}
		if o.Progress != nil {
			fmt.Fprintf(o.Progress, "eval: batch %d (%d × %d atoms): running NLL %.4f over %d molecules, %s\n",
				bi+1, bt.B, bt.N, sums.meanNLL(), sums.n, time.Since(start).Round(time.Second))
		}
		return nil
	}}
	err = ScanMolecules(ctx, data, func(mol *molecule.Molecule) error {
		if want != nil {
			if !want[mol.ID] {
				return nil
			}
			delete(want, mol.ID)
		}
		if err := batcher.Add(mol); err != nil {
			return err
		}
		seen++
		if o.Limit > 0 && seen >= o.Limit {
			return ErrStopScan
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if err := batcher.Flush(); err != nil {
		return nil, err
	}
	if len(want) > 0 {
		return nil, fmt.Errorf("train: %d of the requested molecule ids were not found in %s", len(want), data)
	}
	if sums.n == 0 {
		return nil, fmt.Errorf("train: %s: no molecules to evaluate", data)
	}
	if csvOut != nil {
		if err := csvOut.Commit(); err != nil {
			return nil, fmt.Errorf("train: writing %s: %w", o.PerMolecule, err)
		}
	}
	rep := &EvalReport{
		EvalResult: EvalResult{NLL: sums.meanNLL(), N: sums.n, Batches: nBatches, NFE: nfe, Wall: time.Since(start)},
		Split:      o.Split, Dir: lm.Dir, Spec: spec, Data: data, Means: map[string]float64{},
	}
	for k, v := range map[string]float64{"log_pz": sums.logPZ, "delta_logp": sums.deltaLogP,
		"actnorm_logdet": sums.actNorm, "log_q": sums.logQ, "log_pn": sums.logPN} {
		rep.Means[k] = v / float64(sums.n)
	}
	return rep, nil
}

// sampleMolecules draws molecules from a molecule model and writes them as a molecule table:
// each batch is written (and scored for stability) as soon as it is decoded, so memory stays
// bounded by the batch. Rows come in batch order (largest molecules first); id is the draw index.
func sampleMolecules(ctx context.Context, o SampleOptions, lm *LoadedModel, spec ModelSpec, start time.Time) (*SampleReport, error) {
	bm, err := BuildModel(o.Backend, lm.Ctx, &spec)
	if err != nil {
		return nil, err
	}
	mm, ok := bm.(MoleculeModel)
	if !ok {
		return nil, fmt.Errorf("train: the %s model does not sample molecules", spec.Kind)
	}
	if o.Buckets < 0 {
		return nil, fmt.Errorf("train: buckets must be ≥ 0, got %d", o.Buckets)
	}
	if o.Workers < 0 {
		return nil, fmt.Errorf("train: workers must be ≥ 0, got %d", o.Workers)
	}
	w, err := table.NewMoleculeWriter(o.Out)
	if err != nil {
		return nil, fmt.Errorf("train: %w", err)
	}
	defer w.Abort()
	var st metrics.Stability
	written := 0
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
	res, err := mm.SampleMolecules(ctx, qm9.SampleOptions{N: o.N, Seed: o.Seed, Batch: o.Batch, Buckets: o.Buckets, Workers: o.Workers, Emit: emit,
		Progress: func(done, total int, bi qm9.BatchInfo) {
			if o.Progress != nil {
				sampleProgress(o.Progress, done, total, bi, time.Since(start))
			}
		}})
	if err != nil {
		return nil, fmt.Errorf("train: sampling molecules: %w", err)
	}
	if err := w.Commit(); err != nil {
		return nil, fmt.Errorf("train: %w", err)
	}
	return &SampleReport{N: written, Dir: lm.Dir, Out: o.Out, Spec: spec, MeanEnergy: math.NaN(), NFE: res.NFE, Wall: time.Since(start),
		Molecules: &MoleculeSampleStats{Failed: res.Failed, ChargeConsistency: res.ChargeConsistency(),
			AtomStable: st.AtomStable(), MolStable: st.MolStable(), Solves: res.Solves}}, nil
}

func sampleProgress(w io.Writer, done, total int, bi qm9.BatchInfo, elapsed time.Duration) {
	pad, retried := "", ""
	if bi.MinAtoms < bi.Atoms {
		pad = fmt.Sprintf(", padded from ≥ %d", bi.MinAtoms)
	}
	if bi.Retried {
		retried = ", batch solve failed: redrawn one by one"
	}
	fmt.Fprintf(w, "sample: %d/%d molecules (batch %d × %d atoms%s, %d NFE, %s%s), elapsed %s\n",
		done, total, bi.Molecules, bi.Atoms, pad, bi.NFE, bi.Wall.Round(time.Millisecond), retried, elapsed.Round(time.Second))
}
