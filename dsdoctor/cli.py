"""The `dsdoctor` command line. Each subcommand lives in dsdoctor/commands/<name>.py and
registers itself on the typer app; this module only assembles them.

The typer app (`cli.app`) is built when first needed: a plain `analyze` command line runs
without importing typer at all (commands/fast_args.py, commands/params.py), which is most of
the start-up of an `analyze` of a small log."""
from __future__ import annotations

import errno
import functools
import sys
from typing import Any

COMMANDS = ("analyze", "rules", "doctor", "estimate", "run", "demo", "lr_range")


@functools.lru_cache(maxsize=None)
def _app() -> Any:
    import typer

    app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                      rich_markup_mode=None,
                      help="Diagnose DeepSpeed training runs and print the ds_config fix.")

    def _print_version(value: bool) -> None:
        if value:
            from .version import __version__
            print(f"dsdoctor {__version__}")
            raise typer.Exit()

    @app.callback()
    def _root(version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True,
                                            help="Print dsdoctor's version and exit.")) -> None:
        """Diagnose DeepSpeed training runs and print the ds_config fix."""
    return app


def __getattr__(name: str) -> Any:
    if name == "app":                  # `from dsdoctor.cli import app`: typer's app, built now
        return _app()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _register(only: str | None = None) -> None:
    import importlib
    for name in COMMANDS:
        if only is None or name == only:
            mod = importlib.import_module(f"dsdoctor.commands.{name}")
            mod.register(_app())


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


def _click_utils():
    try:
        from typer._click import utils
    except ImportError:
        from click import utils
    return utils


def _direct(argv: list[str] | None):
    """`analyze` with a plain command line, called without typer (see commands/fast_args.py:
    importing typer and its parsing are most of a small run's start-up), as a function
    returning the exit code as typer's `app(...)` would; None: typer reads the line."""
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
        # what typer's core._main does around a command in standalone_mode=False; the command
        # ends with SystemExit (commands/common.py), which passes through as under typer
        try:
            command.analyze(**kwargs)
        except EOFError:
            print(file=sys.stderr)
            _interrupted()
        except KeyboardInterrupt:
            return 130
        except OSError as e:
            if e.errno != errno.EPIPE:
                raise
            sys.stdout = _click_utils().PacifyFlushWrapper(sys.stdout)
            sys.stderr = _click_utils().PacifyFlushWrapper(sys.stderr)
            sys.exit(1)
        return 0
    return call


def _interrupted() -> None:
    print("dsdoctor: interrupted", file=sys.stderr)
    sys.exit(130)


def _bad_rule_file(e: ValueError) -> None:
    """A --rules expression the evaluator refuses only when a run reaches it (RuleError) is
    the user's input: one line and exit 2, like every other bad input."""
    from .rules import RuleError
    if not isinstance(e, RuleError):
        raise e
    print(f"dsdoctor: error: bad rule file: {e}", file=sys.stderr)
    sys.exit(2)


def _fewer_collections() -> None:
    """`analyze` is a short process that makes many small objects (imports: ~100 modules of
    classes and functions; then events) and few reference cycles: the cyclic collector's
    default (a pass every 700 allocations) ran dozens of times during the imports alone, ~4 ms
    of its ~90 ms start-up. Garbage without cycles is freed as before (reference counts)."""
    import gc
    gc.set_threshold(100_000, 50, 100)


def _cached_dataclass_code() -> None:
    """The ~20 dataclasses `analyze` creates compile ~80 generated methods, ~12 ms of its
    start-up: their code comes from a cache instead (dataclass_code.py)."""
    from . import dataclass_code
    dataclass_code.install()


def _skip_final_collection() -> None:
    """The interpreter's exit runs a full cyclic collection over every object still alive (the
    ~100 modules, the rules, the recognisers' tables): ~10 ms of CPU, a tenth of a small
    log's `analyze`, to free memory the process is about to give back anyway. Frozen objects
    are left out of it; everything is still finalised and flushed as before. Only for a
    process that ends with this command (main() called with its own sys.argv), not for a
    caller that goes on."""
    import gc
    gc.freeze()


def main(argv: list[str] | None = None) -> None:
    if _subcommand(argv) == "analyze":
        _fewer_collections()
        _cached_dataclass_code()
    direct = _direct(argv)
    if direct is not None:
        try:
            rv = direct()
        except KeyboardInterrupt:
            _interrupted()
        except ValueError as e:
            _bad_rule_file(e)
        finally:                   # (the command ends with SystemExit)
            if argv is None:       # the process's own command line: it ends here
                _skip_final_collection()
        sys.exit(rv)
    _register(_subcommand(argv))
    import typer
    cx = _click_exceptions()
    try:
        rv = _app()(args=argv, prog_name="dsdoctor", standalone_mode=False)
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
        _interrupted()
    except KeyboardInterrupt:
        _interrupted()
    except ValueError as e:
        _bad_rule_file(e)
    sys.exit(rv if isinstance(rv, int) else 0)
