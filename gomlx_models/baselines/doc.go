// Package baselines holds the velocity fields of the baselines of "E(n) Equivariant
// Normalizing Flows" (Satorras et al., NeurIPS 2021, Tables 1–3), as dynamics.Func values that
// plug into the same CNF (package cnf) as the E-NF dynamics:
//
//   - Simple: "simple dynamics" of Köhler, Klein & Noé (2020), the negative gradient of a learned
//     pairwise potential Σ_{i≠j} g(‖x_i − x_j‖) with g a tanh MLP on normalised RBFs of the
//     distance (en_flows deprecated/eqnode/dynamics.py::SimpleEqDynamics). E(n) equivariant,
//     time independent.
//   - Kernel / KernelWithDivergence: "kernel dynamics" of Köhler et al. (2020), the radial field
//     v_i = Σ_j φ(d_ij, t)·(x_i − x_j) with φ a learned linear combination of distance RBFs
//     modulated by time RBFs (KernelDynamics), with its divergence in closed form. E(n)
//     equivariant. Presets KernelConfigDW4 / KernelConfigLJ13 as in en_flows.
//   - GNN: the GNF dynamics (en_flows EGNN_dynamics with mode "gnn_dynamics"): a plain GNN on
//     node features [t, x_i], not rotation equivariant; GNF = no attention, GNF-att = attention,
//     GNF-att-aug = attention and random rotations of the training batches (RotateBatch).
//
// Conventions follow package dynamics: state (B,N,D), mask (B,N) of 0/1 or nil, t a scalar;
// the velocity is mean-free over (real) nodes; variables are created on first use under a
// per-model sub-scope of ctx (ScopeSimple, ScopeKernel, ScopeGNN) and reused afterwards; graph
// functions panic on invalid input and configs have Validate methods. Only matrix products,
// element-wise ops, reductions, broadcasts and reshapes are used (no Slice/Concatenate), so the
// fields can be differentiated to the order the CNF needs on SimpleGo.
//
// Analytic divergence: KernelWithDivergence returns tr(∂v/∂x) in closed form, as en_flows does
// for kernel dynamics. Package cnf (v0.26-era API of this repository) has no hook for a
// user-supplied divergence, so the training pipeline currently uses cnf's autodiff traces
// (exact or Hutchinson) for every model; a hook taking a DivergenceFunc would let the CNF use it.
package baselines
