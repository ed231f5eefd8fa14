"""`kontext serve --help` is grouped by what the flags configure, and no flag is left out."""

from __future__ import annotations

import argparse
from collections import Counter

from server.cli.help_groups import help_groups
from server.cli.main import build_parser
from server.settings import Settings


def subcommand(name: str) -> argparse.ArgumentParser:
    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return commands.choices[name]


def test_every_serve_flag_lands_in_exactly_one_named_group() -> None:
    serve = subcommand("serve")
    placed = {}
    for group in serve._action_groups:
        for action in group._group_actions:
            if action.dest != "help":
                placed[action.dest] = group.title
    assert set(placed) == set(Settings.model_fields)  # every setting has its flag...
    assert "options" not in placed.values()  # ...in a group of its own topic
    titles = [group.title for group in serve._action_groups if group._group_actions]
    assert titles == ["options", *(title for title, _d, _f in help_groups())]
    assert placed["tokens"] == "auth" and placed["max_body_bytes"] == "request limits"
    assert placed["devices"] == "devices and scale-out" and placed["log_format"] == "observability"


def test_no_setting_is_listed_in_two_groups_or_none() -> None:
    counts = Counter(name for _t, _d, fields in help_groups() for name in fields)
    assert set(counts) == set(Settings.model_fields)
    assert max(counts.values()) == 1


def test_serve_help_shows_the_groups_and_a_short_usage() -> None:
    text = subcommand("serve").format_help()
    assert text.startswith("usage: kontext serve [--config FILE] [--OPTION VALUE ...]\n")
    for title, description, _fields in help_groups():
        assert f"\n{title}:\n  {description}" in text


def test_batch_takes_its_settings_in_the_same_groups() -> None:
    batch = subcommand("batch")
    titles = {group.title for group in batch._action_groups if group._group_actions}
    assert {"engine", "request limits", "observability"} <= titles
