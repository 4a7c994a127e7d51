#!/usr/bin/env python3
"""Score `dsdoctor analyze` on the labelled real-world log excerpts.

    python scripts/score_realworld.py [DIR] [--json OUT] [--quiet]

DIR holds the logs and labels.yaml (third-party text: read in place, never copied into the
project). Without DIR the script looks for ../shared/realworld-logs next to the repository
(or next to its parent folder, for a git worktree); when there is none it says so and exits 0,
so CI and fresh clones skip it cleanly.

For each labelled file it runs `dsdoctor analyze --json FILE` and takes the top finding (findings
come ordered most-likely-root-cause first; a run with nothing above info counts as 'healthy').
It prints one line per file, then:

- top-1 category accuracy;
- per-category precision and recall, and the confusion matrix (expected x top category);
- healthy false alarms: healthy runs whose top finding is above info (and how many of those are
  errors), and failed runs reported with nothing above info ("no problems");
- fix agreement: of the files whose category is right and whose `expected_fix` is known (it
  does not start with 'unknown' or 'none'), how many have a top finding whose fixes contain
  that fix. What "contain" means is listed per file in FIX_KEYWORDS below: the config keys,
  environment variables, flags or action words the label's expected_fix names; a fix agrees
  when any of them appears (case-insensitive) in the text of the top finding's fixes (titles,
  advice, config patches and env, as JSON). Files missing from that table are reported as
  'no keywords' and do not count;
- evidence: of the failed runs whose label lists key_lines (the lines the thread pointed at), how
  many have a top finding whose evidence quotes one of them (quotes_key_line).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
# ../shared next to the repository, or next to the worktrees' folder (/work/wt/<name> -> /work/shared)
DEFAULT_DIRS = (REPO.parent / "shared" / "realworld-logs", REPO.parent.parent / "shared" / "realworld-logs")
HEALTHY = "healthy"

# labels.yaml uses a few names that are not dsdoctor categories (findings.CATEGORIES):
# - comm_timeout is what dsdoctor calls comm_stall (collective timeouts and silent hangs);
# - 'other' is resolved per file, by what the label's notes describe (ECC errors, a GPU that
#   crashed with 'CUDA error: unknown error', illegal memory accesses -> hardware; a DataLoader
#   worker killed by a bus error in /dev/shm -> host_oom, where dsdoctor files /dev/shm
#   exhaustion; CUDA_HOME / nvcc / op build failures -> environment);
# - per-file exceptions to the label, each with its reason:
#   269 is labelled comm_timeout, but it is a c10d rendezvous that cannot connect to the
#   rdzv_endpoint TCPStore before any collective exists; its fix is network reachability of
#   the endpoint (address, port, firewall), which dsdoctor files under nccl_error (start-up and
#   transport failures), not comm_stall (ranks waiting on each other in a collective).
LABEL_TO_CATEGORIES = {"comm_timeout": {"comm_stall"}}
BY_FILE_PREFIX = {
    "028": {"hardware"}, "030": {"hardware"}, "031": {"host_oom"},
    "280": {"environment"}, "281": {"environment"}, "282": {"environment"}, "283": {"environment"},
    "284": {"hardware"}, "285": {"hardware"}, "286": {"hardware"},
    "269": {"nccl_error"},
}

# What each known expected_fix names (see the module docstring). Any one alternative is enough.
FIX_KEYWORDS: dict[str, tuple[str, ...]] = {
    "026": ("--exclude",),                                       # exclude / bisect the slow node
    "027": ("num_workers", "barrier", "ASYNC_ERROR_HANDLING"),
    "028": ("exclude", "drain"),                                  # restart on healthy nodes
    "029": ('"bf16"',),
    "030": ("exclude",),
    "031": ("num_workers", "shm-size"),
    "032": ("learning rate", "bf16"),
    "053": ("exclude",),
    "214": ('"stage": 3', "stage 3"),
    "220": ("wall_clock_breakdown", "bucket", "NVLink"),
    "230": ("gradient_accumulation_steps",),
    "231": ("total_num_steps",),
    "232": ("remove", "upgrade"),                                 # drop the ZeRO++ keys / newer DeepSpeed
    "233": ("DeepSpeedCPUAdam", "zero_force_ds_cpu_optimizer", '"optimizer"'),
    "234": ('"optimizer"',),
    "235": ("low_cpu_mem_usage", "device_map"),
    "236": ("device_map",),
    "237": ("zero_force_ds_cpu_optimizer", "offload_optimizer", '"optimizer"'),
    "240": ("fp32", "float32"),
    "245": ("learning rate",),
    "246": ('"bf16"',),
    "248": ("effective batch", "gradient_accumulation_steps"),
    "249": ('"bf16"',),
    "252": ("accelerate config", "train_micro_batch_size_per_gpu", "prepare()"),
    "261": ("every rank", "all ranks"),
    "264": ("another node", "exclude"),                           # run on another server
    "270": ("NCCL_SOCKET_IFNAME",),
    "272": ("NCCL_SHM_DISABLE", "shm-size"),
    "276": ("NCCL version", "container"),                          # another CUDA/NCCL container
    "280": ("CUDA_HOME", "DeepSpeedCPUAdam"),
    "281": ("TORCH_CUDA_ARCH_LIST", "nvcc"),
    "282": ("DS_SKIP_CUDA_CHECK", "CUDA toolkit"),
    "283": ("CUDA_HOME", "CUDA toolkit"),
    "284": ("drain", "exclude", "another node"),
}


def accepted(label: str, file: str) -> set[str]:
    by_file = BY_FILE_PREFIX.get(file.split("_", 1)[0])
    if by_file is not None:
        return by_file
    if label == "other":
        return set()
    return LABEL_TO_CATEGORIES.get(label, {label})


def top_finding(doc: dict) -> dict | None:
    """The top finding when it is above info; None when nothing is ('healthy')."""
    for f in doc.get("findings", []):
        return f if f.get("severity") != "info" else None
    return None


def fix_known(expected_fix: str | None) -> bool:
    t = (expected_fix or "").strip().lower()
    return bool(t) and not t.startswith(("unknown", "none"))


def fix_agrees(finding: dict, keywords: tuple[str, ...]) -> bool:
    text = json.dumps(finding.get("fixes") or [], ensure_ascii=False).lower()
    # JSON escapes quotes inside strings: compare against both forms
    return any(k.lower() in text or json.dumps(k.lower())[1:-1] in text for k in keywords)


def analyze(path: Path, timeout: float) -> tuple[dict | None, str]:
    try:
        # (run in this checkout: `-m` puts the working directory first on the path, so this checkout's dsdoctor is
        # measured, not one the environment has installed from another worktree)
        p = subprocess.run([sys.executable, "-m", "dsdoctor", "analyze", "--json", str(path.resolve())],
                           capture_output=True, text=True, timeout=timeout, cwd=REPO)
    except subprocess.TimeoutExpired:
        return None, f"timed out after {timeout:.0f} s"
    if p.returncode not in (0, 1):
        return None, (p.stderr.strip().splitlines() or [f"exit code {p.returncode}"])[-1]
    try:
        return json.loads(p.stdout), ""
    except ValueError:
        return None, "stdout is not one JSON document"


def _folded(text: str) -> str:
    return " ".join(text.lower().split())


def quotes_key_line(top: dict, key_lines: list[str] | None) -> bool | None:
    """Whether the top finding's evidence quotes one of the label's key lines (the lines the
    thread pointed at): its first or its last 60 characters, whitespace folded, case ignored (a
    quote may be cut in its middle, and a key line may be a piece of a longer line). None when
    the label lists none."""
    keys = [_folded(k) for k in key_lines or () if k and k.strip()]
    if not keys:
        return None
    quoted = " ".join(_folded(e.get("text") or "") for e in top.get("evidence") or ())
    return any(k[:60] in quoted or k[-60:] in quoted for k in keys)


def score(labels: list[dict], folder: Path, timeout: float, out=print) -> dict:
    rows = []
    for item in labels:
        name, label = item["file"], item["category"]
        want = accepted(label, name)
        expected = min(want) if want else f"?{label}"
        doc, err = analyze(folder / name, timeout)
        top = top_finding(doc) if doc is not None else None
        if doc is None:
            got, rule = "ERROR", err
        elif top is None:
            got, rule = HEALTHY, "-"
        else:
            got, rule = top["category"], top["rule"]
        ok = got in want
        prefix = name.split("_", 1)[0]
        fix = None                                     # None: not counted
        if ok and label != HEALTHY and fix_known(item.get("expected_fix")):
            kws = FIX_KEYWORDS.get(prefix)
            fix = "no keywords" if not kws else ("agrees" if top and fix_agrees(top, kws) else "differs")
        quoted = quotes_key_line(top, item.get("key_lines")) if label != HEALTHY and top else None
        rows.append(dict(file=name, label=label, expected=expected, got=got, rule=rule, ok=ok, fix=fix,
                         severity=top.get("severity") if top else None, quoted=quoted))
        out(f"{'ok  ' if ok else 'MISS'} {name[:44]:44} want={'|'.join(sorted(want)) or '?':<20} "
            f"got={got:<20} {rule}{'  fix: ' + fix if fix else ''}")
    return summarize(rows)


def summarize(rows: list[dict]) -> dict:
    total = len(rows)
    correct = sum(r["ok"] for r in rows)
    cats = sorted({r["expected"] for r in rows} | {r["got"] for r in rows})
    confusion: dict[str, Counter] = defaultdict(Counter)
    for r in rows:
        confusion[r["expected"]][r["got"]] += 1
    per_cat = {}
    for c in cats:
        tp = sum(1 for r in rows if r["ok"] and r["expected"] == c)
        predicted = sum(1 for r in rows if r["got"] == c)
        actual = sum(1 for r in rows if r["expected"] == c)
        per_cat[c] = dict(support=actual, predicted=predicted, correct=tp,
                          precision=tp / predicted if predicted else None, recall=tp / actual if actual else None)
    healthy = [r for r in rows if r["label"] == HEALTHY]
    alarms = [r for r in healthy if r["got"] != HEALTHY]
    silent = [r for r in rows if r["label"] != HEALTHY and r["got"] == HEALTHY]
    counted = [r for r in rows if r["fix"] in ("agrees", "differs")]
    agree = [r for r in counted if r["fix"] == "agrees"]
    return dict(total=total, correct=correct, accuracy=correct / total if total else None,
                per_category=per_cat, confusion={k: dict(v) for k, v in confusion.items()},
                healthy=len(healthy), healthy_false_alarms=[r["file"] for r in alarms],
                healthy_serious=[r["file"] for r in alarms if r["severity"] == "error"],
                failed_reported_healthy=[r["file"] for r in silent],
                fix_counted=len(counted), fix_agree=len(agree),
                fix_differs=[r["file"] for r in counted if r["fix"] == "differs"],
                fix_no_keywords=[r["file"] for r in rows if r["fix"] == "no keywords"],
                quote_counted=sum(r["quoted"] is not None for r in rows),
                quote_agree=sum(r["quoted"] is True for r in rows),
                quote_missing=[r["file"] for r in rows if r["quoted"] is False],
                rows=rows)


def _pct(x: float | None) -> str:
    return "  - " if x is None else f"{100 * x:3.0f}%"


def report(s: dict, out=print) -> None:
    out(f"\nscore: {s['correct']}/{s['total']} top-1 category correct ({_pct(s['accuracy']).strip()})")
    out("\nper category (expected = the label mapped to dsdoctor's categories):")
    out(f"  {'category':20} {'files':>5} {'top-1':>5} {'right':>5} {'precision':>9} {'recall':>6}")
    for c, m in s["per_category"].items():
        out(f"  {c:20} {m['support']:5d} {m['predicted']:5d} {m['correct']:5d} {_pct(m['precision']):>9} "
            f"{_pct(m['recall']):>6}")
    cats = list(s["per_category"])
    short = {c: c[:8] for c in cats}
    out("\nconfusion (rows: expected, columns: top finding):")
    out("  " + " " * 20 + " ".join(f"{short[c]:>8}" for c in cats))
    for e in cats:
        row = s["confusion"].get(e, {})
        if not row:
            continue
        out(f"  {e:20}" + " ".join(f"{row.get(g, 0) or '.':>8}" for g in cats))
    out(f"\nhealthy runs: {s['healthy']}, false alarms (top finding above info): {len(s['healthy_false_alarms'])}"
        f"{' ' + ', '.join(s['healthy_false_alarms']) if s['healthy_false_alarms'] else ''}"
        f"; of them errors: {len(s['healthy_serious'])}")
    out(f"failed runs reported with no problem: {len(s['failed_reported_healthy'])}"
        f"{' ' + ', '.join(s['failed_reported_healthy']) if s['failed_reported_healthy'] else ''}")
    n = s["fix_counted"]
    out(f"fix agreement (category right, fix known): {s['fix_agree']}/{n}"
        f"{' (' + _pct(s['fix_agree'] / n).strip() + ')' if n else ''}"
        f"{'; differs: ' + ', '.join(s['fix_differs']) if s['fix_differs'] else ''}"
        f"{'; no keywords listed: ' + ', '.join(s['fix_no_keywords']) if s['fix_no_keywords'] else ''}")
    out(f"evidence (the top finding of a failed run quotes a labelled key line): {s['quote_agree']}/{s['quote_counted']}"
        f"{'; not quoted: ' + ', '.join(s['quote_missing']) if s['quote_missing'] else ''}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dir", nargs="?", type=Path, default=None, help="folder with the logs and labels.yaml")
    ap.add_argument("--timeout", type=float, default=120.0, help="seconds per file")
    ap.add_argument("--json", type=Path, default=None, help="also write the figures as JSON to this file")
    ap.add_argument("--quiet", action="store_true", help="no per-file lines")
    args = ap.parse_args(argv)
    if args.dir is None:
        folder = next((d for d in DEFAULT_DIRS if (d / "labels.yaml").is_file()), None)
        if folder is None:
            print(f"score_realworld: skipped: no labelled logs at {DEFAULT_DIRS[0]} (pass DIR to score another folder)")
            return 0
    else:
        folder = args.dir
        if not (folder / "labels.yaml").is_file():
            print(f"score_realworld: error: {folder / 'labels.yaml'}: no such file", file=sys.stderr)
            return 2
    try:
        labels = yaml.safe_load((folder / "labels.yaml").read_text(encoding="utf-8")) or []
        if not isinstance(labels, list) or not all(isinstance(i, dict) and "file" in i and "category" in i
                                                   for i in labels):
            raise ValueError("expected a list of {file, category, ...} entries")
    except (OSError, ValueError, yaml.YAMLError) as e:
        print(f"score_realworld: error: {folder / 'labels.yaml'}: {str(e).splitlines()[0]}", file=sys.stderr)
        return 2
    s = score(labels, folder, args.timeout, out=(lambda *_: None) if args.quiet else print)
    report(s)
    if args.json:
        args.json.write_text(json.dumps(s, indent=1, sort_keys=True), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
