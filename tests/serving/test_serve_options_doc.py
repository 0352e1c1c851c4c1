"""docs/serving.md's table of `wasinfer serve` options against the parser: a user reading the page (coming from
Triton's or MLServer's flags) sees every option the command takes, and no option it does not."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from wasinfer.cli.main import build_parser

DOC = Path(__file__).resolve().parents[2] / "docs" / "serving.md"


def serve_parser() -> argparse.ArgumentParser:
    [commands] = [action for action in build_parser()._actions if isinstance(action, argparse._SubParsersAction)]
    parser: argparse.ArgumentParser = commands.choices["serve"]
    return parser


def documented() -> dict[str, str]:
    """Each row of the Options section's table: the option's name and its default cell."""
    section = DOC.read_text().split("\n## Options\n", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `(--[a-z0-9-]+)[^`]*` \| ([^|]*) \|", section, flags=re.MULTILINE)
    return {name: default.strip() for name, default in rows}


def test_the_options_table_lists_every_option_of_serve_and_only_those() -> None:
    options = {name for action in serve_parser()._actions for name in action.option_strings
               if name.startswith("--") and name != "--help"}
    table = documented()
    assert sorted(options - set(table)) == [] and sorted(set(table) - options) == []


def test_the_numeric_defaults_in_the_table_are_the_parsers() -> None:
    """A cell that starts with a number gives the default itself (`64 MiB` is in MiB)."""
    table = documented()
    checked = 0
    for action in serve_parser()._actions:
        name = next((option for option in action.option_strings if option.startswith("--")), None)
        cell = table.get(name or "", "")
        if not (match := re.match(r"(\d+(?:\.\d+)?)( MiB)?(?=$| |\))", cell)):
            continue
        value = float(match.group(1)) * (1 << 20 if match.group(2) else 1)
        assert float(action.default) == value, f"{name}: the table says {cell}, the parser {action.default!r}"
        checked += 1
    assert checked >= 20
