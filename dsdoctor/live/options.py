"""The ranges of the live options and their DSDOCTOR_* variables, in one place.

`dsdoctor run` checks every value before it starts the command (a bad one is a one-line
error, nothing is started); a rank that only has the environment (a script that calls
`dsdoctor.attach`, or variables exported by hand) keeps the default and warns once. Why
ranges at all: a stall timeout of 0.01 s aborts a healthy run at its third step, and a
telemetry interval of `nan` makes the telemetry thread spin.
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from dataclasses import dataclass
from typing import Any, Callable, Mapping

MIN_STALL_TIMEOUT = 2.0          # seconds: below this ordinary step jitter (GC, a slow batch) reads as a stall
MAX_SECONDS = 7 * 24 * 3600.0    # a week: larger is a typo (and time.sleep overflows near 1e9)
MIN_TELEMETRY_INTERVAL = 1.0     # seconds; 0 switches telemetry off
MAX_STEPS_EVERY = 1_000_000


class OptionError(ValueError):
    """An option value out of range. str() is one line naming the option."""


@dataclass(frozen=True)
class Spec:
    env: str
    flag: str | None            # the `dsdoctor run` option that carries it, if any
    parse: Callable[[str], Any]


def _seconds(lo: float, zero_ok: bool = False) -> Callable[[str], float]:
    def parse(raw: str) -> float:
        try:
            v = float(str(raw).strip())
        except ValueError:
            raise OptionError(f"{raw!r} is not a number of seconds") from None
        if zero_ok and v == 0:
            return 0.0
        if not math.isfinite(v) or v < lo or v > MAX_SECONDS:
            extra = " (0 switches it off)" if zero_ok else ""
            raise OptionError(f"{raw!r} is out of range: give seconds between {lo:g} and {MAX_SECONDS:g}{extra}")
        return v
    return parse


def _steps(raw: str) -> int:
    try:
        v = int(str(raw).strip())
    except ValueError:
        raise OptionError(f"{raw!r} is not a whole number of steps") from None
    if not 1 <= v <= MAX_STEPS_EVERY:
        raise OptionError(f"{raw!r} is out of range: give steps between 1 and {MAX_STEPS_EVERY}")
    return v


def _choice(*allowed: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        v = str(raw).strip().lower()
        if v not in allowed:
            raise OptionError(f"{raw!r} is not one of {', '.join(allowed)}")
        return v
    return parse


def _flag(raw: str) -> bool:
    v = str(raw).strip().lower()
    if v in ("1", "true", "yes", "on"):
        return True
    if v in ("0", "false", "no", "off"):
        return False
    raise OptionError(f"{raw!r} is not 1/0 (true/false, yes/no, on/off)")


# field of LiveOptions -> spec
SPECS: dict[str, Spec] = {
    "stall_timeout": Spec("DSDOCTOR_STALL_TIMEOUT", "--stall-timeout", _seconds(MIN_STALL_TIMEOUT)),
    "on_stall": Spec("DSDOCTOR_ON_STALL", "--on-stall", _choice("report", "abort")),
    "stall_abort_after": Spec("DSDOCTOR_STALL_ABORT_AFTER", "--stall-abort-after", _seconds(MIN_STALL_TIMEOUT)),
    "localize_nan": Spec("DSDOCTOR_LOCALIZE_NAN", "--localize-nan", _flag),
    "exchange_every": Spec("DSDOCTOR_EXCHANGE_EVERY", None, _steps),
    "telemetry_interval": Spec("DSDOCTOR_TELEMETRY_INTERVAL", None, _seconds(MIN_TELEMETRY_INTERVAL, zero_ok=True)),
    "tensorboard": Spec("DSDOCTOR_TENSORBOARD", "--tensorboard", _flag),
    "check_every": Spec("DSDOCTOR_CHECK_EVERY", None, _steps),
}


def parse_option(field: str, raw: Any) -> Any:
    """The checked value of one option (a string, or a number from the command line)."""
    spec = SPECS[field]
    try:
        return spec.parse(raw if isinstance(raw, str) else repr(raw) if isinstance(raw, float) else str(raw))
    except OptionError as e:
        name = f"{spec.flag} (${spec.env})" if spec.flag else spec.env
        raise OptionError(f"{name}: {e}") from None


def check_environment(environ: Mapping[str, str] | None = None) -> list[str]:
    """One message per DSDOCTOR_* value out of range (for `dsdoctor run`: refused before start)."""
    env = os.environ if environ is None else environ
    problems = []
    for spec in SPECS.values():
        raw = env.get(spec.env)
        if raw is None or raw.strip() == "":
            continue
        try:
            spec.parse(raw)
        except OptionError as e:
            problems.append(f"{spec.env}={raw[:40]}: {e}")
    return problems


def from_environment(defaults: Any, environ: Mapping[str, str] | None = None,
                     warn: Callable[[str], None] | None = None) -> dict[str, Any]:
    """{field: value} for every DSDOCTOR_* variable that is set and valid; an invalid one keeps
    `defaults.<field>` and is reported through `warn` (once per variable)."""
    env = os.environ if environ is None else environ
    out: dict[str, Any] = {}
    for field, spec in SPECS.items():
        raw = env.get(spec.env)
        if raw is None or raw.strip() == "":
            continue
        try:
            out[field] = spec.parse(raw)
        except OptionError as e:
            if warn is not None:
                warn(f"{spec.env}={raw[:40]}: {e}; using the default ({getattr(defaults, field)})")
    return out


def api_value_problem(field: str, value: Any) -> str | None:
    """Why a keyword argument of `dsdoctor.attach(engine, field=value)` is unusable, or None.
    Code that calls attach() chooses its values on purpose, so the floors that guard the command
    line and the environment (a 2 s stall timeout) do not apply: a test or a short demo may watch
    with 0.5 s. What never works is refused: nan, inf, zero or negative times, steps that are not
    whole numbers from 1 to MAX_STEPS_EVERY, an unknown --on-stall action."""
    if field not in SPECS or isinstance(value, Path):
        return None
    if field == "on_stall":
        return None if value in ("report", "abort") else f"on_stall={value!r}: choose 'report' or 'abort'"
    if field in ("localize_nan", "tensorboard"):
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return f"{field}={value!r} is not a number"
    if field in ("exchange_every", "check_every"):
        if not isinstance(value, int) or not 1 <= value <= MAX_STEPS_EVERY:
            return f"{field}={value!r}: give whole steps between 1 and {MAX_STEPS_EVERY}"
        return None
    if field == "telemetry_interval" and value == 0:
        return None                                  # 0 switches telemetry off
    if not math.isfinite(value) or value <= 0 or value > MAX_SECONDS:
        return f"{field}={value!r}: give a finite number of seconds above 0 (at most {MAX_SECONDS:g})"
    return None
