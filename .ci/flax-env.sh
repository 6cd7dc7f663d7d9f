#!/usr/bin/env bash
# The second test environment (issue 10): diffusers' Flax pipelines, removed in diffusers 0.40,
# driving tcd_jax's Flax schedulers. The main environment keeps the reference diffusers 0.42.1, so
# this builds its own venv (default .venv-flax/, override with TCD_FLAX_VENV) from the exact pins
# in constraints-flax.txt (diffusers 0.39.0, transformers 4.x, flax, jax; no torch), installs this
# package into it, and runs tests/flax_pipelines. Reuses the venv when it is already there.
set -euo pipefail
cd "$(dirname "$0")/.."
export PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONUNBUFFERED=1
venv="${TCD_FLAX_VENV:-.venv-flax}"
python="${PYTHON:-python}"  # the interpreter .ci/run uses

if [ ! -x "$venv/bin/python" ]; then
  "$python" -m venv "$venv"
fi
printf '*\n' >"$venv/.gitignore"  # the venv ignores itself: nothing in it is ever committed
"$venv/bin/python" -m pip install -q -c constraints-flax.txt \
  diffusers transformers flax jax jaxlib hypothesis pytest pytest-xdist
"$venv/bin/python" -m pip install -q -c constraints-flax.txt -e .

# The suite's conftest collects nothing outside this environment: make sure it did collect.
"$venv/bin/python" -m pytest tests/flax_pipelines -q --collect-only -p no:cacheprovider \
  | tail -1 | grep -Eq "^[1-9][0-9]* tests? collected" \
  || { echo "tests/flax_pipelines collected no test" >&2; exit 1; }
"$venv/bin/python" -m pytest tests/flax_pipelines -p no:cacheprovider -p no:logging "$@"
