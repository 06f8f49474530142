#!/usr/bin/env bash
# gpu-check.sh: per-pair LP-DPO gradient extraction + device sketching on a
# Gemma-2-2B-shaped model (random weights) at sequence length 1024, on one GPU
# through GoMLX's XLA backend (PJRT CUDA plugin). Prints pairs/s, MFU against
# 989 TFLOP/s (H100 SXM dense bf16), peak device memory and the sketch's share
# of the time; docs/perf/gpu.md records runs.
#
#   scripts/gpu-check.sh            # GPU run (needs CGO, nvidia-smi, a PJRT CUDA plugin)
#   scripts/gpu-check.sh --dry-run  # same script, tiny shapes, pure-Go backend (CI, no GPU)
#
# Environment:
#   GOMLX_BACKEND   GPU run: default xla:cuda (go-xla's auto-install needs internet;
#                   offline use xla:/path/to/pjrt_c_api_cuda_plugin.so or set
#                   PJRT_PLUGIN_LIBRARY_PATH to the plugin's directory)
#   MODEL SEQ BATCH STEPS DTYPE K RANK PEAK   override the workload
#   GPU_CHECK_OUT   where the binary and logs go (default a temp dir)
#   GRADBENCH       a prebuilt gradbench binary (the GPU machine has no Go toolchain:
#                   build it here with `make gradbench-xla` and carry bin/gradbench-xla)
set -euo pipefail
cd "$(dirname "$0")/.."
out="${GPU_CHECK_OUT:-$(mktemp -d)}"
mkdir -p "$out"

if [[ "${1:-}" == "--dry-run" ]]; then
  echo "== gpu-check dry run: tiny model, Go backend ($(date -u +%FT%TZ))"
  go build -o "$out/gradbench" ./gpu/cmd/gradbench
  GOMLX_BACKEND="${GOMLX_BACKEND:-go:ops_sequential}" "$out/gradbench" \
    -model "${MODEL:-tiny}" -seq "${SEQ:-32}" -batch "${BATCH:-2}" -steps "${STEPS:-1}" \
    -k "${K:-256}" -rank "${RANK:-4}" -dtype f32 -peak "${PEAK:-989}"
  exit 0
fi

echo "== gpu-check: $(date -u +%FT%TZ) on $(hostname)"
command -v nvidia-smi >/dev/null || { echo "gpu-check: nvidia-smi not found (use --dry-run without a GPU)" >&2; exit 2; }
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
if [[ -n "${GRADBENCH:-}" ]]; then
  echo "== using prebuilt $GRADBENCH"
  cp "$GRADBENCH" "$out/gradbench"
else
  echo "== build (cgo, -tags xla)"
  command -v go >/dev/null || { echo "gpu-check: no Go toolchain here; set GRADBENCH to a binary built with 'make gradbench-xla'" >&2; exit 2; }
  CGO_ENABLED=1 go build -tags xla -o "$out/gradbench" ./gpu/cmd/gradbench
fi

# Peak device memory: sample nvidia-smi while the benchmark runs (XLA's
# allocator does not preallocate by default, so used memory tracks demand).
nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 200 >"$out/mem.log" &
mon=$!
trap 'kill "$mon" 2>/dev/null || true' EXIT

run() { # dtype batch
  echo "== gemma2-2b seq ${SEQ:-1024} batch $2 dtype $1"
  GOMLX_BACKEND="${GOMLX_BACKEND:-xla:cuda}" "$out/gradbench" \
    -model "${MODEL:-gemma2-2b}" -seq "${SEQ:-1024}" -batch "$2" -steps "${STEPS:-5}" \
    -k "${K:-8192}" -rank "${RANK:-8}" -dtype "$1" -peak "${PEAK:-989}" 2>&1 | tee -a "$out/gradbench.log"
}
run "${DTYPE:-bf16}" "${BATCH:-4}"
# Batch 1 is the LESS-style baseline the issue compares against.
BATCH1=1; run "${DTYPE:-bf16}" "$BATCH1"

kill "$mon" 2>/dev/null || true
peak=$(sort -n "$out/mem.log" | tail -1)
echo "peak_device_mem_mib=${peak:-unknown}"
echo "logs in $out"
