#!/usr/bin/env bash
# The engine tier (tests/engine: the real pipeline on the tiny checkpoints, the compile
# rehearsal, the prepared GPU run's CPU smoke run) on the GPU machine's image versions:
# torch 2.11, transformers 5.17 and the rest of benchmarks/gpu_image.txt in
# .venv-gpu-image, and diffusers and torchao installed exactly as on that machine, from the
# wheels scripts/gpu-carry.sh downloads, with `pip install --no-index --no-deps --target`
# onto PYTHONPATH. What the image lacks is removed from the venv (pydantic, fastapi, ...),
# so an import the image cannot satisfy fails here first. Extra arguments go to pytest.
#
# Cost on a fresh machine: torch 2.11 from PyPI is its CUDA build (~3 GB with its CUDA
# libraries; about 40 s to download and install with uv here), then the tier's tests.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=.venv-gpu-image
[ -x $venv/bin/python ] || python3 -m venv $venv
uv=.venv/bin/uv  # installed by scripts/install.sh
[ -x "$uv" ] || { python3 -m pip install -q "uv==0.13.9" && uv=uv; }
"$uv" pip install -q --python $venv/bin/python -r benchmarks/gpu_image.txt
# Not on the image: whatever the resolution pulled in beside the list.
"$uv" pip uninstall -q --python $venv/bin/python pydantic pydantic-core fastapi starlette \
  importlib-metadata diffusers torchao 2>/dev/null || true
./scripts/gpu-carry.sh .carry
rm -rf $venv/carried
$venv/bin/python -m pip install -q --disable-pip-version-check --no-index --no-deps \
  --no-compile --target $venv/carried .carry/*.whl
export PYTHONPATH="$PWD/$venv/carried"
$venv/bin/python -c 'import torch, transformers, diffusers, torchao
print("gpu image versions: torch", torch.__version__, "transformers", transformers.__version__,
      "diffusers", diffusers.__version__, "torchao", torchao.__version__)'
status=0
$venv/bin/python -m pytest tests/engine -p no:cacheprovider "$@" || status=$?
# 5: the arguments (say -k of another tier's test) selected nothing in this tier.
[ "$status" = 5 ] && status=0
exit "$status"
