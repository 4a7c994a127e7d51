"""The `dsdoctor` command line. Each subcommand lives in dsdoctor/commands/<name>.py and
registers itself on the typer app; this module only assembles them."""
from __future__ import annotations

import sys

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  rich_markup_mode=None,
                  help="Diagnose DeepSpeed training runs and print the ds_config fix.")


@app.callback()
def _group() -> None:
    """A group even when only one subcommand is registered (see main)."""


COMMANDS = ("analyze", "rules", "doctor", "estimate", "run", "demo", "lr_range")


def _register(only: str | None = None) -> None:
    import importlib
    for name in COMMANDS:
        if only is None or name == only:
            mod = importlib.import_module(f"dsdoctor.commands.{name}")
            mod.register(app)


def _subcommand(argv: list[str] | None) -> str | None:
    """The module of the subcommand named first on the command line, if any: only that one is
    imported (the others cost ~0.2 s of start-up: `analyze` of a small log is mostly start-up)."""
    args = sys.argv[1:] if argv is None else argv
    name = args[0].replace("-", "_") if args else ""
    return name if name in COMMANDS else None


def main(argv: list[str] | None = None) -> None:
    _register(_subcommand(argv))
    try:
        app(args=argv, prog_name="dsdoctor")
    except KeyboardInterrupt:
        print("dsdoctor: interrupted", file=sys.stderr)
        sys.exit(130)
