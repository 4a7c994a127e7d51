"""A command's options read without typer's parsing, for plain command lines.

Importing typer costs ~40 ms and its parsing (typer >= 0.26 checks every parameter with a
pydantic TypeAdapter) ~90 ms more: most of an `analyze` of a small log, and more than grep
needs for 64 MB. The command's own signature (its commands/params.py Option/Argument
defaults and annotations) says everything a plain command line needs, so such a line is
read here, with click's rules (long options with a value as `--opt V` or `--opt=V`, short
ones as `-o V`, options anywhere among the arguments, `--` ends the options, the last of a
repeated single option wins), and the command function is called directly, typer unloaded.

Anything else returns None and typer reads the line as before: --help, an unknown or
abbreviated option, a missing or dash-led value, a number out of range or not plainly
written, a parameter declared with typer.Option/Argument (a callback, envvar, parser, path
checks or any other typer setting this reader does not implement). So help texts, error
messages and exit codes are typer's own; tests/test_fast_args.py checks both readers give
the command the same values.
"""
from __future__ import annotations

import re
import typing
from pathlib import Path
from typing import Any, Callable

from .params import Param, defaults

_INT = re.compile(r"[1-9][0-9]{0,9}|0")


def _kind(hint: Any) -> tuple[str, type] | None:
    """('one' | 'many' | 'flag', element type) of a parameter's annotation, or None."""
    if hint is bool:
        return "flag", bool
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if typing.get_origin(hint) is typing.Union and len(args) == 1:      # Optional[X]
        hint = args[0]
    if typing.get_origin(hint) is list:
        (elem,) = typing.get_args(hint) or (None,)
        return ("many", elem) if elem in (str, Path, int) else None
    return ("one", hint) if hint in (str, Path, int) else None


def _spec(fn: Callable) -> tuple[dict[str, tuple], tuple | None, dict[str, Any]] | None:
    """(option name -> (parameter, kind, type, param), the argument's (parameter, kind, type),
    the defaults) from `fn`'s signature, or None when a parameter needs typer (one declared
    with typer.Option/Argument rather than commands/params.py)."""
    try:
        hints = typing.get_type_hints(fn)
        params = defaults(fn)
    except Exception:
        return None
    options: dict[str, tuple] = {}
    argument = None
    values: dict[str, Any] = {}
    for name, info in params.items():
        kind = _kind(hints.get(name))
        if kind is None or not isinstance(info, Param):
            return None
        if info.argument:
            if argument is not None or kind[0] != "many" or info.default is not ...:
                return None
            argument = (name, *kind)
            continue
        decls = info.decls
        if not decls or any("/" in d or not d.startswith("-") for d in decls):
            return None
        if kind[0] == "flag" and info.default is not False:
            return None
        for d in decls:
            options[d] = (name, *kind, info)
        values[name] = info.default
    return options, argument, values


def _value(opt: str, raw: str, typ: type, info: Any) -> Any:
    """`raw` as the parameter's type, or None when typer should judge it."""
    if typ is int:
        if not _INT.fullmatch(raw):
            return None
        v = int(raw)
        if (info.min is not None and v < info.min) or (info.max is not None and v > info.max):
            return None
        return v
    if raw == "" or raw.startswith("-") and raw != "-":
        return None
    return Path(raw) if typ is Path else raw


def parse(fn: Callable, args: list[str]) -> dict[str, Any] | None:
    """The keyword arguments typer would call `fn` with for `args`, or None (see above)."""
    spec = _spec(fn)
    if spec is None:
        return None
    options, argument, defaults = spec
    if argument is None:
        return None
    kwargs = dict(defaults)
    many: dict[str, list] = {}
    positional: list[str] = []
    i, only_args = 0, False
    while i < len(args):
        a = args[i]
        i += 1
        if only_args or a == "-" or not a.startswith("-"):
            positional.append(a)
            continue
        if a == "--":
            only_args = True
            continue
        name, eq, attached = a.partition("=") if a.startswith("--") else (a, "", "")
        if name not in options:
            return None                  # --help, an unknown option, -cVALUE: typer's business
        param, kind, typ, info = options[name]
        if kind == "flag":
            if eq:
                return None
            kwargs[param] = True
            continue
        if eq:
            raw = attached
        elif i < len(args):
            raw = args[i]
            i += 1
        else:
            return None
        v = _value(name, raw, typ, info)
        if v is None:
            return None
        if kind == "many":
            many.setdefault(param, []).append(v)
        else:
            kwargs[param] = v
    if not positional:
        return None
    kwargs.update(many)
    name, kind, typ = argument
    if typ is not str:
        return None
    kwargs[name] = positional
    return kwargs
