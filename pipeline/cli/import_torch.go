package cli

import (
	"context"
	"fmt"

	"github.com/enflow/enflow/pipeline/train"
)

func init() {
	Register(&Command{
		Name:    "import-torch",
		Summary: "convert the published en_flows QM9 checkpoint (flow.npy, dequantizer.npy, args.pickle) into an enflow checkpoint",
		Run:     runImportTorch,
	})
}

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
	rep, err := train.ImportTorchQM9(flowPath, deqPath, argsPath, out, dtype)
	if err != nil {
		return err
	}
	return Summary(env, asJSON, map[string]any{
		"out":                 rep.Out,
		"flow_tensors":        rep.FlowTensors,
		"flow_values":         rep.FlowValues,
		"dequantizer_tensors": rep.DequantizerTensors,
		"dequantizer_values":  rep.DequantizerValues,
		"variables":           rep.Variables,
		"parameters":          rep.Parameters,
		"dtype":               rep.DType,
		"layers":              rep.Layers,
		"hidden":              rep.Hidden,
	})
}
