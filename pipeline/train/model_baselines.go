package train

import (
	"fmt"
	"math/rand/v2"
	"slices"

	"github.com/enflow/enflow/gomlx_models/baselines"
	"github.com/enflow/enflow/gomlx_models/cnf"
	"github.com/enflow/enflow/gomlx_models/dynamics"
	"github.com/enflow/enflow/gomlx_models/enf"
	"github.com/gomlx/gomlx/backends"
	"github.com/gomlx/gomlx/pkg/core/tensors"
	"github.com/gomlx/gomlx/pkg/ml/context"
)

// Model kinds of the E-NF paper's baselines (Table 1), each a CNF (package cnf, configured by
// ModelSpec.CNF) over a velocity field of package baselines:
//
//	simple       simple dynamics (Köhler et al. 2020): −∇ of a learned pair potential
//	kernel       kernel dynamics (Köhler et al. 2020): RBF-kernel radial field; DW4/LJ13 presets
//	gnf          GNF: non-equivariant GNN dynamics on [t, x], no attention
//	gnf-att      GNF with attention
//	gnf-att-aug  GNF with attention, trained on randomly rotated batches (Augment "rotation")
//
// The GNN width and depth default to ModelSpec.EGNN.Hidden/Layers (the E-NF's, 32 × 3).
const (
	SimpleKind    = "simple"
	KernelKind    = "kernel"
	GNFKind       = "gnf"
	GNFAttKind    = "gnf-att"
	GNFAttAugKind = "gnf-att-aug"
)

// BaselineKinds lists the baseline model kinds.
func BaselineKinds() []string {
	return []string{SimpleKind, KernelKind, GNFKind, GNFAttKind, GNFAttAugKind}
}

// IsBaselineKind reports whether kind is one of BaselineKinds.
func IsBaselineKind(kind string) bool { return slices.Contains(BaselineKinds(), kind) }

func init() {
	for _, k := range BaselineKinds() {
		RegisterModel(k, newBaselineModel)
	}
}

// BaselineSpec holds the velocity-field configuration of a baseline kind (only the field of the
// spec's kind is used). It is stored in model.json so eval and sample rebuild the same model;
// FillBaselineDefaults fills it from the kind and system when absent. The dtype comes from
// ModelSpec.DType.
type BaselineSpec struct {
	Simple *baselines.SimpleConfig `json:"simple,omitempty"`
	Kernel *baselines.KernelConfig `json:"kernel,omitempty"`
	GNN    *baselines.GNNConfig    `json:"gnn,omitempty"`
}

// FillBaselineDefaults completes a spec of a baseline kind (no-op for other kinds): the
// en_flows configuration of the kind's velocity field when missing (kernel dynamics: the DW4 or
// LJ13 preset of spec.System; GNF: hidden/layers from spec.EGNN, attention unless kind "gnf"),
// and Augment "rotation" for "gnf-att-aug". It never modifies a BaselineSpec it does not own
// (a new one is allocated), so copies of a spec may share theirs.
func FillBaselineDefaults(s *ModelSpec) error {
	if !IsBaselineKind(s.Kind) {
		return nil
	}
	var b BaselineSpec
	if s.Baseline != nil {
		b = *s.Baseline
	}
	switch s.Kind {
	case SimpleKind:
		if b.Simple == nil {
			c := baselines.DefaultSimpleConfig()
			b.Simple = &c
		}
	case KernelKind:
		if b.Kernel == nil {
			c, err := baselines.KernelPreset(s.System)
			if err != nil {
				return fmt.Errorf("train: %w", err)
			}
			b.Kernel = &c
		}
	default: // GNF kinds
		if b.GNN == nil {
			c := baselines.GNFConfig(s.Kind != GNFKind)
			if s.EGNN.Hidden > 0 {
				c.Hidden = s.EGNN.Hidden
			}
			if s.EGNN.Layers > 0 {
				c.Layers = s.EGNN.Layers
			}
			b.GNN = &c
		}
		if s.Kind == GNFAttAugKind && s.Augment == "" {
			s.Augment = baselines.AugmentRotation
		}
	}
	s.Baseline = &b
	return nil
}

// baselineDynamics builds the velocity field of a (defaults-filled) baseline spec.
func baselineDynamics(s *ModelSpec) (dynamics.Func, error) {
	dtype, err := s.GoDType()
	if err != nil {
		return nil, err
	}
	b := s.Baseline
	switch s.Kind {
	case SimpleKind:
		c := *b.Simple
		c.DType = dtype
		if err := c.Validate(); err != nil {
			return nil, err
		}
		return baselines.Simple(c), nil
	case KernelKind:
		c := *b.Kernel
		c.DType = dtype
		if err := c.Validate(); err != nil {
			return nil, err
		}
		return baselines.Kernel(c), nil
	case GNFKind, GNFAttKind, GNFAttAugKind:
		c := *b.GNN
		c.DType = dtype
		if err := c.Validate(); err != nil {
			return nil, err
		}
		return baselines.GNN(c), nil
	}
	return nil, fmt.Errorf("train: %q is not a baseline kind", s.Kind)
}

// newBaselineModel is the BuildFunc of the baseline kinds: the kind's velocity field in a CNF,
// adapted like the E-NF (enfModel).
func newBaselineModel(b backends.Backend, ctx *context.Context, spec *ModelSpec) (Model, error) {
	s := *spec
	if err := FillBaselineDefaults(&s); err != nil {
		return nil, err
	}
	f, err := baselineDynamics(&s)
	if err != nil {
		return nil, err
	}
	ccfg, err := s.CNFConfig()
	if err != nil {
		return nil, err
	}
	if ccfg.Trace == "analytic" {
		if s.Kind != "kernel" || s.Baseline == nil || s.Baseline.Kernel == nil {
			return nil, fmt.Errorf("train: trace \"analytic\" is only available for --model kernel")
		}
		ccfg.Divergence = baselines.KernelWithDivergence(*s.Baseline.Kernel)
	}
	m, err := cnf.New(b, ctx, f, ccfg)
	if err != nil {
		return nil, err
	}
	dtype, err := s.GoDType()
	if err != nil {
		return nil, err
	}
	if err := enf.InitVariables(m, s.Nodes, s.Dim, dtype, s.Seed); err != nil {
		return nil, err
	}
	if len(m.Variables()) == 0 {
		return nil, fmt.Errorf("train: the %s dynamics has no trainable variables", s.Kind)
	}
	return &enfModel{m: m, nodes: s.Nodes, dim: s.Dim}, nil
}

// augmentStream is the PCG stream of the training-batch augmentation (distinct from the
// Hutchinson-noise stream that uses the same per-step seed).
const augmentStream = 0x61756721 // "aug!"

// validAugment checks a ModelSpec.Augment value.
func validAugment(a string) error {
	switch a {
	case "", baselines.AugmentRotation:
		return nil
	}
	return fmt.Errorf("train: unknown augmentation %q (want \"\" or %q)", a, baselines.AugmentRotation)
}

// augmentBatch applies spec.Augment to a training batch x [batch, nodes, dim] with randomness
// from the step seed (so resumed runs see the same batches): "rotation" rotates every
// configuration about the origin by its own uniformly random rotation (GNF-att-aug; en_flows
// --data_augmentation). It returns x itself when there is nothing to do; otherwise x is
// finalized and a new tensor returned (also on error, x is finalized).
func augmentBatch(spec *ModelSpec, x *tensors.Tensor, seed uint64) (*tensors.Tensor, error) {
	if spec.Augment == "" {
		return x, nil
	}
	defer finalize(x)
	if err := validAugment(spec.Augment); err != nil {
		return nil, err
	}
	dims := x.Shape().Dimensions
	if len(dims) != 3 {
		return nil, fmt.Errorf("train: augmenting a batch of shape %s, want [batch, nodes, dim]", x.Shape())
	}
	data, err := floatsOf(x)
	if err != nil {
		return nil, err
	}
	rng := rand.New(rand.NewPCG(seed, augmentStream))
	if err := baselines.RotateBatch(rng, data, dims[0], dims[1], dims[2]); err != nil {
		return nil, fmt.Errorf("train: %w", err)
	}
	return floatTensor(x.DType(), data, dims...)
}
