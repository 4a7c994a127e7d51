"""One list of event kinds (dsdoctor.events.KINDS): every kind a recogniser, reader, hook or
watcher emits, and every kind a detector or a live part consumes, is in it.

Emitters are found with `ast` over dsdoctor/**/*.py: `line.event("kind", ...)`,
`session.emit("kind", ...)`, `Event("kind", ...)` / `Event(kind="kind", ...)`."""
from __future__ import annotations

import ast
from pathlib import Path

from dsdoctor.detect import DETECTORS
from dsdoctor.events import KINDS

PKG = Path(__file__).resolve().parents[1] / "dsdoctor"


def _literal_kind(call: ast.Call) -> str | None:
    f = call.func
    name = f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else None
    if name not in ("event", "emit", "Event"):
        return None
    arg = call.args[0] if call.args else next((k.value for k in call.keywords if k.arg == "kind"), None)
    if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
        return arg.value
    return None


def _emitted() -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for path in sorted(PKG.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Call):
                kind = _literal_kind(node)
                if kind is not None:
                    out.setdefault(kind, []).append(f"{path.relative_to(PKG.parent)}:{node.lineno}")
    return out


def test_every_emitted_kind_is_listed():
    emitted = _emitted()
    assert len(emitted) > 30, "the scan sees the emitters"
    unknown = {k: where[:3] for k, where in emitted.items() if k not in KINDS}
    assert not unknown, f"kinds emitted but missing from events.KINDS: {unknown}"


def test_every_consumed_kind_is_listed():
    from dsdoctor import pipeline
    from dsdoctor.sources import hf_state
    from dsdoctor.live import session, tboard
    consumed = {f"{d.__name__}.kinds": set(d.kinds) for d in DETECTORS}
    consumed["live.session.STEP_KINDS"] = set(session.STEP_KINDS)
    consumed["live.tboard.TEXT_KINDS"] = set(tboard.TEXT_KINDS)
    consumed["live.tboard.RARE"] = set(tboard.RARE)
    consumed["pipeline.HOST_KINDS"] = set(pipeline.HOST_KINDS)
    consumed["hf_state.METRIC_KINDS"] = {k for _, k in hf_state.METRIC_KINDS}
    unknown = {where: sorted(ks - set(KINDS)) for where, ks in consumed.items() if ks - set(KINDS)}
    assert not unknown, f"kinds consumed but missing from events.KINDS: {unknown}"


def test_no_listed_kind_is_dead():
    """A kind in the list is emitted somewhere (a literal in the code, or a table of kinds)."""
    from dsdoctor.sources import hf_state
    emitted = set(_emitted()) | {k for _, k in hf_state.METRIC_KINDS}
    dead = sorted(set(KINDS) - emitted)
    assert not dead, f"events.KINDS lists kinds nothing emits: {dead}"
