"""The engine and GPU test tiers import no server code and no HTTP stack, so that they are
collected and run where only the engine's dependencies are installed (a GPU box)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parents[1]
FORBIDDEN = {"server", "fastapi", "httpx", "uvicorn", "starlette", "helpers"}


@pytest.mark.parametrize("path", sorted([*TESTS.glob("engine/*.py"), *TESTS.glob("gpu/*.py")]),
                         ids=lambda path: f"{path.parent.name}/{path.name}")
def test_engine_and_gpu_tiers_import_no_server_code(path):
    imported = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            imported.add(node.module.split(".")[0])
    assert not imported & FORBIDDEN, sorted(imported & FORBIDDEN)
