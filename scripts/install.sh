#!/usr/bin/env bash
# Creates .venv and installs the project into it, at the exact versions CI tests
# (constraints.txt; refreshed with ./scripts/lock.sh). `--test` adds the test tools, the
# official JS client (npm) and, when run as root, the Debian packages the tests use:
# chromium (playground), libimage-exiftool-perl (exiftool reads the disclosure marks), curl
# (the README's examples), openssl (docs/safety.md's test CA) and nginx-light (the
# reverse-proxy test).
set -euo pipefail
cd "$(dirname "$0")/.."
with_tests=false
[ "${1:-}" = "--test" ] && with_tests=true

[ -x .venv/bin/python ] || python3 -m venv .venv
. .venv/bin/activate
# uv resolves, downloads and unpacks in parallel, much faster than pip on a fresh machine
# (benchmarks/RESULTS.md, "Fresh install to a ready demo server"). pip installs uv itself.
python -m pip install -q "uv==0.13.9"
# uv reads no pip configuration: hand it the wheel folders pip is configured with (where a
# machine keeps a local CPU torch wheel), so that uv installs the files pip would.
links=()
local_torch=false
for dir in $(python -m pip config list 2>/dev/null | sed -n "s/^[^ ]*find-links='\(.*\)'$/\1/p" \
             | tr ' ' '\n' | sort -u); do
  links+=(--find-links "$dir")
  compgen -G "$dir/torch-2.13.0*.whl" >/dev/null && local_torch=true
done
# Keep an existing torch (e.g. a CUDA build); otherwise 2.13.0 (the suite and the demo need
# no GPU). torch is not in constraints.txt, so a torch already there is never replaced.
# uv takes it from a local wheel folder; without one, pip does, so that pip's own index
# configuration (a CPU-wheel index, say) decides which build comes, as it did before uv.
torch=()
if ! python -c "import torch" 2>/dev/null; then
  if $local_torch; then
    torch=("torch==2.13.0")
  else
    python -m pip install -q "torch==2.13.0"
  fi
fi
extras=""
# [ray]: the Ray Serve tests (tests/ray_serve) run in CI too; [otel]: the tracing test.
$with_tests && extras="[test,ray,otel]"
.venv/bin/uv pip install -q --python .venv/bin/python "${links[@]}" -c constraints.txt \
  -e ".$extras" "${torch[@]}"
if $with_tests; then
  (cd tests/js && npm install --no-save --no-audit --no-fund --loglevel=error)
  missing=()
  command -v chromium >/dev/null 2>&1 || missing+=(chromium)
  command -v exiftool >/dev/null 2>&1 || missing+=(libimage-exiftool-perl)
  command -v curl >/dev/null 2>&1 || missing+=(curl)  # the README's curl examples are run
  command -v openssl >/dev/null 2>&1 || missing+=(openssl)  # docs/safety.md's test CA is made
  if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ]; then
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
        "${missing[@]}" >/dev/null
    else
      echo "install the Debian packages ${missing[*]} (sudo apt-get install ${missing[*]})" \
        "for the playground, disclosure and doc-example tests" >&2
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
fi
