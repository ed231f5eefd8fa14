#!/usr/bin/env bash
# Installs the project and starts the server in demo mode (tiny random weights, CPU).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install.sh
exec .venv/bin/kontext serve --demo "$@"
