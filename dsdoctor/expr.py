"""Safe expressions for rule files.

Rule conditions (`where`, `when`), computed patch values ("=expr") and `{expr}` pieces of
summary templates are evaluated by simpleeval: no attribute access to dunders, no imports,
no calls except the functions listed here. A rule file cannot run code.
"""
from __future__ import annotations

import math
import re
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Mapping

if TYPE_CHECKING:
    from simpleeval import EvalWithCompoundTypes
# simpleeval (and the `random` it imports) is loaded when a rule is first evaluated or checked:
# an `analyze` of a log with no problem never does (~2 ms of its start-up)


class ExprError(ValueError):
    pass


def human_bytes(n: Any) -> str:
    if n is None:
        return "?"
    n = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1024
    return f"{n:.2f} TiB"


def ranks_text(ranks: Any) -> str:
    """[0,1,2,3,7] -> '0-3,7' (512 ranks printing the same thing read as '0-511')."""
    rs = sorted({int(r) for r in ranks or [] if r is not None})
    if not rs:
        return "?"
    parts, start, prev = [], rs[0], rs[0]
    for r in rs[1:] + [None]:
        if r is not None and r == prev + 1:
            prev = r
            continue
        parts.append(str(start) if start == prev else f"{start}-{prev}")
        if r is not None:
            start = prev = r
    return ",".join(parts)


def get_path(obj: Any, path: str, default: Any = None) -> Any:
    cur = obj
    for part in path.split("."):
        if isinstance(cur, Mapping) and part in cur:
            cur = cur[part]
        else:
            return default
    return cur


def _fmt_num(x: Any) -> str:
    if isinstance(x, float) and abs(x) >= 1e12 and math.isfinite(x):
        return f"{x:.3g}"              # a blown-up loss: 1e+15, not 1000000000000000
    if isinstance(x, float) and x.is_integer() and abs(x) < 1e15:
        return str(int(x))
    return str(x)


FUNCTIONS = {
    "min": min, "max": max, "abs": abs, "int": int, "float": float, "round": round,
    "len": len, "str": str, "bool": bool, "sorted": sorted, "sum": sum, "any": any, "all": all,
    "ceil": math.ceil, "floor": math.floor, "log2": math.log2,
    "isnan": lambda x: isinstance(x, float) and math.isnan(x),
    "isfinite": lambda x: isinstance(x, (int, float)) and math.isfinite(x),
    "human": human_bytes, "ranks_text": ranks_text, "num": _fmt_num,
    "pow2_floor": lambda x: 2 ** int(math.floor(math.log2(x))) if x and x > 0 else 1,
}


class _Omit:
    """`omit` in a computed patch value: leave this key out of the patch (not an unknown)."""
    def __repr__(self) -> str:
        return "omit"


OMIT = _Omit()


def make_evaluator(names: Mapping[str, Any]) -> EvalWithCompoundTypes:
    from simpleeval import EvalWithCompoundTypes
    config = names.get("config") or {}
    names = {**names, "omit": OMIT}
    funcs = dict(FUNCTIONS)
    funcs["get"] = lambda path, default=None: get_path(config, path, default)
    funcs["defined"] = lambda name: names.get(name) is not None
    return EvalWithCompoundTypes(names=_Names(names, funcs), functions=funcs)


class _Names(dict):
    """A fact a symptom or the context does not have reads as None (like SQL NULL), so a
    rule can say `defined('x') and x > 3` or `x is None or x < 3`. Rule typos are caught
    by each rule's examples, which the test suite runs."""

    def __init__(self, names: Mapping[str, Any], funcs: Mapping[str, Any]):
        super().__init__(names)
        self._funcs = funcs

    def __missing__(self, key: str) -> Any:
        if key in self._funcs:
            raise KeyError(key)          # let simpleeval find the function
        return None


@lru_cache(maxsize=4096)
def _parsed(expr: str) -> Any:
    """simpleeval's syntax tree of `expr`, parsed once per process: a report evaluates ~200
    expressions, most of them the same few rules' over and over (the tree is only read)."""
    from simpleeval import SimpleEval
    return SimpleEval.parse(expr)


def evaluate(expr: str, names: Mapping[str, Any]) -> Any:
    from simpleeval import InvalidExpression
    try:
        return make_evaluator(names).eval(expr, _parsed(expr))
    except (InvalidExpression, SyntaxError) as e:   # bad rule text: a load-time error
        raise ExprError(f"{expr!r}: {e}") from e


MAX_EXPR_CHARS = 2000        # the longest shipped expression is ~450 characters
MAX_EXPR_DEPTH = 40          # nesting of the syntax tree: deep operator chains end here


@lru_cache(maxsize=None)
def _allowed_nodes() -> frozenset[str]:
    """What the evaluator runs (simpleeval's nodes and operators), minus statements; anything
    else (lambda, walrus, set comprehension, star-args ...) is refused at load time rather
    than when a run first reaches the rule."""
    from simpleeval import EvalWithCompoundTypes
    ev = EvalWithCompoundTypes()
    names = {n.__name__ for n in ev.nodes} | {o.__name__ for o in ev.operators}
    # f-strings go too: a format spec like {x:>999999999} builds a gigabyte string
    names -= {"Assign", "AugAssign", "Import", "JoinedStr", "FormattedValue"}
    return frozenset(names | {"Expression", "Load", "Store", "comprehension", "keyword", "And", "Or"})


_CALLABLE = frozenset(FUNCTIONS) | {"get", "defined"}


def check_syntax(expr: str) -> None:
    """Parse an expression without evaluating it (rule load-time validation): syntax, size,
    depth and only what the evaluator supports."""
    import ast
    if len(expr) > MAX_EXPR_CHARS:
        raise ExprError(f"{expr[:40]!r}...: longer than {MAX_EXPR_CHARS} characters")
    try:
        tree = ast.parse(expr, "<rule>", "eval")
    except SyntaxError as e:
        raise ExprError(f"{expr[:200]!r}: {e.msg}") from None
    except (RecursionError, MemoryError, ValueError):     # deep nesting, NUL bytes
        raise ExprError(f"{expr[:40]!r}...: nested too deeply or not parsable") from None
    stack = [(tree, 0)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_EXPR_DEPTH:
            raise ExprError(f"{expr[:80]!r}: nested deeper than {MAX_EXPR_DEPTH} levels")
        name = type(node).__name__
        if name not in _allowed_nodes():
            raise ExprError(f"{expr[:80]!r}: {name} is not allowed in a rule expression")
        if isinstance(node, ast.Name) and node.id.startswith("_") or \
                isinstance(node, ast.Attribute) and node.attr.startswith("_"):
            raise ExprError(f"{expr[:80]!r}: names starting with '_' are not allowed")
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id not in _CALLABLE:
            raise ExprError(f"{expr[:80]!r}: unknown function {node.func.id}() "
                            f"(known: {', '.join(sorted(_CALLABLE))})")
        stack.extend((c, depth + 1) for c in ast.iter_child_nodes(node))


_TEMPLATE = re.compile(r"\{([^{}]+)\}")


def check_template(template: str) -> None:
    """ExprError unless every `{expr}` piece parses and no brace is left outside one: a dict
    literal or nested braces inside a piece would print the raw template to the user."""
    for piece in _TEMPLATE.findall(template):
        check_syntax(piece)
    rest = _TEMPLATE.sub("", template)
    if "{" in rest or "}" in rest:
        raise ExprError(f"{template[:80]!r}: a brace outside a {{expr}} piece (pieces cannot nest braces)")


def render(template: str, names: Mapping[str, Any]) -> str:
    """Fill `{expr}` pieces of a rule's text. An unknown value renders as '?'."""
    ev = make_evaluator(names)

    def sub(m: re.Match) -> str:
        try:
            v = ev.eval(m.group(1), _parsed(m.group(1)))
        except Exception:
            return "?"
        if v is None:
            return "?"
        if isinstance(v, (list, tuple, set)):
            return ", ".join(_fmt_num(x) for x in v)
        return _fmt_num(v)

    return _TEMPLATE.sub(sub, template).strip()
