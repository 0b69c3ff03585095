package qm9

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/enflow/enflow/etl/atomicfile"
	"github.com/enflow/enflow/gomlx_models/egnn"
	"github.com/enflow/enflow/gomlx_models/torchimport"
	"github.com/gomlx/gomlx/pkg/core/dtypes"
	"github.com/gomlx/gomlx/pkg/core/tensors"
	"github.com/gomlx/gomlx/pkg/ml/context"
	"github.com/gomlx/gomlx/pkg/ml/context/checkpoints"
)

// Kind is the model kind written to model.json for the QM9 E-NF.
const Kind = "qm9"

// SpecFileName is the model description next to the checkpoint (the same file name and the same
// field names as pipeline/train's model.json, plus "dequantizer" and "source").
const SpecFileName = "model.json"

// Spec describes a QM9 E-NF checkpoint directory.
type Spec struct {
	Kind        string   `json:"kind"`   // "qm9"
	System      string   `json:"system"` // "qm9"
	Nodes       int      `json:"nodes"`  // largest molecule (29)
	Dim         int      `json:"dim"`    // 3
	DType       string   `json:"dtype"`  // "float32" or "float64": default evaluation dtype
	EGNN        EGNNSpec `json:"egnn"`   // dynamics EGNN
	Dequantizer EGNNSpec `json:"dequantizer"`
	CNF         CNFSpec  `json:"cnf"`
	Source      *Source  `json:"source,omitempty"`
}

// EGNNSpec is an EGNN's configuration. CoordsRange is en_flows' total coords_range (15), split
// evenly over the layers when Tanh is set.
type EGNNSpec struct {
	Hidden      int     `json:"hidden"`
	Layers      int     `json:"layers"`
	Attention   bool    `json:"attention"`
	Tanh        bool    `json:"tanh"`
	CoordsRange float64 `json:"coords_range"`
}

// CNFSpec mirrors cnf.Config.
type CNFSpec struct {
	Solver    string  `json:"solver"`
	RTol      float64 `json:"rtol"`
	ATol      float64 `json:"atol"`
	Steps     int     `json:"steps"`
	Trace     string  `json:"trace"`
	Noise     string  `json:"noise"`
	Grad      string  `json:"grad,omitempty"`
	RegWeight float64 `json:"reg_weight"`
	MaxSteps  int     `json:"max_steps"`
}

// Source records where imported weights came from.
type Source struct {
	Flow        string            `json:"flow"`
	Dequantizer string            `json:"dequantizer"`
	Args        string            `json:"args,omitempty"`
	SHA256      map[string]string `json:"sha256,omitempty"`
	TorchArgs   map[string]any    `json:"torch_args,omitempty"` // the args.pickle fields that define the model
}

// DefaultSpec is the published model's spec (REFERENCE §4.1).
func DefaultSpec() Spec {
	return Spec{
		Kind: Kind, System: "qm9", Nodes: 29, Dim: PosDims, DType: "float32",
		EGNN:        EGNNSpec{Hidden: 64, Layers: 6, Attention: true, Tanh: true, CoordsRange: 15},
		Dequantizer: EGNNSpec{Hidden: 64, Layers: 4, CoordsRange: 15},
		CNF:         CNFSpec{Solver: "dopri5", RTol: 1e-4, ATol: 1e-4, Trace: "hutchinson", Noise: "gaussian", RegWeight: 0.001, MaxSteps: 10000},
	}
}

// SpecFromTorchArgs builds the spec of an en_flows QM9 run from its args.pickle, refusing
// configurations this port does not implement.
func SpecFromTorchArgs(ns torchimport.Namespace) (Spec, error) {
	s := DefaultSpec()
	want := map[string]string{"model": "egnn_dynamics", "dataset": "qm9", "dequantization": "argmax_variational", "x_aggregation": "sum"}
	for k, v := range want {
		got, err := ns.String(k)
		if err != nil {
			return s, err
		}
		if got != v {
			return s, fmt.Errorf("args: %s = %q is not supported (want %q)", k, got, v)
		}
	}
	for _, k := range []string{"actnorm", "condition_time"} {
		b, err := ns.Bool(k)
		if err != nil {
			return s, err
		}
		if !b {
			return s, fmt.Errorf("args: %s = false is not supported", k)
		}
	}
	if c, err := ns.Int("context_node_nf"); err != nil || c != 0 {
		if err != nil {
			return s, err
		}
		return s, fmt.Errorf("args: context_node_nf = %d (conditioning) is not supported", c)
	}
	var err error
	if s.EGNN.Layers, err = ns.Int("n_layers"); err != nil {
		return s, err
	}
	if s.EGNN.Hidden, err = ns.Int("nf"); err != nil {
		return s, err
	}
	if s.EGNN.Attention, err = ns.Bool("attention"); err != nil {
		return s, err
	}
	if s.EGNN.Tanh, err = ns.Bool("tanh"); err != nil {
		return s, err
	}
	if s.CNF.RegWeight, err = ns.Float("ode_regularization"); err != nil {
		return s, err
	}
	if tr, err := ns.String("trace"); err == nil && tr == "exact" {
		s.CNF.Trace = "exact"
	}
	if s.EGNN.Layers <= 0 || s.EGNN.Hidden <= 0 {
		return s, fmt.Errorf("args: n_layers = %d and nf = %d must be positive", s.EGNN.Layers, s.EGNN.Hidden)
	}
	return s, nil
}

// GoDType returns the spec's dtype.
func (s *Spec) GoDType() (dtypes.DType, error) {
	switch s.DType {
	case "", "float32":
		return dtypes.Float32, nil
	case "float64":
		return dtypes.Float64, nil
	}
	return dtypes.InvalidDType, fmt.Errorf("qm9: unsupported dtype %q (want float32 or float64)", s.DType)
}

// into returns c with the spec's fields set.
func (e EGNNSpec) into(c egnn.Config) egnn.Config {
	c.Hidden, c.Layers, c.Attention, c.Tanh = e.Hidden, e.Layers, e.Attention, e.Tanh
	c.CoordsRange = 0 // 15/Layers
	if e.CoordsRange > 0 && e.Layers > 0 {
		c.CoordsRange = e.CoordsRange / float64(e.Layers)
	}
	return c
}

// Config converts the spec to a model configuration of dtype (InvalidDType = the spec's dtype).
func (s *Spec) Config(dtype dtypes.DType) (Config, error) {
	if s.Kind != Kind {
		return Config{}, fmt.Errorf("qm9: model kind %q is not %q", s.Kind, Kind)
	}
	if dtype == dtypes.InvalidDType {
		var err error
		if dtype, err = s.GoDType(); err != nil {
			return Config{}, err
		}
	}
	cfg := DefaultConfig(dtype)
	cfg.Flow = s.EGNN.into(cfg.Flow)
	cfg.Dequantizer = s.Dequantizer.into(cfg.Dequantizer)
	c := s.CNF
	cfg.CNF.Solver, cfg.CNF.RTol, cfg.CNF.ATol, cfg.CNF.Steps = c.Solver, c.RTol, c.ATol, c.Steps
	cfg.CNF.Trace, cfg.CNF.Noise, cfg.CNF.Grad, cfg.CNF.RegWeight, cfg.CNF.MaxSteps = c.Trace, c.Noise, c.Grad, c.RegWeight, c.MaxSteps
	return cfg.withDefaults()
}

// SaveCheckpoint writes the variables of ctx as a GoMLX checkpoint into dir (created if needed)
// and spec as dir/model.json. dir must not already hold a checkpoint.
func SaveCheckpoint(dir string, spec *Spec, ctx *context.Context) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("qm9: %w", err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("qm9: %w", err)
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), "checkpoint-") || e.Name() == SpecFileName {
			return fmt.Errorf("qm9: %s already holds a model (%s); choose an empty directory", dir, e.Name())
		}
	}
	h, err := checkpoints.Build(ctx).Dir(dir).Done()
	if err != nil {
		return fmt.Errorf("qm9: creating checkpoint in %s: %w", dir, err)
	}
	if err := h.Save(); err != nil {
		return fmt.Errorf("qm9: saving checkpoint in %s: %w", dir, err)
	}
	data, err := json.MarshalIndent(spec, "", "  ")
	if err != nil {
		return fmt.Errorf("qm9: encoding model spec: %w", err)
	}
	if err := atomicfile.WriteFile(filepath.Join(dir, SpecFileName), append(data, '\n')); err != nil {
		return fmt.Errorf("qm9: writing %s: %w", filepath.Join(dir, SpecFileName), err)
	}
	return nil
}

// LoadSpec reads dir/model.json, which must describe a QM9 model.
func LoadSpec(dir string) (spec *Spec, err error) {
	p := filepath.Join(dir, SpecFileName)
	data, err := os.ReadFile(p)
	if err != nil {
		return nil, fmt.Errorf("qm9: reading model spec: %w", err)
	}
	spec = &Spec{}
	if err := json.Unmarshal(data, spec); err != nil {
		return nil, fmt.Errorf("qm9: decoding %s: %w", p, err)
	}
	if spec.Kind != Kind {
		return nil, fmt.Errorf("qm9: %s describes a %q model, not %q", p, spec.Kind, Kind)
	}
	return spec, nil
}

// IsCheckpoint reports whether dir holds a QM9 model.json.
func IsCheckpoint(dir string) bool {
	data, err := os.ReadFile(filepath.Join(dir, SpecFileName))
	if err != nil {
		return false
	}
	var k struct {
		Kind string `json:"kind"`
	}
	return json.Unmarshal(data, &k) == nil && k.Kind == Kind
}

// LoadCheckpoint reads dir/model.json and the latest GoMLX checkpoint of dir into a new context,
// converting every variable to dtype (InvalidDType = the spec's dtype).
func LoadCheckpoint(dir string, dtype dtypes.DType) (*Spec, *context.Context, error) {
	spec, err := LoadSpec(dir)
	if err != nil {
		return nil, nil, err
	}
	if dtype == dtypes.InvalidDType {
		if dtype, err = spec.GoDType(); err != nil {
			return nil, nil, err
		}
	}
	ctx := context.New()
	if _, err := checkpoints.Load(ctx).Dir(dir).Immediate().Done(); err != nil {
		return nil, nil, fmt.Errorf("qm9: loading checkpoint from %s: %w", dir, err)
	}
	if err := convertVariables(ctx, dtype); err != nil {
		return nil, nil, fmt.Errorf("qm9: %s: %w", dir, err)
	}
	return spec, ctx, nil
}

// convertVariables converts every float variable of ctx to dtype.
func convertVariables(ctx *context.Context, dtype dtypes.DType) error {
	for v := range ctx.IterVariables() {
		if v.Shape().DType == dtype || !v.Shape().DType.IsFloat() {
			continue
		}
		val, err := v.Value()
		if err != nil {
			return fmt.Errorf("variable %s: %w", v.ScopeAndName(), err)
		}
		conv, err := convertTensor(val, dtype)
		if err != nil {
			return fmt.Errorf("variable %s: %w", v.ScopeAndName(), err)
		}
		if err := v.SetValue(conv); err != nil {
			return fmt.Errorf("variable %s: %w", v.ScopeAndName(), err)
		}
	}
	return nil
}

func convertTensor(t *tensors.Tensor, dtype dtypes.DType) (*tensors.Tensor, error) {
	vals := floats(t)
	dims := t.Shape().Dimensions
	switch dtype {
	case dtypes.Float64:
		return tensors.FromFlatDataAndDimensions(vals, dims...), nil
	case dtypes.Float32:
		f := make([]float32, len(vals))
		for i, v := range vals {
			f[i] = float32(v)
		}
		return tensors.FromFlatDataAndDimensions(f, dims...), nil
	}
	return nil, fmt.Errorf("unsupported dtype %s", dtype)
}
