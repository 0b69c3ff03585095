package energy

import (
	"fmt"

	"github.com/gomlx/gomlx/backends"
	. "github.com/gomlx/gomlx/pkg/core/graph" //nolint:revive // GoMLX idiom.
	"github.com/gomlx/gomlx/pkg/core/tensors"
)

// Evaluator runs one energy (and its gradient) on a backend for host-side callers: the CLI,
// tests and notebooks. Graphs are compiled once per batch size by GoMLX's Exec cache.
// It is not safe for concurrent use.
type Evaluator struct {
	sys  System
	f    Func
	exec *Exec
}

// NewEvaluator returns an evaluator of s's reduced energy u/T (float64 positions).
func NewEvaluator(b backends.Backend, s System, T float64) (*Evaluator, error) {
	if b == nil {
		return nil, fmt.Errorf("energy %s: nil backend", s.Name)
	}
	f, err := s.Reduced(T)
	if err != nil {
		return nil, err
	}
	ev := &Evaluator{sys: s, f: f}
	ev.exec, err = NewExec(b, func(x *Node) []*Node {
		u := f(x)
		return []*Node{u, Gradient(ReduceAllSum(u), x)[0]}
	})
	if err != nil {
		return nil, fmt.Errorf("energy %s: %w", s.Name, err)
	}
	return ev, nil
}

// Eval returns the reduced energies (len B) and gradients (len B·N·D, particle-major like
// x) of B flattened configurations x (len B·N·D).
func (ev *Evaluator) Eval(x []float64) (u, grad []float64, err error) {
	flat := ev.sys.Particles * ev.sys.Dim
	if len(x) == 0 || len(x)%flat != 0 {
		return nil, nil, fmt.Errorf("energy %s: %d coordinates is not a positive multiple of %d particles × %d dims",
			ev.sys.Name, len(x), ev.sys.Particles, ev.sys.Dim)
	}
	b := len(x) / flat
	xt := tensors.FromFlatDataAndDimensions(append([]float64(nil), x...), b, ev.sys.Particles, ev.sys.Dim)
	out, err := ev.exec.Exec(xt)
	if err != nil {
		return nil, nil, fmt.Errorf("energy %s: %w", ev.sys.Name, err)
	}
	defer func() {
		for _, t := range out {
			t.FinalizeAll()
		}
	}()
	u, err = tensors.CopyFlatData[float64](out[0])
	if err != nil {
		return nil, nil, fmt.Errorf("energy %s: %w", ev.sys.Name, err)
	}
	grad, err = tensors.CopyFlatData[float64](out[1])
	if err != nil {
		return nil, nil, fmt.Errorf("energy %s: %w", ev.sys.Name, err)
	}
	return u, grad, nil
}

// Close releases the compiled graphs.
func (ev *Evaluator) Close() {
	if ev != nil && ev.exec != nil {
		ev.exec.Finalize()
		ev.exec = nil
	}
}
