"""The dsdoctor CLI in-process for tests that call it hundreds of times (golden fixtures, the corpus).

Typer's CliRunner builds the click command from every signature of the app on each invoke: about
half of an in-process `analyze --json` of a small log (measured). Here it is built once; each call
still parses its arguments and runs the command as `dsdoctor` does (the same exit codes, stdout and
stderr as a fresh build, compared for every golden fixture and corpus input)."""
from __future__ import annotations

from unittest import mock

import typer.main
import typer.testing
from typer.testing import CliRunner, Result

from dsdoctor import cli

if not cli.app.registered_commands:
    cli._register()

COMMAND = typer.main.get_command(cli.app)
_runner = CliRunner()


def invoke_cli(args: list[str]) -> Result:
    with mock.patch.object(typer.testing, "_get_command", lambda app: COMMAND):
        return _runner.invoke(cli.app, args)
