// Package train is the training, evaluation and sampling driver of enflow for the particle
// systems (DW4, LJ13), following en_flows' main_dw4_lj13.py (REFERENCE §1.4, §4.6):
//
//   - data: the ETL Parquet splits DIR/{dw4|lj13}_{train,val,test}.parquet; training uses the
//     first n_data rows of train, in batches reshuffled every epoch by a seeded RNG, the last
//     incomplete batch dropped;
//   - optimisation: AdamW with AMSGrad (gomlx_models/optim), lr 5e-4, weight decay 1e-12,
//     applied by a compiled step graph to gradients computed by the model from Go;
//   - evaluation: every TestEvery epochs (epoch % TestEvery == 0, 0-based), val and test NLL =
//     mean over batches of 100 of the batch-mean NLL; the reported number is the test NLL at
//     the epoch of best validation NLL, whose checkpoint is kept in OUT/best;
//   - bookkeeping: GoMLX checkpoints (last N + best) carrying the driver state (epoch, batch,
//     step, RNG state), so --resume continues the same data order and seeds; per-epoch
//     metrics.csv and metrics.parquet; result.json; cancellation (SIGINT/SIGTERM through the
//     context) checkpoints the exact position and returns ErrInterrupted.
//
// The model is pluggable (Model, RegisterModel): "enf" is the E-NF (EGNN dynamics integrated
// by gomlx_models/cnf), "gaussian" a tiny exactly tractable stand-in for tests. The datasets
// are pluggable too (Dataset), for QM9 later.
package train
