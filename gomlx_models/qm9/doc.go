// Package qm9 is the QM9 E(n) equivariant normalizing flow of Satorras et al. (E-NF, NeurIPS
// 2021) with atom types and charges, matched to the published en_flows checkpoint
// (outputs/en_flows_pretrained; REFERENCE.md §3.3, §3.4, §4).
//
// A molecule is x (N×3, Å, centred) and h = [one_hot(H,C,N,O,F), charge] (N×6). The model is
//
//	(v, log q) = ArgmaxAndVariationalDequantizer(x, h)   (Dequantize; EGNN 4 layers, 6 → 12)
//	y = ActNorm([x, v])                                   (ActNormForward; log-det over N·3 + N·6 dims)
//	z = y + ∫₀¹ f(t, y) dt                                (package cnf, PosDims = 3)
//	f = EGNN_dynamics_QM9                                 (dynamics.QM9; EGNN 6 layers, hidden 64,
//	                                                      attention, tanh·15/6, time feature)
//
// and the variational bound on log p(x, h, N), per molecule (Model.LogLikelihood, Terms):
//
//	log p_z(z_x) + log p_z(z_h) + ∫₀¹ tr(∂f/∂y) dt + ActNorm log-det − log q(v|x,h) + log p(N),
//
// with the CoG-free Gaussian on z_x ((N−1)·3 dof), a standard normal on z_h and p(N) the QM9
// train size histogram (metrics.LogPN). NLL = −(mean over molecules). Batches are padded to
// their largest molecule with node masks; every operation is masked, so a molecule gets the same
// terms alone or padded (TestPaddingInvariance).
//
// Sampling (Model.Sample) draws N ~ p(N), z ~ prior, integrates from t = 1 to 0, applies
// ActNorm⁻¹ and decodes atom types by argmax and charges by floor, batching molecules of the same
// size into one solve.
//
// Variables live under the model's root context: "actnorm" (x_log_s, h_t, h_log_s),
// "dequantizer/egnn/…" and "flow/egnn/…" (the layout of egnn.ImportTorch). ImportTorch maps the
// 88 + 48 PyTorch tensors onto them (package torchimport reads the files); SaveCheckpoint and
// LoadCheckpoint store them as a GoMLX checkpoint with a model.json (Spec).
//
// Verified against the official PyTorch modules (float64, published weights): the §4.7
// intermediate values to 1e-5 (TestReferenceIntermediates) and per-molecule NLLs in the
// deterministic mode (ε = 0, exact trace, fixed-step RK4; TestNLLMatchesPyTorch).
package qm9
