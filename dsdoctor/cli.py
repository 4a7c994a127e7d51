"""The `dsdoctor` command line. Each subcommand lives in dsdoctor/commands/<name>.py and
registers itself on the typer app; this module only assembles them."""
from __future__ import annotations

import errno
import sys

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  rich_markup_mode=None,
                  help="Diagnose DeepSpeed training runs and print the ds_config fix.")


@app.callback()
def _group() -> None:
    """A group even when only one subcommand is registered (see main)."""


COMMANDS = ("analyze", "rules", "doctor", "estimate", "run", "demo", "lr_range")


def _print_version(value: bool) -> None:
    if value:
        from .version import __version__
        print(f"dsdoctor {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True,
                                        help="Print dsdoctor's version and exit.")) -> None:
    """Diagnose DeepSpeed training runs and print the ds_config fix."""


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


def _click_exceptions():
    try:                               # typer >= 0.26 carries its own copy of click
        from typer._click import exceptions
    except ImportError:
        from click import exceptions
    return exceptions


def _direct(argv: list[str] | None):
    """`analyze` with a plain command line, called without typer's parsing (see
    commands/fast_args.py: ~90 ms of start-up), as a function returning the exit code as
    typer's `app(...)` would; None: typer reads the line."""
    import os
    args = sys.argv[1:] if argv is None else list(argv)
    if not args or args[0] != "analyze" or any(k.endswith("_COMPLETE") for k in os.environ):
        return None
    from .commands import analyze as command
    from .commands.fast_args import parse
    kwargs = parse(command.analyze, args[1:])
    if kwargs is None:
        return None

    def call() -> int:
        # what typer's core._main does around a command in standalone_mode=False
        try:
            command.analyze(**kwargs)
        except EOFError as e:
            print(file=sys.stderr)
            raise typer.Abort() from e
        except KeyboardInterrupt:
            return 130
        except typer.Exit as e:
            return e.exit_code
        except OSError as e:
            if e.errno != errno.EPIPE:
                raise
            sys.stdout = _click_utils().PacifyFlushWrapper(sys.stdout)
            sys.stderr = _click_utils().PacifyFlushWrapper(sys.stderr)
            sys.exit(1)
        return 0
    return call


def _click_utils():
    try:
        from typer._click import utils
    except ImportError:
        from click import utils
    return utils


def main(argv: list[str] | None = None) -> None:
    cx = _click_exceptions()
    direct = _direct(argv)
    if direct is None:
        _register(_subcommand(argv))
    try:
        rv = direct() if direct is not None else app(args=argv, prog_name="dsdoctor", standalone_mode=False)
    except cx.NoArgsIsHelpError as e:
        e.show()                       # `dsdoctor` alone: the help, as before
        sys.exit(e.exit_code)
    except cx.UsageError as e:
        # A bad option value (also from a DSDOCTOR_* variable): one line, exit 2, like every
        # other bad input, instead of click's three-line usage block.
        cmd = e.ctx.command_path if e.ctx else "dsdoctor"
        msg = " ".join(e.format_message().split())
        print(f"dsdoctor: error: {msg} (see: {cmd} --help)", file=sys.stderr)
        sys.exit(2)
    except cx.ClickException as e:
        print(f"dsdoctor: error: {' '.join(e.format_message().split())}", file=sys.stderr)
        sys.exit(e.exit_code)
    except typer.Abort:
        print("dsdoctor: interrupted", file=sys.stderr)
        sys.exit(130)
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
    sys.exit(rv if isinstance(rv, int) else 0)
