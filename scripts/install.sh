#!/usr/bin/env bash
# Creates .venv and installs the project into it. `--test` adds the test tools, the
# official JS client (npm) and, when run as root without one, Debian's chromium.
set -euo pipefail
cd "$(dirname "$0")/.."
with_tests=false
[ "${1:-}" = "--test" ] && with_tests=true

[ -x .venv/bin/python ] || python3 -m venv .venv
. .venv/bin/activate
python -m pip install -q --upgrade pip
# Keep an existing torch (e.g. a CUDA build). Otherwise 2.13.0: the suite and the demo
# need no GPU, and pinning it avoids pulling an unexpected multi-GB build.
python -c "import torch" 2>/dev/null || python -m pip install -q "torch==2.13.0"
if $with_tests; then
  # [ray]: the Ray Serve tests run in CI too (tests/ray_serve)
  python -m pip install -q -e ".[test,ray]"
  (cd tests/js && npm install --no-save --no-audit --no-fund --loglevel=error)
  if ! command -v chromium >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ]; then
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
    else
      echo "install Debian's chromium (sudo apt-get install chromium) for the playground test" >&2
    fi
  fi
else
  python -m pip install -q -e .
fi
