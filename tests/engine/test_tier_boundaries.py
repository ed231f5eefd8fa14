"""The engine and GPU test tiers import no server code and no HTTP stack, so that they are
collected and run where only the engine's dependencies are installed (a GPU box). Shared
test helpers they use (tests/helpers/*.py) are held to the same rule, transitively."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parents[1]
FORBIDDEN = {"server", "fastapi", "httpx2", "uvicorn", "starlette"}


def imported_roots(path: Path, seen: set[Path] | None = None) -> set[str]:
    """Top-level modules `path` imports, following imports of tests/helpers modules."""
    seen = set() if seen is None else seen
    seen.add(path)
    roots: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else \
            [node.module] if isinstance(node, ast.ImportFrom) and node.module and \
            not node.level else []
        for name in names:
            roots.add(name.split(".")[0])
            helper = TESTS / (name.replace(".", "/") + ".py")
            if name.startswith("helpers.") and helper.is_file() and helper not in seen:
                roots |= imported_roots(helper, seen)
    return roots


@pytest.mark.parametrize("path", sorted([*TESTS.glob("engine/*.py"), *TESTS.glob("gpu/*.py")]),
                         ids=lambda path: f"{path.parent.name}/{path.name}")
def test_engine_and_gpu_tiers_import_no_server_code(path):
    assert not imported_roots(path) & FORBIDDEN, sorted(imported_roots(path) & FORBIDDEN)


def test_the_check_follows_helpers(tmp_path):
    # A test that reaches the server only through a helper is caught.
    test = tmp_path / "test_uses_a_server_helper.py"
    test.write_text("from helpers.servers import serve\n")
    assert {"helpers", "server", "fastapi"} <= imported_roots(test)
