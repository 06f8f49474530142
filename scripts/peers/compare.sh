#!/bin/bash
# Interleaved CPU comparison for docs/perf/gradients-cpu.md: the Go backend
# (the default build, GOEXPERIMENT=simd as the Makefile sets it, and the
# opt-out build without it) against the PyTorch peer, A B A B, on the same
# machine in one run. Usage (from the repository root):
#   scripts/peers/compare.sh [rounds]
# PLAIN=0 leaves out the opt-out build (GOEXPERIMENT unset), the slowest part.
# Needs: /usr/bin/python3 with Debian's python3-torch; OpenBLAS from Debian's
# libopenblas0-pthread, either installed or unpacked with
#   apt-get download libopenblas0-pthread && dpkg -x libopenblas0-pthread_*.deb DIR
# and OPENBLAS_DIR=DIR/usr/lib/x86_64-linux-gnu/openblas-pthread.
set -euo pipefail
rounds=${1:-2}
ob=${OPENBLAS_DIR:-/usr/lib/x86_64-linux-gnu/openblas-pthread}
bin=$(mktemp -d)
plain=${PLAIN:-1}
if [ "$plain" = 1 ]; then GOEXPERIMENT= go test -c -o "$bin/plain.test" ./gpu/dpo/; fi
GOEXPERIMENT=simd go test -c -o "$bin/simd.test" ./gpu/dpo/
root=$PWD
gobench() { # name binary [GOMLX_BACKEND]
  (cd gpu/dpo && GOMLX_BACKEND=${3:-} CONGRAD_CPU_BENCH=1 "$2" -test.run '^$' -test.bench Gemma2SmallExtract -test.benchtime 2x 2>&1 |
    grep -E '^Benchmark|first call' | sed "s|^|go-$1 |")
}
for r in $(seq "$rounds"); do
  echo "round $r $(date -u +%H:%M:%S) loadavg $(cut -d' ' -f1-3 /proc/loadavg)"
  if [ "$plain" = 1 ]; then gobench plain "$bin/plain.test"; fi
  LD_LIBRARY_PATH=$ob /usr/bin/python3 "$root/scripts/peers/torch_grad.py" --threads 2 --iters 2 --methods copies
  gobench simd "$bin/simd.test"
  LD_LIBRARY_PATH=$ob /usr/bin/python3 "$root/scripts/peers/torch_grad.py" --threads 2 --iters 2 --methods copies,vmap
done
echo "end $(date -u +%H:%M:%S) loadavg $(cut -d' ' -f1-3 /proc/loadavg)"
