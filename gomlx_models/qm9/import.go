package qm9

import (
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/enflow/enflow/gomlx_models/dynamics"
	"github.com/enflow/enflow/gomlx_models/egnn"
	"github.com/enflow/enflow/gomlx_models/torchimport"
	"github.com/gomlx/gomlx/pkg/core/tensors"
	"github.com/gomlx/gomlx/pkg/ml/context"
)

// PyTorch state-dict prefixes of the published checkpoint (REFERENCE §4.2, §4.3).
const (
	TorchActNormPrefix     = "transformations.0."
	TorchFFJORDPrefix      = "transformations.1."
	TorchFlowEGNNPrefix    = "transformations.1.odefunc.dynamics.egnn."
	TorchDequantizerPrefix = "net_fn.egnn."
)

// torchActNorm lists the ActNorm tensors: PyTorch key suffix → (variable, shape).
var torchActNorm = []struct {
	key, variable string
	shape         []int
}{
	{"x_log_s", VarXLogS, []int{1, 1}},
	{"h_t", VarHT, []int{1, NumFeatures}}, // the published model is QM9's: 5 types + charge
	{"h_log_s", VarHLogS, []int{1, NumFeatures}},
}

// ImportTorch sets the model variables under ctx (the model's root context) from the en_flows
// state dicts of the flow (Flow([ActNorm, FFJORD]), 88 tensors) and of the dequantizer
// (ArgmaxAndVariationalDequantizer, 48 tensors), converting to cfg.DType. Every key must be
// known and every expected key present with its PyTorch shape:
//
//	transformations.0.{x_log_s, h_t, h_log_s}  → actnorm/{x_log_s, h_t, h_log_s}
//	transformations.0.initialized              (must be 1: ActNorm was initialised)
//	transformations.1.{int_time, inv_int_time} (must be [0,1] and [1,0])
//	transformations.1.odefunc.dynamics.egnn.*  → flow/egnn/… (egnn.ImportTorch layout)
//	net_fn.egnn.*                              → dequantizer/egnn/…
//
// All checks run before anything is set in ctx (the EGNN imports are first run on a scratch
// context).
func ImportTorch(ctx *context.Context, cfg Config, flow, deq *torchimport.StateDict) (err error) {
	cfg, err = cfg.withDefaults()
	if err != nil {
		return err
	}
	if flow == nil || deq == nil {
		return fmt.Errorf("qm9: ImportTorch needs the flow and the dequantizer state dicts")
	}
	if cfg.Types() != NumTypes {
		return fmt.Errorf("qm9: ImportTorch: the published model has QM9's %d atom types, the configuration %d (%v)", NumTypes, cfg.Types(), cfg.Elements)
	}
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("qm9: ImportTorch: %v", r)
		}
	}()
	where := func(sd *torchimport.StateDict, key string) string {
		if sd.File != "" {
			return fmt.Sprintf("%s: key %q", sd.File, key)
		}
		return fmt.Sprintf("key %q", key)
	}
	get := func(sd *torchimport.StateDict, key string, shape []int) (*torchimport.Tensor, error) {
		t, ok := sd.Tensors[key]
		if !ok {
			return nil, fmt.Errorf("qm9: %s: missing", where(sd, key))
		}
		if !slices.Equal(t.Shape, shape) {
			return nil, fmt.Errorf("qm9: %s: shape %v, want %v", where(sd, key), t.Shape, shape)
		}
		return t, nil
	}

	// Unknown keys (outside the EGNN prefixes, which egnn.ImportTorch checks exhaustively).
	known := map[string]bool{TorchActNormPrefix + "initialized": true, TorchFFJORDPrefix + "int_time": true, TorchFFJORDPrefix + "inv_int_time": true}
	for _, a := range torchActNorm {
		known[TorchActNormPrefix+a.key] = true
	}
	var unknown []string
	for _, k := range flow.Keys {
		if !known[k] && !strings.HasPrefix(k, TorchFlowEGNNPrefix) {
			unknown = append(unknown, k)
		}
	}
	for _, k := range deq.Keys {
		if !strings.HasPrefix(k, TorchDequantizerPrefix) {
			unknown = append(unknown, k)
		}
	}
	if len(unknown) > 0 {
		sort.Strings(unknown)
		return fmt.Errorf("qm9: unknown state-dict keys (not part of the QM9 E-NF): %v", unknown)
	}

	// Buffers.
	init, err := get(flow, TorchActNormPrefix+"initialized", []int{})
	if err != nil {
		return err
	}
	if v := init.Float64s(); v[0] != 1 {
		return fmt.Errorf("qm9: %s = %v: ActNorm was never initialised", where(flow, init.Key), v[0])
	}
	for _, b := range []struct {
		key  string
		want []float64
	}{{"int_time", []float64{0, 1}}, {"inv_int_time", []float64{1, 0}}} {
		t, err := get(flow, TorchFFJORDPrefix+b.key, []int{2})
		if err != nil {
			return err
		}
		if !slices.Equal(t.Float64s(), b.want) {
			return fmt.Errorf("qm9: %s = %v, want %v (integration over [0, 1])", where(flow, t.Key), t.Float64s(), b.want)
		}
	}

	// ActNorm.
	actnorm := map[string]*tensors.Tensor{}
	for _, a := range torchActNorm {
		t, err := get(flow, TorchActNormPrefix+a.key, a.shape)
		if err != nil {
			return err
		}
		if actnorm[a.variable], err = t.GoMLX(cfg.DType); err != nil {
			return err
		}
	}

	// EGNNs (each validates its keys and shapes before setting anything).
	flowState, err := flow.GoMLX(cfg.DType)
	if err != nil {
		return err
	}
	deqState, err := deq.GoMLX(cfg.DType)
	if err != nil {
		return err
	}
	// Dry run on a scratch context first, so that a bad dequantizer does not leave ctx with a
	// half-imported flow.
	for _, target := range []*context.Context{context.New(), ctx} {
		if err := egnn.ImportTorch(target.In(ScopeFlow).In(dynamics.Scope), TorchFlowEGNNPrefix, cfg.Flow, flowState); err != nil {
			return fmt.Errorf("qm9: %s: %w", flow.File, err)
		}
		if err := egnn.ImportTorch(target.In(ScopeDequantizer).In("egnn"), TorchDequantizerPrefix, cfg.Dequantizer, deqState); err != nil {
			return fmt.Errorf("qm9: %s: %w", deq.File, err)
		}
	}
	c := ctx.In(ScopeActNorm).Checked(false)
	for _, a := range torchActNorm {
		if v := c.GetVariableByScopeAndName(c.Scope(), a.variable); v != nil {
			if err := v.SetValue(actnorm[a.variable]); err != nil {
				return fmt.Errorf("qm9: setting %s: %w", v.ScopeAndName(), err)
			}
			continue
		}
		c.VariableWithValue(a.variable, actnorm[a.variable])
	}
	return nil
}
