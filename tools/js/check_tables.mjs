#!/usr/bin/env node
// Cross-checks enflow tables (etl/table) with independent readers: the Parquet file through
// DuckDB (@duckdb/node-api) and the Arrow IPC file through apache-arrow's tableFromIPC.
//
// Usage:
//   node check_tables.mjs [--parquet FILE.parquet] [--arrow FILE.arrow] [--id N]...
//                         [--rewrite OUT.parquet]
//
// --rewrite also copies the Parquet file through DuckDB
// (COPY (SELECT * FROM read_parquet(FILE)) TO OUT (FORMAT parquet)), so that the caller can
// check that a DuckDB-written file still reads back.
//
// Prints one JSON object on stdout:
//   { "versions": {...},
//     "parquet": Summary,   // when --parquet is given
//     "arrow":   Summary }  // when --arrow is given
// where Summary has the same keys for both readers:
//   schema      the "enflow.schema" metadata value ("molecule/v1" or "particles/v1")
//   metadata    all key-value metadata except ARROW:schema
//   columns     [name, …] in file order;  types {name: reader's type name}
//   rows, min_id, max_id, sums {…}, non_null {column: count}
//   rows_by_id  {"<id>": {column: value, …}} for every --id, all columns, lists as arrays,
//               null for nulls; int64 become numbers (strings beyond 2^53)
// and, for Parquet only, row_groups, compression and lowercase (DuckDB resolving
// case-insensitive names like u0, cv for every --id), for Arrow only, batches.
// Exit status: 0 on success, 2 on bad usage or an unreadable file (message on stderr).

import { readFileSync } from 'node:fs';
import { DuckDBInstance } from '@duckdb/node-api';
import { tableFromIPC, Vector } from 'apache-arrow';

const PROPS = ['A', 'B', 'C', 'mu', 'alpha', 'homo', 'lumo', 'gap', 'r2', 'zpve', 'U0', 'U', 'H', 'G', 'Cv'];

// Columns whose non-null count and list-length sums are reported, per schema.
const KINDS = {
  'molecule/v1': {
    lists: ['z', 'positions', 'mulliken', 'freqs'],
    ints: ['n_atoms'],
    nullable: ['split', 'mulliken', ...PROPS, 'omega1', 'freqs', 'smiles', 'smiles_relaxed', 'inchi', 'inchi_relaxed'],
  },
  'particles/v1': {
    lists: ['positions'],
    ints: ['n_particles', 'dim'],
    nullable: ['split', 'energy'],
  },
};

function parseArgs(argv) {
  const out = { parquet: null, arrow: null, ids: [], rewrite: null };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const next = () => {
      if (i + 1 >= argv.length) throw new Error(`${a} needs a value`);
      return argv[++i];
    };
    if (a === '--parquet') out.parquet = next();
    else if (a === '--arrow') out.arrow = next();
    else if (a === '--rewrite') out.rewrite = next();
    else if (a === '--id') {
      const v = next();
      if (!/^-?\d+$/.test(v)) throw new Error(`--id ${v}: not an integer`);
      out.ids.push(BigInt(v));
    } else if (a === '-h' || a === '--help') {
      out.help = true;
    } else throw new Error(`unknown argument ${a}`);
  }
  if (!out.help && !out.parquet && !out.arrow) throw new Error('give --parquet and/or --arrow');
  if (out.rewrite && !out.parquet) throw new Error('--rewrite needs --parquet');
  return out;
}

// toJSON converts reader values (bigint, Arrow vectors, typed arrays, DuckDB lists) to plain JSON.
function toJSON(v) {
  if (v === null || v === undefined) return null;
  if (typeof v === 'bigint') {
    return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v.toString();
  }
  if (v instanceof Vector) return Array.from(v, toJSON);
  if (ArrayBuffer.isView(v)) return Array.from(v, toJSON);
  if (Array.isArray(v)) return v.map(toJSON);
  if (typeof v === 'object') {
    if (typeof v.toJSON === 'function' && !(Symbol.iterator in v)) return toJSON(v.toJSON());
    if (Symbol.iterator in v) return Array.from(v, toJSON);
    return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, toJSON(x)]));
  }
  return v;
}

const quote = (name) => `"${name.replaceAll('"', '""')}"`;

async function checkParquet(path, ids, rewrite) {
  const instance = await DuckDBInstance.create(':memory:');
  const con = await instance.connect();
  const all = async (sql, params = []) => (await con.runAndReadAll(sql, params)).getRowObjectsJS();

  const desc = await all('DESCRIBE SELECT * FROM read_parquet($1)', [path]);
  const columns = desc.map((r) => r.column_name);
  const types = Object.fromEntries(desc.map((r) => [r.column_name, r.column_type]));
  const kv = await all('SELECT decode(key) AS k, decode(value) AS v FROM parquet_kv_metadata($1)', [path]);
  const metadata = Object.fromEntries(kv.filter((r) => r.k !== 'ARROW:schema').map((r) => [r.k, r.v]));
  const schema = metadata['enflow.schema'] ?? null;
  const kind = KINDS[schema];
  if (!kind) throw new Error(`${path}: enflow.schema is ${JSON.stringify(schema)}, not a known table`);

  const exprs = ['count(*) AS rows', 'min(id) AS min_id', 'max(id) AS max_id'];
  for (const c of kind.ints) exprs.push(`sum(${quote(c)}) AS ${quote('sum_' + c)}`);
  for (const c of kind.lists) exprs.push(`sum(len(${quote(c)})) AS ${quote('sum_len_' + c)}`);
  if (schema === 'molecule/v1') {
    exprs.push('sum(list_sum(z)) AS sum_z', 'sum(len(flatten(positions))) AS sum_len_coords');
  }
  for (const c of kind.nullable) exprs.push(`count(${quote(c)}) AS ${quote('nn_' + c)}`);
  const [agg] = await all(`SELECT ${exprs.join(', ')} FROM read_parquet($1)`, [path]);

  const out = {
    schema, metadata, columns, types,
    rows: toJSON(agg.rows), min_id: toJSON(agg.min_id), max_id: toJSON(agg.max_id),
    sums: {}, non_null: {}, rows_by_id: {},
  };
  for (const [k, v] of Object.entries(agg)) {
    if (k.startsWith('sum_')) out.sums[k.slice(4)] = toJSON(v) ?? 0;
    if (k.startsWith('nn_')) out.non_null[k.slice(3)] = toJSON(v);
  }
  for (const id of ids) {
    const rows = await all('SELECT * FROM read_parquet($1) WHERE id = $2', [path, id]);
    out.rows_by_id[id.toString()] = rows.length === 1 ? toJSON(rows[0]) : null;
  }
  if (schema === 'molecule/v1') {
    // DuckDB resolves identifiers case-insensitively: lowercase names must reach the columns.
    out.lowercase = {};
    for (const id of ids) {
      const rows = await all(
        'SELECT a AS "A", b AS "B", c AS "C", u0 AS "U0", u AS "U", h AS "H", g AS "G", cv AS "Cv", gap AS "gap" ' +
        'FROM read_parquet($1) WHERE id = $2', [path, id]);
      out.lowercase[id.toString()] = rows.length === 1 ? toJSON(rows[0]) : null;
    }
  }
  const [rg] = await all(
    'SELECT count(DISTINCT row_group_id) AS n, string_agg(DISTINCT compression, \',\') AS codecs FROM parquet_metadata($1)',
    [path]);
  out.row_groups = toJSON(rg.n);
  out.compression = rg.codecs;
  out.duckdb_version = (await all('SELECT version() AS v'))[0].v;
  if (rewrite) {
    // COPY takes no prepared parameters: inline the paths as SQL string literals.
    const lit = (s) => `'${s.replaceAll("'", "''")}'`;
    await con.run(`COPY (SELECT * FROM read_parquet(${lit(path)})) TO ${lit(rewrite)} (FORMAT parquet)`);
    out.rewritten = rewrite;
  }
  con.closeSync?.();
  instance.closeSync?.();
  return out;
}

function checkArrow(path, ids) {
  const table = tableFromIPC(readFileSync(path));
  const metadata = Object.fromEntries([...table.schema.metadata].filter(([k]) => k !== 'ARROW:schema'));
  const schema = metadata['enflow.schema'] ?? null;
  const kind = KINDS[schema];
  if (!kind) throw new Error(`${path}: enflow.schema is ${JSON.stringify(schema)}, not a known table`);
  const columns = table.schema.fields.map((f) => f.name);
  const types = Object.fromEntries(table.schema.fields.map((f) => [f.name, String(f.type)]));
  const col = (name) => {
    const c = table.getChild(name);
    if (!c) throw new Error(`${path}: no column ${name}`);
    return c;
  };

  const out = {
    schema, metadata, columns, types, rows: table.numRows, min_id: null, max_id: null,
    sums: {}, non_null: {}, rows_by_id: {}, batches: table.batches.length,
  };
  const idCol = col('id');
  const want = new Map(ids.map((id) => [id, null]));
  let minID = null;
  let maxID = null;
  for (let i = 0; i < table.numRows; i++) {
    const id = BigInt(idCol.get(i));
    if (minID === null || id < minID) minID = id;
    if (maxID === null || id > maxID) maxID = id;
    if (want.has(id)) {
      const row = {};
      for (const name of columns) row[name] = toJSON(col(name).get(i));
      want.set(id, row);
    }
  }
  out.min_id = toJSON(minID);
  out.max_id = toJSON(maxID);
  for (const [id, row] of want) out.rows_by_id[id.toString()] = row;

  for (const c of kind.ints) {
    let s = 0n;
    for (const v of col(c)) if (v !== null) s += BigInt(v);
    out.sums[c] = toJSON(s);
  }
  for (const c of kind.lists) {
    let s = 0;
    for (const v of col(c)) if (v !== null) s += v.length;
    out.sums['len_' + c] = s;
  }
  if (schema === 'molecule/v1') {
    let sz = 0;
    let coords = 0;
    for (const v of col('z')) for (const z of v) sz += Number(z);
    for (const v of col('positions')) for (const p of v) coords += p.length;
    out.sums.z = sz;
    out.sums.len_coords = coords;
  }
  for (const c of kind.nullable) out.non_null[c] = col(c).length - col(c).nullCount;
  return out;
}

async function main() {
  let args;
  try {
    args = parseArgs(process.argv.slice(2));
  } catch (e) {
    process.stderr.write(`check_tables: ${e.message}\nusage: node check_tables.mjs [--parquet F] [--arrow F] [--id N]... [--rewrite OUT]\n`);
    return 2;
  }
  if (args.help) {
    process.stdout.write('usage: node check_tables.mjs [--parquet F] [--arrow F] [--id N]... [--rewrite OUT]\n');
    return 0;
  }
  const arrowPkg = JSON.parse(readFileSync(new URL('./node_modules/apache-arrow/package.json', import.meta.url)));
  const result = { versions: { node: process.version, apache_arrow: arrowPkg.version } };
  try {
    if (args.parquet) {
      result.parquet = await checkParquet(args.parquet, args.ids, args.rewrite);
      result.versions.duckdb = result.parquet.duckdb_version;
      delete result.parquet.duckdb_version;
    }
    if (args.arrow) result.arrow = checkArrow(args.arrow, args.ids);
  } catch (e) {
    process.stderr.write(`check_tables: ${e.message ?? e}\n`);
    return 2;
  }
  process.stdout.write(JSON.stringify(result) + '\n');
  return 0;
}

process.exitCode = await main();
