// Package table stores datasets and results as columnar tables: one row per molecule or
// per particle configuration, in Apache Parquet (.parquet) or the Arrow IPC file format
// (.arrow, a.k.a. Feather v2), both through github.com/apache/arrow-go/v18 with one Arrow
// schema. The writer picks the format from the extension (FormatOf); readers recognise the
// file by its magic bytes.
//
//   - Parquet files are zstd-compressed, have one row group per BatchRows (4096) rows and
//     carry the Arrow schema in the footer (key "ARROW:schema"), so Arrow readers get the
//     exact types back. Use them for storage and for DuckDB / pandas / Polars.
//   - Arrow IPC files are uncompressed record batches of BatchRows rows, memory-mappable and
//     readable by every Arrow implementation (pyarrow.feather, Polars, apache-arrow JS).
//
// Writers stream (memory bounded by one batch) and are atomic (etl/atomicfile): the file
// appears only on Commit, and Abort leaves nothing. Readers (Read*, Scan*) stream too, check
// the schema tag and every column, and report errors with the file, row index, id and column.
// They accept files that other tools rewrote (e.g. DuckDB COPY … TO 'x.parquet', which drops
// the key-value metadata and turns fixed-size lists into lists): column names must match
// exactly, while any integer width, float32/float64, string/large_string/dictionary and
// list/large_list/fixed_size_list encodings are accepted.
//
// Files may be untrusted: before arrow-go sees a file, the readers validate its footer (the
// Arrow IPC Footer flatbuffer, the Parquet Thrift FileMetaData and the Arrow schema stored
// in it) and bound the buffer and page sizes arrow-go allocates, so a forged length, offset
// or nesting is an error naming the file instead of gigabytes of allocation or a fatal stack
// overflow (see checkFooter).
//
// Conventions in every table: a NaN float is stored as null (and read back as NaN), an empty
// string as null (read back as ""), a nil slice as a null list (an empty non-nil slice is an
// empty list). NaN inside a list column is stored as NaN.
//
// # Molecule table (schema tag "molecule/v1")
//
// Key-value metadata: enflow.schema = "molecule/v1"; enflow.units = a JSON object mapping
// column → unit, e.g. {"positions":"angstrom","gap":"hartree",…}.
//
//	| column           | Arrow type                              | null | DuckDB type | content                                                          |
//	|------------------|-----------------------------------------|------|-------------|------------------------------------------------------------------|
//	| `id`             | int64                                   | no   | BIGINT      | 1-based GDB-9 index (QM9) or input order (etl molecules)         |
//	| `split`          | string                                  | yes  | VARCHAR     | `train`, `valid`, `test`; null if unassigned                     |
//	| `n_atoms`        | int32                                   | no   | INTEGER     | 1–4096 (molecule.MaxMoleculeAtoms; QM9: 1–29) = `len(z)` = `len(positions)` |
//	| `z`              | list<int32>                             | no   | INTEGER[]   | atomic numbers 1–118 (QM9: 1 H, 6 C, 7 N, 8 O, 9 F)               |
//	| `positions`      | list<fixed_size_list<float64, 3>>       | no   | DOUBLE[][]  | Cartesian coordinates, Å, raw frame (not centred); `[atom][xyz]` |
//	| `mulliken`       | list<float64>                           | yes  | DOUBLE[]    | Mulliken partial charges, e (raw archive only)                   |
//	| `A`, `B`, `C`    | float64                                 | yes  | DOUBLE      | rotational constants, GHz                                        |
//	| `mu`             | float64                                 | yes  | DOUBLE      | dipole moment, D                                                 |
//	| `alpha`          | float64                                 | yes  | DOUBLE      | isotropic polarizability, Bohr³                                  |
//	| `homo`, `lumo`, `gap` | float64                            | yes  | DOUBLE      | orbital energies and gap, Hartree                                |
//	| `r2`             | float64                                 | yes  | DOUBLE      | electronic spatial extent, Bohr²                                 |
//	| `zpve`           | float64                                 | yes  | DOUBLE      | zero-point vibrational energy, Hartree                           |
//	| `U0`, `U`, `H`, `G` | float64                              | yes  | DOUBLE      | internal energy at 0 K / 298 K, enthalpy, free energy, Hartree   |
//	| `Cv`             | float64                                 | yes  | DOUBLE      | heat capacity at 298 K, cal/(mol·K)                              |
//	| `omega1`         | float64                                 | yes  | DOUBLE      | largest harmonic frequency, cm⁻¹                                 |
//	| `freqs`          | list<float64>                           | yes  | DOUBLE[]    | harmonic frequencies, cm⁻¹ (raw archive only)                    |
//	| `smiles`, `smiles_relaxed` | string                        | yes  | VARCHAR     | GDB-17 and B3LYP-relaxed SMILES (raw archive only)               |
//	| `inchi`, `inchi_relaxed`   | string                        | yes  | VARCHAR     | GDB-17 and B3LYP-relaxed InChI (raw archive only)                |
//	| `name`           | string                                  | yes  | VARCHAR     | title: SDF header line, plain-XYZ comment line (etl molecules)   |
//	| `source`         | string                                  | yes  | VARCHAR     | origin "file#record" (record 1-based; etl molecules)             |
//	| `formal_charges` | list<int32>                             | yes  | INTEGER[]   | per-atom formal charges (SDF M  CHG / atom block)                |
//	| `bonds`          | list<fixed_size_list<int32, 3>>         | yes  | INTEGER[3][]| `[atom_a, atom_b, order]`, 0-based atoms, SDF bond type 1–8      |
//	| `properties`     | string                                  | yes  | VARCHAR     | JSON object of per-molecule properties (extxyz key=value, SDF data items): numbers or strings |
//
// The last five columns are optional for readers: files written before they existed read
// with them null. In the Go record they are Molecule.Name, Source, FormalCharges, Bonds and
// Properties (an empty map is stored as null). DuckDB: `json_extract(properties, '$.energy')`.
//
// The 15 property columns are named exactly as molecule.PropertyNames, in that order, and
// hold the values of molecule.Molecule.Props (units of the raw archive, as documented there);
// null where unknown. The names are distinct even case-insensitively, so DuckDB resolves
// `SELECT u0, cv FROM …` without quoting; pandas and Polars are case-sensitive (`df["U0"]`).
//
// Design choices: positions are one nested column rather than three x/y/z lists so that a
// molecule's geometry stays one value (`np.stack(row.positions)` → (n, 3); in Polars it is
// List(Array(Float64, 3)); in DuckDB `positions[i][k]`, 1-based; a DuckDB rewrite of the
// file reads back unchanged, see TestDuckDBAndArrowJS). z is int32 rather than int8 because
// Parquet stores both as dictionary-encoded INT32 anyway, while int8 arithmetic in numpy or
// pandas (z * z) overflows silently. split is a plain string because Parquet
// dictionary-encodes it on disk anyway and an Arrow dictionary column complicates IPC files
// (and JS/pandas categoricals). Element symbols are not stored: derive them from z.
//
// Examples (DuckDB):
//
//	SELECT split, count(*), avg(gap) FROM 'qm9.parquet' GROUP BY split;
//	SELECT id, positions[1] AS first_atom FROM 'qm9.parquet' WHERE id = 42;
//	SELECT id, unnest(z) AS z, unnest(positions) AS xyz FROM 'qm9.parquet' LIMIT 10;
//
// # Particle-configuration table (schema tag "particles/v1")
//
//	| column        | Arrow type    | null | DuckDB type | content                                                         |
//	|---------------|---------------|------|-------------|-----------------------------------------------------------------|
//	| `id`          | int64         | no   | BIGINT      | row index in the source file / generation order                 |
//	| `split`       | string        | yes  | VARCHAR     | `train`, `val`, `test`; null if unassigned                      |
//	| `system`      | string        | no   | VARCHAR     | `dw4` or `lj13`                                                 |
//	| `n_particles` | int32         | no   | INTEGER     | particles (4 or 13)                                             |
//	| `dim`         | int32         | no   | INTEGER     | spatial dimension (2 or 3)                                      |
//	| `positions`   | list<float64> | no   | DOUBLE[]    | flattened particle-major `x0, y0[, z0], x1, …`, length n_particles·dim |
//	| `energy`      | float64       | yes  | DOUBLE      | energy under the system's potential (each pair once)            |
//
// Optional columns, after these (ConfigRecordWriter, ReadConfigRecords; ReadConfigs and
// other readers ignore them):
//
//	| `log_q`       | float64       | yes  | DOUBLE      | log density of the row under the flow that made it, nats        |
//	| `state_id`    | int64         | yes  | BIGINT      | metastable state from `enflow minimize` (0 = lowest energy)      |
//
// Key-value metadata: enflow.schema = "particles/v1", enflow.units (reduced units).
// Positions are flat (not nested like molecules) because every row of a file has the same
// shape: `np.stack(df.positions).reshape(-1, n_particles, dim)`.
//
// # Other tables
//
// RowWriter writes flat tables of string / int64 / float64 / bool columns row by row (for
// results and metrics); WriteRecords writes any Arrow schema built with an
// array.RecordBuilder; ScanRecords and Schema read any Parquet or Arrow IPC file. Give such
// tables their own "enflow.schema" tag (e.g. "metrics/v1") in the metadata.
package table
