#!/usr/bin/env bash
# The prepared GPU session, one command on a GPU machine (one H100 or H200) from the
# repository root, run by the machine image's own python3 (torch with CUDA there), with the
# wheels scripts/gpu-carry.sh put in .carry beside it (benchmarks/README.md):
#
#   bash benchmarks/gpu_session.sh OUTDIR
#
# Expected minutes on one H100, 9 in all (each step's own guard keeps it to its share):
#   0.2  the carried wheels (diffusers, torchao) into /tmp/carried, on PYTHONPATH
#   7.0  benchmarks/gpu_run.py --budget 420: facts 0.1, micro-benchmarks 0.2, stock 0.9,
#        exact 1.4, fp8 1.3, turbo 0.7, deviation 0.1, memory plans 0.3, 24gb 0.8, 16gb 1.2
#        (a step starts only if the time left covers its minimum; see STEPS there)
#   1.5  tests/gpu, the memory modes on CUDA (exact@24gb, fp8@24gb with its compile,
#        exact@16gb): what gpu_run.py does not cover; stopped at 100 s
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:?usage: benchmarks/gpu_session.sh OUTDIR}
mkdir -p "$out"
python3 -m pip install -q --disable-pip-version-check --no-index --no-deps --no-compile \
  --no-cache-dir --target /tmp/carried .carry/*.whl || exit 1
export PYTHONPATH="/tmp/carried:$PWD" PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$out/gpu.txt"
python3 benchmarks/gpu_run.py --budget 420 --out "$out/gpu_run.json" 2>&1 | tee "$out/gpu_run.log"
timeout 100 python3 -m pytest tests/gpu/test_engine_gpu.py -k "24gb or 16gb" -q \
  -p no:cacheprovider 2>&1 | tee "$out/gpu_tests.log"
