// Package dynamics holds the E(n) equivariant velocity fields of E-NF (Satorras et al.,
// "E(n) Equivariant Normalizing Flows", NeurIPS 2021, eq. 10: dz/dt = φ(z, t) with φ an EGNN),
// in the form consumed by the ODE/CNF packages:
//
//	f(t, state) = EGNN(x = state, h = t)_x − x, with the per-sample mean over nodes removed,
//
// which is E(n) equivariant (rotations/reflections rotate f, translations leave it unchanged,
// node permutations permute it) and mean-free, so the flow stays in the zero-centre-of-mass
// subspace (REFERENCE.md §4.5).
//
// The EGNN variables live under ctx.In(Scope), mirroring PyTorch's "dynamics.egnn." module
// path; to load a PyTorch checkpoint call egnn.ImportTorch(ctx.In(dynamics.Scope), prefix, cfg,
// state) with the same cfg the Func was built with (after the overrides documented on each
// constructor).
//
// Only matrix products, element-wise ops, reductions and reshapes are used (no Slice/Concatenate),
// so the Funcs can be differentiated twice on SimpleGo (Hutchinson trace training).
package dynamics

import (
	"fmt"

	"github.com/enflow/enflow/gomlx_models/egnn"
	"github.com/enflow/enflow/internal/graphutil"
	. "github.com/gomlx/gomlx/pkg/core/graph"
	"github.com/gomlx/gomlx/pkg/ml/context"
)

// Scope is the sub-scope of ctx that holds the EGNN variables.
const Scope = "egnn"

// Func is a velocity field. t is a scalar; state is (B, N, C); mask is (B, N) of 0/1 or nil (all nodes real).
// It returns (B, N, C). Trainable parameters live in ctx.
type Func func(ctx *context.Context, t, state, mask *Node) *Node

// ParticleConfig returns cfg with the fields fixed by the particle dynamics set: InNodeF = 1
// (time), EdgeAttrF = 1 (squared distance), OutNodeF = 0 (h_out unused). Use it for
// egnn.ImportTorch.
func ParticleConfig(cfg egnn.Config) egnn.Config {
	cfg.InNodeF, cfg.EdgeAttrF, cfg.OutNodeF = 1, 1, 0
	return cfg.WithDefaults()
}

// Particle returns the DW4/LJ13 E-NF dynamics (REFERENCE §4.5, "EGNN_dynamics"): h_in = t (one feature per node),
// edge_attr = squared distance, all i≠j edges, EGNN(hidden 32, 3 layers, attention, tanh, coords_range 15/3),
// velocity = x_L − x with the per-sample mean over nodes removed. C = D (positions only).
//
// cfg is typically egnn.ParticleConfig() (with DType set to match state); InNodeF, EdgeAttrF and
// OutNodeF are overridden as in ParticleConfig. With a mask, padded nodes are zeroed on input,
// take no part in messages, get zero velocity, and the mean is taken over real nodes only.
func Particle(cfg egnn.Config) Func {
	cfg = ParticleConfig(cfg)
	return func(ctx *context.Context, t, state, mask *Node) *Node {
		checkState(cfg, state, -1)
		dims := state.Shape().Dimensions
		b, n := dims[0], dims[1]
		nodeMask := graphutil.NodeMask(mask, cfg.DType, b, n)
		x := state
		if nodeMask != nil {
			x = Mul(x, nodeMask)
		}
		h := BroadcastToDims(Reshape(graphutil.TimeScalar(t, cfg.DType), 1, 1, 1), b, n, 1)
		pairs := egnn.NewPairs(x) // edge attribute r_ij, reused by the first EGNN layer
		_, xL := egnn.EGNNWithPairs(ctx.In(Scope), cfg, h, x, pairs, pairs.Radial, nodeMask, nil)
		return graphutil.RemoveMean(Sub(xL, x), nodeMask)
	}
}

// QM9Config returns cfg with the fields fixed by the QM9 dynamics for a state of C channels
// (3 coordinates + C−3 features): InNodeF = OutNodeF = C−3+1 (features + time), EdgeAttrF = 1.
func QM9Config(cfg egnn.Config, channels int) egnn.Config {
	cfg.InNodeF, cfg.OutNodeF, cfg.EdgeAttrF = channels-3+1, channels-3+1, 1
	return cfg.WithDefaults()
}

// QM9 returns the QM9 E-NF dynamics (REFERENCE §4.5, EGNN_dynamics_QM9._forward) for states
// (B, N, 3+F) = [x, h]:
//
//	x = state_x·mask, h_in = [state_h·mask, t] (time appended as the last feature),
//	edge_attr = ‖x_i − x_j‖² of the input x, edges = all i≠j pairs of real nodes,
//	(h_out, x_L) = EGNN(h_in, x), vel_x = (x_L − x)·mask minus its masked mean over nodes,
//	vel_h = h_out without its last (time) column; output [vel_x, vel_h].
//
// cfg is typically egnn.QM9Config(); InNodeF, OutNodeF and EdgeAttrF are set from the state
// width as in QM9Config. Slicing and concatenation along the channel axis are done with
// constant selection matrices (matrix products), keeping the Func twice differentiable on
// SimpleGo.
//
// Tested here for equivariance, padding invariance and mean-freeness, and in gomlx_models/qm9
// against the official PyTorch modules with the published checkpoint (REFERENCE §4.7,
// TestReferenceIntermediates).
func QM9(cfg egnn.Config) Func {
	return func(ctx *context.Context, t, state, mask *Node) *Node {
		if state.Rank() != 3 || state.Shape().Dimensions[2] < 4 {
			panic(fmt.Sprintf("dynamics.QM9: state must be (B,N,3+F) with F ≥ 1, got %s", state.Shape()))
		}
		dims := state.Shape().Dimensions
		b, n, c := dims[0], dims[1], dims[2]
		f := c - 3
		ecfg := QM9Config(cfg, c)
		checkState(ecfg, state, c)
		g := state.Graph()
		dt := ecfg.DType
		nodeMask := graphutil.NodeMask(mask, ecfg.DType, b, n)
		if nodeMask != nil {
			state = Mul(state, nodeMask)
		}
		// Channel selection matrices: state·selX = x (C×3), state·selH = h (C×F);
		// h·embedH + t·lastCol = [h, t] (F×(F+1)); hOut·dropT = hOut[:, :F] ((F+1)×F).
		x := graphutil.Dense(state, graphutil.Selection(g, dt, c, 3, 0, 0))
		h := graphutil.Dense(state, graphutil.Selection(g, dt, c, f, 3, 0))
		hIn := graphutil.Dense(h, graphutil.Selection(g, dt, f, f+1, 0, 0))
		lastCol := make([]float64, f+1)
		lastCol[f] = 1
		tCol := Mul(Reshape(graphutil.TimeScalar(t, ecfg.DType), 1, 1, 1),
			Reshape(ConstAsDType(g, dt, lastCol), 1, 1, f+1))
		hIn = Add(hIn, tCol)
		pairs := egnn.NewPairs(x) // edge attribute r_ij, reused by the first EGNN layer
		hOut, xL := egnn.EGNNWithPairs(ctx.In(Scope), ecfg, hIn, x, pairs, pairs.Radial, nodeMask, nil)
		velX := Sub(xL, x)
		if nodeMask != nil {
			velX = Mul(velX, nodeMask)
		}
		velX = graphutil.RemoveMean(velX, nodeMask)
		velH := graphutil.Dense(hOut, graphutil.Selection(g, dt, f+1, f, 0, 0))
		// [vel_x, vel_h] = vel_x·selXᵀ + vel_h·selHᵀ.
		return Add(graphutil.Dense(velX, graphutil.Selection(g, dt, 3, c, 0, 0)),
			graphutil.Dense(velH, graphutil.Selection(g, dt, f, c, 0, 3)))
	}
}

func checkState(cfg egnn.Config, state *Node, channels int) {
	if state.Rank() != 3 {
		panic(fmt.Sprintf("dynamics: state must be (B,N,C), got %s", state.Shape()))
	}
	if state.DType() != cfg.DType {
		panic(fmt.Sprintf("dynamics: state dtype %s differs from the model's Config.DType %s", state.DType(), cfg.DType))
	}
	if channels > 0 && state.Shape().Dimensions[2] != channels {
		panic(fmt.Sprintf("dynamics: state must have %d channels, got %s", channels, state.Shape()))
	}
}
