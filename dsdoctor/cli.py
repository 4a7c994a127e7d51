"""The `dsdoctor` command line. Each subcommand lives in dsdoctor/commands/<name>.py and
registers itself on the typer app; this module only assembles them."""
from __future__ import annotations

import sys

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  rich_markup_mode=None,
                  help="Diagnose DeepSpeed training runs and print the ds_config fix.")

COMMANDS = ("analyze", "rules", "doctor", "estimate", "run", "demo", "lr_range")


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
    except ValueError as e:
        # A --rules expression the evaluator refuses only when a run reaches it (RuleError)
        # is the user's input: one line and exit 2, like every other bad input.
        from .rules import RuleError
        if not isinstance(e, RuleError):
            raise
        print(f"dsdoctor: error: bad rule file: {e}", file=sys.stderr)
        sys.exit(2)
