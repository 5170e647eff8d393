"""`batchdeps --help` and `batchdeps run --help` through the real command."""

from __future__ import annotations

import subprocess
from typing import Any

import click

from batchdeps.cli import main
from batchdeps.cli.run import _common_options
from support.project import BATCHDEPS


def _help(*args: str, cwd: Any) -> str:
    done = subprocess.run([BATCHDEPS, *args, "--help"], cwd=cwd, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_group_help_gives_each_command_its_whole_first_sentence(tmp_path: Any) -> None:
    text = " ".join(_help(cwd=tmp_path).split("Commands:")[1].split())  # lines joined
    assert "..." not in text  # click's mark of a description cut short
    ctx = click.Context(main)
    for name in main.list_commands(ctx):
        command = main.get_command(ctx, name)
        assert command is not None
        first = " ".join(command.get_short_help_str(limit=1000).split())
        assert f"{name} {first}" in text


def test_run_help_usage_lists_every_option(tmp_path: Any) -> None:
    text = _help("run", cwd=tmp_path)
    usage = " ".join(text.split("\n\n")[0].split())
    assert usage.startswith("Usage: batchdeps run TASK [--PARAM VALUE ...] ")
    for option in _common_options():
        assert isinstance(option, click.Option)
        name = max(option.opts, key=len)
        assert f"[{name}" in usage, name
        assert name in text.split("Options:")[1]  # and it is explained below
    assert "[--force-from SELECTOR ...]" in usage and "[--workers N]" in usage
