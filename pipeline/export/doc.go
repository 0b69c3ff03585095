// Package export writes the job runner's results and samples as single Arrow IPC (.arrow) or
// Parquet (.parquet) files with documented schemas, for DuckDB, pandas, Polars or Arrow JS:
//
//	enflow export --results out/jobs/table1_dw4 --out table1_dw4.parquet
//	enflow export --samples out/jobs/table1_dw4 --out table1_dw4_samples.arrow
//
// The results parts themselves (STATE/results/part-*.parquet) already form one table for
// DuckDB — SELECT … FROM 'out/jobs/table1_dw4/results/*.parquet' — and the export is the same
// rows in one file (optionally deduplicated, see Options.Dedupe), less the rows of stale units
// (no longer in their spec's manifest, see Options.AllUnits), which the parts still hold. Both
// files carry the key-value metadata enflow.schema ("results/v1" or "samples/v1"). Arrow IPC files are
// uncompressed record batches; Parquet files are zstd-compressed with the Arrow schema in the
// footer (see etl/table).
//
// # Results table (schema tag "results/v1")
//
// One row per metric of a finished unit. A unit's rows are written once, in one part file
// results/part-<UTC time>-<unit>.parquet, when the unit finishes.
//
//	| column        | Arrow type              | null | DuckDB type | content                                                                 |
//	|---------------|-------------------------|------|-------------|-------------------------------------------------------------------------|
//	| `unit`        | string                  | no   | VARCHAR     | unit ID: first 16 hex digits of unit_hash                               |
//	| `unit_hash`   | string                  | no   | VARCHAR     | SHA-256 of the unit's identity (normalized spec, input hashes, code)    |
//	| `parent_unit` | string                  | yes  | VARCHAR     | attached evaluations: the training unit's ID                            |
//	| `spec_name`   | string                  | no   | VARCHAR     | the spec's name (e.g. `table1_dw4`)                                     |
//	| `spec_path`   | string                  | yes  | VARCHAR     | absolute path of the spec file                                          |
//	| `unit_kind`   | string                  | no   | VARCHAR     | `train`, `nll`, `energy`, `stability`, `js`                             |
//	| `dataset`     | string                  | no   | VARCHAR     | `dw4`, `lj13`, `qm9`, `qm9-positional`                                  |
//	| `model`       | string                  | yes  | VARCHAR     | model kind (`enf`, `simple`, `kernel`, `gnf`, `gnf-att`, `gnf-att-aug`, …); null for standalone evaluations |
//	| `n_data`      | int64                   | yes  | BIGINT      | training-set size; null for standalone evaluations                      |
//	| `seed`        | int64                   | yes  | BIGINT      | training seed (attached evaluations: their training unit's)             |
//	| `label`       | string                  | yes  | VARCHAR     | standalone evaluations: e.g. `data`                                     |
//	| `metric`      | string                  | no   | VARCHAR     | metric name, see below                                                  |
//	| `value`       | float64                 | yes  | DOUBLE      | the number; null for detail-only metrics and NaN                        |
//	| `detail`      | string (JSON)           | yes  | VARCHAR     | JSON detail: curves, histograms, per-element stability, eval settings   |
//	| `unit_spec`   | string (JSON)           | no   | VARCHAR     | canonical JSON of the normalized unit spec (overrides, eval options)    |
//	| `artifact`    | string                  | yes  | VARCHAR     | run directory or sample file, relative to the state directory           |
//	| `code_version`| string                  | no   | VARCHAR     | code version in the identity (`git:<rev>[+dirty]`, `bin:<hash>`, or $ENFLOW_CODE_VERSION) |
//	| `git_rev`     | string                  | yes  | VARCHAR     | git revision of the code                                                |
//	| `go_version`  | string                  | no   | VARCHAR     | Go toolchain of the scheduler                                           |
//	| `backend`     | string                  | no   | VARCHAR     | GoMLX backend (spec, else $GOMLX_BACKEND, else `default`)               |
//	| `host`        | string                  | no   | VARCHAR     | host name of the scheduler                                              |
//	| `started_at`  | timestamp[us, UTC]      | no   | TIMESTAMP WITH TIME ZONE | start of the attempt that finished the unit            |
//	| `ended_at`    | timestamp[us, UTC]      | no   | TIMESTAMP WITH TIME ZONE | end of that attempt                                    |
//	| `wall_s`      | float64                 | yes  | DOUBLE      | wall time of that attempt, seconds (a resumed training adds its earlier attempts in `train_wall_s`) |
//	| `attempt`     | int64                   | no   | BIGINT      | attempt number (1 = first try)                                          |
//	| `resumed`     | bool                    | no   | BOOLEAN     | the attempt resumed from a checkpoint (or reused samples)               |
//	| `recorded_at` | timestamp[us, UTC]      | no   | TIMESTAMP WITH TIME ZONE | when the part was written                              |
//
// Metrics per unit_kind:
//
//	| unit_kind   | metric             | value                                                                 | detail (JSON)                               |
//	|-------------|--------------------|-----------------------------------------------------------------------|---------------------------------------------|
//	| `train`     | `test_nll`         | test NLL (nats) at the epoch of best validation NLL — the paper's number |                                          |
//	| `train`     | `best_val_nll`     | best validation NLL                                                   |                                             |
//	| `train`     | `best_epoch`, `epochs`, `steps` | epoch of best validation (0-based), epochs and optimizer steps done |                                   |
//	| `train`     | `last_train_nll`   | mean training NLL of the last epoch                                  |                                             |
//	| `train`     | `train_wall_s`     | total training wall time over all attempts, seconds                   |                                             |
//	| `train`     | `curve`            | null                                                                  | `{"epoch":[…],"step":[…],"train_nll":[…],"val_nll":[…],"test_nll":[…],"wall_s":[…]}` (null where not evaluated), from metrics.parquet |
//	| `nll`       | `nll`, `n`, `nfe`  | re-evaluated NLL of the best checkpoint, examples, dynamics evaluations | `{"split","trace","solver","rtol","atol","batches"}` on `nll` |
//	| `energy`    | `mean_energy`, `median_energy`, `std_energy` | energies of the samples (finite ones)        |                                             |
//	| `energy`    | `frac_finite`, `n_samples` | fraction of samples with a finite energy, number of samples    |                                             |
//	| `energy`    | `data_mean_energy`, `data_median_energy`, `data_std_energy` | the same for the test split |                                      |
//	| `energy`    | `energy_hist`      | null                                                                  | `{"lo","hi","bins","samples":[…],"data":[…],"samples_under","samples_over","data_under","data_over","samples_non_finite"}` |
//	| `stability` | `atom_stable`, `mol_stable` | fractions of stable atoms and molecules (REFERENCE §3.1)     |                                             |
//	| `stability` | `n_molecules`      | molecules evaluated                                                   |                                             |
//	| `stability` | `stability_detail` | null                                                                  | per-element atoms, stable atoms and valence tables |
//	| `js`        | `js`, `sym_kl`     | JS divergence and symmetric KL of relative distances vs analyzed_19 (REFERENCE §3.2) |                              |
//	| `js`        | `n_molecules`      | molecules with n_atoms atoms evaluated                                |                                             |
//	| `js`        | `distance_hist`    | null                                                                  | `{"bins":100,"max":13,"samples":[…],"reference":[…],"reference_name"}` |
//
// Examples (DuckDB):
//
//	SELECT model, n_data, avg(value) AS test_nll, count(*) AS seeds
//	  FROM 'out/jobs/table1_dw4/results/*.parquet'
//	  WHERE unit_kind = 'train' AND metric = 'test_nll' GROUP BY ALL ORDER BY ALL;
//	SELECT unit, metric, value, host, git_rev, wall_s FROM 'results.parquet' ORDER BY recorded_at;
//	SELECT unnest(from_json(detail, '{"epoch":["BIGINT"],"train_nll":["DOUBLE"]}'), recursive := true)
//	  FROM 'results.parquet' WHERE metric = 'curve' LIMIT 5;
//
// # Samples table (schema tag "samples/v1")
//
// The particle configurations drawn by the energy evaluations of finished units, one row per
// sample, with the unit's metadata (the per-unit files are particles/v1 tables, see etl/table).
//
//	| column        | Arrow type    | null | DuckDB type | content                                                           |
//	|---------------|---------------|------|-------------|-------------------------------------------------------------------|
//	| `unit`        | string        | no   | VARCHAR     | the evaluation unit that drew the samples                         |
//	| `parent_unit` | string        | yes  | VARCHAR     | the training unit of the sampled model                            |
//	| `spec_name`   | string        | yes  | VARCHAR     | spec name                                                         |
//	| `dataset`     | string        | no   | VARCHAR     | `dw4` or `lj13`                                                   |
//	| `model`       | string        | yes  | VARCHAR     | model kind                                                        |
//	| `n_data`      | int64         | yes  | BIGINT      | training-set size of the sampled model                            |
//	| `seed`        | int64         | yes  | BIGINT      | training seed of the sampled model                                |
//	| `sample_id`   | int64         | no   | BIGINT      | sample index within the unit (0-based)                            |
//	| `n_particles` | int32         | no   | INTEGER     | particles (4 or 13)                                               |
//	| `dim`         | int32         | no   | INTEGER     | spatial dimension (2 or 3)                                        |
//	| `positions`   | list<float64> | no   | DOUBLE[]    | flattened particle-major `x0, y0[, z0], x1, …`, mean-free         |
//	| `energy`      | float64       | yes  | DOUBLE      | energy under the system's potential; null if not finite           |
//
// Example: SELECT model, n_data, avg(energy), count(*) FROM 'samples.parquet' GROUP BY ALL;
package export
