"""DeepSpeed `csv_monitor` output -> events.

deepspeed/monitor/csv_monitor.py: csvMonitor.write_events writes, on rank 0, one file per tag
into <output_path>/<job_name>/: the tag with '/' and ' ' turned into '_' plus '.csv'
(Train_Samples_lr.csv), header `step,<last part of the tag>`, then `<global_samples>,<value>`
rows; a NaN is written as `nan`. See sources/scalars.py for how samples become steps.
"""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Iterator

from ..events import Event
from .scalars import Point, to_events


def header(p: Path) -> list[str] | None:
    """The header if `p` looks like a csv_monitor file (exactly `step,<name>`), else None."""
    try:
        with open(p, encoding="utf-8", errors="replace", newline="") as fh:
            head = fh.readline().strip()
    except OSError:
        return None
    cells = [c.strip() for c in head.split(",")]
    return cells if len(cells) == 2 and cells[0] == "step" and cells[1] else None


def monitor_files(path: Path) -> list[Path]:
    files = sorted(path.glob("*.csv")) if path.is_dir() else [path]
    return [f for f in files if header(f)]


def read(inp, warnings: list[str] | None) -> Iterator[Event]:
    series: dict[str, list[Point]] = {}
    where: dict[str, str] = {}
    for f in monitor_files(inp.path):
        tag = f.stem                         # the sanitised tag: classify() compares that form
        pts: list[Point] = []
        try:
            with open(f, encoding="utf-8", errors="replace", newline="") as fh:
                for n, row in enumerate(csv.reader(fh), 1):
                    if n == 1 or len(row) != 2 or row[0] == "step":   # a rerun appends a new header
                        continue
                    try:
                        pts.append(Point(int(float(row[0])), float(row[1]), None, n))
                    except ValueError:
                        if warnings is not None:
                            warnings.append(f"{f}:{n}: not a number ({','.join(row)[:60]!r}); row skipped")
        except (OSError, csv.Error) as e:
            if warnings is not None:
                warnings.append(f"{f}: cannot read ({e}); skipped")
            continue
        series[tag] = pts
        where[tag] = str(f)
    yield from to_events(series, inp.name, inp.rank_hint if inp.rank_hint is not None else 0, where)
