#!/usr/bin/env bash
# Creates .venv and installs the project into it, at the exact versions CI tests
# (constraints.txt; refreshed with ./scripts/lock.sh). `--test` adds the test tools, the
# official JS client (npm) and, when run as root without one, Debian's chromium.
set -euo pipefail
cd "$(dirname "$0")/.."
with_tests=false
[ "${1:-}" = "--test" ] && with_tests=true

[ -x .venv/bin/python ] || python3 -m venv .venv
. .venv/bin/activate
# torch first, with pip: keep an existing torch (e.g. a CUDA build); otherwise 2.13.0 (the
# suite and the demo need no GPU). pip, not uv, so that pip's configured wheel folders and
# indexes are used (a local CPU wheel where there is one; uv reads no pip configuration).
python -c "import torch" 2>/dev/null || python -m pip install -q "torch==2.13.0"
# Everything else with uv, which resolves and downloads in parallel (benchmarks/RESULTS.md,
# "Fresh install to a ready demo server"); torch is already there, so uv keeps it.
python -m pip install -q "uv==0.13.9"
extras=""
$with_tests && extras="[test]"
.venv/bin/uv pip install -q --python .venv/bin/python -c constraints.txt -e ".$extras"
if $with_tests; then
  (cd tests/js && npm install --no-save --no-audit --no-fund --loglevel=error)
  if ! command -v chromium >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ]; then
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
    else
      echo "install Debian's chromium (sudo apt-get install chromium) for the playground test" >&2
    fi
  fi
fi
