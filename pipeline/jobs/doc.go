// Package jobs runs declarative batch jobs: a TOML spec lists experiments (dataset × model ×
// n_data × seed, with training overrides) and evaluations; the runner expands it into units,
// runs those not finished yet through enflow train / eval / sample, and appends every result,
// with its run metadata, to an append-only results table (STATE/results/part-*.parquet).
//
// # Spec format (TOML)
//
// TOML was chosen over YAML for its unambiguous types (1 is an integer, 1.0 a float, "1" a
// string: the normalized spec, and so the unit identity, does not depend on YAML's implicit
// typing) and its explicit arrays of tables ([[experiment]]). Unknown keys are errors.
//
//	name          = "table1_dw4"              # default: the file name
//	description   = "…"
//	data_dir      = "${ENFLOW_OUT:-out}/data"  # ETL output: {dataset}_{train,val,test}.parquet (molecules: _valid)
//	state_dir     = "${ENFLOW_OUT:-out}/jobs/table1_dw4"  # default out/jobs/<name>; --state wins
//	backend       = ""                        # --backend of enflow train/eval/sample
//	code_identity = "revision"                # or "ignore" (see Identity)
//	max_attempts  = 3                         # failures before a unit is skipped (--retry-failed)
//	extra_args    = []                        # appended to every enflow train command
//
//	[train]                                   # overrides for every experiment: enflow train flags
//	epochs = 3                                #   without "--" ("_" may replace "-"): epochs,
//	max-steps-per-epoch = 2                   #   test-every, batch, eval-batch, eval-n, keep,
//	solver = "rk4"                            #   hidden, layers, steps, max-steps-per-epoch,
//	                                          #   js-samples (int); lr, wd, rtol, atol, reg,
//	                                          #   clip-grad (float); clip-adaptive (bool); dtype,
//	                                          #   solver, trace, noise, grad, val-trace,
//	                                          #   test-trace (string); Boltzmann generators:
//	                                          #   objective (ml | kl | ml+kl), lambda ("1.0:0.5"
//	                                          #   or 0.5), energy, temperature, kl-samples,
//	                                          #   energy-cut.
//	                                          #   Omitted: enflow train's defaults, i.e. the
//	                                          #   paper's schedule for n_data (REFERENCE §1.4).
//	[[experiment]]                            # one or more
//	name    = "dw4"                           # optional label
//	dataset = "dw4"                           # dw4 | lj13 | qm9 | qm9-positional | molecules
//	models  = ["enf", "kernel"]               # enflow train --model values
//	n_data  = [100, 1000]
//	seeds   = [1, 2]                          # default [1]
//	data_dir = "dw4_mcmc"                     # optional: this experiment's data (relative: below
//	                                          #   the spec's data_dir / --data); in the identity
//	finetune = { objective = "ml+kl", lambda = "1.0:0.5", epochs = 20 }
//	                                          # optional: a second training stage per unit, from
//	                                          #   the first stage's weights (see Two-stage units)
//	[experiment.train]                        # overrides for this experiment (win over [train])
//	extra_args = []
//
//	[[evaluation]]                            # attached: runs on every training unit it applies to
//	kind     = "energy"                       # nll | energy | stability | js | ess | states
//	datasets = ["dw4"]                        # optional filters
//	models   = ["enf"]
//	n        = 1000                           # samples drawn (energy, stability, js; default 1000)
//	seed     = 1                              # default 1
//	bins     = 60                             # energy histogram bins
//	split    = "test"                         # nll: test | val | train
//	trace    = "exact"                        # nll: trace estimator override
//	solver, rtol, atol, steps, batch          # nll and sampling: model overrides
//	n_atoms  = 19                             # js: molecule size
//	temperature = 1.0                         # ess: target T (default 1)
//	energy   = "dw4"                          # ess, states: target energy (default the dataset's)
//
//	[[evaluation]]                            # standalone: evaluates a given table
//	kind    = "stability"
//	dataset = "qm9"
//	samples = "${ENFLOW_OUT:-out}/data/qm9_test.parquet"
//	label   = "data"                          # the row label in the report (default "data")
//
// Evaluation kinds: nll re-evaluates the best checkpoint with enflow eval (the training unit
// already records the protocol's test NLL at the best validation epoch); energy samples with
// enflow sample and compares sample energies with the test split (DW4, LJ13); stability
// (QM9) and js (QM9, QM9 Positional; JS divergence of relative distances against analyzed_19,
// REFERENCE §3.2) evaluate molecule tables, sampled or given. ess (DW4, LJ13) samples with
// enflow sample --log-weights and runs enflow metrics ess (metrics ess, ess_fraction,
// mean_u_samples, mean_u_reweighted, mean_u_reweighted_stderr, max_log_w, n_samples,
// n_infinite_u, ess_detail); states (DW4, LJ13; also standalone on a table) minimises the
// samples with enflow minimize (metastable_states, n_states, converged, converged_fraction,
// minima, failed, n_samples, lowest_minimum_energy, states_detail with every state's energy).
// For the report's pictures they also write small JSON files in the unit directory, named in
// their detail: ess the marginal of particle 1 relative to the centre of mass, samples vs the
// training and test splits (marginal_x1.json, histogram counts only), states a few samples
// before and after minimisation and the first training configuration (configurations.json).
//
// # Two-stage units
//
// An experiment with finetune trains each unit in two run directories: STATE/units/<unit>/run
// (stage 1, the experiment's overrides) and STATE/units/<unit>/finetune (stage 2: enflow train
// --init-from run with the overrides merged with finetune). Each stage is resumed or recorded
// on its own, exactly as a one-stage unit; stage 2 starts only when stage 1 is complete.
// The unit's results carry stage 2's metrics under the usual names, stage 1's prefixed
// stage1_ (Stage1Prefix), and a stages metric (StageInfo detail). Attached evaluations
// evaluate stage 2.
//
// # Units and identity
//
// Each experiment expands to one training unit per model × n_data × seed, followed by its
// attached evaluation units; standalone evaluations come last. A unit's identity is the
// SHA-256 of a canonical JSON document holding its normalized spec (overrides typed and
// sorted, defaults filled in), its inputs (each data file's role, size and SHA-256 — content,
// not path or mtime, so a copied data directory keeps the identities) and the code version
// (DetectCode: $ENFLOW_CODE_VERSION, else the binary's VCS stamp, else `git rev-parse HEAD`
// plus "+dirty", else the executable's hash). Attached evaluations hash their training unit's
// identity instead of inputs and code. With code_identity = "ignore" the code version is
// recorded but not hashed, so finished units survive code changes.
//
// # Running
//
// Run executes the units of its shard in order, one at a time. For each unit it: skips it when
// a results part exists (finished); takes the unit's lock or skips it when another scheduler
// holds it (no waiting: see LockMode); re-checks for a part under the lock; skips it after
// max_attempts failures; writes unit.json; runs it; writes the results part atomically
// (results/part-<UTC time>-<unit>.parquet, never rewritten) and done.json; appends the attempt
// to attempts.jsonl. A training unit whose run directory has a checkpoint resumes with
// enflow train --resume; if that fails, the directory is moved aside (run.failed-<time>) and
// training restarts cleanly; a run directory with a complete result.json is recorded without
// retraining. Evaluation units reuse a complete samples.parquet. Sharding (--shard i/n)
// assigns unit groups — a training unit with its evaluations — by hash, so shards never wait
// for each other.
//
// # Stale units
//
// Editing a spec (or its data, or the code with code_identity = "revision") gives units new
// identities; the old units' directories and results parts stay (parts are never rewritten).
// Every Run therefore first records the units of the whole spec's expansion in
// STATE/manifests/<spec>.json (WriteManifest: temporary file, fsync, rename; the content
// depends on the spec, data and code only, so the shards of an array job write the same
// bytes; a plan with missing input files keeps the previous manifest). A unit whose results
// name a spec with a manifest but which is not in it is stale (SplitStale): enflow report
// leaves it out unless --all-units, StatusOf lists it, and Prune moves stale units to
// STATE/pruned/<UTC time>/. Specs without a manifest (older state directories) show every unit.
//
// Commands run as child processes of the same binary (Subprocess): a crash of a backend does
// not take the scheduler down, SIGINT/SIGTERM are forwarded as SIGTERM (enflow train then
// checkpoints and exits; the unit resumes next time), and on Linux the child dies with the
// scheduler (Pdeathsig).
//
// The results table schema (results/v1) is documented in pipeline/export.
package jobs
