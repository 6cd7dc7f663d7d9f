#!/usr/bin/env bash
# Run ON the GPU machine, through the device tool, after `.ci/gpu-wheels.sh` here:
#   run(command="bash .ci/gpu-check.sh", carry=[".whl"], timeout_s=560)
# One pass, sized for the 15 minutes of device time a session gets: the CUDA-only tests (host
# syncs, bit-identity on the GPU, graph capture), then `python -m benchmarks --device cuda`
# (torch, CUDA graphs, JAX on the GPU, the η = 0 study). Logs and gpu.json land in $OUT.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-/tmp/gpu-check-out}"
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
if ls .whl/*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl || exit 1
fi
# tcd_core lives at the root, the adapters under adapters/ (no install needed).
export PYTHONPATH="/tmp/site:$PWD:$PWD/adapters${PYTHONPATH:+:$PYTHONPATH}"
{
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv || true
    python3 -c "import sys, torch, jax, diffusers, tcd_core; print(sys.version.split()[0], \
'torch', torch.__version__, torch.cuda.is_available(), 'jax', jax.__version__, jax.devices(), \
'diffusers', diffusers.__version__, 'tcd_core', tcd_core.__version__)"
} 2>&1 | tee "$OUT/env.txt"
status=0
timeout 200 python3 -m pytest -q -p no:cacheprovider -m gpu \
    tests/diffusers/test_diffusers_gpu.py \
    tests/kdiffusion/test_kdiffusion_gpu.py 2>&1 | tee "$OUT/gpu-tests.log" || status=1
timeout 320 python3 -m benchmarks --device cuda --out "$OUT" 2>&1 | tee "$OUT/bench.log" \
    || status=1
ls -l "$OUT"
exit "$status"
