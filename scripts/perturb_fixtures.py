#!/usr/bin/env python3
"""How the diagnosis of every golden fixture holds up pasted the sixteen ways of
scripts/perturb_realworld.py (only the last lines, hard-wrapped, behind a prefix, quoted ...).

    python scripts/perturb_fixtures.py [NAME ...] [--only SUBSTR] [--jobs 2] [--list-held]

Each fixture of fixtures/expected.yaml (not the notebooks: a notebook behind a prefix is no
notebook) is rewritten by each perturbation in a temporary folder, analysed by the in-process CLI
(tests/cli_invoke.py, as tests/test_golden.py does) and judged as test_golden_pasted judges it: the
top finding's category, a healthy run stays healthy, the expected ranks are the top finding's
(for srun0 and rank3, whose prefix names a rank on every line, the category alone: listed apart).

The cuts (tail40, tail15, nohead) remove lines on purpose. A wrong answer there counts as a miss
only when the fixture's decisive evidence survives the cut: `evidence:` of expected.yaml when it has
one, else the first line the top finding quotes on the whole file (the cause; the rest are echoes).
Otherwise it is reported apart as "evidence cut"; among those, a failed run that came out with no
problems while a line that reads as an error survives is listed too (it should give at least the
unexplained-failure finding).

A paste a fixture lists in `not_pasted` of expected.yaml (each with why, in its comment: the proof the
verdict rests on is above the cut though the quoted line is not, as a hang's start time or the
readings a trend is measured over) is a known limit: a wrong answer there is reported apart, not
counted, and a known limit that holds now is listed (its mark can go).
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import re
import signal
import sys
import tempfile
from collections import Counter, defaultdict
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
FIXTURES = REPO / "fixtures"
# this checkout's dsdoctor, not the one the environment has installed (an editable install of another
# worktree would be measured instead: python puts only scripts/ on the path)
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from perturb_realworld import PERTURBATIONS  # noqa: E402  (the same sixteen ways)

CUTS = ("tail40", "tail15", "nohead")
# every line behind one rank's prefix ('0: ', '[rank3]: '): the paste says whose output it is, so a
# rank the fixture tells only from other clues (a rank head, 'rank=1' in the text, a launcher's
# table) may give way to it; the category must hold
PREFIXED_RANK = ("srun0", "rank3")
TIMEOUT = 120                       # seconds per analysis: a hang is reported, not waited for
# a line that reads as an error (for the cut pastes that came out with no problems)
ERRORISH = re.compile(r"(?i)error|exception|traceback|\bfailed\b|failure|\bkilled\b|fatal|abort|"
                      r"timed? ?out|exitcode|exit code|signal \d|segmentation")


def kept_lines(name: str, n: int) -> range:
    """The 1-based line numbers a cut keeps of a text of n lines (every line for the others)."""
    if name == "tail40":
        return range(max(1, n - 39), n + 1)
    if name == "tail15":
        return range(max(1, n - 14), n + 1)
    if name == "nohead":
        return range(n // 3 + 1, n + 1)
    return range(1, n + 1)


# --- the worker: one fixture, every perturbation asked for --------------------------------------
_invoke = None
_tmp = None


def _init(base: str) -> None:
    global _invoke, _tmp
    sys.path.insert(0, str(REPO / "tests"))
    from cli_invoke import invoke_cli
    _invoke = invoke_cli
    _tmp = Path(base) / str(os.getpid())


def _timed_out(*_):
    raise TimeoutError(f"analysis took more than {TIMEOUT} s")


def analyze(path: Path) -> tuple[int | None, dict | None, str]:
    signal.signal(signal.SIGALRM, _timed_out)
    signal.alarm(TIMEOUT)
    try:
        res = _invoke(["analyze", "--json", str(path)])
    except TimeoutError as e:
        return None, None, str(e)
    finally:
        signal.alarm(0)
    if res.exception is not None and not isinstance(res.exception, SystemExit):
        return None, None, f"traceback: {res.exception!r}"
    try:
        return res.exit_code, json.loads(res.stdout), ""
    except ValueError:
        return None, None, "stdout is not one JSON document"


def judge(exp: dict, code: int | None, doc: dict | None) -> str:
    """'' when the paste holds (test_golden_pasted's test), else what went wrong."""
    if doc is None:
        return "error"
    problems = [f for f in doc["findings"] if f["severity"] != "info"]
    if exp.get("healthy"):
        return "" if code == 0 and not problems else "alarm"
    if not problems:
        return "no problems"
    top = doc["findings"][0]
    if top["category"] != exp["category"]:
        return "category"
    if any(r not in top["ranks"] for r in exp.get("ranks", [])):
        return "ranks"
    return ""


def what(doc: dict | None, err: str) -> str:
    if doc is None:
        return err
    problems = [f for f in doc["findings"] if f["severity"] != "info"]
    if not problems:
        return "no problems"
    top = doc["findings"][0]
    return f"{top['category']} ({top['rule']}, ranks {top['ranks']})"


def _survives(exp: dict, evidence: list[dict], name: str, text: str, cut: str) -> bool:
    if "evidence" in exp:
        return exp["evidence"].lower() in cut.lower()
    if not evidence:
        return False
    # the first quoted line is the decisive one (detect/failure.py: the cause, not its echoes)
    quoted = (evidence[0].get("text") or "").strip()
    if quoted and quoted in text:            # the line as the file has it: look for it in the cut
        return quoted in cut
    return evidence[0].get("line") in kept_lines(name, len(text.splitlines()))   # reworded: where it was


def run_fixture(args: tuple[dict, list[str]]) -> list[dict]:
    exp, names = args
    src = FIXTURES / exp["file"]
    text = src.read_text(encoding="utf-8", errors="replace")
    seen: dict[str, tuple] = {}          # a cut that keeps every line is the same text: analysed once
    evidence: list[dict] = []
    if any(n in CUTS for n in names) and not exp.get("healthy") and "evidence" not in exp:
        seen[text] = analyze(src)
        doc = seen[text][1]
        if doc and doc["findings"]:
            evidence = doc["findings"][0]["evidence"]
    out = []
    for name in names:
        pasted = PERTURBATIONS[name](text)
        if pasted not in seen:
            path = _tmp / name / exp["file"]
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(pasted, encoding="utf-8", newline="")
            seen[pasted] = analyze(path)
        code, doc, err = seen[pasted]
        verdict = judge(exp, code, doc)
        if verdict == "ranks" and name in PREFIXED_RANK:
            verdict = ""            # the paste names its rank on every line: counted held, listed apart
            prefix_rank = True
        else:
            prefix_rank = False
        row = dict(file=exp["file"], how=name, verdict=verdict, got=what(doc, err),
                   want="healthy" if exp.get("healthy") else exp["category"], prefix_rank=prefix_rank,
                   known=name in exp.get("not_pasted", ()))
        if verdict and name in CUTS and not exp.get("healthy"):
            row["evidence_cut"] = not _survives(exp, evidence, name, text, pasted)
            row["errorish"] = next((ln.strip()[:100] for ln in pasted.splitlines()[::-1] if ERRORISH.search(ln)), "")
        out.append(row)
    return out


# --- the report -------------------------------------------------------------------------------
def report(rows: list[dict], names: list[str], list_held: bool) -> tuple[int, int]:
    by_how = defaultdict(list)
    for r in rows:
        by_how[r["how"]].append(r)
    held_all = total_all = 0
    for name in names:
        rs = by_how[name]
        held = [r for r in rs if not r["verdict"]]
        cut = [r for r in rs if r["verdict"] and r.get("evidence_cut")]
        known = [r for r in rs if r["verdict"] and not r.get("evidence_cut") and r.get("known")]
        misses = [r for r in rs if r["verdict"] and not r.get("evidence_cut") and not r.get("known")]
        counted = len(rs) - len(cut) - len(known)
        held_all, total_all = held_all + len(held), total_all + counted
        print(f"{name:10s} {len(held)}/{counted}" + (f"   (evidence cut: {len(cut)} more, not counted)" if cut else "")
              + (f"   (known limits, not_pasted: {len(known)} more, not counted)" if known else ""))
        groups = defaultdict(list)
        for r in misses:
            groups[(r["want"], r["got"].split(" (")[0] + (" [ranks]" if r["verdict"] == "ranks" else ""))].append(r)
        for (want, got), rs2 in sorted(groups.items(), key=lambda kv: -len(kv[1])):
            print(f"  {want} -> {got}: {len(rs2)}")
            for r in rs2:
                print(f"      {r['file']}: {r['got']}")
        if known and list_held:
            print(f"  known limits ({len(known)}): " + ", ".join(f"{r['file']}->{r['got'].split(' (')[0]}" for r in known))
        lifted = [r for r in rs if not r["verdict"] and r.get("known")]
        if lifted:
            print(f"  held though marked not_pasted (the mark can go): {len(lifted)}")
            for r in lifted:
                print(f"      {r['file']}")
        pr = [r for r in rs if r.get("prefix_rank")]
        if pr:
            print(f"  held, the top finding's ranks those the prefix names ({len(pr)}): "
                  + ", ".join(r["file"].split("/")[-1] for r in pr))
        silent = [r for r in cut if r["got"] == "no problems" and r.get("errorish")]
        if silent:
            print(f"  evidence cut, came out with no problems while an error line survives: {len(silent)}")
            for r in silent:
                print(f"      {r['file']} ({r['want']}): {r['errorish']!r}")
        if cut and list_held:
            print(f"  evidence cut ({len(cut)}): " + ", ".join(f"{r['file']}->{r['got'].split(' (')[0]}" for r in cut))
        sys.stdout.flush()
    print(f"{'all':10s} {held_all}/{total_all}")
    return held_all, total_all


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("names", nargs="*", help=f"perturbations (default: all): {', '.join(PERTURBATIONS)}")
    ap.add_argument("--only", default="", help="only the fixtures whose file name holds this text")
    ap.add_argument("--jobs", type=int, default=2, help="worker processes (default 2)")
    ap.add_argument("--list-held", action="store_true", help="also list the fixtures whose evidence was cut")
    ap.add_argument("--json", type=Path, help="also write every row as JSON to this file")
    args = ap.parse_args()
    unknown = [n for n in args.names if n not in PERTURBATIONS]
    if unknown:
        ap.error(f"unknown perturbation(s): {', '.join(unknown)}")
    names = args.names or list(PERTURBATIONS)
    expected = yaml.safe_load((FIXTURES / "expected.yaml").read_text(encoding="utf-8"))
    todo = [e for e in expected if not e["file"].endswith(".ipynb") and args.only in e["file"]
            and b"\0" not in (FIXTURES / e["file"]).read_bytes()]
    os.environ.setdefault("DS_ACCELERATOR", "cpu")
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="perturb_fixtures_") as base:
        if args.jobs <= 1:
            _init(base)
            for e in todo:
                rows += run_fixture((e, names))
        else:
            with multiprocessing.get_context("fork").Pool(args.jobs, initializer=_init, initargs=(base,)) as pool:
                for out in pool.imap_unordered(run_fixture, [(e, names) for e in todo], chunksize=4):
                    rows += out
    print(f"{len(todo)} fixtures x {len(names)} perturbations")
    report(rows, names, args.list_held)
    errors = Counter(r["got"] for r in rows if r["verdict"] == "error")
    if errors:
        print("errors:", dict(errors))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=0), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
