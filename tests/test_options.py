"""search/options.py: the options several command lines share read the same in each of them."""
from __future__ import annotations

import argparse

from search import cli, dashboard, export, predict
from search.options import OPTIONS, common
from search.report import cli as report_cli


def test_a_parent_parser_hands_its_options_to_a_command():
    p = argparse.ArgumentParser(parents=[common("storage", "workers")])
    args = p.parse_args(["--storage", "sqlite:///other.db", "--workers", "3"])
    assert (args.storage, args.workers) == ("sqlite:///other.db", 3)
    assert p.parse_args([]).storage == "sqlite:///studies.db"


def test_every_command_takes_a_shared_option_with_the_same_default_and_help():
    parsers = [cli.parser("har"), cli.parser("GunPoint", prog="python -m search.fit"), report_cli.parser(),
               export.parser(), dashboard.parser(), predict.parser()]
    seen: dict[str, set] = {}
    for parser in parsers:
        for action in parser._actions:
            for flag in action.option_strings:
                seen.setdefault(flag, set()).add((repr(action.default), action.help))
    for name, (flags, settings) in OPTIONS.items():
        if name.endswith("_data"):  # two meanings of --data: a registered task's place, or a study's recorded one
            continue
        assert seen[flags[0]] == {(repr(settings.get("default")), settings["help"])}, name
    assert not any(a.option_strings == ["--data"] for a in cli.parser("GunPoint")._actions)  # a file is its data
