// Package fastvjp replaces GoMLX's reverse-mode rule (VJP) for matrix products.
//
// The stock GoMLX VJP of DotGeneral (v0.26.0 to v0.27.3; since v0.27 graph.Dot also builds
// DotGeneral nodes) expands the incoming adjoint and the other operand to a common rank-(batch+lhsCross+rhsCross+contract) tensor, multiplies them
// element-wise and reduce-sums: for a Dense layer x(B,N,N,H)·W(H,H) that materialises a
// (B·N·N, H, H) broadcast tensor per gradient, O(B·N²·H²) memory traffic with slow broadcast
// iterators in SimpleGo.
//
// The rule registered here expresses both adjoints as matrix products again. For
// O = DotGeneral(L, R) with batch axes b, L-cross axes l, R-cross axes r and contracting axes c
// (O[b,l,r] = Σ_c L[b,l,c]·R[b,c,r]) and adjoint V = ∂y/∂O:
//
//	∂y/∂L[b,l,c] = Σ_r V[b,l,r]·R[b,c,r]   = DotGeneral(V, contract r; R, contract r; batch b)
//	∂y/∂R[b,c,r] = Σ_l L[b,l,c]·V[b,l,r]   = DotGeneral(L, contract l; V, contract l; batch b)
//
// followed by a transpose back to the operand's axis order when needed. Because the adjoints are
// DotGeneral nodes again, the same rule applies to them, so gradients of gradients (needed for
// the Hutchinson trace estimator in FFJORD training) also stay matrix products and never use
// Pad, Slice or Concatenate.
//
// GoMLX does not export a DotGeneral node's axes; they are read from the node's String() form
// ("DotGeneral(lhs=[#i], lhsContractingAxes=[..], lhsBatchAxes=[..], rhs=[#j], ...,
// config={AccumulatorDType:… OutputDType:…})") and validated against the node's inputs and
// output shape. If anything does not match (e.g. a future GoMLX changes the format), or the
// product asks for its own accumulator or output dtype, the stock VJP is used for that node.
package fastvjp

import (
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/gomlx/gomlx/pkg/core/graph"
	"github.com/gomlx/gomlx/pkg/core/shapes"
)

var (
	mu        sync.Mutex
	saved     bool
	stockDotG graph.VJP
	enabled   bool
)

// Register installs the matrix-product VJP for graph.NodeTypeDotGeneral in
// graph.VJPRegistration. It is idempotent; model packages call it from init. Since
// graph.VJPRegistration is a plain map read while building gradients, Register (and Restore)
// must not run concurrently with graph building: calling it from init is the safe pattern.
func Register() {
	mu.Lock()
	defer mu.Unlock()
	saveStock()
	graph.VJPRegistration[graph.NodeTypeDotGeneral] = dotGeneralVJP
	enabled = true
}

// Restore puts GoMLX's stock VJP back. Only meant for tests and benchmarks that compare both.
func Restore() {
	mu.Lock()
	defer mu.Unlock()
	saveStock()
	graph.VJPRegistration[graph.NodeTypeDotGeneral] = stockDotG
	enabled = false
}

// Enabled reports whether the fast VJP is currently installed.
func Enabled() bool {
	mu.Lock()
	defer mu.Unlock()
	return enabled
}

func saveStock() {
	if saved {
		return
	}
	stockDotG = graph.VJPRegistration[graph.NodeTypeDotGeneral]
	saved = true
}

// dotParams are the axes of a DotGeneral node.
type dotParams struct {
	lc, lb, rc, rb []int
}

var dotGeneralRE = regexp.MustCompile(`lhs=\[#(\d+)\], lhsContractingAxes=\[([0-9 ]*)\], lhsBatchAxes=\[([0-9 ]*)\], ` +
	`rhs=\[#(\d+)\], rhsContractingAxes=\[([0-9 ]*)\], rhsBatchAxes=\[([0-9 ]*)\](, config=\{[^{}]*\})?\)`)

// configDTypeRE matches the dtype fields of a DotGeneral node's config ("AccumulatorDType:X").
var configDTypeRE = regexp.MustCompile(`DType:(\w+)`)

func parseInts(s string) ([]int, bool) {
	fields := strings.Fields(s)
	out := make([]int, 0, len(fields))
	for _, f := range fields {
		v, err := strconv.Atoi(f)
		if err != nil {
			return nil, false
		}
		out = append(out, v)
	}
	return out, true
}

// parseDotGeneral extracts and validates the axes of a DotGeneral node.
func parseDotGeneral(node *graph.Node) (p dotParams, ok bool) {
	inputs := node.Inputs()
	if len(inputs) != 2 {
		return p, false
	}
	matches := dotGeneralRE.FindAllStringSubmatch(node.String(), -1)
	if len(matches) == 0 {
		return p, false
	}
	m := matches[len(matches)-1]
	for _, kv := range configDTypeRE.FindAllStringSubmatch(m[7], -1) {
		if kv[1] != "InvalidDType" {
			return p, false // a requested accumulator or output dtype: leave it to the stock rule
		}
	}
	lhsID, err1 := strconv.Atoi(m[1])
	rhsID, err2 := strconv.Atoi(m[4])
	if err1 != nil || err2 != nil || graph.NodeId(lhsID) != inputs[0].Id() || graph.NodeId(rhsID) != inputs[1].Id() {
		return p, false
	}
	var oks [4]bool
	p.lc, oks[0] = parseInts(m[2])
	p.lb, oks[1] = parseInts(m[3])
	p.rc, oks[2] = parseInts(m[5])
	p.rb, oks[3] = parseInts(m[6])
	for _, o := range oks {
		if !o {
			return p, false
		}
	}
	if !validParams(inputs[0].Shape(), inputs[1].Shape(), node.Shape(), p) {
		return p, false
	}
	return p, true
}

// crossAxes returns the axes of a rank-`rank` operand that are neither contracting nor batch,
// in increasing order (the order in which DotGeneral emits them).
func crossAxes(rank int, contracting, batch []int) []int {
	used := make([]bool, rank)
	for _, a := range contracting {
		used[a] = true
	}
	for _, a := range batch {
		used[a] = true
	}
	var out []int
	for a, u := range used {
		if !u {
			out = append(out, a)
		}
	}
	return out
}

// validParams checks that p is consistent with the operand shapes and the output shape.
func validParams(l, r, out shapes.Shape, p dotParams) bool {
	if len(p.lc) != len(p.rc) || len(p.lb) != len(p.rb) {
		return false
	}
	inRange := func(axes []int, rank int) bool {
		for _, a := range axes {
			if a < 0 || a >= rank {
				return false
			}
		}
		return true
	}
	if !inRange(p.lc, l.Rank()) || !inRange(p.lb, l.Rank()) || !inRange(p.rc, r.Rank()) || !inRange(p.rb, r.Rank()) {
		return false
	}
	var dims []int
	for k := range p.lb {
		if l.Dimensions[p.lb[k]] != r.Dimensions[p.rb[k]] {
			return false
		}
		dims = append(dims, l.Dimensions[p.lb[k]])
	}
	for k := range p.lc {
		if l.Dimensions[p.lc[k]] != r.Dimensions[p.rc[k]] {
			return false
		}
	}
	lx := crossAxes(l.Rank(), p.lc, p.lb)
	rx := crossAxes(r.Rank(), p.rc, p.rb)
	if len(lx)+len(p.lc)+len(p.lb) != l.Rank() || len(rx)+len(p.rc)+len(p.rb) != r.Rank() {
		return false // repeated axes
	}
	for _, a := range lx {
		dims = append(dims, l.Dimensions[a])
	}
	for _, a := range rx {
		dims = append(dims, r.Dimensions[a])
	}
	return slices.Equal(dims, out.Dimensions) && l.DType == out.DType && r.DType == out.DType
}

func seq(start, n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = start + i
	}
	return out
}

// rankIn returns the position of v in the sorted copy of axes.
func rankIn(axes []int, v int) int {
	n := 0
	for _, a := range axes {
		if a < v {
			n++
		}
	}
	return n
}

// transposeTo applies x = TransposeAllAxes(x, perm) unless perm is the identity.
func transposeTo(x *graph.Node, perm []int) *graph.Node {
	for i, p := range perm {
		if i != p {
			return graph.TransposeAllAxes(x, perm...)
		}
	}
	return x
}

// matmulVJP returns the adjoints of both operands of O = DotGeneral(L, p, R) given the adjoint v
// of O (same shape as O).
func matmulVJP(lhs, rhs, v *graph.Node, p dotParams) []*graph.Node {
	nb := len(p.lb)
	lx := crossAxes(lhs.Rank(), p.lc, p.lb)
	rx := crossAxes(rhs.Rank(), p.rc, p.rb)
	vBatch := seq(0, nb)
	vL := seq(nb, len(lx))         // axes of v holding the lhs cross dimensions
	vR := seq(nb+len(lx), len(rx)) // axes of v holding the rhs cross dimensions

	// ∂/∂L: result axes = [batch, lx..., rc sorted...].
	gl := graph.DotGeneral(v, vR, vBatch, rhs, rx, p.rb)
	permL := make([]int, lhs.Rank())
	for k, a := range p.lb {
		permL[a] = k
	}
	for k, a := range lx {
		permL[a] = nb + k
	}
	for k, a := range p.lc {
		permL[a] = nb + len(lx) + rankIn(p.rc, p.rc[k])
	}
	gl = transposeTo(gl, permL)

	// ∂/∂R: result axes = [batch, lc sorted..., rx...].
	gr := graph.DotGeneral(lhs, lx, p.lb, v, vL, vBatch)
	permR := make([]int, rhs.Rank())
	for k, a := range p.rb {
		permR[a] = k
	}
	for k, a := range p.rc {
		permR[a] = nb + rankIn(p.lc, p.lc[k])
	}
	for k, a := range rx {
		permR[a] = nb + len(p.lc) + k
	}
	gr = transposeTo(gr, permR)
	return []*graph.Node{gl, gr}
}

func dotGeneralVJP(node *graph.Node, vjps []*graph.Node, outputShape shapes.Shape) []*graph.Node {
	if len(vjps) == 1 && outputShape.IsScalar() && !node.DType().IsComplex() {
		if p, ok := parseDotGeneral(node); ok && vjps[0].Shape().Equal(node.Shape()) {
			in := node.Inputs()
			return matmulVJP(in[0], in[1], vjps[0], p)
		}
	}
	return stockDotG(node, vjps, outputShape)
}
