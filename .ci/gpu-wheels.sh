#!/usr/bin/env bash
# Run HERE (not on the GPU machine), once per session that has a device: downloads into .whl/
# (git-ignored) the wheels the GPU machine lacks for `.ci/gpu-check.sh`. That machine has no
# network; its image holds CUDA torch, JAX with the CUDA plugin, pytest, hypothesis, transformers,
# huggingface-hub... but not diffusers (the pinned reference) or array-api-compat.
# Then: device `run` with command "bash .ci/gpu-check.sh", carry [".whl"], timeout_s 560.
set -euo pipefail
cd "$(dirname "$0")/.."
rm -rf .whl && mkdir -p .whl
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 -d .whl \
    "diffusers==$(sed -n 's/^diffusers==//p' constraints.txt)" \
    "array-api-compat==$(sed -n 's/^array-api-compat==//p' constraints.txt)" \
    "importlib-metadata==10.2.0"  # a diffusers requirement the image lacks (any version works)
ls -l .whl
