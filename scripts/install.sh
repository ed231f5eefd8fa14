#!/usr/bin/env bash
# Creates .venv and installs the project into it. `--test` adds the test tools, the
# official JS client (npm) and, when run as root, the Debian packages the tests use:
# chromium (playground) and libimage-exiftool-perl (exiftool reads the disclosure marks).
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
  python -m pip install -q -e ".[test]"
  (cd tests/js && npm install --no-save --no-audit --no-fund --loglevel=error)
  missing=()
  command -v chromium >/dev/null 2>&1 || missing+=(chromium)
  command -v exiftool >/dev/null 2>&1 || missing+=(libimage-exiftool-perl)
  if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ]; then
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
        "${missing[@]}" >/dev/null
    else
      echo "install the Debian packages ${missing[*]} (sudo apt-get install ${missing[*]})" \
        "for the playground and disclosure tests" >&2
    fi
  fi
  # nginx runs docs/nginx-kontext.conf in front of a server in the reverse-proxy test.
  if ! command -v nginx >/dev/null 2>&1 && [ ! -x /usr/sbin/nginx ]; then
    if [ "$(id -u)" = 0 ]; then
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
        --no-install-recommends nginx-light >/dev/null
    else
      echo "install Debian's nginx-light (sudo apt-get install nginx-light) for the" \
        "reverse-proxy test" >&2
    fi
  fi
else
  python -m pip install -q -e .
fi
