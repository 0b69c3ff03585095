package qm9

import (
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/enflow/enflow/gomlx_models/prior"
	"github.com/enflow/enflow/gomlx_models/torchimport"
	"github.com/enflow/enflow/internal/shared"
	"github.com/gomlx/gomlx/pkg/core/dtypes"
)

// clone returns a shallow copy of sd whose tensor map and key list can be edited.
func clone(sd *torchimport.StateDict) *torchimport.StateDict {
	return &torchimport.StateDict{File: sd.File, Keys: slices.Clone(sd.Keys), Tensors: maps.Clone(sd.Tensors)}
}

func withTensor(sd *torchimport.StateDict, key string, t *torchimport.Tensor) *torchimport.StateDict {
	c := clone(sd)
	if _, ok := c.Tensors[key]; !ok {
		c.Keys = append(c.Keys, key)
	}
	t.Key = key
	c.Tensors[key] = t
	return c
}

func without(sd *torchimport.StateDict, key string) *torchimport.StateDict {
	c := clone(sd)
	delete(c.Tensors, key)
	c.Keys = slices.DeleteFunc(c.Keys, func(k string) bool { return k == key })
	return c
}

func floatTensor(shape []int, vals ...float64) *torchimport.Tensor {
	return &torchimport.Tensor{DType: torchimport.Float32, Shape: shape, Float: vals}
}

func TestImportTorchErrors(t *testing.T) {
	flow, deq := publishedState(t)
	const dyn = TorchFlowEGNNPrefix
	cases := []struct {
		name      string
		flow, deq *torchimport.StateDict
		want      string
	}{
		{"ok", flow, deq, ""},
		{"swapped files", deq, flow, "unknown state-dict keys"},
		{"unknown flow key", withTensor(flow, "transformations.2.scale", floatTensor([]int{1}, 1)), deq,
			`unknown state-dict keys (not part of the QM9 E-NF): [transformations.2.scale]`},
		{"unknown dequantizer key", flow, withTensor(deq, "net_fn.extra.weight", floatTensor([]int{1}, 1)), "unknown state-dict keys"},
		{"unknown key inside the EGNN", withTensor(flow, dyn+"gcl_6.edge_mlp.0.weight", floatTensor([]int{1}, 1)), deq,
			`keys under prefix "transformations.1.odefunc.dynamics.egnn." not used`},
		{"missing ActNorm", without(flow, "transformations.0.h_log_s"), deq, `key "transformations.0.h_log_s": missing`},
		{"missing EGNN weight", without(flow, dyn+"gcl_2.att_mlp.0.bias"), deq, `missing key "transformations.1.odefunc.dynamics.egnn.gcl_2.att_mlp.0.bias"`},
		{"missing dequantizer weight", flow, without(deq, "net_fn.egnn.embedding_out.bias"), `missing key "net_fn.egnn.embedding_out.bias"`},
		{"mis-shaped ActNorm", withTensor(flow, "transformations.0.h_t", floatTensor([]int{1, 5}, 0, 0, 0, 0, 0)), deq,
			`key "transformations.0.h_t": shape [1 5], want [1 6]`},
		{"mis-shaped EGNN weight", withTensor(flow, dyn+"embedding.weight", floatTensor([]int{64, 6}, make([]float64, 384)...)), deq,
			`"transformations.1.odefunc.dynamics.egnn.embedding.weight" has shape [64 6], want [64 7]`},
		{"uninitialised ActNorm", withTensor(flow, "transformations.0.initialized", &torchimport.Tensor{DType: torchimport.Int64, Shape: []int{}, Int: []int64{0}}), deq,
			"ActNorm was never initialised"},
		{"reversed time", withTensor(flow, "transformations.1.int_time", floatTensor([]int{2}, 1, 0)), deq, "integration over [0, 1]"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ctx := seededContext()
			err := ImportTorch(ctx, DefaultConfig(dtypes.Float32), c.flow, c.deq)
			if c.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				if n := ctx.NumParameters(); n != 176479-1-2-2+117708 { // minus the 5 buffer values
					t.Errorf("%d parameters imported", n)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want %q", err, c.want)
			}
			if ctx.NumVariables() != 0 {
				t.Errorf("a failed import left %d variables in the context", ctx.NumVariables())
			}
		})
	}
}

func TestArchFromTorchArgs(t *testing.T) {
	ns, err := torchimport.LoadNamespace(shared.Require(t, pretrained, "args.pickle"))
	if err != nil {
		t.Fatal(err)
	}
	arch, err := ArchFromTorchArgs(ns)
	if err != nil {
		t.Fatal(err)
	}
	if arch.Flow != DefaultArch().Flow || arch.CNF.RegWeight != 0.001 || arch.CNF.Trace != "hutchinson" {
		t.Errorf("arch %+v", arch)
	}
	cfg, err := arch.Config(dtypes.Float64, nil, prior.Sizes{})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Flow.CoordsRange != 2.5 || cfg.Flow.InNodeF != 7 || cfg.Flow.EdgeAttrF != 1 || cfg.Dequantizer.OutNodeF != 12 || cfg.CNF.PosDims != 3 {
		t.Errorf("config %+v", cfg)
	}
	bad := []struct {
		field string
		value any
		want  string
	}{
		{"dequantization", "uniform", `dequantization = "uniform" is not supported`},
		{"model", "gnn_dynamics", `model = "gnn_dynamics" is not supported`},
		{"context_node_nf", int64(1), "conditioning"},
		{"actnorm", false, "actnorm = false"},
		{"nf", "64", "field nf is string, want an int"},
	}
	for _, b := range bad {
		mod := maps.Clone(ns)
		mod[b.field] = b.value
		if _, err := ArchFromTorchArgs(mod); err == nil || !strings.Contains(err.Error(), b.want) {
			t.Errorf("%s=%v: error %v, want %q", b.field, b.value, err, b.want)
		}
	}
	delete(ns, "n_layers")
	if _, err := ArchFromTorchArgs(ns); err == nil || !strings.Contains(err.Error(), "missing field n_layers") {
		t.Errorf("missing n_layers: %v", err)
	}
}
