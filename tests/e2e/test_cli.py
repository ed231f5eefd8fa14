"""The `kontext` command: help, environment variables, the weights tools, clear failures."""

import os
import subprocess
import sys

import pytest
from pydantic import ValidationError

from server.cli.main import build_parser, main
from server.cli.settings_flags import default_text, settings_from_args
from server.settings import Settings

KONTEXT = [sys.executable, "-m", "server.cli.main"]


def run(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("KONTEXT_")}
    return subprocess.run([*KONTEXT, *args], capture_output=True, text=True, timeout=120,
                          env={**clean, **(env or {})}, check=False)


def test_serve_help_documents_every_setting_with_its_default_and_variable():
    # argparse wraps lines: compare without any whitespace.
    help_text = "".join(run("serve", "--help").stdout.split())
    for name, info in Settings.model_fields.items():
        flag = "--" + name.replace("_", "-")
        entry = help_text[help_text.index(flag):]
        default = "".join(default_text(info).split())
        assert f"(default:{default})[env:KONTEXT_{name.upper()}]" in entry, name
    assert "(default:16)[env:KONTEXT_QUEUE_SIZE]" in help_text  # one spelled out


def test_tokens_flag_splits_commas_like_the_environment_and_refuses_empty_ones(monkeypatch):
    a, b, c = "token-a-0123456789", "token-b-0123456789", "token-c-0123456789"
    args = build_parser().parse_args(["serve", "--tokens", f"{a}, {b}", "--tokens", c])
    assert settings_from_args(args).tokens == [a, b, c]
    for bad in ("", " ", "a,,b"):
        with pytest.raises(ValidationError, match="a token is empty"):
            settings_from_args(build_parser().parse_args(["serve", "--tokens", bad]))
    monkeypatch.setenv("KONTEXT_TOKENS", " ")
    with pytest.raises(ValidationError, match="a token is empty"):
        Settings()


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
    monkeypatch.setenv("KONTEXT_TOKENS", "alpha-0123456789ab, beta-0123456789abc")
    settings = settings_from_args(build_parser().parse_args(["serve", "--queue-size", "5"]))
    assert settings.queue_size == 5  # the flag wins
    assert settings.device == "cpu"  # from the environment
    assert settings.tokens == ["alpha-0123456789ab", "beta-0123456789abc"]


def test_invalid_settings_are_one_line_naming_the_flag_and_variable(
        monkeypatch: pytest.MonkeyPatch, capsys, tmp_path):
    monkeypatch.setenv("KONTEXT_QUEUE_SIZE", "zero")
    assert main(["serve"]) == 2
    assert capsys.readouterr().err == ("kontext serve: --queue-size (KONTEXT_QUEUE_SIZE): must "
                                       "be a whole number, got 'zero'\n")
    monkeypatch.delenv("KONTEXT_QUEUE_SIZE")
    cert = tmp_path / "chain.pem"
    cert.write_text("-")
    # Several at once, a secret never echoed; all on one line.
    monkeypatch.setenv("KONTEXT_LOG_LEVEL", "loud")
    assert main(["serve", "--tokens", "s3cret,"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pydantic" not in err and "s3cret" not in err, err
    assert "--log-level (KONTEXT_LOG_LEVEL): must be one of 'debug', 'info', 'warning' or " \
           "'error', got 'loud'" in err
    assert "--tokens (KONTEXT_TOKENS): a token is empty" in err
    # A rule across two fields names both flags and variables.
    monkeypatch.delenv("KONTEXT_LOG_LEVEL")
    assert main(["serve", "--c2pa-cert", str(cert)]) == 2
    assert capsys.readouterr().err == (
        "kontext serve: --c2pa-cert (KONTEXT_C2PA_CERT) and --c2pa-key (KONTEXT_C2PA_KEY) go "
        "together: give both or neither\n")


def test_serve_with_no_ray_cluster_to_join_is_one_line(tmp_path):
    pytest.importorskip("ray")
    # `auto` looks for a cluster this machine started, under RAY_TMPDIR: none there.
    env = {k: v for k, v in os.environ.items()
           if k != "RAY_ADDRESS" and not k.startswith("KONTEXT_")}
    done = run("serve", "--demo", "--ray-address", "auto",
               env={**env, "RAY_TMPDIR": str(tmp_path)})
    assert done.returncode == 2, done.stderr
    assert done.stderr.splitlines()[-1].startswith("kontext serve: --ray-address auto: ")
    assert "Traceback" not in done.stderr


def test_weights_tiny_then_check(tmp_path):
    target = tmp_path / "tiny"
    made = run("weights", "tiny", str(target))
    assert made.returncode == 0, made.stderr
    assert (target / "model_index.json").is_file()
    checked = run("weights", "check", str(target))
    assert checked.returncode == 0, checked.stdout
    assert "OK: kontext serve can load this" in checked.stdout
    assert "noise" in checked.stdout.lower()


def test_empty_tokens_are_refused_at_startup_from_flag_environment_and_file(
        tmp_path, monkeypatch, capsys):
    assert main(["serve", "--tokens", ""]) == 2
    assert "a token is empty" in capsys.readouterr().err
    monkeypatch.setenv("KONTEXT_TOKENS", " ")
    assert main(["serve"]) == 2
    assert "a token is empty" in capsys.readouterr().err
    monkeypatch.delenv("KONTEXT_TOKENS")
    blanks = tmp_path / "tokens.txt"
    blanks.write_text("\n   \n# only a comment\n\t\n")
    assert main(["serve", "--token-file", str(blanks), "--demo"]) == 2
    assert "holds no token" in capsys.readouterr().err


def test_tokens_on_the_command_line_are_warned_about():
    from server.cli.serve import TOKENS_ON_COMMAND_LINE, startup_warnings

    assert startup_warnings(("abc",), tokens_from_flag=False) == []
    assert startup_warnings(("abc",), tokens_from_flag=True) == [TOKENS_ON_COMMAND_LINE]
    # The process says it (no weights: serve stops right after its startup warnings).
    done = run("serve", "--tokens", "abc-0123456789abcdef")
    assert done.returncode == 2
    assert "other users of this machine can read them" in done.stderr
    assert "KONTEXT_TOKENS" in done.stderr and "--token-file" in done.stderr


def test_models_refused_at_startup_in_one_line_naming_flag_and_variable(capsys, tmp_path):
    assert main(["serve", "--models", "kontext-dev,klein-5b"]) == 2
    assert capsys.readouterr().err == (
        "kontext serve: --models (KONTEXT_MODELS): unknown model 'klein-5b'; use "
        "kontext-dev, klein-4b, klein-9b or all\n")
    assert main(["serve", "--models", "klein-4b", "--weights", str(tmp_path)]) == 2
    err = capsys.readouterr().err.splitlines()[-1]  # the last line (a warning may log first)
    assert err.startswith("kontext serve: --models (KONTEXT_MODELS) names klein-4b without")
    assert "--model-weights klein-4b=LOCATION (KONTEXT_MODEL_WEIGHTS)" in err
    assert main(["serve", "--model-weights", "klein-4b"]) == 2
    assert "is not `family=location`" in capsys.readouterr().err


def test_weights_check_understands_the_family(tiny_klein_dir, capsys):
    assert main(["weights", "check", str(tiny_klein_dir), "--model", "klein-4b"]) == 0
    out = capsys.readouterr().out
    assert "as klein-4b" in out and "OK: kontext serve can load this" in out
    assert main(["weights", "check", str(tiny_klein_dir)]) == 1  # not Kontext weights
    assert main(["weights", "check", str(tiny_klein_dir), "--model", "klein-9b"]) == 0
