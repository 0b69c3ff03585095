package qm9

import (
	"fmt"
	"math"
	"strings"

	"github.com/enflow/enflow/gomlx_models/cnf"
	"github.com/enflow/enflow/gomlx_models/prior"
	. "github.com/gomlx/gomlx/pkg/core/graph" //nolint:revive // GoMLX idiom.
	"github.com/gomlx/gomlx/pkg/core/tensors"
	"github.com/gomlx/gomlx/pkg/ml/context"
)

// Training of the molecule E-NF (en_flows main_qm9.py, qm9/losses.py): the loss of a batch is
//
//	L = −mean_b[ log p_z(z_b) + ∫ tr J dt + ActNorm_b − log q(v_b | x_b, h_b) + log p(M_b) ] + w·reg
//
// with the dequantizer, ActNorm and the dynamics trained jointly (AdamW over all of them). The
// gradient has two parts computed in two passes:
//
//  1. the flow: the CNF's adjoint (or backprop) gives ∂L/∂θ_dynamics and, from the same solve,
//     dy = ∂L/∂y, the gradient with respect to the flow's input y = ActNorm(x, v);
//  2. the encoder: one compiled vector–Jacobian product of y ↦ Σ y·dy + mean_b(log q_b − ActNorm_b)
//     gives ∂L/∂θ for ActNorm and the dequantizer (log p(M) is constant).
//
// Variables returns the flow's variables first, then ActNorm's and the dequantizer's, the order
// of the gradients of LossAndGrad.

// hutchStream separates the CNF's Hutchinson noise from the dequantizer's noise (both derived
// from one seed; LogLikelihood uses the same split).
const hutchStream = 0x68_7574_6368 // "hutch"

// InitVariables creates (or, from a checkpoint, binds) every variable by running the encoder
// and the dynamics once on b, and freezes the variable list. It is idempotent.
func (m *Model) InitVariables(b *Batch) error {
	if m.encVars != nil {
		return nil
	}
	inter, err := m.Encode(b, EvalOptions{Deterministic: true})
	if err != nil {
		return err
	}
	defer freeAll([]*tensors.Tensor{inter.Y})
	mask, err := prior.FromFloat64(m.cfg.DType, b.Mask, b.B, b.N)
	if err != nil {
		return err
	}
	defer freeAll([]*tensors.Tensor{mask})
	if err := m.flow.InitVariables(inter.Y, mask); err != nil {
		return fmt.Errorf("qm9: %w", err)
	}
	var enc []*context.Variable
	for v := range m.ctx.IterVariables() {
		if !v.Trainable {
			continue
		}
		if inScope(v, ScopeActNorm) || inScope(v, ScopeDequantizer) {
			enc = append(enc, v)
		}
	}
	if len(enc) == 0 {
		return fmt.Errorf("qm9: the encoder (ActNorm, dequantizer) has no trainable variables")
	}
	m.encVars = enc
	return nil
}

// inScope reports whether v lives under the root-level scope name.
func inScope(v *context.Variable, scope string) bool {
	want := context.ScopeSeparator + scope
	return v.Scope() == want || strings.HasPrefix(v.Scope(), want+context.ScopeSeparator)
}

// Variables returns the trainable variables in the order of LossAndGrad's gradients: the
// dynamics' (under ScopeFlow), then ActNorm's and the dequantizer's. Call InitVariables first.
func (m *Model) Variables() []*context.Variable {
	return append(append([]*context.Variable(nil), m.flow.Variables()...), m.encVars...)
}

// IsFlowVariable reports whether v belongs to the flow (ActNorm + dynamics), the parameters
// en_flows clips gradients of (utils.gradient_clipping(flow, …)); the dequantizer's are not
// clipped.
func (m *Model) IsFlowVariable(v *context.Variable) bool {
	return inScope(v, ScopeFlow) || inScope(v, ScopeActNorm)
}

// LossAndGrad returns the training loss (NLL bound + RegWeight·regulariser), the batch-mean NLL
// bound, and the gradients of the loss with respect to Variables(). seed draws the dequantizer
// noise and the Hutchinson noise.
func (m *Model) LossAndGrad(b *Batch, seed uint64) (loss, nll float64, grads []*tensors.Tensor, st cnf.Stats, err error) {
	if err := m.InitVariables(b); err != nil {
		return 0, 0, nil, st, err
	}
	eps := noise(b, EvalOptions{Seed: seed})
	in, err := m.batchTensors(b, eps)
	if err != nil {
		return 0, 0, nil, st, err
	}
	defer freeAll(in)
	out, err := m.encExec.Exec(in[0], in[1], in[2], in[3], in[4])
	if err != nil {
		return 0, 0, nil, st, fmt.Errorf("qm9: dequantizer/ActNorm: %w", err)
	}
	y := out[0]
	logQ, ldj := floats(out[1]), floats(out[2])
	freeAll(out[1:])
	defer freeAll([]*tensors.Tensor{y})
	// Size and encoder terms of the bound: mean_b(log q − ActNorm − log p(M)).
	extra := 0.0
	for i := range b.B {
		lpn, err := m.cfg.Sizes.LogProb(b.NAtoms[i])
		if err != nil {
			return 0, 0, nil, st, fmt.Errorf("qm9: molecule %d: %w", b.IDs[i], err)
		}
		extra += logQ[i] - ldj[i] - lpn
	}
	extra /= float64(b.B)
	lossC, nllC, gFlow, dy, st, err := m.flow.LossAndGradInput(y, in[3], seed^hutchStream)
	if err != nil {
		return 0, 0, nil, st, fmt.Errorf("qm9: %w", err)
	}
	defer freeAll([]*tensors.Tensor{dy})
	if m.encGrad == nil {
		if m.encGrad, err = context.NewExec(m.backend, m.ctx, m.encoderGradGraph); err != nil {
			freeAll(gFlow)
			return 0, 0, nil, st, fmt.Errorf("qm9: encoder gradient: %w", err)
		}
		m.encGrad.SetMaxCache(-1)
	}
	gEnc, err := m.encGrad.Exec(in[0], in[1], in[2], in[3], in[4], dy)
	if err != nil {
		freeAll(gFlow)
		return 0, 0, nil, st, fmt.Errorf("qm9: encoder gradient: %w", err)
	}
	loss, nll = lossC+extra, nllC+extra
	if math.IsNaN(loss) || math.IsInf(loss, 0) {
		freeAll(gFlow)
		freeAll(gEnc)
		return loss, nll, nil, st, fmt.Errorf("qm9: loss is %v", loss)
	}
	return loss, nll, append(gFlow, gEnc...), st, nil
}

// encoderGradGraph: (x, oneHot, charge, mask, eps, dy) → ∂/∂θ_enc [Σ y·dy + mean_b(log q − ActNorm)]
// for the encoder variables, in m.encVars order.
func (m *Model) encoderGradGraph(ctx *context.Context, in []*Node) []*Node {
	x, oneHot, charge, mask, eps, dy := in[0], in[1], in[2], in[3], in[4], in[5]
	xh, d := m.dequantizeGraph(ctx, x, oneHot, charge, mask, eps)
	y, ldj := ActNormForward(ctx, xh, mask)
	s := Add(ReduceAllSum(Mul(y, dy)), ReduceAllMean(Sub(d.LogQ, ldj)))
	g := x.Graph()
	wrt := make([]*Node, len(m.encVars))
	for i, v := range m.encVars {
		wrt[i] = v.ValueGraph(g)
	}
	return Gradient(s, wrt...)
}

// InitActNorm sets ActNorm's parameters from the data, as ActNormPositionAndFeatures.initialize
// does on the first training batch of a fresh run: with the dequantised features v of b (noise
// drawn from seed) and the centred positions x, over the real atoms of the batch,
//
//	h_t = mean(v),  h_log_s = log(sqrt(mean((v − h_t)²) + 1e-5) + 1e-8)        per feature,
//	x_log_s = log(sqrt(Σ_{atoms, axes}(x − μ)² / atoms + 1e-5) + 1e-8),   μ = Σ_{atoms, axes} x / atoms
//
// (the reference's masked_stdev over the flattened positions divides by the number of atoms,
// not atoms × 3, and its mean is taken the same way; both quirks are kept).
func (m *Model) InitActNorm(b *Batch, seed uint64) error {
	if m.deqExec == nil {
		var err error
		m.deqExec, err = context.NewExec(m.backend, m.ctx, func(ctx *context.Context, in []*Node) *Node {
			xh, _ := m.dequantizeGraph(ctx, in[0], in[1], in[2], in[3], in[4])
			return xh
		})
		if err != nil {
			return fmt.Errorf("qm9: ActNorm initialisation: %w", err)
		}
		m.deqExec.SetMaxCache(-1)
	}
	in, err := m.batchTensors(b, noise(b, EvalOptions{Seed: seed}))
	if err != nil {
		return err
	}
	defer freeAll(in)
	out, err := m.deqExec.Exec(in[0], in[1], in[2], in[3], in[4])
	if err != nil {
		return fmt.Errorf("qm9: ActNorm initialisation: %w", err)
	}
	xh := floats(out[0])
	freeAll(out)
	ch, nf := m.cfg.Channels(), m.cfg.Features()
	atoms := 0.0
	sumX := 0.0
	sumH := make([]float64, nf)
	for node, w := range b.Mask {
		if w == 0 {
			continue
		}
		atoms++
		row := xh[node*ch : (node+1)*ch]
		for c := range PosDims {
			sumX += row[c]
		}
		for f := range nf {
			sumH[f] += row[PosDims+f]
		}
	}
	if atoms == 0 {
		return fmt.Errorf("qm9: ActNorm initialisation: the batch has no atoms")
	}
	muX := sumX / atoms
	hT := make([]float64, nf)
	for f := range nf {
		hT[f] = sumH[f] / atoms
	}
	ssX := 0.0
	ssH := make([]float64, nf)
	for node, w := range b.Mask {
		if w == 0 {
			continue
		}
		row := xh[node*ch : (node+1)*ch]
		for c := range PosDims {
			d := row[c] - muX
			ssX += d * d
		}
		for f := range nf {
			d := row[PosDims+f] - hT[f]
			ssH[f] += d * d
		}
	}
	hLogS := make([]float64, nf)
	for f := range nf {
		hLogS[f] = math.Log(math.Sqrt(ssH[f]/atoms+1e-5) + 1e-8)
	}
	xLogS := math.Log(math.Sqrt(ssX/atoms+1e-5) + 1e-8)
	return m.SetActNorm(xLogS, hT, hLogS)
}

// SetActNorm sets ActNorm's parameters (x_log_s, and h_t, h_log_s of length K+1), creating the
// variables if needed.
func (m *Model) SetActNorm(xLogS float64, hT, hLogS []float64) (err error) {
	nf := m.cfg.Features()
	if len(hT) != nf || len(hLogS) != nf {
		return fmt.Errorf("qm9: SetActNorm: h_t and h_log_s need %d values, got %d and %d", nf, len(hT), len(hLogS))
	}
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("qm9: SetActNorm: %v", r)
		}
	}()
	c := m.ctx.In(ScopeActNorm).Checked(false)
	for _, p := range []struct {
		name string
		data []float64
	}{{VarXLogS, []float64{xLogS}}, {VarHT, hT}, {VarHLogS, hLogS}} {
		t, err := prior.FromFloat64(m.cfg.DType, append([]float64(nil), p.data...), 1, len(p.data))
		if err != nil {
			return err
		}
		v := c.GetVariable(p.name)
		if v == nil {
			v = c.VariableWithValue(p.name, t)
			continue
		}
		if !v.Shape().Equal(t.Shape()) {
			return fmt.Errorf("qm9: SetActNorm: variable %s has shape %s, want %s", v.ScopeAndName(), v.Shape(), t.Shape())
		}
		if err := v.SetValue(t); err != nil {
			return fmt.Errorf("qm9: SetActNorm: %w", err)
		}
	}
	return nil
}

// ActNormValues returns ActNorm's current x_log_s, h_t and h_log_s (nil slices if the variables
// do not exist yet).
func (m *Model) ActNormValues() (xLogS float64, hT, hLogS []float64, err error) {
	c := m.ctx.In(ScopeActNorm)
	get := func(name string) ([]float64, error) {
		v := c.GetVariable(name)
		if v == nil {
			return nil, nil
		}
		t, err := v.Value()
		if err != nil {
			return nil, err
		}
		return floats(t), nil
	}
	xs, err := get(VarXLogS)
	if err != nil || xs == nil {
		return 0, nil, nil, err
	}
	if hT, err = get(VarHT); err != nil {
		return 0, nil, nil, err
	}
	if hLogS, err = get(VarHLogS); err != nil {
		return 0, nil, nil, err
	}
	return xs[0], hT, hLogS, nil
}
