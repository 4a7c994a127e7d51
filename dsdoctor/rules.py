"""YAML rules: load, check, match.

A rule says which symptom, under which conditions over the symptom's facts and the run
context, means which diagnosis, with which fixes. Files are read with a SafeLoader
(no Python tags) and every expression goes through dsdoctor.expr (simpleeval), so a
rule file cannot run code. Schema errors name the file, the rule id and the line.
"""
from __future__ import annotations

import functools
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable


from . import rule_cache
from .expr import ExprError, check_syntax, check_template, evaluate, render
from .findings import CATEGORIES, SEVERITIES, Finding, Symptom


class RuleError(ValueError):
    """A rule file is malformed. str() is one line: file:line: rule id: problem."""


def rules_dir() -> Path:
    """rules/ ships inside the wheel as dsdoctor/rules; in a source checkout it is ../rules."""
    here = Path(__file__).resolve().parent
    for cand in (here / "rules", here.parent / "rules"):
        if cand.is_dir():
            return cand
    raise RuleError(f"no rules directory found next to {here}")


@functools.lru_cache(maxsize=None)
def _line_loader() -> type:
    """SafeLoader (libyaml's: 10x faster) that remembers the line of every mapping (for error
    messages). Made on first use: with the parsed rule files cached (rule_cache.py) most
    commands never import yaml (~20 ms)."""
    import yaml

    class _LineLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):
        pass

    def _construct_mapping(loader, node) -> dict:
        mapping = loader.construct_mapping(node, deep=True)
        mapping["__line__"] = node.start_mark.line + 1
        return mapping

    _LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
    return _LineLoader


def strip_lines(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: strip_lines(v) for k, v in obj.items() if k != "__line__"}
    if isinstance(obj, list):
        return [strip_lines(v) for v in obj]
    return obj


_RULE_KEYS = {"id", "category", "severity", "title", "description", "source", "references",
              "match", "summary", "explains", "falsepositives", "fixes", "examples", "priority",
              "key", "fallback"}
_FIX_KEYS = {"title", "when", "config_patch", "env", "advice"}
_ID_RE = re.compile(r"^[a-z0-9][a-z0-9-]*$")


@dataclass
class FixSpec:
    title: str
    when: str | None = None
    config_patch: dict[str, Any] | None = None
    env: dict[str, str] | None = None
    advice: str | None = None


@dataclass
class Rule:
    id: str
    category: str
    severity: str
    title: str
    summary: str
    symptoms: tuple[str, ...]
    where: str | None
    source: str
    description: str = ""
    references: list[str] = field(default_factory=list)
    explains: tuple[str, ...] = ()
    falsepositives: list[str] = field(default_factory=list)
    fixes: list[FixSpec] = field(default_factory=list)
    examples: dict[str, list[dict]] = field(default_factory=dict)
    priority: int = 0
    key: str | None = None          # template for the dotted config key of config findings
    fallback: bool = False          # generic failure rule: shown only when no specific finding explains the run
    file: str = ""
    line: int = 0

    def matches(self, symptom: Symptom, names: dict[str, Any]) -> bool:
        if symptom.name not in self.symptoms:
            return False
        if not self.where:
            return True
        try:
            return bool(evaluate(self.where, names))
        except ExprError as e:  # refused by the evaluator (a power too large, a lambda): the rule's fault
            raise _fail(self.file, self.line, self.id, f"match.where: {_one_line(e)}") from None
        except Exception:       # None arithmetic on an unknown fact: the condition does not hold
            return False


def _fail(file: str, line: int, rid: str | None, msg: str) -> RuleError:
    return RuleError(f"{file}:{line}: rule {rid or '?'}: {msg}")


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split())[:300]


def _check_expr(expr: Any, file: str, line: int, rid: str, what: str) -> None:
    if not isinstance(expr, str):
        raise _fail(file, line, rid, f"{what} must be a string expression")
    try:
        check_syntax(expr)
    except ExprError as e:
        raise _fail(file, line, rid, f"{what}: {_one_line(e)}") from None


def _check_patch_exprs(patch: Any, file: str, line: int, rid: str) -> None:
    if isinstance(patch, dict):
        for v in patch.values():
            _check_patch_exprs(v, file, line, rid)
    elif isinstance(patch, str) and patch.startswith("="):
        _check_expr(patch[1:], file, line, rid, "config_patch value")


_TEXT_FIELDS = ("title", "summary", "source", "description", "key")
_LIST_FIELDS = ("references", "explains", "falsepositives")
MAX_PRIORITY = 1000


def _check_types(d: dict, file: str, line: int, rid: str) -> None:
    """Wrong types are one-line load errors, not a traceback (priority: "a") or a silent
    surprise (explains: "x" read as the letters of x)."""
    for k in _TEXT_FIELDS:
        if d.get(k) is not None and not isinstance(d[k], str):
            raise _fail(file, line, rid, f"'{k}' must be text, not {type(d[k]).__name__}")
    for k in _LIST_FIELDS:
        v = d.get(k)
        if v is not None and not (isinstance(v, list) and all(isinstance(x, str) for x in v)):
            raise _fail(file, line, rid, f"'{k}' must be a list of names or texts")
    p = d.get("priority", 0)
    if isinstance(p, bool) or not isinstance(p, int) or not -MAX_PRIORITY <= p <= MAX_PRIORITY:
        raise _fail(file, line, rid, f"'priority' must be a whole number from {-MAX_PRIORITY} to {MAX_PRIORITY}")
    for k in ("match", "nomatch"):
        cases = d["examples"].get(k)
        if not isinstance(cases, list) or not all(isinstance(c, dict) for c in cases):
            raise _fail(file, line, rid, f"'examples.{k}' must be a list of cases (mappings)")


def _check_rule(d: Any, file: str) -> None:
    """RuleError (file:line: rule id: problem) unless `d` is a well-formed rule."""
    if not isinstance(d, dict):
        raise _fail(file, 0, None, "each rule must be a mapping")
    line = d.get("__line__", 0)
    rid = d.get("id")
    if not isinstance(rid, str) or not _ID_RE.match(rid):
        raise _fail(file, line, rid, "'id' must be lowercase letters, digits and dashes")
    unknown = set(d) - _RULE_KEYS - {"__line__"}
    if unknown:
        raise _fail(file, line, rid, f"unknown field(s): {', '.join(sorted(map(str, unknown)))}")
    for req in ("category", "severity", "title", "summary", "match", "source"):
        if req not in d:
            raise _fail(file, line, rid, f"missing required field '{req}'")
    if d["category"] not in CATEGORIES:
        raise _fail(file, line, rid, f"category {d['category']!r} is not one of {', '.join(CATEGORIES)}")
    if d["severity"] not in SEVERITIES:
        raise _fail(file, line, rid, f"severity {d['severity']!r} is not one of {', '.join(SEVERITIES)}")
    for k in ("title", "summary", "key"):
        if isinstance(d.get(k), str):
            try:
                check_template(d[k])
            except ExprError as e:
                raise _fail(file, line, rid, f"{k}: {_one_line(e)}") from None
    m = d["match"]
    if not isinstance(m, dict) or "symptom" not in m:
        raise _fail(file, m.get("__line__", line) if isinstance(m, dict) else line, rid,
                    "'match' needs a 'symptom' (a name or a list of names)")
    syms = m["symptom"] if isinstance(m["symptom"], list) else [m["symptom"]]
    if not all(isinstance(s, str) for s in syms):
        raise _fail(file, m.get("__line__", line), rid, "'match.symptom' must be names")
    where = m.get("where")
    if where is not None:
        _check_expr(where, file, m.get("__line__", line), rid, "match.where")
    extra = set(m) - {"symptom", "where", "__line__"}
    if extra:
        raise _fail(file, m.get("__line__", line), rid, f"unknown match field(s): {', '.join(sorted(map(str, extra)))}")
    if not isinstance(d.get("fixes") or [], list):
        raise _fail(file, line, rid, "'fixes' must be a list")
    for fx in d.get("fixes") or []:
        fl = fx.get("__line__", line) if isinstance(fx, dict) else line
        if not isinstance(fx, dict) or "title" not in fx:
            raise _fail(file, fl, rid, "each fix needs a 'title'")
        bad = set(fx) - _FIX_KEYS - {"__line__"}
        if bad:
            raise _fail(file, fl, rid, f"unknown fix field(s): {', '.join(sorted(map(str, bad)))}")
        if fx.get("when") is not None:
            _check_expr(fx["when"], file, fl, rid, "fix.when")
        patch = fx.get("config_patch")
        if patch is not None and not isinstance(patch, dict) and not (isinstance(patch, str) and patch.startswith("=")):
            raise _fail(file, fl, rid, "config_patch must be a mapping (an RFC 7386 merge patch) or an '=expr' computing one")
        _check_patch_exprs(patch, file, fl, rid)
        env = fx.get("env")
        if env is not None and not isinstance(env, dict):
            raise _fail(file, fl, rid, "env must be a mapping of variable to value")
        for k in ("title", "advice"):
            if fx.get(k) is not None and not isinstance(fx[k], str):
                raise _fail(file, fl, rid, f"fix.{k} must be text, not {type(fx[k]).__name__}")
            if isinstance(fx.get(k), str):     # rendered like the summary: a dict literal would print '?'
                try:
                    check_template(fx[k])
                except ExprError as e:
                    raise _fail(file, fl, rid, f"fix.{k}: {_one_line(e)}") from None
        if env is not None and not all(isinstance(k, str) and isinstance(v, (str, int, float)) and not isinstance(v, bool)
                                       for k, v in env.items() if k != "__line__"):
            raise _fail(file, fl, rid, "env must map variable names to text or numbers")
    ex = d.get("examples")
    if not isinstance(ex, dict) or not ex.get("match") or not ex.get("nomatch"):
        raise _fail(file, line, rid, "'examples' needs at least one 'match' and one 'nomatch' case")
    _check_types(d, file, line, rid)


def _build_rule(d: dict, file: str) -> Rule:
    """The Rule of a mapping _check_rule accepted."""
    m = d["match"]
    syms = m["symptom"] if isinstance(m["symptom"], list) else [m["symptom"]]
    fixes = [FixSpec(title=str(fx["title"]), when=fx.get("when"),
                     config_patch=strip_lines(fx.get("config_patch")), env=strip_lines(fx.get("env")),
                     advice=fx.get("advice"))
             for fx in d.get("fixes") or []]
    return Rule(id=d["id"], category=d["category"], severity=d["severity"], title=str(d["title"]),
                summary=str(d["summary"]), symptoms=tuple(syms), where=m.get("where"),
                source=str(d["source"]), description=str(d.get("description", "")),
                references=list(d.get("references") or []),
                explains=tuple(d.get("explains") or ()),
                falsepositives=list(d.get("falsepositives") or []), fixes=fixes,
                examples=strip_lines(d["examples"]), priority=int(d.get("priority", 0)),
                key=d.get("key"), fallback=bool(d.get("fallback", False)), file=file,
                line=d.get("__line__", 0))


def parse_rule(d: Any, file: str) -> Rule:
    _check_rule(d, file)
    return _build_rule(d, file)


MAX_RULE_FILE_BYTES = 4 << 20      # the shipped files are tens of KiB


def _refuse_aliases(text: str, name: str) -> None:
    """YAML anchors and aliases are refused: a 'billion laughs' file (each level aliasing the
    one before four times) grows x4 per level when constructed (level 11: 3 GB). Rules never
    need them. The token scan is linear in the text and builds nothing."""
    import yaml
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    for tok in yaml.scan(text, Loader=loader):
        if isinstance(tok, (yaml.AnchorToken, yaml.AliasToken)):
            raise RuleError(f"{name}:{tok.start_mark.line + 1}: YAML anchors and aliases (&name, *name) "
                            "are not allowed in rule files; write the value out")


@functools.lru_cache(maxsize=None)
def _yaml_flavour() -> str:
    """What a parse depends on besides the text: the installed PyYAML (its file's path and
    mtime change with each install, found without importing it) and this module (the loader
    above). Looked up once per process (find_spec walks sys.path)."""
    import importlib.util
    spec = importlib.util.find_spec("yaml")
    out = []
    for f in ((spec.origin if spec else None) or "", __file__):
        try:
            out.append(f"{f} {os.stat(f).st_mtime_ns}")
        except OSError:
            out.append(f)
    return " ".join(out)


@functools.lru_cache(maxsize=None)
def _checker_flavour() -> str:
    """What the checked rules of a text depend on besides the text: the YAML parse and this
    module (the checks, the Rule layout: _yaml_flavour), expr.py's checks, the categories and
    severities (findings.py), the expression evaluator (simpleeval: which syntax nodes it
    runs) and Python's own grammar (ast.parse)."""
    import importlib.util
    import sys

    from . import expr, findings
    # simpleeval's file found without importing it (expr.py loads it when a rule is evaluated)
    spec = importlib.util.find_spec("simpleeval")
    out = [sys.version, _yaml_flavour()]
    for f in (expr.__file__, findings.__file__, (spec.origin if spec else None) or "simpleeval"):
        try:
            out.append(f"{f} {os.stat(f).st_mtime_ns}")
        except OSError:
            out.append(f)
    return "check " + " ".join(out)


def _parse_yaml(text: str, name: str) -> Any:
    """The YAML document of a rule file; bad YAML is a RuleError naming the line."""
    import yaml
    try:
        _refuse_aliases(text, name)
        return yaml.load(text, Loader=_line_loader())  # noqa: S506 - SafeLoader subclass
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{name}:{mark.line + 1}" if mark else name
        problem = getattr(e, "problem", None) or (str(e).splitlines() or [type(e).__name__])[0]
        raise RuleError(f"{where}: invalid YAML: {problem}") from None
    except RecursionError:
        raise RuleError(f"{name}: invalid YAML: nested too deeply") from None


def _checked_rules(text: str, name: str) -> list[dict]:
    """The rules of a rule file's text, checked (RuleError otherwise), as JSON-shaped data
    (`_rule_data`): what the cache keeps for a text these checks accepted."""
    doc = rule_cache.parsed(text, lambda t: _parse_yaml(t, name), _yaml_flavour())
    if not isinstance(doc, dict) or not isinstance(doc.get("rules"), list):
        raise RuleError(f"{name}:1: a rule file must be a mapping with a 'rules' list")
    return [_rule_data(parse_rule(r, name)) for r in doc["rules"]]


def _rule_data(rule: Rule) -> dict:
    """A Rule as JSON gives it back (lists, not tuples), without its file: the cache is keyed
    by the text, and the same text may sit in another file."""
    import dataclasses
    d = dataclasses.asdict(rule)
    del d["file"]
    d["symptoms"], d["explains"] = list(rule.symptoms), list(rule.explains)
    return d


def _rule_from_data(d: dict, name: str) -> Rule:
    return Rule(**{**d, "symptoms": tuple(d["symptoms"]), "explains": tuple(d["explains"]),
                   "fixes": [FixSpec(**f) for f in d["fixes"]], "file": name})


def load_rule_file(path: Path) -> list[Rule]:
    from .safe_read import ReadError, read_regular_text
    name = str(path)
    try:
        text = read_regular_text(path, MAX_RULE_FILE_BYTES, "rule file (YAML)")
    except ReadError as e:
        raise RuleError(f"cannot read rule file: {e}") from None
    # a text these very checks accepted before comes back checked, without YAML or checks
    data = rule_cache.parsed(text, lambda t: _checked_rules(t, name), _checker_flavour())
    return [_rule_from_data(d, name) for d in data]


class RuleSet:
    def __init__(self, rules: Iterable[Rule]):
        self.rules = sorted(rules, key=lambda r: -r.priority)   # stable: file order within a priority
        seen: dict[str, Rule] = {}
        for r in self.rules:
            if r.id in seen:
                raise RuleError(f"{r.file}:{r.line}: rule {r.id}: duplicate id (also {seen[r.id].file}:{seen[r.id].line})")
            seen[r.id] = r
        self.by_id = seen

    # Parsed rule sets by (folder, the files' names, sizes and mtimes): a live run creates a
    # Diagnoser per attach, and parsing the YAML costs ~100 ms on the training thread. A rule
    # set is never changed after loading, so sharing it is safe; an edited file is re-read.
    _cache: dict[tuple, "RuleSet"] = {}

    @classmethod
    def load(cls, directory: Path | None = None) -> "RuleSet":
        directory = Path(directory) if directory is not None else rules_dir()
        if directory.is_dir():
            files = sorted(directory.glob("*.yaml")) + sorted(directory.glob("*.yml"))
            if not files:
                raise RuleError(f"{directory}: no rule files (*.yaml) in this folder")
        elif os.path.lexists(directory):
            files = [directory]                    # --rules one-file.yaml (a FIFO is refused on reading)
        else:       # a typo must not read as "no problems found"
            raise RuleError(f"{directory}: no such rules folder or file")
        try:
            key = (str(directory), *((str(f), f.stat().st_size, f.stat().st_mtime_ns) for f in files))
        except OSError:
            key = None
        if key is not None and key in cls._cache:
            return cls._cache[key]
        rules: list[Rule] = []
        for f in files:
            rules.extend(load_rule_file(f))
        rs = cls(rules)
        if key is not None:
            cls._cache[key] = rs
        return rs

    def match(self, symptom: Symptom, ctx_names: dict[str, Any]) -> Rule | None:
        """The first rule (highest priority, then file order) that matches the symptom."""
        names = {**ctx_names, **symptom.names()}
        for r in self.rules:
            if r.matches(symptom, names):
                return r
        return None


def make_finding(rule: Rule, symptom: Symptom, ctx_names: dict[str, Any]) -> Finding:
    from .fixes import build_fix          # fixes imports rules' types; keep the import local
    names = {**ctx_names, **symptom.names()}
    fixes = []
    for spec in rule.fixes:
        if spec.when:
            try:
                if not evaluate(spec.when, names):
                    continue
            except ExprError as e:
                raise _fail(rule.file, rule.line, rule.id, f"fix.when: {_one_line(e)}") from None
            except Exception:
                pass      # unknown context: the fix may apply, keep it
        fixes.append(build_fix(spec, names))
    return Finding(rule=rule.id, category=rule.category, severity=rule.severity,
                   title=render(rule.title, names), summary=render(rule.summary, names),
                   ranks=sorted(symptom.ranks), steps=sorted(symptom.steps)[:64],
                   evidence=list(symptom.evidence), fixes=fixes, seq=symptom.seq, time=symptom.time,
                   explains=rule.explains, key=render(rule.key, names) if rule.key else None,
                   source_ref=rule.source, fallback=rule.fallback,
                   waited_for=tuple(symptom.facts.get("suspects") or ()))
