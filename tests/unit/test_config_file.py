"""`--config FILE` (TOML, YAML, JSON): the same keys as the environment variables and Ray's
`args:`; precedence flags > environment > file > defaults; unknown keys refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from server.cli.main import main
from server.settings import ConfigFileError, Settings

TOKEN = "t" * 24


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.fixture(autouse=True)
def _no_kontext_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("KONTEXT_CONFIG", "KONTEXT_QUEUE_SIZE", "KONTEXT_PORT", "KONTEXT_TOKENS"):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.parametrize(("name", "text"), [
    ("s.toml", f'queue_size = 3\nport = 9001\ntokens = ["{TOKEN}"]\nlog_format = "json"\n'),
    ("s.yaml", f"queue_size: 3\nport: 9001\ntokens: [{TOKEN}]\nlog_format: json\n"),
    ("s.yml", f"queue_size: 3\nport: 9001\ntokens: {TOKEN}\nlog_format: json\n"),
    ("s.json", f'{{"queue_size": 3, "port": 9001, "tokens": "{TOKEN}", "log_format": "json"}}'),
])
def test_each_format_sets_the_same_keys(tmp_path: Path, name: str, text: str) -> None:
    settings = Settings(config=write(tmp_path, name, text))
    assert (settings.queue_size, settings.port, settings.tokens, settings.log_format) == (
        3, 9001, [TOKEN], "json")
    assert Settings().queue_size == 16  # nothing read without a file


def test_flags_beat_environment_beats_file_beats_defaults(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = write(tmp_path, "s.toml", "queue_size = 3\nport = 9001\nmax_json_depth = 20\n")
    monkeypatch.setenv("KONTEXT_QUEUE_SIZE", "5")
    monkeypatch.setenv("KONTEXT_PORT", "9002")
    settings = Settings(config=config, port=9003)  # a flag (or a Ray `args:` key)
    assert settings.port == 9003            # flag over environment and file
    assert settings.queue_size == 5         # environment over file
    assert settings.max_json_depth == 20    # file over default
    assert settings.max_json_bytes == 64 * 1024  # default


def test_the_environment_may_name_the_file(tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KONTEXT_CONFIG", str(write(tmp_path, "s.yaml", "queue_size: 7\n")))
    assert Settings().queue_size == 7
    flagged = write(tmp_path, "f.yaml", "queue_size: 8\n")
    assert Settings(config=flagged).queue_size == 8  # --config over KONTEXT_CONFIG


def test_serve_refuses_an_unknown_key_in_one_line_naming_it(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write(tmp_path, "s.yaml", "queue_size: 3\nqueue_sise: 4\n")
    assert main(["serve", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert err == (f"kontext serve: --config {config}: unknown setting 'queue_sise' "
                   "(did you mean 'queue_size'?)\n")


def test_serve_names_a_bad_value_by_its_flag_and_variable(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write(tmp_path, "s.toml", 'queue_size = "many"\n')
    assert main(["serve", "--config", str(config)]) == 2
    assert capsys.readouterr().err == ("kontext serve: --queue-size (KONTEXT_QUEUE_SIZE): must "
                                       "be a whole number, got 'many'\n")


@pytest.mark.parametrize(("name", "text", "says"), [
    ("s.toml", "queue_size = \n", "not valid TOML"),
    ("s.yaml", "queue_size: [\n", "not valid YAML"),
    ("s.json", "[1, 2]", "must hold a table of settings"),
    ("s.yaml", "- queue_size\n", "must hold a table of settings"),
    ("s.ini", "queue_size = 3\n", "must end in .toml, .yaml, .yml or .json"),
    ("s.toml", 'config = "other.toml"\n', "cannot name another"),
])
def test_a_file_that_cannot_be_used_is_one_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, text: str,
        says: str) -> None:
    config = write(tmp_path, name, text)
    assert main(["serve", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"kontext serve: --config {config}: ") and says in err
    assert err.count("\n") == 1


def test_a_missing_file_is_refused_not_ignored(tmp_path: Path) -> None:
    with pytest.raises(ConfigFileError, match="no such file"):
        Settings(config=tmp_path / "absent.toml")


def test_the_ray_app_takes_the_file_and_its_args_win(tmp_path: Path) -> None:
    pytest.importorskip("ray")
    from server.ray.app import app_settings

    config = write(tmp_path, "s.yaml", "queue_size: 3\nray_max_replicas: 4\n")
    settings = app_settings({"config": str(config), "queue_size": 9})
    assert (settings.queue_size, settings.ray_max_replicas) == (9, 4)
    with pytest.raises(ValueError, match="unknown setting 'ray_max_replica'"):
        app_settings({"ray_max_replica": 4})


def test_the_example_in_the_docs_loads(tmp_path: Path) -> None:
    example = Path(__file__).parents[2] / "docs" / "kontext.toml"
    tokens = write(tmp_path, "tokens", TOKEN + "\n")
    settings = Settings(config=example, token_file=tokens)  # a flag over the file's path
    assert (settings.host, settings.probe_port, settings.log_format) == ("0.0.0.0", 8081, "json")
    assert settings.max_body_bytes == 12 * 1024 * 1024
    assert settings.results_max_bytes == 10 * 1024**3
    assert str(settings.weights) == "/weights"


@pytest.mark.parametrize("path", ["deploy/ray/serve-config.yaml", "deploy/ray/rayservice.yaml"])
def test_the_shipped_ray_configs_args_are_settings(path: str) -> None:
    pytest.importorskip("ray")
    import yaml

    from server.ray.app import app_settings

    root = Path(__file__).parents[2]
    for document in yaml.safe_load_all((root / path).read_text()):
        serve_config = document.get("spec", {}).get("serveConfigV2")
        config = yaml.safe_load(serve_config) if serve_config else document
        for application in config["applications"]:
            assert app_settings(application["args"]).ray_max_replicas >= 1
