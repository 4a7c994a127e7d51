"""A command's parameters declared without importing typer.

Importing typer (and the click it carries) costs ~40 ms, a third of an `analyze` of a small
log; a plain `analyze` command line is read without it (commands/fast_args.py). So the
options that command uses are declared here, as plain data with the settings the fast reader
implements (names, default, help, metavar, bounds), and `for_typer` turns them into typer's
own when the command is registered on the typer app (every other command line: --help,
errors, abbreviations, DSDOCTOR_* completion...). A command may mix these with typer.Option.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable


@dataclass(frozen=True)
class Param:
    """typer.Option(default, *decls, ...) (or typer.Argument when `argument`)."""
    default: Any
    decls: tuple[str, ...] = ()
    argument: bool = False
    help: str | None = None
    metavar: str | None = None
    min: int | None = None
    max: int | None = None

    def for_typer(self) -> Any:
        import typer
        if self.argument:
            return typer.Argument(self.default, help=self.help, metavar=self.metavar)
        bounds = {k: v for k, v in (("min", self.min), ("max", self.max)) if v is not None}
        return typer.Option(self.default, *self.decls, help=self.help, metavar=self.metavar, **bounds)


def Option(default: Any, *decls: str, help: str | None = None, metavar: str | None = None,
           min: int | None = None, max: int | None = None) -> Any:
    return Param(default, decls, help=help, metavar=metavar, min=min, max=max)


def Argument(default: Any, *, help: str | None = None, metavar: str | None = None) -> Any:
    return Param(default, argument=True, help=help, metavar=metavar)


def defaults(fn: Callable) -> dict[str, Any]:
    """Parameter name -> default of a command function (keyword-or-positional parameters, all
    with defaults), read from the function itself: `inspect` costs ~10 ms to import."""
    code = fn.__code__
    names = code.co_varnames[:code.co_argcount]
    values = fn.__defaults__ or ()
    if len(values) != len(names):
        raise TypeError(f"{fn.__name__}: every parameter of a command needs a default")
    return dict(zip(names, values))


def for_typer(fn: Callable) -> Callable:
    """`fn` as typer reads commands: a wrapper whose signature carries typer's Option/Argument
    where `fn` has a Param (names, annotations, docstring and the rest are `fn`'s)."""
    import functools
    import inspect

    sig = inspect.signature(fn)
    params = [p.replace(default=p.default.for_typer()) if isinstance(p.default, Param) else p
              for p in sig.parameters.values()]

    @functools.wraps(fn)
    def command(*args: Any, **kwargs: Any) -> Any:
        return fn(*args, **kwargs)

    command.__signature__ = sig.replace(parameters=params)      # type: ignore[attr-defined]
    return command
