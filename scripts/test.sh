#!/usr/bin/env bash
# Installs everything the suite needs, checks lint, and runs the whole test suite; then the
# unit, HTTP and engine tiers at the lowest allowed versions (scripts/test_lowest.sh), and
# the engine tier on the GPU machine image's versions (scripts/test_gpu_image.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install.sh --test
.venv/bin/ruff check .
.venv/bin/lint-imports --no-cache  # the layering of docs/architecture.md
.venv/bin/python -m pytest "$@"
# The unit, HTTP and engine tiers again at the lowest versions pyproject.toml allows, in
# .venv-lowest (scripts/test_lowest.sh); KONTEXT_SKIP_LOWEST=1 skips them (local runs).
if [ "${KONTEXT_SKIP_LOWEST:-}" != 1 ]; then ./scripts/test_lowest.sh "$@"; fi
# The engine tier again, on the GPU machine image's versions (torch 2.11, transformers 5.17)
# with diffusers and torchao installed as they are there (benchmarks/README.md).
exec ./scripts/test_gpu_image.sh "$@"
