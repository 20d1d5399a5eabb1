#!/usr/bin/env bash
# One command for a GPU or TPU host: the peer, overhead, scaling and device-equality benchmarks,
# each writing its JSON into OUT (default bench/results/<backend>/). Run from the repository root
# after `pip install -e ".[peer]"` plus the accelerator's jax build (e.g. 'jax[cuda12]' or 'jax[tpu]'):
#
#     bash bench/accelerator.sh [OUT]
#
# The peers run with torch on the same device where torch sees one (CUDA); on a TPU host the torch
# side stays on CPU and the table says so. Each benchmark runs on its own so that one failure does
# not stop the others; the exit status is non-zero if any failed.
set -uo pipefail
cd "$(dirname "$0")/.."
backend=$(python -c "import jax; print(jax.default_backend())")
out=${1:-bench/results/$backend}
mkdir -p "$out"
echo "backend $backend, $(python -c 'import jax; print(jax.device_count())') devices, writing to $out"
failed=0
run() {  # name, then the command
  local name=$1; shift
  echo "== $name: $*"
  if ! "$@" 2>&1 | tee "$out/$name.log"; then echo "!! $name failed"; failed=1; fi
}
# PEERS_NO_COMPILE=1 skips the torch.compile variant; PEERS_ARGS adds arguments (e.g. "--batches 256").
peers_args=()
[ "${PEERS_NO_COMPILE:-}" = 1 ] && peers_args+=(--no-compile)
read -r -a peers_extra <<< "${PEERS_ARGS:-}"
peers_args+=(${peers_extra[@]+"${peers_extra[@]}"})
run peers python bench/peers.py --out "$out/peers.json" ${peers_args[@]+"${peers_args[@]}"}
run overhead python bench/sampler_overhead.py --out "$out/sampler_overhead.json"
run hand_written python bench/hand_written.py --out "$out/hand_written.json"
run scaling python bench/scaling.py --out "$out/scaling.json" --devices "$(python -c 'import jax; n=jax.device_count(); print(",".join(str(d) for d in (1,2,4,8,16,32,64) if d <= n))')"
run device_equality python bench/device_equality.py --out "$out/device_equality.json"
exit $failed
