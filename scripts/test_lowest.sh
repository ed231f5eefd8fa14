#!/usr/bin/env bash
# The unit, HTTP and engine tiers (tests/unit, tests/http, tests/engine) at the lowest
# versions pyproject.toml allows, so that its floors are tested rather than claimed: uv
# resolves every runtime dependency to its floor (`--resolution lowest-direct`; what they
# pull in is the newest that fits) into .venv-lowest. The [test] tools (pytest,
# schemathesis, torchao, ...) stay at their constraints.txt pins: they are not what a user
# installs. Extra arguments go to pytest.
#
# torch is the exception: it stays at the version .venv has (scripts/install.sh), because
# its floor is a ~3 GB CUDA download; the engine tier still runs diffusers, transformers,
# peft and accelerate at their floors on it (it found two floors that were not true).
# The e2e, Ray Serve and browser tiers are left out: minutes more on 2 cores for little the
# three tiers here do not already reach. Measured on a shared 2-core machine: about 7
# minutes for the install and the unit and HTTP tiers, 7.5 more for the engine tier.
#
# Skip it locally with KONTEXT_SKIP_LOWEST=1 (scripts/test.sh reads it).
set -euo pipefail
cd "$(dirname "$0")/.."
venv=.venv-lowest
uv=.venv/bin/uv  # installed by scripts/install.sh
[ -x "$uv" ] || { python3 -m pip install -q "uv==0.13.9" && uv=uv; }
[ -x $venv/bin/python ] || python3 -m venv $venv
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
torch_version=$(.venv/bin/python -c 'import torch; print(torch.__version__.split("+")[0])')
echo "torch==$torch_version" > "$work/pins.txt"
# The [test] tools' pins from constraints.txt (those that are not runtime dependencies too).
.venv/bin/python - >> "$work/pins.txt" <<'EOF'
import tomllib
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name as name

project = tomllib.load(open("pyproject.toml", "rb"))["project"]
runtime = {name(Requirement(r).name) for r in project["dependencies"]}
tools = {name(Requirement(r).name) for r in project["optional-dependencies"]["test"]}
for line in open("constraints.txt"):
    if not line.startswith("#") and name(line.split("==")[0]) in tools - runtime:
        print(line.strip())
EOF
"$uv" pip compile pyproject.toml --extra test --resolution lowest-direct -q \
  --python $venv/bin/python --no-header --no-annotate -c "$work/pins.txt" -o "$work/all.txt"
grep -vE '^((torch|triton)==|(nvidia|cuda)-)' "$work/all.txt" > "$work/lowest.txt"
# torch as install.sh installs it: pip's own configuration (a local wheel folder, a CPU
# index) decides which build comes.
$venv/bin/python -c "import torch" 2>/dev/null || \
  $venv/bin/python -m pip install -q "torch==$torch_version"
"$uv" pip install -q --python $venv/bin/python -c "$work/lowest.txt" -e ".[test]"
$venv/bin/python - "$work/lowest.txt" <<'EOF'
import sys
from importlib.metadata import version
from packaging.requirements import Requirement

# What was installed is what was resolved: a floor that uv could not honour fails here.
wrong = []
for line in open(sys.argv[1]):
    if "==" in line and not line.startswith("#"):
        req = Requirement(line.strip())
        if req.marker is None or req.marker.evaluate():
            (pinned,) = req.specifier
            if version(req.name) != pinned.version:
                wrong.append(f"{req.name} {version(req.name)} (resolved {pinned.version})")
if wrong:
    sys.exit("installed other than the lowest resolution: " + ", ".join(wrong))
EOF
echo "lowest versions: $(grep -E '^(fastapi|starlette|uvicorn|h11|pydantic|pydantic-settings|python-multipart|pillow|httpx2?|sse-starlette|prometheus-client)==' "$work/lowest.txt" | tr '\n' ' ')"
status=0
$venv/bin/python -m pytest tests/unit tests/http tests/engine -p no:cacheprovider "$@" \
  || status=$?
# 5: the arguments (say -k of another tier's test) selected nothing in these tiers.
[ "$status" = 5 ] && status=0
exit "$status"
