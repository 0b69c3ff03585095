package train

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/enflow/enflow/gomlx_models/qm9"
	"github.com/enflow/enflow/gomlx_models/torchimport"
	"github.com/gomlx/gomlx/pkg/core/dtypes"
	mlctx "github.com/gomlx/gomlx/pkg/ml/context"
	"github.com/gomlx/gomlx/pkg/ml/context/checkpoints"
)

// torchArgsKept are the args.pickle fields recorded in model.json (those that define the model).
var torchArgsKept = []string{"model", "dataset", "dequantization", "n_layers", "nf", "attention", "tanh", "actnorm",
	"condition_time", "context_node_nf", "x_aggregation", "trace", "ode_regularization", "current_epoch"}

// ImportReport summarises ImportTorchQM9.
type ImportReport struct {
	Out                string `json:"out"`
	FlowTensors        int    `json:"flow_tensors"`
	FlowValues         int    `json:"flow_values"`
	DequantizerTensors int    `json:"dequantizer_tensors"`
	DequantizerValues  int    `json:"dequantizer_values"`
	Variables          int    `json:"variables"`
	Parameters         int    `json:"parameters"`
	DType              string `json:"dtype"`
	Layers             int    `json:"layers"`
	Hidden             int    `json:"hidden"`
}

// ImportTorchQM9 converts the en_flows QM9 checkpoint files (flow.npy, dequantizer.npy,
// args.pickle) into an enflow model directory out: model.json (kind qm9, the same format as a
// trained run's) and a GoMLX checkpoint, so eval, sample and `train --init-from` read it like
// any other model. The variables are stored in float64 (exact for the float32 weights); dtype
// is the default evaluation dtype recorded in model.json. Nothing is written unless every key
// maps.
func ImportTorchQM9(flowPath, deqPath, argsPath, out, dtype string) (*ImportReport, error) {
	ns, err := torchimport.LoadNamespace(argsPath)
	if err != nil {
		return nil, err
	}
	arch, err := qm9.ArchFromTorchArgs(ns)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", argsPath, err)
	}
	spec := DefaultQM9Spec(SystemQM9, nil, nil)
	spec.EGNN, spec.CNF, spec.DType = arch.Flow, arch.CNF, dtype
	d := arch.Dequantizer
	spec.Dequantizer = &d
	if _, err := spec.GoDType(); err != nil {
		return nil, err
	}
	flow, err := torchimport.LoadStateDict(flowPath)
	if err != nil {
		return nil, err
	}
	deq, err := torchimport.LoadStateDict(deqPath)
	if err != nil {
		return nil, err
	}
	cfg64, err := arch.Config(dtypes.Float64, nil, qm9DefaultSizes())
	if err != nil {
		return nil, err
	}
	ctx := mlctx.New()
	if err := qm9.ImportTorch(ctx, cfg64, flow, deq); err != nil {
		return nil, err
	}
	src := &ImportSource{SHA256: map[string]string{}, TorchArgs: map[string]any{}}
	for _, p := range []struct {
		path string
		dst  *string
	}{{flowPath, &src.Flow}, {deqPath, &src.Dequantizer}, {argsPath, &src.Args}} {
		abs, err := filepath.Abs(p.path)
		if err != nil {
			abs = p.path
		}
		*p.dst = abs
		sum, err := fileSHA256(p.path)
		if err != nil {
			return nil, err
		}
		src.SHA256[filepath.Base(p.path)] = sum
	}
	for _, k := range torchArgsKept {
		if v, ok := ns[k]; ok {
			src.TorchArgs[k] = v
		}
	}
	spec.Source = src
	nVars, nParams := ctx.NumVariables(), ctx.NumParameters()
	if err := SaveModel(out, &spec, ctx); err != nil {
		return nil, err
	}
	return &ImportReport{Out: out, FlowTensors: len(flow.Keys), FlowValues: flow.NumValues(),
		DequantizerTensors: len(deq.Keys), DequantizerValues: deq.NumValues(), Variables: nVars, Parameters: nParams,
		DType: dtype, Layers: spec.EGNN.Layers, Hidden: spec.EGNN.Hidden}, nil
}

// SaveModel writes the variables of ctx as a GoMLX checkpoint into dir (created if needed) and
// spec as dir/model.json: the model directory format every kind shares (a training run's best/
// holds the same). dir must not already hold a model.
func SaveModel(dir string, spec *ModelSpec, ctx *mlctx.Context) error {
	if err := spec.Validate(); err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("train: %w", err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("train: %w", err)
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), "checkpoint-") || e.Name() == ModelFileName {
			return fmt.Errorf("train: %s already holds a model (%s); choose an empty directory", dir, e.Name())
		}
	}
	h, err := checkpoints.Build(ctx).Dir(dir).Done()
	if err != nil {
		return fmt.Errorf("train: creating checkpoint in %s: %w", dir, err)
	}
	if err := h.Save(); err != nil {
		return fmt.Errorf("train: saving checkpoint in %s: %w", dir, err)
	}
	if err := syncLatestCheckpoint(dir); err != nil {
		return err
	}
	return SaveSpec(dir, spec)
}

func fileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("train: %w", err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("train: hashing %s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
