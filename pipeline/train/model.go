package train

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"sync"

	"github.com/enflow/enflow/etl/atomicfile"
	"github.com/enflow/enflow/gomlx_models/cnf"
	"github.com/enflow/enflow/gomlx_models/prior"
	"github.com/enflow/enflow/gomlx_models/qm9"
	"github.com/enflow/enflow/gomlx_models/spec"
	"github.com/gomlx/gomlx/backends"
	"github.com/gomlx/gomlx/pkg/core/dtypes"
	"github.com/gomlx/gomlx/pkg/core/tensors"
	"github.com/gomlx/gomlx/pkg/ml/context"
)

// Stats reports the solver work of one model call.
type Stats struct {
	NFEForward  int // dynamics evaluations of the forward solve(s)
	NFEBackward int // dynamics evaluations of the adjoint / backward solve(s)
}

// Add accumulates o into s.
func (s *Stats) Add(o Stats) {
	s.NFEForward += o.NFEForward
	s.NFEBackward += o.NFEBackward
}

// Batch is one batch of examples in the model's dtype. Particle kinds read X and Mask; molecule
// kinds (qm9) read Molecules, the host-side padded batch with atom types and charges (its
// dequantizer noise and log p(M) are drawn and looked up on the host).
type Batch struct {
	X    *tensors.Tensor // positions [batch, nodes, dim]
	Mask *tensors.Tensor // node mask [batch, nodes] (1 for a present node), may be nil
	// Molecules is set by molecule datasets (MoleculeDataset).
	Molecules *qm9.Batch
}

// Size is the number of examples in the batch.
func (b *Batch) Size() int {
	switch {
	case b == nil:
		return 0
	case b.Molecules != nil:
		return b.Molecules.B
	case b.X != nil:
		return b.X.Shape().Dim(0)
	}
	return 0
}

// Finalize releases the batch's tensors.
func (b *Batch) Finalize() {
	if b != nil {
		finalize(b.X, b.Mask)
	}
}

// Model is what the driver needs of a flow. Implementations own their compiled graphs; all
// trainable state is in the context variables returned by Variables, in the order of the
// gradients returned by LossAndGrad.
type Model interface {
	// LossAndGrad returns the training loss, the batch-mean NLL, and the gradients of the loss
	// with respect to Variables(). seed drives all randomness (e.g. Hutchinson noise).
	LossAndGrad(b *Batch, seed uint64) (loss, nll float64, grads []*tensors.Tensor, st Stats, err error)
	// LogLikelihood returns log p per example (nats; particle kinds: in the mean-free
	// subspace; molecule kinds: the variational bound on log p(x, h, M)).
	LogLikelihood(b *Batch, seed uint64) ([]float64, Stats, error)
	// Variables are the trainable variables, in gradient order.
	Variables() []*context.Variable
}

// ParticleSampler is a Model of fixed-size particle configurations that draws samples.
type ParticleSampler interface {
	// Sample draws batch configurations [batch, nodes, dims].
	Sample(batch, nodes, dims int, mask *tensors.Tensor, seed uint64) (*tensors.Tensor, Stats, error)
}

// ClipFilter is implemented by models whose gradient clipping covers only some variables
// (QM9: the flow's, not the dequantizer's, as en_flows).
type ClipFilter interface {
	ClipVariable(v *context.Variable) bool
}

// DataInitializer is implemented by models with a data-dependent initialisation (ActNorm),
// run by the driver on the first training batch of a fresh run (not on --resume or
// --init-from, whose parameters come from a checkpoint).
type DataInitializer interface {
	InitFromData(b *Batch, seed uint64) error
}

// TolerancedModel is a Model integrated by an ODE solver whose tolerances can be changed between
// calls (divergence recovery tightens them).
type TolerancedModel interface {
	Model
	// Tolerances returns the solver's rtol and atol and whether it is adaptive.
	Tolerances() (rtol, atol float64, adaptive bool)
	// SetTolerances sets rtol and atol for the following solves.
	SetTolerances(rtol, atol float64) error
}

// ModelSpec fully describes a model, so eval and sample can rebuild it from a run directory
// (it is stored there as model.json).
type ModelSpec struct {
	// Kind selects the builder registered with RegisterModel: "enf" (E-NF: EGNN dynamics in a
	// CNF), "gaussian" (a tiny per-axis scaled Gaussian flow, the test stand-in), or a baseline
	// (BaselineKinds: "simple", "kernel", "gnf", "gnf-att", "gnf-att-aug"; model_baselines.go).
	Kind   string   `json:"kind"`
	System string   `json:"system"` // "dw4", "lj13", "qm9_positional", "qm9" or "molecules"
	Nodes  int      `json:"nodes"`
	Dim    int      `json:"dim"`
	DType  string   `json:"dtype"` // "float32" or "float64"
	EGNN   EGNNSpec `json:"egnn"`
	CNF    CNFSpec  `json:"cnf"`
	Seed   uint64   `json:"seed"` // initialisation seed of the model variables
	// Baseline is the velocity-field configuration of the baseline kinds (nil otherwise).
	Baseline *BaselineSpec `json:"baseline,omitempty"`
	// RealNVP configures the realnvp kind (nil: the package defaults).
	RealNVP *RealNVPSpec `json:"realnvp,omitempty"`
	// Augment is a training-batch augmentation applied by the driver: "" (none) or "rotation"
	// (a uniformly random rotation per configuration; set for "gnf-att-aug").
	Augment string `json:"augment,omitempty"`

	// Molecule kinds (qm9): the dequantizer EGNN, the atomic numbers of the one-hot channels in
	// order (absent = QM9's H, C, N, O, F), the size distribution p(M) fitted on the training
	// split (absent = QM9's train histogram) and, for imported weights, where they came from.
	// EGNN is then the dynamics EGNN and Nodes the largest molecule.
	Dequantizer *EGNNSpec     `json:"dequantizer,omitempty"`
	Elements    []int         `json:"elements,omitempty"`
	Sizes       *prior.Sizes  `json:"sizes,omitempty"`
	Source      *ImportSource `json:"source,omitempty"`
}

// ImportSource records where imported weights came from (enflow import-torch).
type ImportSource struct {
	Flow        string            `json:"flow"`
	Dequantizer string            `json:"dequantizer"`
	Args        string            `json:"args,omitempty"`
	SHA256      map[string]string `json:"sha256,omitempty"`
	TorchArgs   map[string]any    `json:"torch_args,omitempty"` // the args.pickle fields that define the model
}

// EGNNSpec is the EGNN dynamics configuration (en_flows egnn_dynamics defaults for DW4/LJ13:
// nf 32, 3 layers, attention, tanh, coords_range 15, condition_time, sum aggregation). The
// type is shared with the model packages (gomlx_models/spec).
type EGNNSpec = spec.EGNN

// CNFSpec is the continuous-flow configuration (mirrors cnf.Config; gomlx_models/spec).
type CNFSpec = spec.CNF

// DefaultSpec returns the E-NF configuration of the paper for system sys (REFERENCE §1.4,
// §4.6): EGNN nf 32 × 3 layers with attention and tanh, dopri5 rtol = atol = 1e-4, adjoint
// gradients, Rademacher Hutchinson trace for training, float32.
func DefaultSpec(sys string, nodes, dim int) ModelSpec {
	return ModelSpec{
		Kind: "enf", System: sys, Nodes: nodes, Dim: dim, DType: "float32",
		EGNN: EGNNSpec{Hidden: 32, Layers: 3, Attention: true, Tanh: true, CoordsRange: 15},
		CNF: CNFSpec{Solver: "dopri5", RTol: 1e-4, ATol: 1e-4, Trace: cnf.TraceHutchinson, Noise: cnf.NoiseRademacher,
			Grad: cnf.GradAdjoint, MaxSteps: 10000},
		Seed: 0,
	}
}

// DensityDims is the dimension of the space the model's NLL is a density on: N·D for the
// non-equivariant RealNVP (standard normal prior on every coordinate), (N−1)·D — the mean-free
// subspace — for every other particle kind. 0 for molecule models (qm9, molecules), whose
// bound also covers atom types and charges.
func (s *ModelSpec) DensityDims() int {
	switch {
	case IsMoleculeSystem(s.System):
		return 0
	case s.Kind == RealNVPKind:
		return s.Nodes * s.Dim
	default:
		return (s.Nodes - 1) * s.Dim
	}
}

// GaussianNormaliser is ½·DensityDims·ln 2π, the Gaussian prior's normaliser inside the NLL.
// E-NF and the DEM papers include it; bgflow-based work (Köhler et al.) drops it: their NLL is
// ours minus this offset (5.51 nats for DW4, 33.08 for LJ13 on the mean-free subspace).
func (s *ModelSpec) GaussianNormaliser() float64 {
	return 0.5 * float64(s.DensityDims()) * prior.Log2Pi
}

// GoDType returns the spec's dtype.
func (s *ModelSpec) GoDType() (dtypes.DType, error) {
	switch s.DType {
	case "", "float32":
		return dtypes.Float32, nil
	case "float64":
		return dtypes.Float64, nil
	}
	return dtypes.InvalidDType, fmt.Errorf("train: unsupported dtype %q (want float32 or float64)", s.DType)
}

// Validate checks the spec's basic consistency.
func (s *ModelSpec) Validate() error {
	if s.Kind == "" {
		return fmt.Errorf("train: model spec without kind")
	}
	if s.Nodes <= 0 || s.Dim <= 0 {
		return fmt.Errorf("train: model spec nodes=%d dim=%d must be positive", s.Nodes, s.Dim)
	}
	if _, err := s.GoDType(); err != nil {
		return err
	}
	return validAugment(s.Augment)
}

// DoF is the number of degrees of freedom of a mean-free configuration, (nodes−1)·dim.
func (s *ModelSpec) DoF() int { return (s.Nodes - 1) * s.Dim }

// ModelFileName is the name of the model spec in a run directory.
const ModelFileName = "model.json"

// SaveSpec writes spec as dir/model.json atomically.
func SaveSpec(dir string, spec *ModelSpec) error {
	data, err := json.MarshalIndent(spec, "", "  ")
	if err != nil {
		return fmt.Errorf("train: encoding model spec: %w", err)
	}
	path := filepath.Join(dir, ModelFileName)
	f, err := atomicfile.Create(path)
	if err != nil {
		return fmt.Errorf("train: writing %s: %w", path, err)
	}
	defer f.Abort()
	if _, err := f.Write(append(data, '\n')); err != nil {
		return fmt.Errorf("train: writing %s: %w", path, err)
	}
	if err := f.Commit(); err != nil {
		return fmt.Errorf("train: writing %s: %w", path, err)
	}
	return nil
}

// LoadSpec reads dir/model.json.
func LoadSpec(dir string) (*ModelSpec, error) {
	path := filepath.Join(dir, ModelFileName)
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("train: reading model spec: %w", err)
	}
	spec := &ModelSpec{}
	if err := json.Unmarshal(data, spec); err != nil {
		return nil, fmt.Errorf("train: decoding %s: %w", path, err)
	}
	if err := spec.Validate(); err != nil {
		return nil, fmt.Errorf("train: %s: %w", path, err)
	}
	return spec, nil
}

// BuildFunc builds a model of spec whose variables live in ctx. Several models built over the
// same ctx (e.g. a training model with a Hutchinson trace and an evaluation model with the exact
// trace) must share their variables.
type BuildFunc func(b backends.Backend, ctx *context.Context, spec *ModelSpec) (Model, error)

var (
	buildersMu sync.Mutex
	builders   = map[string]BuildFunc{}
)

// RegisterModel registers a model builder under kind (called from init functions).
func RegisterModel(kind string, fn BuildFunc) {
	buildersMu.Lock()
	defer buildersMu.Unlock()
	builders[kind] = fn
}

// BuildModel builds the model of spec with the registered builder of spec.Kind.
func BuildModel(b backends.Backend, ctx *context.Context, spec *ModelSpec) (m Model, err error) {
	if err := spec.Validate(); err != nil {
		return nil, err
	}
	buildersMu.Lock()
	fn, ok := builders[spec.Kind]
	buildersMu.Unlock()
	if !ok {
		return nil, fmt.Errorf("train: unknown model kind %q (known: %v)", spec.Kind, ModelKinds())
	}
	defer func() {
		if r := recover(); r != nil {
			m, err = nil, fmt.Errorf("train: building %s model: %v", spec.Kind, r)
		}
	}()
	if spec.CNF.ExactTraceMode == "" {
		// The environment is read here, once per model, never while a graph is built.
		if mode := os.Getenv(cnf.ExactTraceEnv); mode != "" {
			s := *spec
			s.CNF.ExactTraceMode = mode
			spec = &s
		}
	}
	m, err = fn(b, ctx, spec)
	if err != nil {
		return nil, fmt.Errorf("train: building %s model: %w", spec.Kind, err)
	}
	return m, nil
}

// ModelKinds lists the registered model kinds.
func ModelKinds() []string {
	buildersMu.Lock()
	defer buildersMu.Unlock()
	out := make([]string, 0, len(builders))
	for k := range builders {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
