"""Byte sizes: `12MiB`, `64 MiB`, `50MB` or plain bytes, in flags, the environment and the
settings file; --help shows each default as the unit that holds it exactly."""

from __future__ import annotations

from pathlib import Path

import pytest

from server.cli.main import build_parser, main
from server.cli.settings_flags import settings_from_args
from server.settings import MB, Settings
from server.settings.common import Size, format_size

SIZE_FIELDS = sorted(name for name, info in Settings.model_fields.items()
                     if info.annotation is Size)


def test_every_bytes_setting_is_a_size() -> None:
    assert {"max_body_bytes", "max_input_bytes", "max_json_bytes", "max_header_bytes",
            "max_body_bytes_in_flight", "results_max_bytes", "results_min_free_bytes",
            "upstream_max_bytes", "lora_cache_bytes", "min_body_rate"} == set(SIZE_FIELDS)


@pytest.mark.parametrize(("text", "size"), [
    ("12MiB", 12 * MB), ("64 MiB", 64 * MB), ("12582912", 12 * MB), ("1GiB", 1024 * MB),
    ("50MB", 50_000_000), ("64kib", 64 * 1024),
])
def test_flags_environment_and_file_read_the_same_sizes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str, size: int) -> None:
    monkeypatch.delenv("KONTEXT_CONFIG", raising=False)
    args = build_parser().parse_args(["serve", "--max-body-bytes", text])
    assert settings_from_args(args).max_body_bytes == size
    monkeypatch.setenv("KONTEXT_MAX_BODY_BYTES", text)
    assert Settings().max_body_bytes == size
    monkeypatch.delenv("KONTEXT_MAX_BODY_BYTES")
    config = tmp_path / "s.toml"
    config.write_text(f'max_body_bytes = "{text}"\nmax_json_bytes = 65536\n')
    assert (Settings(config=config).max_body_bytes, Settings(config=config).max_json_bytes) == (
        size, 65536)


@pytest.mark.parametrize(("text", "says"), [
    ("12XB", "must be a size with a known unit"),
    ("lots", "must be a size: bytes, or a number with a unit (12MiB, 64 MiB, 1.5GB)"),
])
def test_a_bad_size_is_one_line_naming_the_flag(
        capsys: pytest.CaptureFixture[str], text: str, says: str) -> None:
    assert main(["serve", "--max-body-bytes", text]) == 2
    err = capsys.readouterr().err
    assert err.startswith("kontext serve: --max-body-bytes (KONTEXT_MAX_BODY_BYTES): ")
    assert says in err and f"got {text!r}" in err


@pytest.mark.parametrize(("size", "text"), [
    (12 * MB, "12MiB"), (64 * 1024, "64KiB"), (10 * 1024 * MB, "10GiB"),
    (50_000_000, "50MB"), (8 * 1024, "8KiB"), (1500, "1500"), (0, "0"),
])
def test_sizes_are_shown_in_the_unit_that_holds_them_exactly(size: int, text: str) -> None:
    assert format_size(size) == text
    if size >= 1024:  # what is shown reads back to the same value
        assert Settings(max_body_bytes=text).max_body_bytes == size


def test_help_shows_size_defaults_with_units() -> None:
    commands = build_parser()._subparsers._group_actions[0].choices
    text = " ".join(commands["serve"].format_help().split())
    assert "--max-body-bytes SIZE Largest request body accepted; larger is 413. " \
           "(default: 12MiB) [env: KONTEXT_MAX_BODY_BYTES]" in text
    assert "(default: 64KiB) [env: KONTEXT_MAX_JSON_BYTES]" in text
    assert "(default: 50MiB) [env: KONTEXT_UPSTREAM_MAX_BYTES]" in text


@pytest.mark.parametrize(("flag", "text", "says"), [
    ("--max-body-bytes", "5", "must be at least 1KiB, got '5'"),
    ("--max-header-bytes", "2MiB", "must be at most 1MiB, got '2MiB'"),
])
def test_a_size_out_of_bounds_names_the_bound_in_units(
        capsys: pytest.CaptureFixture[str], flag: str, text: str, says: str) -> None:
    assert main(["serve", flag, text]) == 2
    assert capsys.readouterr().err.rstrip().endswith(says)
