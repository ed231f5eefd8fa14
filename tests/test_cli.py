"""The `kontext` command: help, environment variables, the weights tools, clear failures."""

import os
import subprocess
import sys

import pytest

from server.cli import build_parser, main, settings_from_args

KONTEXT = [sys.executable, "-m", "server.cli"]


def run(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("KONTEXT_")}
    return subprocess.run([*KONTEXT, *args], capture_output=True, text=True, timeout=120,
                          env={**clean, **(env or {})}, check=False)


def test_serve_help_documents_every_option_and_its_environment_variable():
    help_text = run("serve", "--help").stdout
    for flag in ("--weights", "--demo", "--host", "--port", "--device", "--queue-size"):
        assert flag in help_text
    for env in ("KONTEXT_WEIGHTS", "KONTEXT_DEMO", "KONTEXT_HOST", "KONTEXT_PORT",
                "KONTEXT_DEVICE", "KONTEXT_QUEUE_SIZE"):
        assert env in help_text.replace("\n", "").replace(" ", "")


def test_serve_without_weights_points_to_the_docs_and_demo():
    done = run("serve", "--port", "0")
    assert done.returncode == 2
    assert "weights/README.md" in done.stderr and "--demo" in done.stderr


def test_serve_with_a_missing_folder_says_so(tmp_path):
    done = run("serve", "--weights", str(tmp_path / "nowhere"))
    assert done.returncode == 2
    assert "does not exist" in done.stderr


def test_environment_then_flags(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("KONTEXT_QUEUE_SIZE", "3")
    monkeypatch.setenv("KONTEXT_DEVICE", "cpu")
    monkeypatch.setenv("KONTEXT_TOKENS", "alpha, beta")
    settings = settings_from_args(build_parser().parse_args(["serve", "--queue-size", "5"]))
    assert settings.queue_size == 5  # the flag wins
    assert settings.device == "cpu"  # from the environment
    assert settings.tokens == ["alpha", "beta"]


def test_invalid_setting_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, capsys):
    monkeypatch.setenv("KONTEXT_QUEUE_SIZE", "zero")
    assert main(["serve"]) == 2
    assert "queue_size" in capsys.readouterr().err


def test_weights_tiny_then_check(tmp_path):
    target = tmp_path / "tiny"
    made = run("weights", "tiny", str(target))
    assert made.returncode == 0, made.stderr
    assert (target / "model_index.json").is_file()
    checked = run("weights", "check", str(target))
    assert checked.returncode == 0, checked.stdout
    assert "OK: kontext serve can load this" in checked.stdout
    assert "noise" in checked.stdout.lower()
