"""``hybridstream --help`` lists exactly the groups whose module exists; dev commands join their group."""

from __future__ import annotations

import argparse
import re
import sys
import types

import pytest

from hybridstream import cli


def _groups(parser: argparse.ArgumentParser) -> list[str]:
    return re.findall(r"^    (\w+) ", parser.format_help(), re.M)


def test_help_lists_the_groups_whose_module_exists():
    expected = [name for name, module in cli.GROUPS.items() if cli.module_exists(module)]
    assert _groups(cli.build_parser()) == expected
    assert "edge" in expected and "train" in expected


def test_a_group_without_its_module_is_left_out(monkeypatch):
    monkeypatch.setitem(cli.GROUPS, "ghost", "hybridstream.ghost_group.cli")  # parent package missing too
    monkeypatch.setitem(cli.GROUPS, "ghost2", "hybridstream.ghost_cli")
    assert "ghost" not in _groups(cli.build_parser()) and "ghost2" not in _groups(cli.build_parser())


def test_a_group_whose_module_is_broken_is_an_error_not_hidden(monkeypatch, tmp_path):
    """Only a missing module hides a group: one that exists but cannot import (a missing
    dependency, a typo) raises, so a broken group is never silently dropped from --help."""
    (tmp_path / "broken_group_cli.py").write_text("import no_such_dependency_xyz\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(cli.GROUPS, "broken", "broken_group_cli")
    with pytest.raises(ModuleNotFoundError, match="no_such_dependency_xyz"):
        cli.build_parser()


def test_dev_commands_join_the_edge_group_from_the_hybridstream_side(capsys):
    parser = cli.build_parser()
    edge = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices["edge"]
    commands = next(a for a in edge._actions if isinstance(a, argparse._SubParsersAction)).choices
    assert {"run", "forward", "replay"} <= set(commands)
    # the device's own entry point has no dev commands
    from edge_app.cli import main as edge_main

    with pytest.raises(SystemExit):
        edge_main(["replay", "--help"])
    assert "invalid choice: 'replay'" in capsys.readouterr().err


def test_an_extension_of_a_missing_group_is_ignored(monkeypatch):
    monkeypatch.setitem(sys.modules, "fake_ext", types.SimpleNamespace(extend=lambda cmds: cmds.add_parser("x")))
    monkeypatch.setitem(cli.GROUP_EXTENSIONS, "ghost", ("fake_ext",))
    assert "ghost" not in _groups(cli.build_parser())
