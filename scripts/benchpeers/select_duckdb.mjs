// The select-equivalent bulk job in DuckDB, the peer `make bench-peers`
// compares `congrad select` with: per-language element-wise means of the
// sketches, one consensus vector (the mean of the language means; DuckDB
// has no PCGrad, which is microseconds of the Go job anyway), the cosine
// of every sketch to it, the threshold (score > 0, congrad's default rule)
// and the decisions written as zstd Parquet. It reads the same files.
//
//	node scripts/benchpeers/select_duckdb.mjs 'LAKE/sketches-*.parquet' OUT.parquet [threads]
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import path from 'node:path';

const here = path.dirname(fileURLToPath(import.meta.url));
const require = createRequire(path.join(here, '../../transforms/lakeio/nodecheck/package.json'));
const { DuckDBInstance } = require('@duckdb/node-api');

const [glob, out, threads = '2'] = process.argv.slice(2);
if (!glob || !out) {
  console.error('usage: select_duckdb.mjs SKETCH_GLOB OUT.parquet [threads]');
  process.exit(2);
}
const sql = (s) => `'${s.replaceAll("'", "''")}'`;
const db = await DuckDBInstance.create(':memory:');
const conn = await db.connect();
const run = (q) => conn.run(q);
const t0 = Date.now();
await run(`SET threads = ${Number(threads)}`);
const src = `read_parquet(${sql(glob)})`;
await run(`CREATE TEMP TABLE means AS
  SELECT lang, i, avg(v) AS m FROM (
    SELECT lang, generate_subscripts(values::FLOAT[], 1) AS i, unnest(values::FLOAT[]) AS v FROM ${src})
  GROUP BY lang, i`);
await run(`CREATE TEMP TABLE cons AS
  SELECT list(g ORDER BY i) AS g FROM (SELECT i, avg(m)::FLOAT AS g FROM means GROUP BY i)`);
await run(`COPY (
  SELECT pair_id, lang, score, score > 0 AS kept FROM (
    SELECT pair_id, lang, list_cosine_similarity(values::FLOAT[], cons.g) AS score FROM ${src}, cons)
  ORDER BY pair_id) TO ${sql(out)} (FORMAT parquet, COMPRESSION zstd)`);
const r = await conn.runAndReadAll(`SELECT count(*) AS n, count(*) FILTER (WHERE kept) AS kept FROM read_parquet(${sql(out)})`);
const row = r.getRowObjectsJson()[0];
console.log(JSON.stringify({ rows: Number(row.n), kept: Number(row.kept), wall_s: (Date.now() - t0) / 1000 }));
