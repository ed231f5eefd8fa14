"""The README's two JavaScript examples (the official `prodia/v2` client and the AI SDK's
`@ai-sdk/prodia`), run as written with node against a server that has no tokens and with
no token in the environment; only the server's address is substituted."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest
from helpers.fake_engine import FakeEngine
from helpers.http import image_of
from helpers.images import image_bytes
from helpers.js_client import JS_DIR, require_js_client

pytestmark = pytest.mark.js

README = Path(__file__).resolve().parents[2] / "README.md"
BASE = "http://127.0.0.1:8000/v2"


def readme_js_blocks() -> list[str]:
    return re.findall(r"```js\n(.*?)```", README.read_text(), re.S)


def run_example(code: str, base: str, cwd: Path) -> subprocess.CompletedProcess:
    """Run `code` as an ES module in `cwd` (the npm packages of tests/js), no token set."""
    require_js_client()
    (cwd / "node_modules").symlink_to(JS_DIR / "node_modules")
    script = cwd / "example.mjs"
    script.write_text(code.replace(BASE, base))
    env = {k: v for k, v in os.environ.items()
           if k not in ("KONTEXT_TOKEN", "TOKEN", "PRODIA_TOKEN")}
    return subprocess.run(["node", str(script)], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=120, check=False)


@pytest.fixture
def cwd(tmp_path: Path) -> Path:
    (tmp_path / "photo.jpg").write_bytes(image_bytes(800, 600, "JPEG"))
    return tmp_path


def test_the_readme_shows_both_clients():
    blocks = readme_js_blocks()
    assert len(blocks) == 2
    assert all(BASE in block for block in blocks)
    assert 'from "prodia/v2"' in blocks[0] and 'from "@ai-sdk/prodia"' in blocks[1]


def test_the_official_clients_example(serve, cwd):
    engine = FakeEngine()
    done = run_example(readme_js_blocks()[0], serve(engine).v2, cwd)
    assert done.returncode == 0, done.stderr
    assert image_of((cwd / "edited.png").read_bytes()).format == "PNG"
    assert engine.requests[-1].prompt == "add a bowler hat"


def test_the_ai_sdk_example_needs_no_token_on_a_server_without_tokens(serve, cwd):
    engine = FakeEngine()
    done = run_example(readme_js_blocks()[1], serve(engine, fallback="local").v2, cwd)
    assert done.returncode == 0, done.stderr
    assert image_of((cwd / "edited.jpg").read_bytes()).format == "JPEG"
    assert image_of((cwd / "lighthouse.png").read_bytes()).format == "PNG"
    assert [request.prompt for request in engine.requests] == ["add a bowler hat",
                                                               "a lighthouse at dusk"]
