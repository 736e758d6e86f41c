#!/usr/bin/env bash
# The benchmarks on a lent GPU (H100/H200), fp32 and bf16; paste its output into RESULTS.md.
#
#   bash benchmarks/gpu.sh            # on the device machine, from the repository root
#   bash benchmarks/gpu.sh --quick    # a smoke run (also works on CPU)
#
# The device image already holds jax (CUDA), flax, optax, numpy and chex, equilib's only
# runtime dependencies, and it cannot reach PyPI: equilib is used from the checkout through
# PYTHONPATH instead of being installed. escnn is not there, so the escnn column stays CPU-only.
set -uo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
QUICK=()
[[ "${1:-}" == "--quick" ]] && QUICK=(--quick)
OUT_DIR="${OUT:-/tmp}"
status=0
{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "no nvidia-smi"
  "$PY" -c "import jax; print('jax', jax.__version__, jax.devices())"
  echo "== 1. layer overhead over the plain conv with the same expanded kernel (fp32, bf16)"
  "$PY" benchmarks/group_conv.py "${QUICK[@]}" --dtypes float32 bfloat16 || status=1
  echo "== 2. build time: reference models and steerable stacks"
  if [[ ${#QUICK[@]} -eq 0 ]]; then
    "$PY" benchmarks/build_time.py || status=1
  else
    "$PY" benchmarks/build_time.py --models P4CNN --groups C4 || status=1
  fi
  echo "== 3./4. train-step throughput and peak memory (equilib rows; escnn runs on CPU only)"
  "$PY" benchmarks/escnn_compare.py "${QUICK[@]}" --escnn-python /nonexistent || status=1
} 2>&1 | tee "$OUT_DIR/gpu_bench.log"
exit $status
