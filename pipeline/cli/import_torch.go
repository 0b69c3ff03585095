package cli

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/enflow/enflow/gomlx_models/qm9"
	"github.com/enflow/enflow/gomlx_models/torchimport"
	"github.com/gomlx/gomlx/pkg/core/dtypes"
	mlctx "github.com/gomlx/gomlx/pkg/ml/context"
)

func init() {
	Register(&Command{
		Name:    "import-torch",
		Summary: "convert the published en_flows QM9 checkpoint (flow.npy, dequantizer.npy, args.pickle) into an enflow checkpoint",
		Run:     runImportTorch,
	})
}

// torchArgsKept are the args.pickle fields recorded in model.json (those that define the model).
var torchArgsKept = []string{"model", "dataset", "dequantization", "n_layers", "nf", "attention", "tanh", "actnorm",
	"condition_time", "context_node_nf", "x_aggregation", "trace", "ode_regularization", "current_epoch"}

func runImportTorch(_ context.Context, env *Env, args []string) error {
	var flowPath, deqPath, argsPath, out, dtype string
	var asJSON bool
	fs := NewFlagSet(env, "import-torch", "--flow flow.npy --dequantizer dequantizer.npy --args args.pickle --out DIR")
	fs.StringVar(&flowPath, "flow", "", "PyTorch state_dict `file` of the flow (zip torch.save, e.g. flow.npy)")
	fs.StringVar(&deqPath, "dequantizer", "", "PyTorch state_dict `file` of the dequantizer (e.g. dequantizer.npy)")
	fs.StringVar(&argsPath, "args", "", "pickled argparse.Namespace `file` of the run (args.pickle)")
	fs.StringVar(&out, "out", "", "output `directory` (new or empty): GoMLX checkpoint + model.json")
	fs.StringVar(&dtype, "dtype", "float32", "default evaluation `dtype` recorded in model.json (float32 or float64; "+
		"the variables are stored in float64, which holds the float32 weights exactly)")
	fs.BoolVar(&asJSON, "json", false, "print the summary as one JSON object")
	if err := Parse(fs, args); err != nil {
		return err
	}
	switch {
	case flowPath == "" || deqPath == "" || argsPath == "":
		return fmt.Errorf("%w: --flow, --dequantizer and --args are required", ErrUsage)
	case out == "":
		return fmt.Errorf("%w: --out is required", ErrUsage)
	case dtype != "float32" && dtype != "float64":
		return fmt.Errorf("%w: --dtype %q: want float32 or float64", ErrUsage, dtype)
	}
	rep, err := ImportTorchQM9(flowPath, deqPath, argsPath, out, dtype)
	if err != nil {
		return err
	}
	return Summary(env, asJSON, rep)
}

// ImportTorchQM9 converts the en_flows QM9 checkpoint files into an enflow checkpoint directory
// (out) and returns a summary. Nothing is written unless every key maps.
func ImportTorchQM9(flowPath, deqPath, argsPath, out, dtype string) (map[string]any, error) {
	ns, err := torchimport.LoadNamespace(argsPath)
	if err != nil {
		return nil, err
	}
	spec, err := qm9.SpecFromTorchArgs(ns)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", argsPath, err)
	}
	spec.DType = dtype
	flow, err := torchimport.LoadStateDict(flowPath)
	if err != nil {
		return nil, err
	}
	deq, err := torchimport.LoadStateDict(deqPath)
	if err != nil {
		return nil, err
	}
	// Variables are stored in float64 (exact for the float32 weights); LoadCheckpoint converts.
	cfg64, err := spec.Config(dtypes.Float64)
	if err != nil {
		return nil, err
	}
	ctx := mlctx.New()
	if err := qm9.ImportTorch(ctx, cfg64, flow, deq); err != nil {
		return nil, err
	}
	src := &qm9.Source{SHA256: map[string]string{}, TorchArgs: map[string]any{}}
	for _, p := range []struct {
		path string
		dst  *string
	}{{flowPath, &src.Flow}, {deqPath, &src.Dequantizer}, {argsPath, &src.Args}} {
		abs, err := filepath.Abs(p.path)
		if err != nil {
			abs = p.path
		}
		*p.dst = abs
		sum, err := importFileSHA256(p.path)
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
	if err := qm9.SaveCheckpoint(out, &spec, ctx); err != nil {
		return nil, err
	}
	return map[string]any{
		"out":                 out,
		"flow_tensors":        len(flow.Keys),
		"flow_values":         flow.NumValues(),
		"dequantizer_tensors": len(deq.Keys),
		"dequantizer_values":  deq.NumValues(),
		"variables":           nVars,
		"parameters":          nParams,
		"dtype":               dtype,
		"layers":              spec.EGNN.Layers,
		"hidden":              spec.EGNN.Hidden,
	}, nil
}

func importFileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("hashing %s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
