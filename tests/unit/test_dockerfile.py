"""Dockerfile.cuda's structure (no Docker engine on the test machines), and that its
defaults keep the refuse-open-bind rule inside the container."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest

from server.cli.probe import probe_request
from server.cli.serve import ServeRefused, check_serving_safety
from server.settings import Settings

ROOT = Path(__file__).parents[2]
DOCKERFILE = ROOT / "Dockerfile.cuda"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    joined, current = [], ""
    for line in DOCKERFILE.read_text().splitlines():
        if not current and (not line.strip() or line.lstrip().startswith("#")):
            continue
        current += line.rstrip()
        if current.endswith("\\"):
            current = current[:-1] + " "
            continue
        joined.append(current.strip())
        current = ""
    return [(text.split(None, 1)[0].upper(), text.split(None, 1)[1]) for text in joined]


def args_of(name: str) -> list[str]:
    return [args for instruction, args in instructions() if instruction == name]


def env() -> dict[str, str]:
    pairs = [pair.split("=", 1) for args in args_of("ENV") for pair in shlex.split(args)]
    return dict(pairs)


def test_cuda_runtime_base_by_digest_and_the_torch_ci_tests():
    (base,) = args_of("FROM")
    # Pinned by digest: a re-pushed tag cannot change the build.
    assert re.fullmatch(r"nvidia/cuda:\d+\.\d+\.\d+-runtime-ubuntu24\.04@sha256:[0-9a-f]{64}",
                        base), base
    (torch_arg,) = [a for a in args_of("ARG") if a.startswith("TORCH_VERSION=")]
    # The container's torch is the release the suite runs against (scripts/install.sh).
    tested = re.search(r'torch==([0-9.]+)', (ROOT / "scripts" / "install.sh").read_text())
    assert tested and torch_arg == f"TORCH_VERSION={tested[1]}"


def test_runs_as_a_non_root_user():
    users = args_of("USER")
    assert users and users[-1] not in ("root", "0")
    # The user is set after the last RUN, so the server process is never root.
    order = [name for name, _ in instructions()]
    assert max(i for i, n in enumerate(order) if n == "RUN") < order.index("USER")


def test_pip_downloads_are_cached_by_buildkit_not_kept_in_the_image():
    assert DOCKERFILE.read_text().startswith("# syntax=docker/dockerfile:1\n")
    installs = [args for args in args_of("RUN") if "pip install" in args]
    assert len(installs) == 2
    for args in installs:
        assert args.startswith("--mount=type=cache,target=/root/.cache/pip "), args
    assert "PIP_NO_CACHE_DIR" not in env()


def test_healthcheck_entrypoint_and_port():
    (health,) = args_of("HEALTHCHECK")
    # `kontext probe` with the settings of PID 1 (the server, flags included) over the
    # container's environment: the probe port, and a token under --no-open-probes.
    command = json.loads(health.split("CMD", 1)[1])
    assert command[:4] == ["kontext", "probe", "--args-of", "1"], command
    timeout = float(re.search(r"--timeout=(\d+)s", health)[1])
    assert float(command[command.index("--timeout") + 1]) < timeout
    (entrypoint,) = args_of("ENTRYPOINT")
    assert json.loads(entrypoint) == ["kontext", "serve"]  # exec form: SIGTERM reaches it
    assert args_of("EXPOSE") == [f"{env()['KONTEXT_PORT']} {env()['KONTEXT_PROBE_PORT']}"]


def test_weights_and_caches_are_volumes():
    (volumes,) = args_of("VOLUME")
    assert set(json.loads(volumes)) == {"/weights", "/cache"}
    variables = env()
    assert variables["KONTEXT_WEIGHTS"] == "/weights"
    for name in ("HF_HOME", "TORCHINDUCTOR_CACHE_DIR", "XDG_CACHE_HOME"):
        assert variables[name].startswith("/cache"), name


def test_copied_sources_exist_and_are_not_ignored():
    ignored = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()}
    assert {".git", ".venv", "weights"} <= ignored
    for args in args_of("COPY"):
        *sources, _dest = args.split()
        for source in sources:
            assert (ROOT / source).exists(), source
            assert source not in ignored


def test_container_defaults_refuse_an_open_bind(monkeypatch):
    # Only the Dockerfile's KONTEXT_* defaults, as the container's environment.
    for name, value in env().items():
        if name.startswith("KONTEXT_"):
            monkeypatch.setenv(name, value)
    settings = Settings()
    assert settings.host == "0.0.0.0"
    with pytest.raises(ServeRefused, match="no tokens configured"):
        check_serving_safety(settings)
    monkeypatch.setenv("KONTEXT_TOKENS", "container-token-0a1b2c")
    assert check_serving_safety(Settings()) == ("container-token-0a1b2c",)


def test_the_healthcheck_probes_where_the_container_settings_say(monkeypatch, tmp_path):
    for name, value in env().items():
        if name.startswith("KONTEXT_"):
            monkeypatch.setenv(name, value)
    tokens = tmp_path / "tokens"
    tokens.write_text("# the operator's\ncontainer-token-0a1b2c\n")
    monkeypatch.setenv("KONTEXT_TOKEN_FILE", str(tokens))
    request = probe_request(Settings(), live=False)
    assert request.full_url == f"http://127.0.0.1:{env()['KONTEXT_PROBE_PORT']}/readyz"
    assert request.get_header("Authorization") is None  # probes open: no token sent
    request = probe_request(Settings(open_probes=False, probe_port=None), live=True)
    assert request.full_url == f"http://127.0.0.1:{env()['KONTEXT_PORT']}/healthz"
    assert request.get_header("Authorization") == "Bearer container-token-0a1b2c"


def test_triton_can_build_its_launcher_and_the_gpu_tiers_are_installed():
    """Triton compiles its CUDA launcher with gcc against Python's headers at run time, and
    --tier fp8/turbo need torchao (the gpu extra)."""
    (apt,) = [args for args in args_of("RUN") if "apt-get install" in args]
    packages = set(apt.split("apt-get install", 1)[1].split("&&")[0].split())
    assert {"gcc", "libc6-dev", "python3-dev"} <= packages
    installs = [args for args in args_of("RUN") if "pip install" in args and "torch==" not in args]
    extras = [set(re.findall(r'"\.\[([a-z,]+)\]"', args)[0].split(",")) for args in installs]
    assert extras and all({"gpu", "safety"} <= found for found in extras), installs
