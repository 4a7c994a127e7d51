"""The `dsdoctor` command line. Each subcommand lives in dsdoctor/commands/<name>.py and
registers itself on the typer app; this module only assembles them."""
from __future__ import annotations

import sys

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  rich_markup_mode=None,
                  help="Diagnose DeepSpeed training runs and print the ds_config fix.")

COMMANDS = ("analyze", "rules", "doctor", "estimate", "run", "demo", "lr_range")


def _print_version(value: bool) -> None:
    if value:
        from . import __version__
        print(f"dsdoctor {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True,
                                        help="Print dsdoctor's version and exit.")) -> None:
    """Diagnose DeepSpeed training runs and print the ds_config fix."""


def _register() -> None:
    import importlib
    for name in COMMANDS:
        mod = importlib.import_module(f"dsdoctor.commands.{name}")
        mod.register(app)


def main(argv: list[str] | None = None) -> None:
    _register()
    try:
        app(args=argv, prog_name="dsdoctor")
    except KeyboardInterrupt:
        print("dsdoctor: interrupted", file=sys.stderr)
        sys.exit(130)
