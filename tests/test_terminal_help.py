"""`proxyhpo --help` and every subcommand's: each option has help, and the help shows its default (issue 22)."""

from __future__ import annotations

import argparse
from collections.abc import Iterator

from proxyhpo.cli import build_parser
from proxyhpo.registry import STUDY_PIPELINES


def _parsers(parser: argparse.ArgumentParser, name: str = "proxyhpo") -> Iterator[tuple[str, argparse.ArgumentParser]]:
    yield name, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for command, sub in action.choices.items():
                yield from _parsers(sub, f"{name} {command}")


def test_every_option_has_help_and_shows_its_default() -> None:
    missing, no_default = [], []
    for name, parser in _parsers(build_parser()):
        formatter = parser._get_formatter()
        for action in parser._actions:
            if isinstance(action, (argparse._HelpAction, argparse._VersionAction, argparse._SubParsersAction)):
                continue
            label = f"{name} {'/'.join(action.option_strings) or action.dest}"
            if not (action.help or "").strip():
                missing.append(label)
                continue
            shown = formatter._expand_help(action)
            has_default = action.default not in (None, argparse.SUPPRESS) and action.default is not False and not action.required
            if has_default and "default" not in shown:
                no_default.append(label)
    assert not missing, f"options without help: {missing}"
    assert not no_default, f"options whose help hides their default: {no_default}"


def test_run_pipeline_help_names_every_registered_kind() -> None:
    (run,) = [parser for name, parser in _parsers(build_parser()) if name == "proxyhpo run"]
    (pipeline,) = [action for action in run._actions if "--pipeline" in action.option_strings]
    help_text = run._get_formatter()._expand_help(pipeline)
    assert all(f"{kind}:" in help_text for kind in STUDY_PIPELINES.names()), help_text
