#!/usr/bin/env node
// Queries enflow exports (pipeline/export: results/v1 and samples/v1) with independent readers:
// SQL through DuckDB (@duckdb/node-api) over Parquet files or globs, and Arrow IPC files through
// apache-arrow's tableFromIPC.
//
// Usage:
//   node query_exports.mjs [--sql NAME=QUERY]... [--arrow FILE]...
//
// Each --sql runs QUERY (any DuckDB SQL, e.g. SELECT … FROM 'out/results/*.parquet') and
// reports its rows under NAME. Each --arrow reads an Arrow IPC file and reports its schema,
// metadata, row count and per-column summaries.
//
// Prints one JSON object on stdout:
//   { "versions": {"duckdb": "...", "apache_arrow": "..."},
//     "sql":   { NAME: {"columns": [...], "types": [...], "rows": [{col: value}, …]} },
//     "arrow": { FILE: {"rows": N, "batches": N, "metadata": {...},
//                       "fields": [{"name", "type", "nullable"}],
//                       "non_null": {col: N}, "sums": {numeric col: sum},
//                       "distinct": {string col: [sorted distinct values, ≤ 50]},
//                       "list_lengths": {list col: total elements}} } }
// Values are JSON-safe: BIGINT becomes a number (a string beyond 2^53), timestamps and other
// DuckDB values become strings. Exit status: 0 on success, 2 on bad usage or a failing query.

import { readFileSync } from 'node:fs';
import { DuckDBInstance } from '@duckdb/node-api';
import { tableFromIPC } from 'apache-arrow';

function parseArgs(argv) {
  const out = { sql: [], arrow: [] };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const next = () => {
      if (i + 1 >= argv.length) throw new Error(`${a} needs a value`);
      return argv[++i];
    };
    if (a === '--sql') {
      const v = next();
      const eq = v.indexOf('=');
      if (eq <= 0) throw new Error(`--sql wants NAME=QUERY, got ${JSON.stringify(v)}`);
      out.sql.push([v.slice(0, eq), v.slice(eq + 1)]);
    } else if (a === '--arrow') out.arrow.push(next());
    else throw new Error(`unknown argument ${JSON.stringify(a)}`);
  }
  return out;
}

function toJSON(v) {
  if (v === null || v === undefined) return null;
  if (typeof v === 'bigint') {
    return v <= BigInt(Number.MAX_SAFE_INTEGER) && v >= BigInt(Number.MIN_SAFE_INTEGER) ? Number(v) : v.toString();
  }
  if (typeof v === 'number' || typeof v === 'string' || typeof v === 'boolean') {
    return typeof v === 'number' && !Number.isFinite(v) ? null : v;
  }
  if (Array.isArray(v)) return v.map(toJSON);
  if (ArrayBuffer.isView(v)) return Array.from(v, toJSON);
  if (v instanceof Date) return v.toISOString();
  if (typeof v.toArray === 'function') return Array.from(v.toArray(), toJSON);
  if (typeof v === 'object') {
    // DuckDB value classes (timestamps, decimals, lists, structs) print themselves.
    if (v.constructor && v.constructor !== Object && typeof v.toString === 'function') {
      if ('items' in v) return v.items.map(toJSON);
      if ('entries' in v && typeof v.entries === 'object' && !Array.isArray(v.entries)) {
        return Object.fromEntries(Object.entries(v.entries).map(([k, x]) => [k, toJSON(x)]));
      }
      return v.toString();
    }
    return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, toJSON(x)]));
  }
  return String(v);
}

async function runSQL(queries) {
  const instance = await DuckDBInstance.create(':memory:');
  const con = await instance.connect();
  const out = {};
  for (const [name, sql] of queries) {
    const reader = await con.runAndReadAll(sql);
    const columns = reader.columnNames();
    const types = reader.columnTypes().map((t) => t.toString());
    const rows = reader.getRowObjects().map((r) => Object.fromEntries(Object.entries(r).map(([k, v]) => [k, toJSON(v)])));
    out[name] = { columns, types, rows };
  }
  const version = (await con.runAndReadAll('SELECT version() AS v')).getRowObjects()[0].v;
  con.closeSync?.();
  instance.closeSync?.();
  return { out, version };
}

function summarizeArrow(path) {
  const table = tableFromIPC(readFileSync(path));
  const metadata = Object.fromEntries([...table.schema.metadata].filter(([k]) => k !== 'ARROW:schema'));
  const res = {
    rows: table.numRows,
    batches: table.batches.length,
    metadata,
    fields: table.schema.fields.map((f) => ({ name: f.name, type: String(f.type), nullable: f.nullable })),
    non_null: {}, sums: {}, distinct: {}, list_lengths: {},
  };
  for (const f of table.schema.fields) {
    const col = table.getChild(f.name);
    let nonNull = 0;
    let sum = 0;
    let numeric = false;
    let listLen = 0;
    let isList = false;
    const distinct = new Set();
    for (let i = 0; i < col.length; i++) {
      const v = col.get(i);
      if (v === null || v === undefined) continue;
      nonNull++;
      if (typeof v === 'number' || typeof v === 'bigint') {
        numeric = true;
        sum += Number(v);
      } else if (typeof v === 'string') {
        if (distinct.size <= 50) distinct.add(v);
      } else if (v && typeof v.length === 'number' && typeof v.get === 'function') {
        isList = true;
        listLen += v.length;
      }
    }
    res.non_null[f.name] = nonNull;
    if (numeric) res.sums[f.name] = sum;
    if (distinct.size > 0 && distinct.size <= 50) res.distinct[f.name] = [...distinct].sort();
    if (isList) res.list_lengths[f.name] = listLen;
  }
  return res;
}

async function main() {
  let args;
  try {
    args = parseArgs(process.argv.slice(2));
  } catch (e) {
    console.error(`query_exports: ${e.message}`);
    process.exit(2);
  }
  const arrowPkg = JSON.parse(readFileSync(new URL('./node_modules/apache-arrow/package.json', import.meta.url)));
  const result = { versions: { node: process.version, apache_arrow: arrowPkg.version }, sql: {}, arrow: {} };
  try {
    if (args.sql.length > 0) {
      const { out, version } = await runSQL(args.sql);
      result.sql = out;
      result.versions.duckdb = version;
    }
    for (const f of args.arrow) result.arrow[f] = summarizeArrow(f);
  } catch (e) {
    console.error(`query_exports: ${e.stack || e.message}`);
    process.exit(2);
  }
  process.stdout.write(JSON.stringify(result) + '\n');
}

await main();
