#!/usr/bin/env python3
"""Score `dsdoctor analyze` on the labelled real-world log excerpts.

    python scripts/score_realworld.py [DIR]        # DIR defaults to ../shared/realworld-logs

DIR holds the logs and labels.yaml (third-party text: read in place, never copied into the
project). For each labelled file this runs `dsdoctor analyze --json FILE`, takes the top
finding (findings come ordered most-likely-root-cause first) and compares its category with
the label. Prints one line per file and the score: top-1 category correct / total.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
DEFAULT_DIR = REPO.parent / "shared" / "realworld-logs"

# labels.yaml uses a few names that are not dsdoctor categories (findings.CATEGORIES):
# - comm_timeout is what dsdoctor calls comm_stall (collective timeouts and silent hangs);
# - 'other' is resolved per file, by what the label's notes describe:
#   028 GPU crash 'CUDA error: unknown error' and 030 uncorrectable ECC error -> hardware,
#   031 DataLoader worker killed by a bus error in /dev/shm -> host_oom (dsdoctor files
#   /dev/shm exhaustion under host memory).
# - healthy means: no finding above info.
LABEL_TO_CATEGORIES = {"comm_timeout": {"comm_stall"}}
OTHER_BY_FILE_PREFIX = {"028": {"hardware"}, "030": {"hardware"}, "031": {"host_oom"}}
HEALTHY = "healthy"


def accepted(label: str, file: str) -> set[str]:
    if label == "other":
        return OTHER_BY_FILE_PREFIX.get(file.split("_", 1)[0], set())
    return LABEL_TO_CATEGORIES.get(label, {label})


def top_category(doc: dict) -> tuple[str, str]:
    """(category, rule) of the top finding; ('healthy', '-') when nothing is above info."""
    for f in doc.get("findings", []):
        if f.get("severity") != "info":
            return f["category"], f["rule"]
        break
    return HEALTHY, "-"


def analyze(path: Path, timeout: float) -> tuple[dict | None, str]:
    try:
        p = subprocess.run([sys.executable, "-m", "dsdoctor", "analyze", "--json", str(path)],
                           capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return None, f"timed out after {timeout:.0f} s"
    if p.returncode not in (0, 1):
        return None, (p.stderr.strip().splitlines() or [f"exit code {p.returncode}"])[-1]
    try:
        return json.loads(p.stdout), ""
    except ValueError:
        return None, "stdout is not one JSON document"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dir", nargs="?", type=Path, default=DEFAULT_DIR, help="folder with the logs and labels.yaml")
    ap.add_argument("--timeout", type=float, default=120.0, help="seconds per file")
    args = ap.parse_args(argv)
    labels_file = args.dir / "labels.yaml"
    if not labels_file.is_file():
        print(f"score_realworld: error: {labels_file}: no such file", file=sys.stderr)
        return 2
    labels = yaml.safe_load(labels_file.read_text(encoding="utf-8")) or []
    correct = 0
    for item in labels:
        name, label = item["file"], item["category"]
        want = accepted(label, name)
        doc, err = analyze(args.dir / name, args.timeout)
        if doc is None:
            got, rule = "ERROR", err
        else:
            got, rule = top_category(doc)
        ok = got in want
        correct += ok
        print(f"{'ok  ' if ok else 'MISS'} {name[:60]:60} label={label:<20} want={'|'.join(sorted(want)):<12} "
              f"got={got:<20} {rule}")
    total = len(labels)
    print(f"\nscore: {correct}/{total} top-1 category correct ({100.0 * correct / max(total, 1):.0f}%)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
