#!/usr/bin/env bash
# Installs everything the suite needs, checks lint, and runs the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install.sh --test
.venv/bin/ruff check .
.venv/bin/lint-imports --no-cache  # the layering of docs/architecture.md
exec .venv/bin/python -m pytest "$@"
