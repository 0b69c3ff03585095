package train

import (
	"context"
	"fmt"

	"github.com/enflow/enflow/etl/molecule"
	"github.com/enflow/enflow/gomlx_models/qm9"
	"github.com/enflow/enflow/pipeline/metrics"
)

// StabilityEval is the sample-quality metric of the molecule models during training (en_flows
// main_qm9.py analyze_and_save): draw N molecules (sizes from the model's p(M)) in solves of at
// most Batch molecules (sizes merged into at most 4 padded ranges) and compute their atom and
// molecule stability (REFERENCE §3.1).
type StabilityEval struct {
	N, Batch int // default 100 molecules, 100 per solve (the reference draws 1000, one at a time)
}

// StabilityResult is one evaluation of StabilityEval.
type StabilityResult struct {
	AtomStable, MolStable float64
	Molecules, NFE        int
}

// Evaluate samples from m with seed and scores the molecules.
func (s *StabilityEval) Evaluate(ctx context.Context, m Model, seed uint64) (StabilityResult, error) {
	mm, ok := m.(MoleculeModel)
	if !ok {
		return StabilityResult{}, fmt.Errorf("train: sample stability needs a molecule model")
	}
	n, batch := s.N, s.Batch
	if n <= 0 {
		n = 100
	}
	if batch <= 0 {
		batch = qm9.DefaultSampleBatch
	}
	var st metrics.Stability
	// At most 4 padded size ranges: XLA compiles one graph per (molecules, atoms) shape, and
	// the shapes are reused at every evaluation.
	res, err := mm.SampleMolecules(ctx, qm9.SampleOptions{N: n, Seed: seed, Batch: batch, Buckets: 4,
		Emit: func(mols []molecule.Molecule, _ [][]int) error {
			for i := range mols {
				if _, err := st.AddMolecule(&mols[i]); err != nil {
					return err
				}
			}
			return nil
		}})
	if err != nil {
		return StabilityResult{}, err
	}
	return StabilityResult{AtomStable: st.AtomStable(), MolStable: st.MolStable(), Molecules: n, NFE: res.NFE}, nil
}
