"""``hybridstream local``: every server's fetch/start/stop command, its default port from the one
table (hybridstream.servers.local.DEFAULT_PORTS), and the demo's commands joining the group."""

from __future__ import annotations

import argparse

import pytest

from hybridstream import cli
from hybridstream.servers.local import DEFAULT_PORTS, SERVERS, UP
from hybridstream.servers.process import free_port


def _local_commands() -> dict[str, argparse.ArgumentParser]:
    parser = cli.build_parser()
    local = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices["local"]
    return next(a for a in local._actions if isinstance(a, argparse._SubParsersAction)).choices


def test_every_server_has_a_command_with_its_default_port():
    commands = _local_commands()
    assert set(SERVERS) | {"up", "down", "status", "router", "demo", "experiment"} <= set(commands)
    for name in SERVERS:
        assert commands[name].parse_args(["start"]).port == DEFAULT_PORTS[name], name
    up = commands["up"].parse_args([])
    assert {name: getattr(up, f"{name}_port") for name in UP} == {name: DEFAULT_PORTS[name] for name in UP}


@pytest.mark.parametrize("name", SERVERS)
def test_stop_where_nothing_runs_says_so_and_starts_nothing(name, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert cli.main(["local", name, "stop", "--port", str(free_port())]) == 0
    assert capsys.readouterr().out.strip() == "not running"
