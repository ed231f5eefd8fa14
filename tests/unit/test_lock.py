"""constraints.txt pins every dependency pyproject.toml names, at a version it allows.

When this fails after a merge that added or changed a dependency, run ./scripts/lock.sh
(one command) and commit constraints.txt.
"""

import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
#: Installed by scripts/install.sh on its own (or kept, e.g. a CUDA build): never pinned here.
UNPINNED = {"torch"}


def pins() -> dict[str, list[str]]:
    """{package: [versions]} of constraints.txt (several when markers differ)."""
    found: dict[str, list[str]] = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9_.-]+)==([^\s;]+)", line)
        if match:
            found.setdefault(canonicalize_name(match[1]), []).append(match[2])
    return found


def requirements() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = list(project["dependencies"])
    for extra in project.get("optional-dependencies", {}).values():
        names += extra
    return [Requirement(name) for name in names]


@pytest.mark.parametrize("requirement", requirements(), ids=str)
def test_every_dependency_is_pinned_within_its_range(requirement):
    name = canonicalize_name(requirement.name)
    if name in UNPINNED:
        assert name not in pins(), f"{name} must not be pinned in constraints.txt"
        return
    versions = pins().get(name)
    assert versions, f"{name} is not in constraints.txt: run ./scripts/lock.sh"
    for version in versions:
        assert requirement.specifier.contains(version, prereleases=True), (
            f"constraints.txt pins {name}=={version}, outside pyproject's {requirement}: "
            "run ./scripts/lock.sh")


def test_install_script_installs_torch_and_the_rest_with_the_constraints():
    script = (ROOT / "scripts/install.sh").read_text()
    assert "-c constraints.txt" in script
    assert re.search(r"torch==[0-9.]+", script)
