#!/usr/bin/env bash
# make bench-peers: `congrad select` vs the same bulk work in DuckDB (per-
# language means, cosine of every sketch to one vector, threshold, zstd
# Parquet out) on the same synthetic sketch files. Prints CPU seconds
# (user+system, all threads), peak RSS and the ratios. Results and the
# machine they were measured on: docs/perf/select.md.
#
#   N=100000 K=2048 scripts/bench-peers.sh
#   ROUNDS=3 scripts/bench-peers.sh   # alternate the jobs 3 times, keep each one's least CPU
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-100000}
K=${K:-2048}
THREADS=${THREADS:-2}
ROUNDS=${ROUNDS:-1}
[[ "$ROUNDS" =~ ^[1-9][0-9]*$ ]] || { echo "bench-peers: ROUNDS=$ROUNDS, want a positive integer"; exit 2; }
WORK=${WORK:-out/bench-peers}
# "bss": sketch values in BYTE_STREAM_SPLIT, as congrad writes them since
# issue 12's session 6 (older lakes in $WORK were plain zstd; not reused).
LAKE="$WORK/lake-bss-n$N-k$K"
TIME=/usr/bin/time
[ -x "$TIME" ] || { echo "bench-peers needs GNU time at $TIME (apt-get install time)"; exit 1; }

mkdir -p "$WORK" bin
go build -o bin/congrad ./cmd/congrad
if [ ! -f "$LAKE/pairs-00000-of-00001.parquet" ]; then
  go run ./scripts/benchpeers -n "$N" -k "$K" -out "$LAKE"
fi
[ -d transforms/lakeio/nodecheck/node_modules/@duckdb/node-api ] ||
  npm ci --no-audit --no-fund --prefix transforms/lakeio/nodecheck

measure() { # name, command...: prints "cpu_s peak_mb wall_s"
  local name=$1; shift
  "$TIME" -f '%U %S %M %e' -o "$WORK/$name.time" "$@" > "$WORK/$name.log" 2>&1 ||
    { echo "$name failed:" >&2; tail -20 "$WORK/$name.log" >&2; exit 1; }
  tail -1 "$WORK/$name.time" | awk '{printf "%.2f %.0f %.2f\n", $1+$2, $3/1024, $4}'
}

# Both jobs read the lake from the page cache: without this the first job
# measured after a build paid the disk reads (13.9 s against 11.3 s CPU for
# the same binary one run later).
cat "$LAKE"/*.parquet > /dev/null

# Other load on a shared machine only adds time: with ROUNDS > 1 the jobs
# alternate and each keeps its round with the least CPU.
best() { # current best "cpu mb wall", new one: prints the one with less CPU
  if [ -z "$1" ]; then echo "$2"; else
    awk -v a="$1" -v b="$2" 'BEGIN { split(a, x, " "); split(b, y, " "); print (y[1] < x[1]) ? b : a }'
  fi
}
c_best="" d_best=""
for round in $(seq "$ROUNDS"); do
  rm -rf "$WORK/select-out"
  c=$(measure congrad bin/congrad select --pairs="$LAKE/pairs-*.parquet" \
    --sketches="$LAKE/sketches-*.parquet" --k="$K" --out="$WORK/select-out")
  d=$(measure duckdb node scripts/benchpeers/select_duckdb.mjs \
    "$LAKE/sketches-*.parquet" "$WORK/duckdb-decisions.parquet" "$THREADS")
  [ "$ROUNDS" -gt 1 ] && echo "round $round: congrad $c, duckdb $d (cpu_s peak_rss_MB wall_s)"
  c_best=$(best "$c_best" "$c") d_best=$(best "$d_best" "$d")
done
read -r c_cpu c_mb c_wall <<< "$c_best"
read -r d_cpu d_mb d_wall <<< "$d_best"

echo "bench-peers: n=$N k=$K, $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), rounds $ROUNDS (least CPU of each job)"
printf '%-16s %10s %12s %10s\n' job cpu_s peak_rss_MB wall_s
printf '%-16s %10s %12s %10s\n' "congrad select" "$c_cpu" "$c_mb" "$c_wall"
printf '%-16s %10s %12s %10s\n' "duckdb ($THREADS thr)" "$d_cpu" "$d_mb" "$d_wall"
awk -v a="$c_cpu" -v b="$d_cpu" -v c="$c_mb" -v d="$d_mb" \
  'BEGIN { printf "ratio congrad/duckdb: cpu %.2fx, peak rss %.2fx\n", a/b, c/d }'
