package train

import (
	"context"
	"fmt"
	"math/rand/v2"

	"github.com/enflow/enflow/etl/molecule"
	"github.com/enflow/enflow/gomlx_models/prior"
	"github.com/enflow/enflow/gomlx_models/qm9"
	"github.com/gomlx/gomlx/backends"
	"github.com/gomlx/gomlx/pkg/core/tensors"
	mlctx "github.com/gomlx/gomlx/pkg/ml/context"
)

// QM9Kind is the model kind of the molecule E-NF with atom types and charges (gomlx_models/qm9):
// the published QM9 model, models trained with `enflow train --dataset qm9`, and models of a
// user's own molecules (--dataset molecules; ModelSpec.Elements and Sizes follow the data).
const QM9Kind = "qm9"

// Molecule systems (ModelSpec.System of QM9Kind models).
const (
	SystemQM9       = "qm9"
	SystemMolecules = "molecules"
)

// IsMoleculeSystem reports whether system is one of the molecule systems with atom types
// (QM9 or a user's molecules), which the molecule E-NF trains on.
func IsMoleculeSystem(system string) bool { return system == SystemQM9 || system == SystemMolecules }

// TrainsMolecules reports whether the --model value model trains on the molecule systems:
// only the molecule E-NF, named "enf" (as on every dataset) or by its kind.
func TrainsMolecules(model string) bool { return model == "enf" || model == QM9Kind }

func init() { RegisterModel(QM9Kind, newQM9Model) }

// DefaultQM9Spec is the published en_flows QM9 model (args.pickle, REFERENCE §4.1) for
// molecules of the given elements (nil = QM9's) and sizes (nil = QM9's train histogram).
func DefaultQM9Spec(system string, elements []int, sizes *prior.Sizes) ModelSpec {
	a := qm9.DefaultArch()
	d := a.Dequantizer
	s := ModelSpec{Kind: QM9Kind, System: system, Nodes: molecule.MaxAtoms, Dim: qm9.PosDims, DType: "float32",
		EGNN: a.Flow, Dequantizer: &d, CNF: a.CNF, Elements: elements, Sizes: sizes}
	if sizes != nil {
		s.Nodes = sizes.MaxAtoms()
	}
	return s
}

// QM9Config converts a QM9Kind spec to the model configuration.
func (s *ModelSpec) QM9Config() (qm9.Config, error) {
	if s.Kind != QM9Kind {
		return qm9.Config{}, fmt.Errorf("train: model kind %q is not %q", s.Kind, QM9Kind)
	}
	dtype, err := s.GoDType()
	if err != nil {
		return qm9.Config{}, err
	}
	a := qm9.DefaultArch()
	a.Flow, a.CNF = s.EGNN, s.CNF
	if s.Dequantizer != nil {
		a.Dequantizer = *s.Dequantizer
	}
	var sizes prior.Sizes
	if s.Sizes != nil {
		sizes = *s.Sizes
	}
	return a.Config(dtype, s.Elements, sizes)
}

// ElementsOrQM9 returns the spec's one-hot elements (QM9's when unset).
func (s *ModelSpec) ElementsOrQM9() []int {
	if len(s.Elements) > 0 {
		return s.Elements
	}
	return qm9.QM9Elements()
}

// qm9Model adapts *qm9.Model to Model.
type qm9Model struct {
	m             *qm9.Model
	deterministic bool // dequantizer noise ε = 0 in LogLikelihood (regression checks)
}

func newQM9Model(b backends.Backend, ctx *mlctx.Context, spec *ModelSpec) (Model, error) {
	cfg, err := spec.QM9Config()
	if err != nil {
		return nil, err
	}
	m, err := qm9.New(b, ctx, cfg)
	if err != nil {
		return nil, err
	}
	// Create (or bind, from a checkpoint) every variable now, so Variables() is complete before
	// the optimizer step is compiled: one random molecule of the smallest size of p(M).
	n := 3
	if p := cfg.Sizes.Present(); len(p) > 0 {
		n = p[0]
	}
	rng := rand.New(rand.NewPCG(spec.Seed, 2))
	mol := molecule.Molecule{ID: -1, Z: make([]int, n), Positions: make([][3]float64, n)}
	for a := range n {
		mol.Z[a] = cfg.Elements[a%len(cfg.Elements)]
		for c := range 3 {
			mol.Positions[a][c] = rng.NormFloat64()
		}
	}
	bt, err := qm9.NewBatchOf([]molecule.Molecule{mol}, cfg.Elements)
	if err != nil {
		return nil, err
	}
	if err := m.InitVariables(bt); err != nil {
		return nil, err
	}
	return &qm9Model{m: m}, nil
}

func moleculeBatch(b *Batch) (*qm9.Batch, error) {
	if b == nil || b.Molecules == nil {
		return nil, fmt.Errorf("train: molecule model given a batch without molecules")
	}
	return b.Molecules, nil
}

func (q *qm9Model) LossAndGrad(b *Batch, seed uint64) (loss, nll float64, grads []*tensors.Tensor, st Stats, err error) {
	mb, err := moleculeBatch(b)
	if err != nil {
		return 0, 0, nil, st, err
	}
	loss, nll, grads, cst, err := q.m.LossAndGrad(mb, seed)
	return loss, nll, grads, convStats(cst), err
}

func (q *qm9Model) LogLikelihood(b *Batch, seed uint64) ([]float64, Stats, error) {
	terms, st, err := q.Terms(b, seed)
	if err != nil {
		return nil, st, err
	}
	out := make([]float64, len(terms))
	for i, t := range terms {
		out[i] = t.LogP
	}
	return out, st, nil
}

// Terms returns the per-molecule terms of the bound (MoleculeModel).
func (q *qm9Model) Terms(b *Batch, seed uint64) ([]qm9.Terms, Stats, error) {
	mb, err := moleculeBatch(b)
	if err != nil {
		return nil, Stats{}, err
	}
	terms, cst, err := q.m.LogLikelihood(mb, qm9.EvalOptions{Deterministic: q.deterministic, Seed: seed})
	return terms, convStats(cst), err
}

func (q *qm9Model) Variables() []*mlctx.Variable { return q.m.Variables() }

// ClipVariable implements ClipFilter: en_flows clips the flow's gradients (ActNorm + dynamics),
// not the dequantizer's.
func (q *qm9Model) ClipVariable(v *mlctx.Variable) bool { return q.m.IsFlowVariable(v) }

// InitFromData implements DataInitializer: ActNorm's data-dependent initialisation.
func (q *qm9Model) InitFromData(b *Batch, seed uint64) error {
	mb, err := moleculeBatch(b)
	if err != nil {
		return err
	}
	return q.m.InitActNorm(mb, seed)
}

// Tolerances implements TolerancedModel.
func (q *qm9Model) Tolerances() (rtol, atol float64, adaptive bool) {
	c := q.m.Flow().Config()
	return c.RTol, c.ATol, q.m.Flow().Adaptive()
}

// SetTolerances implements TolerancedModel.
func (q *qm9Model) SetTolerances(rtol, atol float64) error {
	return q.m.Flow().SetTolerances(rtol, atol)
}

// SetDeterministic implements MoleculeModel.
func (q *qm9Model) SetDeterministic(on bool) { q.deterministic = on }

// SampleMolecules implements MoleculeModel.
func (q *qm9Model) SampleMolecules(ctx context.Context, o qm9.SampleOptions) (*qm9.SampleResult, error) {
	return q.m.Sample(ctx, o)
}

// Elements implements MoleculeModel.
func (q *qm9Model) Elements() []int { return q.m.Config().Elements }

// Sizes implements MoleculeModel.
func (q *qm9Model) Sizes() prior.Sizes { return q.m.Config().Sizes }

// MoleculeModel is a Model of molecules with atom types (QM9Kind): per-molecule bound terms,
// sampling of whole molecules, and its element set and size distribution.
type MoleculeModel interface {
	Model
	Terms(b *Batch, seed uint64) ([]qm9.Terms, Stats, error)
	SetDeterministic(on bool)
	SampleMolecules(ctx context.Context, o qm9.SampleOptions) (*qm9.SampleResult, error)
	Elements() []int
	Sizes() prior.Sizes
}

func qm9DefaultSizes() prior.Sizes { return prior.QM9Sizes() }
