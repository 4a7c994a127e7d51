#!/usr/bin/env python3
"""How the diagnosis of the labelled real-world logs holds up when the logs reach us the way users
paste them: only the last lines, hard-wrapped by a terminal, wrapped by kubectl/journald/docker,
quoted in an issue, with the indentation lost, with `cat -n` numbers.

    python scripts/perturb_realworld.py [NAME ...] [--dir DIR]

For each perturbation it rewrites every labelled log (in a temporary folder: the third-party text
is never copied into the project), runs `dsdoctor analyze --json` on it and counts the files whose
top category is still right (the same test as scripts/score_realworld.py), and lists the misses.
Some perturbations remove the decisive lines on purpose (tail15, nohead): a miss there is not
always a fault, but a failed run reported as healthy is worth a look.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
import score_realworld as score  # noqa: E402  (the scoring rules are the same)


def _lines(t: str) -> list[str]:
    return t.splitlines()


def _join(lines) -> str:
    return "".join(f"{ln}\n" for ln in lines)


def hard_wrapped(width: int):
    def wrap(t: str) -> str:
        out = []
        for ln in _lines(t):
            while len(ln) > width:
                out.append(ln[:width])
                ln = ln[width:]
            out.append(ln)
        return _join(out)
    return wrap


def broken_at_bars(width: int):
    """Lines broken after a '| ' separator so that no piece is wider than `width` (how an issue
    paste or a narrow terminal leaves Megatron's and DeepSpeed's '|'-separated records)."""
    def wrap(t: str) -> str:
        out = []
        for ln in _lines(t):
            cur = ""
            for part in re.split(r"(?<=\|) ", ln) if len(ln) > width else [ln]:
                if cur and len(cur) + 1 + len(part) > width:
                    out.append(cur)
                    cur = part
                else:
                    cur = f"{cur} {part}" if cur else part
            out.append(cur)
        return _join(out)
    return wrap


PERTURBATIONS = {
    "tail40": lambda t: _join(_lines(t)[-40:]),
    "tail15": lambda t: _join(_lines(t)[-15:]),
    "nohead": lambda t: _join(_lines(t)[len(_lines(t)) // 3:]),
    "wrap80": hard_wrapped(80),
    "wrap120": hard_wrapped(120),
    "bars80": broken_at_bars(80),
    "crlf": lambda t: t.replace("\n", "\r\n"),
    "ansi": lambda t: _join(f"\x1b[32m{ln}\x1b[0m" for ln in _lines(t)),
    "srun0": lambda t: _join(f"0: {ln}" for ln in _lines(t)),
    "rank3": lambda t: _join(f"[rank3]: {ln}" for ln in _lines(t)),
    "kubectl": lambda t: _join(f"[pod/trainer-worker-0/pytorch] {ln}" for ln in _lines(t)),
    "journald": lambda t: _join(f"Dec 05 10:{i // 60 % 60:02d}:{i % 60:02d} gpu-node-3 python[4242]: {ln}"
                                for i, ln in enumerate(_lines(t))),
    "docker": lambda t: _join(json.dumps({"log": ln + "\n", "stream": "stderr", "time": "2026-12-05T10:00:00Z"})
                              for ln in _lines(t)),
    "quoted": lambda t: _join(f"> {ln}" for ln in _lines(t)),
    "fenced": lambda t: "```\n" + t + "```\n",
    "lstrip": lambda t: _join(ln.lstrip() for ln in _lines(t)),
    "catn": lambda t: _join(f"{i:6d}\t{ln}" for i, ln in enumerate(_lines(t), 1)),
}

# the log inside an issue body: prose, template headings, env dumps, the config and the code around it
from issue_wrappings import ISSUE_WRAPPINGS  # noqa: E402
PERTURBATIONS.update(ISSUE_WRAPPINGS)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("names", nargs="*", help=f"perturbations (default: all): {', '.join(PERTURBATIONS)}")
    ap.add_argument("--dir", type=Path, help="the folder with the logs and labels.yaml")
    args = ap.parse_args()
    unknown = [n for n in args.names if n not in PERTURBATIONS]
    if unknown:
        ap.error(f"unknown perturbation(s): {', '.join(unknown)}")
    folder = args.dir or next((d for d in score.DEFAULT_DIRS if (d / "labels.yaml").is_file()), None)
    if folder is None or not (folder / "labels.yaml").is_file():
        print("no labelled real-world logs found (../shared/realworld-logs): nothing to perturb")
        return 0
    labels = yaml.safe_load((folder / "labels.yaml").read_text())
    total_right = total = 0
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.names or list(PERTURBATIONS):
            right, misses = 0, []
            for lab in labels:
                text = (folder / lab["file"]).read_text(encoding="utf-8", errors="replace")
                path = Path(tmp) / lab["file"]
                path.write_text(PERTURBATIONS[name](text), encoding="utf-8")
                doc, err = score.analyze(path, 120)
                top = score.top_finding(doc) if doc else None
                got = top["category"] if top else score.HEALTHY
                if got in score.accepted(lab["category"], lab["file"]):
                    right += 1
                else:
                    want = "/".join(sorted(score.accepted(lab["category"], lab["file"]))) or lab["category"]
                    misses.append(f"    {lab['file']}: expected {want}, got {got}"
                                  f"{' (' + top['rule'] + ')' if top else ''}{' ' + err if err else ''}")
            total_right, total = total_right + right, total + len(labels)
            print(f"{name:10s} {right}/{len(labels)}")
            print("\n".join(misses)) if misses else None
            sys.stdout.flush()
    print(f"all        {total_right}/{total}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
