#!/usr/bin/env bash
# Wheels that benchmarks/gpu_bench.py needs on a bare GPU image (torch and transformers there,
# Python 3.12, no network): SAM 2 (pure Python when built without its CUDA extension) and its
# configuration packages, into .whl/ (ignored by git) to carry with the device tool:
#   benchmarks/gpu_wheels.sh
#   device run, carry [".whl"]:
#     python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl \
#       && PYTHONPATH=/tmp/site python3 benchmarks/gpu_bench.py
set -euo pipefail
cd "$(dirname "$0")/.."
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
rm -rf .whl && mkdir -p .whl
PY=${PYTHON:-.venv/bin/python}
# sam2 and iopath/antlr4 ship as source only: build pure-Python wheels here
SAM2_BUILD_CUDA=0 "$PY" -m pip wheel -q --no-deps --no-build-isolation -w .whl \
  sam2==1.1.0 iopath==0.1.10 antlr4-python3-runtime==4.9.3
# the GPU image has portalocker and psutil; carried anyway, so a missing one is no surprise
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
  --implementation cp --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -d .whl hydra-core==1.3.2 omegaconf==2.3.0 portalocker==3.2.0 psutil==7.2.2
ls -l .whl
