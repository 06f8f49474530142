#!/usr/bin/env bash
# gpu-check.sh: per-pair LP-DPO gradient extraction + device sketching on a
# Gemma-2-2B-shaped model (random weights) at sequence length 1024, bf16, on
# one GPU through GoMLX's XLA backend (PJRT CUDA plugin loaded at run time).
# Prints pairs/s, MFU (model FLOPs / s over the GPU's dense bf16 peak), peak
# device memory (from XLA, and from nvidia-smi), the sketch's share of the
# time and a correctness check (device sketch = host sketch of the exact
# gradients). docs/perf/gpu.md says how to run it on a lent device and what
# each figure means.
#
#   scripts/gpu-check.sh            # GPU run: prebuilt binary, PJRT CUDA plugin
#   scripts/gpu-check.sh --dry-run  # the same phases, tiny model, Go backend, no GPU
#                                   # (run by `go test ./gpu/bench`)
#
# Environment:
#   GRADBENCH       prebuilt binary (default bin/gradbench-xla, from `make gradbench-xla`;
#                   the dry run builds a plain one when unset)
#   GOMLX_BACKEND   GPU run: xla:/path/to/xla_cuda_plugin.so; when unset the plugin is
#                   looked up in the Python site-packages (jax_plugins/xla_cuda13, then
#                   xla_cuda12). Dry run: go:ops_sequential.
#   GPU_CHECK_BUDGET_S  time limit of the whole script (default 360 s; every phase
#                   runs under `timeout`, and gradbench itself gets a budget)
#   MODEL SEQ BATCH STEPS DTYPE K RANK PEAK   override the workload (PEAK 0 = from the GPU name)
#   BATCH1=1        also run batch 1 (the LESS-style one-pair-per-call baseline) if time is left
#   GPU_CHECK_OUT   where logs go (default a temp dir)
set -euo pipefail
cd "$(dirname "$0")/.."
dry=0
[[ "${1:-}" == "--dry-run" ]] && dry=1
out="${GPU_CHECK_OUT:-$(mktemp -d)}"
mkdir -p "$out"
log="$out/gpu-check.log"
: >"$log"
budget="${GPU_CHECK_BUDGET_S:-360}"
t_start=$SECONDS
left() { echo $((budget - (SECONDS - t_start))); }
say() { echo "$*" | tee -a "$log"; }
have_timeout=1
command -v timeout >/dev/null || have_timeout=0

# phase NAME LIMIT CMD...: runs CMD with its output in the log, under
# `timeout` at min(LIMIT, time left - 10 s); returns CMD's status (124: timed out).
phase() {
  local name=$1 limit=$2 rc=0 t0=$SECONDS
  shift 2
  local rem=$(($(left) - 10))
  ((limit > rem)) && limit=$rem
  if ((limit < 5)); then
    say "== phase $name: SKIPPED (budget: $(left)s of ${budget}s left)"
    return 124
  fi
  say "== phase $name (limit ${limit}s; $(left)s of ${budget}s left)"
  if ((have_timeout)); then
    timeout --kill-after=10 "$limit" "$@" 2>&1 | tee -a "$log" || rc=${PIPESTATUS[0]}
  else
    "$@" 2>&1 | tee -a "$log" || rc=${PIPESTATUS[0]}
  fi
  ((rc == 124 || rc == 137)) && say "gpu-check: phase $name hit its ${limit}s limit (killed)"
  say "== phase $name: exit $rc after $((SECONDS - t0))s"
  return "$rc"
}

# cuda_data_dir: the plugin loads NVIDIA's libraries through its RPATH
# (site-packages/nvidia, next to jax_plugins/), but XLA also needs libdevice
# and ptxas; go-xla looks for them next to the plugin's parent folder only,
# so point XLA at the pip CUDA folder that has nvvm/libdevice.
cuda_data_dir() {
  local p=${GOMLX_BACKEND#xla:}
  p=${p%%,*}
  [[ "$p" == /* && "${XLA_FLAGS:-}" != *xla_gpu_cuda_data_dir* ]] || return 0
  local sp
  sp=$(dirname "$(dirname "$(dirname "$p")")")
  [[ -d "$sp/nvidia" ]] || return 0
  local libdev
  libdev=$(find "$sp/nvidia" -maxdepth 5 -name 'libdevice.10.bc' -path '*nvvm/libdevice/*' 2>/dev/null | head -1)
  [[ -n "$libdev" ]] || return 0
  local dir
  dir=$(dirname "$(dirname "$(dirname "$libdev")")")
  export XLA_FLAGS="${XLA_FLAGS:+$XLA_FLAGS }--xla_gpu_cuda_data_dir=$dir"
  [[ -d "$dir/bin" ]] && export PATH="$dir/bin:$PATH"
  say "XLA_FLAGS=$XLA_FLAGS"
}

# --- preflight: device, binary, backend, peak --------------------------------
say "== gpu-check $([[ $dry == 1 ]] && echo '--dry-run ')$(date -u +%FT%TZ) on $(hostname), budget ${budget}s"
if ((dry)); then
  gpu_name="none (dry run)"
  export GOMLX_BACKEND="${GOMLX_BACKEND:-go:ops_sequential}"
  MODEL="${MODEL:-tiny}" SEQ="${SEQ:-32}" BATCH="${BATCH:-2}" STEPS="${STEPS:-2}"
  DTYPE="${DTYPE:-f32}" K="${K:-256}" RANK="${RANK:-4}" PEAK="${PEAK:-989.4}"
  if [[ -z "${GRADBENCH:-}" ]]; then
    GRADBENCH="$out/gradbench"
    phase build 300 go build -o "$GRADBENCH" ./gpu/cmd/gradbench
  fi
else
  command -v nvidia-smi >/dev/null || { say "gpu-check: nvidia-smi not found (use --dry-run without a GPU)"; exit 2; }
  gpu_name=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv,noheader | tee -a "$log"
  MODEL="${MODEL:-gemma2-2b}" SEQ="${SEQ:-1024}" BATCH="${BATCH:-4}" STEPS="${STEPS:-5}"
  DTYPE="${DTYPE:-bf16}" K="${K:-8192}" RANK="${RANK:-8}" PEAK="${PEAK:-0}"
  GRADBENCH="${GRADBENCH:-bin/gradbench-xla}"
  if [[ -z "${GOMLX_BACKEND:-}" ]]; then
    plugin=""
    if command -v python3 >/dev/null; then
      for sp in $(python3 -c 'import site; print(" ".join(site.getsitepackages() + [site.getusersitepackages()]))' 2>/dev/null); do
        for v in xla_cuda13 xla_cuda12; do
          if [[ -z "$plugin" && -f "$sp/jax_plugins/$v/xla_cuda_plugin.so" ]]; then plugin="$sp/jax_plugins/$v/xla_cuda_plugin.so"; fi
        done
      done
    fi
    [[ -n "$plugin" ]] || { say "gpu-check: no PJRT CUDA plugin found in Python's site-packages (jax_plugins/xla_cuda13/xla_cuda_plugin.so); set GOMLX_BACKEND=xla:/path/to/plugin.so"; exit 2; }
    export GOMLX_BACKEND="xla:$plugin"
  fi
  # Never download a plugin on the device (no network there).
  export GOMLX_NO_AUTO_INSTALL=1
  cuda_data_dir
fi
[[ -x "$GRADBENCH" ]] || { say "gpu-check: $GRADBENCH is not an executable (build it with 'make gradbench-xla' and carry bin/gradbench-xla)"; exit 2; }
say "gpu=$gpu_name backend=$GOMLX_BACKEND binary=$GRADBENCH"

# --- device memory sampled by the driver (GPU run only) ----------------------
mon=""
if ((!dry)); then
  nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits >"$out/mem0.log" || true
  nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 250 >"$out/mem.log" 2>/dev/null &
  mon=$!
fi
stop_mon() { [[ -n "$mon" ]] && kill "$mon" 2>/dev/null || true; }
trap stop_mon EXIT

# --- the benchmark: setup, compile, timed steps, check, sketch, matmul -------
# (timeout runs programs, not shell functions: the command is an array.)
bench() { # batch budget_s
  local b=$2
  ((b < 1)) && b=1
  cmd=("$GRADBENCH" -model "$MODEL" -seq "$SEQ" -batch "$1" -steps "$STEPS" -k "$K" -rank "$RANK"
    -dtype "$DTYPE" -peak "$PEAK" -gpu "$gpu_name" -check -budget "${b}s")
}
main_limit=$(($(left) - 15))
rc=0
bench "$BATCH" $((main_limit - 20))
phase "gradbench batch=$BATCH" "$main_limit" "${cmd[@]}" || rc=$?
if [[ "${BATCH1:-0}" == 1 && $(left) -gt 150 ]]; then
  bench 1 $(($(left) - 45))
  phase "gradbench batch=1" $(($(left) - 15)) "${cmd[@]}" || true
fi

# --- summary -----------------------------------------------------------------
stop_mon
say "== summary ($(date -u +%FT%TZ), $((SECONDS - t_start))s of ${budget}s)"
grep -E '^(model=|setup_s=|model_flops_per_pair=|sketch_share=|device_peak_mem|check=)' "$log" | tee -a "$out/summary.txt" || true
if ((!dry)); then
  base=$(sort -n "$out/mem0.log" 2>/dev/null | tail -1)
  peak=$(sort -n "$out/mem.log" 2>/dev/null | tail -1)
  say "nvidia_smi_peak_mem_mib=${peak:-unknown} (before the run: ${base:-unknown}; all processes, CUDA context and allocator pools included, sampled every 250 ms)"
else
  say "nvidia_smi_peak_mem_mib=unavailable (dry run: no GPU)"
fi
if grep -q '^check=FAIL' "$log"; then
  say "gpu-check: FAILED: device sketch differs from host sketch"
  exit 3
fi
if ((rc != 0)); then
  say "gpu-check: FAILED: gradbench exit $rc (see $log)"
  exit "$rc"
fi
say "gpu-check: done; logs in $out"
