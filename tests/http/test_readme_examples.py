"""The README's curl commands, run as written against a real server, so they cannot drift.

Every `curl` line of the README's bash blocks is taken from README.md itself; only the
server address, the input photos and the async job's `$ID` are substituted. The server runs
the fake engine: what the commands show (status, answer shape, file names, sizes) is the
server's, not the engine's.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
from helpers.async_api import wait_until
from helpers.fake_engine import FakeEngine
from helpers.http import image_of
from helpers.images import image_bytes

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
#: Every user doc with shell examples.
DOCS = [README, *sorted((ROOT / "docs").glob("*.md")), ROOT / "weights" / "README.md",
        ROOT / "benchmarks" / "README.md"]
BASES = ("http://127.0.0.1:8000", "http://localhost:8000")
SYNC = r":8000/v2/job(\s|$)"


def readme_curl_commands() -> list[str]:
    """Each curl command of the README's bash blocks, continuation lines joined."""
    blocks = re.findall(r"```bash\n(.*?)```", README.read_text(), re.S)
    commands = []
    for block in blocks:
        for line in block.replace("\\\n", " ").splitlines():
            if line.strip().startswith("curl "):
                commands.append(line.strip())
    return commands


def run_curl(command: str, base: str, photo: Path, cwd: Path, job_id: str = "",
             expect: int = 0) -> str:
    """Run one README command (no shell) with the substitutions; its stdout."""
    args = shlex.split(command, comments=True)
    for url in BASES:
        args = [arg.replace(url, base) for arg in args]
    # The README's photos (photo.jpg; sofa.jpg and cat.png for several images) lie in cwd.
    args = [arg.replace("@photo.jpg", f"@{photo}").replace("$ID", job_id) for arg in args]
    done = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=60,
                          check=False)
    assert done.returncode == expect, (command, done.stderr)
    return done.stdout


def by_path(commands: list[str], pattern: str) -> list[str]:
    """The commands whose text matches the regular expression `pattern`."""
    return [command for command in commands if re.search(pattern, command)]


@pytest.fixture
def setting(serve, tmp_path):
    if shutil.which("curl") is None:
        pytest.fail("curl is not installed (Debian: apt-get install curl)")  # install.sh --test
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(image_bytes(800, 600, "JPEG"))
    (tmp_path / "sofa.jpg").write_bytes(image_bytes(800, 600, "JPEG"))
    (tmp_path / "cat.png").write_bytes(image_bytes(400, 400, color=(200, 120, 40)))
    engine = FakeEngine()
    return serve(engine).url, photo, tmp_path, engine


def test_the_readme_has_the_examples_this_test_runs():
    commands = readme_curl_commands()
    assert len(by_path(commands, SYNC)) == 2  # "Try it", and an edit with a reference
    assert len(by_path(commands, "/v2/job/async")) == 3  # submit, state, output
    assert by_path(commands, "/metrics")


def test_every_curl_example_in_the_docs_fails_loudly_on_an_http_error():
    # Without --fail-with-body, curl saves an error's JSON as `-o edited.png` and exits 0.
    for doc in DOCS:
        for block in re.findall(r"```(?:bash|sh)\n(.*?)```", doc.read_text(), re.S):
            for line in block.replace("\\\n", " ").splitlines():
                if re.search(r"(^|\$\()\s*curl ", line):
                    assert "--fail-with-body" in line, (doc.name, line)


def test_an_http_error_exits_non_zero(setting):
    base, photo, cwd, _ = setting
    photo.write_bytes(b"not an image")
    command = by_path(readme_curl_commands(), SYNC)[0]
    run_curl(command, base, photo, cwd, expect=22)  # curl's exit status for HTTP >= 400
    # The body kept is the server's reason, for `cat edited.png` to show.
    assert json.loads((cwd / "edited.png").read_text())["error"].startswith("input: ")


def test_synchronous_example(setting):
    base, photo, cwd, _ = setting
    command = by_path(readme_curl_commands(), SYNC)[0]
    config = json.loads(re.search(r"job=(\{.*\}\});", command)[1])["config"]
    run_curl(command, base, photo, cwd)
    edited = image_of((cwd / "edited.png").read_bytes())
    assert edited.format == "PNG" and edited.size == (config["width"], config["height"])


def test_several_images_example(setting):
    base, photo, cwd, engine = setting
    command = by_path(readme_curl_commands(), SYNC)[1]
    run_curl(command, base, photo, cwd)
    assert image_of((cwd / "placed.png").read_bytes()).format == "PNG"
    (request,) = engine.requests
    assert request.image.size == (800, 600) and len(request.references) == 1


def test_async_example_names_the_right_output_file(setting):
    base, photo, cwd, _ = setting
    submit, state, output = by_path(readme_curl_commands(), "/v2/job/async")
    job = json.loads(run_curl(submit, base, photo, cwd))
    assert job["state"]["current"] in ("queued", "processing")
    wait_until(lambda: run_curl(state, base, photo, cwd, job["id"]) == "processed",
               what="the async job processed")
    run_curl(output, base, photo, cwd, job["id"])
    assert image_of((cwd / "edited.png").read_bytes()).format == "PNG"


def test_metrics_example(setting):
    base, photo, cwd, _ = setting
    for command in by_path(readme_curl_commands(), "/metrics"):
        assert "kontext_jobs_in_flight" in run_curl(command, base, photo, cwd)
