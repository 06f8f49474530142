// Reads the files named on the command line with readers that share no code
// with lakeio (DuckDB for Parquet, Apache Arrow JS for Arrow IPC) and prints
// one JSON object per file: row count, column names and types as the reader
// sees them, the first row, and the file metadata. The Go test
// (nodecheck_test.go) decides whether that agrees with what it wrote.
import { readFileSync } from 'node:fs';
import { DuckDBInstance } from '@duckdb/node-api';
import { tableFromIPC } from 'apache-arrow';

const sql = (s) => `'${s.replaceAll("'", "''")}'`;

async function parquet(conn, path) {
  const q = async (text) => (await conn.runAndReadAll(text)).getRowObjectsJson();
  const src = `read_parquet(${sql(path)})`;
  const rows = Number((await q(`SELECT count(*) AS n FROM ${src}`))[0].n);
  const columns = (await q(`DESCRIBE SELECT * FROM ${src}`)).map((r) => [r.column_name, r.column_type]);
  const first = (await q(`SELECT * FROM ${src} LIMIT 1`))[0] ?? null;
  const meta = {};
  for (const r of await q(`SELECT decode(key) AS k, decode(value) AS v FROM parquet_kv_metadata(${sql(path)})`)) {
    meta[r.k] = r.k === 'ARROW:schema' ? '(present)' : r.v;
  }
  const nulls = {};
  const counts = (await q(`SELECT ${columns.map(([c], i) => `count(*) - count("${c}") AS c${i}`).join(', ')} FROM ${src}`))[0];
  columns.forEach(([c], i) => { nulls[c] = Number(counts[`c${i}`]); });
  const codec = (await q(`SELECT DISTINCT compression FROM parquet_metadata(${sql(path)})`)).map((r) => r.compression);
  return { path, reader: 'duckdb', rows, columns, first, meta, codec, nulls };
}

function arrow(path) {
  const t = tableFromIPC(readFileSync(path));
  const columns = t.schema.fields.map((f) => [f.name, String(f.type)]);
  const row = t.numRows > 0 ? t.get(0).toJSON() : null;
  const first = row && JSON.parse(JSON.stringify(row, (k, v) => {
    if (typeof v === 'bigint') return Number(v);
    if (v && typeof v.toArray === 'function') return Array.from(v.toArray(), (x) => (x && x.toJSON ? x.toJSON() : x));
    if (ArrayBuffer.isView(v)) return Array.from(v);
    return v;
  }));
  const nulls = Object.fromEntries(t.schema.fields.map((f) => [f.name, t.getChild(f.name).nullCount]));
  return { path, reader: 'apache-arrow', rows: t.numRows, columns, first, meta: Object.fromEntries(t.schema.metadata), nulls };
}

const instance = await DuckDBInstance.create(':memory:');
const conn = await instance.connect();
const out = [];
for (const path of process.argv.slice(2)) {
  out.push(path.endsWith('.parquet') ? await parquet(conn, path) : arrow(path));
}
conn.closeSync();
instance.closeSync();
process.stdout.write(JSON.stringify(out, null, 1) + '\n');
