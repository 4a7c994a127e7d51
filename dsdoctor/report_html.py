"""The HTML report: one self-contained file (no CDN, no JavaScript, no external file), so it opens
offline and can be attached to a bug report.

It shows the same findings as the terminal report (evidence with file:line, fixes as pasteable
RFC 7386 JSON merge patches, or as a diff against the user's config) and the pictures that fit
the run (report_plots.py), drawn from the events the pipeline diagnosed (report_series.py).
"""
from __future__ import annotations

import html
import json
import time
from pathlib import Path
from typing import Any

from .version import __version__
from .findings import Finding, worst_severity
from .report_series import RunSeries

_SEV_COLOUR = {"critical": "#8b0000", "error": "#c62828", "warning": "#b26a00", "info": "#1565c0"}
_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;margin:0;background:#f6f7f9;color:#1d1f23}
main{max-width:1040px;margin:0 auto;padding:24px}
h1{font-size:22px;margin:0 0 4px} h2{font-size:17px;margin:28px 0 10px} h3{font-size:15px;margin:0}
.meta{color:#5f6570;font-size:13px}
.banner{padding:12px 16px;border-radius:8px;margin:16px 0;font-weight:600;border:1px solid}
.banner.bad{background:#fdecea;border-color:#f5c2bd}.banner.warn{background:#fff4e0;border-color:#f3d59b}
.banner.ok{background:#e8f5e9;border-color:#b9dfbb}
.card{background:#fff;border:1px solid #dde1e6;border-radius:8px;padding:14px 16px;margin:12px 0}
.sev{display:inline-block;color:#fff;font-size:11px;font-weight:700;padding:2px 7px;border-radius:4px;margin-right:8px;vertical-align:1px}
.rule{color:#5f6570;font-size:12px;font-family:ui-monospace,Menlo,Consolas,monospace}
.where{color:#5f6570;font-size:13px;margin:6px 0}
table{border-collapse:collapse;width:100%;font-size:12px;margin:6px 0}
td{border-top:1px solid #eceef1;padding:3px 6px;vertical-align:top}
td.loc{color:#5f6570;font-family:ui-monospace,Menlo,Consolas,monospace;width:30%;word-break:break-all}
td.txt{font-family:ui-monospace,Menlo,Consolas,monospace;word-break:break-all}
pre{background:#f3f4f6;border:1px solid #e2e5e9;border-radius:6px;padding:8px 10px;font-size:12px;overflow-x:auto;user-select:all;margin:6px 0}
.fix{margin-top:10px}.fix b{color:#2e7d32}.advice{font-style:italic;color:#3d4148;font-size:13px}
.ok{color:#2e7d32}.bad{color:#c62828}
figure{background:#fff;border:1px solid #dde1e6;border-radius:8px;margin:12px 0;padding:10px}
figure svg{width:100%;height:auto;display:block}
figcaption{font-size:13px;color:#3d4148;margin-top:6px}
.notes li{font-size:13px;color:#5f6570}
"""


def _e(x: Any) -> str:
    return html.escape(str(x), quote=True)


def _where(f: Finding) -> str:
    parts = []
    if f.ranks:
        parts.append(f"rank{'s' if len(f.ranks) > 1 else ''} {f.ranks_text}")
    if f.steps:
        parts.append(f.steps_text)
    if f.consequence_of:
        parts.append(f"likely a consequence of {f.consequence_of}")
    return " · ".join(parts)


def _short(source: str, base: str | None) -> str:
    """An evidence path relative to the folder the inputs share (the full path is in the tooltip)."""
    if base and source.startswith(base + "/"):
        return source[len(base) + 1:]
    return source


def _base(inputs: list[str] | None) -> str | None:
    import os
    paths = [i for i in inputs or [] if i != "-"]
    if not paths:
        return None
    try:
        common = os.path.commonpath(paths)
    except ValueError:
        return None
    return os.path.dirname(common) or None


def _finding(f: Finding, i: int, base: str | None = None) -> str:
    out = [f'<section class="card" id="finding-{i}">',
           f'<h3><span class="sev" style="background:{_SEV_COLOUR.get(f.severity, "#555")}">{_e(f.severity.upper())}</span>'
           f'{i}. {_e(f.title)}</h3>',
           f'<div class="rule">{_e(f.rule)} · {_e(f.category)}</div>']
    w = _where(f)
    if w:
        out.append(f'<div class="where">{_e(w)}</div>')
    out.append(f"<p>{_e(f.summary)}</p>")
    if f.evidence:
        out.append("<div><b>Evidence</b></div><table>")
        for ev in f.evidence:
            loc = f"{ev.source}:{ev.line}" if ev.line else ev.source
            out.append(f'<tr><td class="loc" title="{_e(loc)}">{_e(_short(loc, base))}</td>'
                       f'<td class="txt">{_e(ev.text)}</td></tr>')
        out.append("</table>")
    for n, fx in enumerate(f.fixes, 1):
        label = "Fix" if len(f.fixes) == 1 else f"Fix {n}"
        out.append(f'<div class="fix"><b>{label}:</b> {_e(fx.title)}')
        if fx.diff:
            out.append(f"<pre>{_e(fx.diff)}</pre>")
        elif fx.config_patch:
            out.append(f'<pre title="JSON merge patch (RFC 7386) for your ds_config">'
                       f"{_e(json.dumps(fx.config_patch, indent=2))}</pre>")
        if fx.env:
            out.append("<pre>" + _e("\n".join(f"export {k}={v}" for k, v in fx.env.items())) + "</pre>")
        if fx.advice:
            out.append(f'<div class="advice">{_e(fx.advice)}</div>')
        if fx.config_patch and fx.validated is True:
            out.append('<div class="ok">✓ DeepSpeed\'s config parser accepts the patched config</div>')
        elif fx.config_patch and fx.validated is False:
            out.append(f'<div class="bad">✗ DeepSpeed rejects the patched config: {_e(fx.validation_error)}</div>')
        out.append("</div>")
    out.append("</section>")
    return "\n".join(out)


def _ranks_of(findings: list[Finding], *categories: str) -> set[int]:
    return {r for f in findings if f.category in categories and f.severity != "info" for r in f.ranks}


def figures(findings: list[Finding], series: RunSeries) -> tuple[list[tuple[str, str, str]], list[str]]:
    """[(id, caption, svg)] in the order that fits the top finding, and notes."""
    from . import report_plots as P
    if not P.available():
        return [], ["Pictures need matplotlib (pip install 'dsdoctor[plot]'); this report has none."]
    slow = _ranks_of(findings, "straggler")
    # the ranks a stall finding names as behind (not the ranks whose stack dump waits for them)
    stalled = {r for f in findings if f.category == "comm_stall" and f.rule.startswith("stall")
               and f.severity != "info" for r in f.ranks}
    cats = {f.category for f in findings}
    made: dict[str, tuple[str, str, str]] = {}
    notes: list[str] = []
    plan = [
        ("curves", "Training curves per step: loss, gradient norm, fp16 loss scale (orange triangles: overflows) "
                   "and learning rate. Red crosses: NaN/Inf values; dashed red line: the first one.",
         lambda: P.training_curves(series)),
        ("step-times", "Time per rank over the steps: its own compute (forward, data, backward without the "
                       "all-reduce) and the whole step, in which the others wait for a slow rank"
                       + (f"; slow rank(s) {', '.join(map(str, sorted(slow)))} in red" if slow else "") + ".",
         lambda: P.step_times(series, slow) if len(series.step_ms) > 1 or slow else None),
        ("memory", "Memory over time before the OOM (dashed red line: the OOM)." if series.memory else
                   "Memory at the OOM, from the numbers in the OOM message itself.",
         lambda: P.memory(series) if series.ooms or cats & {"oom", "host_oom"} else None),
        ("stall", "Stall timeline: when each rank last made progress"
                  + (f"; rank(s) {', '.join(map(str, sorted(stalled)))} stopped first" if stalled else "") + ".",
         lambda: P.stall_timeline(series, stalled)),
    ]
    for fid, caption, draw in plan:
        try:
            svg = draw()
        except Exception as e:          # a picture must never cost the report
            notes.append(f"The {fid} picture could not be drawn ({type(e).__name__}: {e}).")
            continue
        if svg:
            made[fid] = (fid, caption, P.clean_svg(svg))
    by_category = {"oom": "memory", "host_oom": "memory", "straggler": "step-times", "comm_stall": "stall",
                   "nccl_error": "stall", "nan_loss": "curves", "loss_scale_collapse": "curves",
                   "lr_schedule": "curves"}
    order: list[str] = []
    for f in findings:                  # the picture of the most likely root cause first
        fid = by_category.get(f.category)
        if fid and fid not in order:
            order.append(fid)
    order += [k for k in ("curves", "step-times", "memory", "stall") if k not in order]
    return [made[k] for k in order if k in made], notes


# run facts worth a line at the top (context.FACTS), in this order
_RUN_FACTS = (("world_size", "ranks"), ("dtype", "dtype"), ("zero_stage", "ZeRO stage"), ("micro_batch", "micro-batch"),
              ("gas", "grad. accumulation"), ("train_batch", "global batch"), ("offload_optimizer", "optimizer offload"),
              ("gpu_name", "GPU"), ("ds_version", "DeepSpeed"), ("torch_version", "torch"))


def _run_line(facts: dict[str, Any] | None) -> str:
    parts = [f"{label} {facts[k]}" for k, label in _RUN_FACTS if facts and facts.get(k) not in (None, "", "none")]
    return f'<div class="meta">Run: {_e(" · ".join(parts))}</div>' if parts else ""


def render(findings: list[Finding], series: RunSeries, *, title: str, inputs: list[str] | None = None,
           notes: list[str] | None = None, events_seen: int | None = None,
           facts: dict[str, Any] | None = None) -> str:
    figs, fig_notes = figures(findings, series)
    problems = sum(1 for f in findings if f.severity != "info")
    if not findings:
        banner = '<div class="banner ok">No problems found.</div>'
    else:
        worst = worst_severity(findings)
        cls = "bad" if worst in ("critical", "error") else "warn"
        banner = (f'<div class="banner {cls}">{problems} problem(s), {len(findings) - problems} note(s). '
                  f"Most likely root cause first: {_e(findings[0].title)}</div>")
    meta = [f"dsdoctor {__version__}", time.strftime("%Y-%m-%d %H:%M:%S %Z")]
    if events_seen is not None:
        meta.append(f"{events_seen} events")
    if inputs:
        meta.append(f"{len(inputs)} input(s)")
    parts = ['<!DOCTYPE html>', '<html lang="en"><head><meta charset="utf-8">',
             '<meta name="viewport" content="width=device-width, initial-scale=1">',
             f"<title>{_e(title)}</title><style>{_CSS}</style></head><body><main>",
             f"<h1>{_e(title)}</h1>", f'<div class="meta">{_e(" · ".join(meta))}</div>', _run_line(facts), banner]
    if findings:
        parts.append("<h2>Findings</h2>")
        base = _base(inputs)
        parts.extend(_finding(f, i, base) for i, f in enumerate(findings, 1))
    if figs:
        parts.append("<h2>Pictures</h2>")
        for fid, caption, svg in figs:
            parts.append(f'<figure id="fig-{fid}">{svg}<figcaption>{_e(caption)}</figcaption></figure>')
    all_notes = list(notes or []) + fig_notes
    if not figs and not fig_notes:
        all_notes.append("Nothing to draw: the inputs hold no per-step metrics, step times, memory readings or "
                         "stalls (a run watched with `dsdoctor run` records them).")
    if all_notes:
        parts.append('<h2>Notes</h2><ul class="notes">' + "".join(f"<li>{_e(n)}</li>" for n in all_notes) + "</ul>")
    if inputs:
        parts.append('<h2>Inputs</h2><ul class="notes">' + "".join(f"<li>{_e(i)}</li>" for i in inputs[:200])
                     + (f"<li>… {len(inputs) - 200} more</li>" if len(inputs) > 200 else "") + "</ul>")
    parts.append("</main></body></html>\n")
    return "\n".join(parts)


def write(path: Path, findings: list[Finding], series: RunSeries, **kw: Any) -> Path:
    """Write the report; OSError for the caller to turn into a one-line message."""
    path = Path(path)
    text = render(findings, series, **kw)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
    return path
