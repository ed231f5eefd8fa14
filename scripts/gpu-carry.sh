#!/usr/bin/env bash
# Downloads into DIR the wheels that a GPU machine's image lacks for the prepared GPU run
# (benchmarks/gpu_run.py) and tests/gpu, for its Python 3.12 on manylinux x86-64, and prints
# their total size. The image holds torch and the rest (benchmarks/gpu_image.txt); what it
# lacks is diffusers and torchao, at the versions CI tests (constraints.txt). Fails if a
# carried wheel needs a package that neither the image nor the carry provides, or if the
# carry outgrows MAX_MIB. On the GPU machine (benchmarks/README.md):
#
#   python3 -m pip install --no-index --no-deps --target /tmp/carried DIR/*.whl
#   PYTHONPATH=/tmp/carried python3 benchmarks/gpu_run.py ...
#
#   scripts/gpu-carry.sh .carry
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:?usage: scripts/gpu-carry.sh DIR}
MAX_MIB=16
CARRIED=(diffusers torchao)
# Declared by a carried wheel, never imported on the image's Python: diffusers imports
# importlib.metadata from the standard library on Python >= 3.8.
UNUSED=(importlib-metadata)

pins=()
for name in "${CARRIED[@]}"; do
  pin=$(grep -iE "^${name}==" constraints.txt | cut -d' ' -f1)
  [ -n "$pin" ] || { echo "no pin for $name in constraints.txt" >&2; exit 1; }
  pins+=("$pin")
done
# pip matches manylinux tags exactly: name every glibc level up to the image's.
platforms=(--platform manylinux1_x86_64 --platform manylinux2014_x86_64)
for n in $(seq 17 39); do platforms+=(--platform "manylinux_2_${n}_x86_64"); done
mkdir -p "$dir"
rm -f "$dir"/*.whl
python3 -m pip download -q --disable-pip-version-check --no-deps --only-binary=:all: \
  --python-version 3.12 --implementation cp "${platforms[@]}" -d "$dir" "${pins[@]}"

python3 - "$dir" "$MAX_MIB" "${CARRIED[*]} ${UNUSED[*]}" <<'EOF'
"""Check the carry: every requirement met by the image or the carry; within its size."""
import re
import sys
import zipfile
from email.parser import Parser
from pathlib import Path

try:
    from packaging.requirements import Requirement
except ImportError:  # pip always has it
    from pip._vendor.packaging.requirements import Requirement

folder, max_mib, provided = Path(sys.argv[1]), float(sys.argv[2]), sys.argv[3].split()


def norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


image = {norm(re.split(r"[=<>!~ ]", line.strip())[0])
         for line in Path("benchmarks/gpu_image.txt").read_text().splitlines()
         if line.strip() and not line.startswith("#")}
have = image | {norm(name) for name in provided}
environment = {"python_version": "3.12", "python_full_version": "3.12.3",
               "sys_platform": "linux", "platform_system": "Linux",
               "platform_machine": "x86_64", "implementation_name": "cpython",
               "platform_python_implementation": "CPython", "extra": ""}
missing, total = [], 0
for wheel in sorted(folder.glob("*.whl")):
    total += wheel.stat().st_size
    print(f"  {wheel.name}  {wheel.stat().st_size / 2**20:.1f} MiB")
    with zipfile.ZipFile(wheel) as archive:
        name = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        metadata = Parser().parsestr(archive.read(name).decode())
    for line in metadata.get_all("Requires-Dist") or []:
        requirement = Requirement(line)
        if requirement.marker and not requirement.marker.evaluate(environment):
            continue
        if norm(requirement.name) not in have:
            missing.append(f"{wheel.name} needs {requirement}")
print(f"total {total / 2**20:.1f} MiB in {folder} (limit {max_mib:g} MiB)")
if missing:
    sys.exit("not on the image and not carried:\n  " + "\n  ".join(missing))
if total > max_mib * 2**20:
    sys.exit(f"the carry is {total / 2**20:.1f} MiB, over {max_mib:g} MiB")
EOF
