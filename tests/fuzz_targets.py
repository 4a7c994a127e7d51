"""Fuzz targets: the readers, loaders and option parsers, each with the inputs hypothesis
generates for it and the one error class it may raise (a one-line message for the user).

Anything else raised is a traceback the user would see; running past LIMIT_S is a hang.
Used by tests/test_fuzz.py (a modest count in CI) and scripts/fuzz.py (>= 10,000 inputs,
prints the counts). A failing input is kept in tests/corpus/fuzz/<target>-<hash>.<ext>,
which tests/test_fuzz.py replays every run: the corpus only grows.
"""
from __future__ import annotations

import hashlib
import json
import os
import signal
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable

from hypothesis import strategies as st

LIMIT_S = 5.0                                  # per input
FUZZ_CORPUS = Path(__file__).resolve().parent / "corpus" / "fuzz"


class Hang(Exception):
    """Raised by the alarm: an input ran longer than LIMIT_S. (Code that catches Exception
    may swallow it; the elapsed time is checked as well.)"""


@contextmanager
def time_limit(seconds: float = LIMIT_S):
    def on_alarm(*_: Any) -> None:
        raise Hang()
    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def _tmpfile(data: bytes, suffix: str) -> Path:
    fd, name = tempfile.mkstemp(suffix=suffix, prefix="dsdoctor-fuzz-")
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    return Path(name)


# ---------------------------------------------------------------- generators
# Pieces of what the real inputs hold (message formats of the installed DeepSpeed and torch,
# see tests/test_formats_*.py), cut and mixed with junk: a fuzzer that only made random
# bytes would never get past the first check of a reader.
LOG_PIECES = [
    "[Rank 0] step=1, skipped=0, lr=[0.001], mom=[(0.9, 0.999)]\n",
    "[2026-01-01 00:00:00,000] [INFO] [logging.py:123:log_dist] [Rank 0] step=10, skipped=2, lr=[nan], mom=[(0.9, 0.999)]\n",
    "[Rank 0] time (ms) | fwd_microstep: 2.96 | bwd_microstep: 17.78 | step_microstep: 45.57\n",
    "[deepspeed] OVERFLOW! Rank 0 Skipping step. Attempted loss scale: 65536, reducing to 32768\n",
    "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 1.50 GiB. GPU 0 has a total capacity of 79.15 GiB of which 1.20 GiB is free.\n",
    "Traceback (most recent call last):\n  File \"train.py\", line 3, in <module>\n",
    "RuntimeError: CUDA error: an illegal memory access was encountered\n",
    "{'loss': 2.31, 'grad_norm': nan, 'learning_rate': 5e-05, 'epoch': 0.1}\n",
    " iteration       10/     100 | consumed samples:          640 | lm loss: 1.0E+01 | loss scale: 4096.0 |\n",
    "[rank1]:[E ProcessGroupNCCL.cpp:616] [Rank 1] Watchdog caught collective operation timeout: WorkNCCL(SeqNum=5, OpType=ALLREDUCE, NumelIn=1, NumelOut=1, Timeout(ms)=600000) ran for 600001 milliseconds before timing out.\n",
    "NCCL WARN Net : Connection closed by remote peer\n",
    "step 3 loss 2.3012\n",
    "\x1b[31m", "\r", "\x00", "\xff", "1e999", "-inf", "9" * 400, "[" * 50, "\n",
]
JSON_SCALARS = st.one_of(st.none(), st.booleans(), st.integers(min_value=-(10 ** 30), max_value=10 ** 30),
                         st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=20),
                         st.sampled_from(["nan", "inf", "-inf", "abc", "", "9" * 400]))
JSON_VALUES = st.recursive(JSON_SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=4),
                           st.dictionaries(st.text(max_size=8), inner, max_size=4)), max_leaves=12)
KINDS = ["step", "loss", "grad_norm", "lr", "throughput", "timers", "skipped", "overflow", "loss_scale",
         "nonfinite_module", "scale_at_minimum", "oom", "cuda_error", "killed", "shm_error", "memory",
         "collective_timeout", "watchdog_state", "nccl_error", "nccl_warn", "nccl_transport", "gloo_error",
         "desync_report", "heartbeat", "stall", "stall_resolved", "stack", "rank_times", "config_error",
         "env_error", "hardware", "exception", "exit", "context", "doctor_error", "telemetry", "finding"]
DATA_KEYS = ["value", "name", "fwd_ms", "bwd_ms", "step_ms", "data_ms", "prev_scale", "new_scale", "hysteresis",
             "ranks", "last_step", "waited_s", "requested", "total", "free", "device", "phase", "signal",
             "exitcode", "op", "timeout_ms", "world_size", "zero_stage", "dtype", "error", "type", "message",
             "rss", "gpu_util", "outliers", "median", "nranks", "id", "skipped", "samples_per_sec"]


@st.composite
def text_logs(draw) -> bytes:
    parts = draw(st.lists(st.one_of(st.sampled_from(LOG_PIECES), st.text(max_size=40)), max_size=30))
    raw = "".join(parts).encode("utf-8", errors="surrogatepass" if False else "replace")
    if draw(st.booleans()):
        raw += draw(st.binary(max_size=64))
    return raw


@st.composite
def notebooks(draw) -> bytes:
    """A Jupyter notebook (nbformat 4 JSON) whose outputs hold log pieces, then cut or mangled."""
    def output():
        kind = draw(st.sampled_from(["stream", "error", "execute_result", "display_data", "other", None]))
        text = draw(st.lists(st.one_of(st.sampled_from(LOG_PIECES), st.text(max_size=20)), max_size=6))
        o: dict[str, Any] = {"output_type": kind}
        if kind == "error":
            o.update(ename=draw(JSON_SCALARS), evalue=draw(JSON_SCALARS),
                     traceback=draw(st.one_of(st.just(text), JSON_VALUES)))
        elif kind in ("execute_result", "display_data"):
            o["data"] = draw(st.one_of(st.just({"text/plain": text}), JSON_VALUES))
        else:
            o["text"] = draw(st.one_of(st.just(text), st.just("".join(text)), JSON_VALUES))
        return o
    cells = [{"cell_type": "code", "source": draw(st.text(max_size=20)), "metadata": {},
              "outputs": draw(st.one_of(st.lists(st.builds(output), max_size=4), JSON_VALUES))}
             for _ in range(draw(st.integers(min_value=0, max_value=4)))]
    raw = json.dumps({"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5}, indent=1).encode()
    how = draw(st.sampled_from(["whole", "cut", "junk"]))
    if how == "cut":
        raw = raw[:draw(st.integers(min_value=0, max_value=len(raw)))]
    elif how == "junk":
        at = draw(st.integers(min_value=0, max_value=len(raw)))
        raw = raw[:at] + draw(st.binary(max_size=16)) + raw[at:]
    return raw


@st.composite
def event_lines(draw) -> bytes:
    lines = []
    for _ in range(draw(st.integers(min_value=0, max_value=25))):
        d: dict[str, Any] = {"kind": draw(st.one_of(st.sampled_from(KINDS), JSON_SCALARS))}
        for field in ("rank", "step", "time", "source", "line", "text"):
            if draw(st.booleans()):
                d[field] = draw(st.one_of(st.integers(min_value=-3, max_value=300), JSON_SCALARS))
        data = {}
        for k in draw(st.lists(st.sampled_from(DATA_KEYS), max_size=5)):
            data[k] = draw(st.one_of(st.integers(min_value=-5, max_value=10 ** 6),
                                     st.floats(min_value=-1e6, max_value=1e6), JSON_VALUES))
        d["data"] = data if draw(st.integers(0, 9)) else draw(JSON_VALUES)
        try:
            line = json.dumps(d)
        except (ValueError, TypeError):
            continue
        if draw(st.integers(0, 9)) == 0:
            line = line[: draw(st.integers(0, len(line)))]          # cut by a kill
        lines.append(line)
    if draw(st.integers(0, 19)) == 0:
        lines.append("[" * draw(st.integers(1, 20000)))
    return ("\n".join(lines) + "\n").encode()


CONFIG_KEYS = ["train_batch_size", "train_micro_batch_size_per_gpu", "gradient_accumulation_steps",
               "zero_optimization", "stage", "offload_optimizer", "offload_param", "device", "fp16", "bf16",
               "enabled", "loss_scale", "initial_scale_power", "optimizer", "type", "params", "lr", "scheduler",
               "gradient_clipping", "steps_per_print", "wall_clock_breakdown", "overlap_comm",
               "reduce_bucket_size", "stage3_max_live_parameters", "activation_checkpointing", "auto"]


@st.composite
def configs(draw) -> str:
    def value(depth: int) -> Any:
        if depth > 2 or draw(st.integers(0, 2)) == 0:
            return draw(st.one_of(JSON_SCALARS, st.sampled_from(["auto", "cpu", "nvme", "OneCycle", "AdamW"])))
        return {draw(st.sampled_from(CONFIG_KEYS)): value(depth + 1) for _ in range(draw(st.integers(0, 4)))}
    cfg = value(0) if draw(st.integers(0, 5)) == 0 else {
        draw(st.sampled_from(CONFIG_KEYS)): value(1) for _ in range(draw(st.integers(0, 8)))}
    try:
        text = json.dumps(cfg)
    except (ValueError, TypeError):
        text = "{}"
    mode = draw(st.integers(0, 5))
    if mode == 0:                                       # hjson-isms and junk spliced in
        at = draw(st.integers(0, len(text)))
        text = text[:at] + draw(st.sampled_from(["1_000", "//", "/*", "'", ",", "}", "NaN", "\x00", "\ufeff"])) + text[at:]
    elif mode == 1:
        text = text[: draw(st.integers(0, len(text)))]
    return text


EXPRS = ["True", "x > 1", "defined('x') and x > 3", "get('zero_optimization.stage', 0) == 3", "num(value)",
         "human(total)", "2 ** 4000000 ** 2 > 1", "(lambda: 1)()", "__import__('os')", "{x for x in [1]}",
         "[x for x in [1] * 100000]", "f'{1:>99999}'", "(y := 1)", "ranks.__class__", "open('x')", "1 +",
         "+".join(["1"] * 3000), "(" * 200 + "1" + ")" * 200, "'a' * 10 ** 9", "max([])", "1 / 0", "x.y.z",
         "sorted(ranks)[0]", "ceil(None)", "{'a': 1}['b']", "int('x')", "str(x) * 100000"]
RULE_FIELDS = {
    "id": st.one_of(st.just("fuzz-rule"), JSON_SCALARS), "category": st.one_of(st.just("oom"), JSON_SCALARS),
    "severity": st.one_of(st.just("error"), JSON_SCALARS), "title": st.one_of(st.just("t {num(x)}"), JSON_VALUES),
    "summary": st.one_of(st.just("s {human(total)}"), JSON_VALUES), "source": st.one_of(st.just("src"), JSON_VALUES),
    "priority": st.one_of(st.integers(-5, 5), JSON_SCALARS), "explains": st.one_of(st.just(["oom"]), JSON_VALUES),
    "references": JSON_VALUES, "falsepositives": JSON_VALUES, "key": JSON_VALUES, "bogus": JSON_VALUES,
}


@st.composite
def rule_files(draw) -> str:
    import yaml
    rule: dict[str, Any] = {"id": "fuzz-rule", "category": "oom", "severity": "error", "title": "t",
                            "summary": "s", "source": "src",
                            "match": {"symptom": "cuda_oom", "where": draw(st.sampled_from(EXPRS))},
                            "fixes": [{"title": "f", "config_patch": {"train_micro_batch_size_per_gpu":
                                                                      "=" + draw(st.sampled_from(EXPRS))},
                                       "when": draw(st.sampled_from(EXPRS + [None]))}],
                            "examples": {"match": [{"log": "x"}], "nomatch": [{"log": "y"}]}}
    for k in draw(st.lists(st.sampled_from(sorted(RULE_FIELDS)), max_size=3)):
        rule[k] = draw(RULE_FIELDS[k])
    if draw(st.integers(0, 4)) == 0:
        rule["match"] = draw(JSON_VALUES)
    if draw(st.integers(0, 4)) == 0:
        rule["fixes"] = draw(JSON_VALUES)
    if draw(st.integers(0, 4)) == 0:
        rule["examples"] = draw(JSON_VALUES)
    try:
        text = yaml.safe_dump({"rules": [rule]}, allow_unicode=True)
    except Exception:
        text = "rules: []\n"
    mode = draw(st.integers(0, 7))
    if mode == 0:
        text = text[: draw(st.integers(0, len(text)))]
    elif mode == 1:
        n = draw(st.integers(1, 12))
        text = "a0: &a0 [x, x, x, x]\n" + "".join(f"a{i}: &a{i} [*a{i-1}, *a{i-1}, *a{i-1}, *a{i-1}]\n"
                                                   for i in range(1, n)) + f"rules: *a{n-1}\n"
    elif mode == 2:
        text = draw(st.sampled_from(["rules: !!python/object/apply:os.system ['true']\n", "rules: [" * 3000,
                                     "- 1\n", "rules: {a: 1}\n", "rules:\n  - {[1]: 2}\n", "\x00", "rules: [1, 2]\n"]))
    return text


@st.composite
def csv_files(draw) -> str:
    header = draw(st.sampled_from(["step,lr,loss", "lr,loss", "step,learning_rate,train_loss", "a,b", "",
                                   "step,lr,loss,extra", "iteration,lr,loss"]))
    rows = [header]
    n = draw(st.integers(0, 60))
    cell = st.one_of(st.floats(allow_nan=True, allow_infinity=True).map(repr), st.integers(-10, 10 ** 6).map(str),
                     st.sampled_from(["", "nan", "inf", "1e999", "abc", "9" * 400, "\x00", '"', "1,2"]))
    base = draw(st.booleans())
    for i in range(n):
        if base:                    # a plausible sweep with a few broken cells
            lr, loss = 1e-5 * 1.2 ** i, 2.0 - 0.03 * i + (0.002 * (i - 40) ** 2 if i > 40 else 0)
            row = [str(i), repr(lr), repr(loss)]
            if draw(st.integers(0, 9)) == 0:
                row[draw(st.integers(0, 2))] = draw(cell)
        else:
            row = [draw(cell) for _ in range(draw(st.integers(1, 4)))]
        rows.append(",".join(row))
    return "\n".join(rows) + "\n"


OPTION_FIELDS = ["stall_timeout", "on_stall", "stall_abort_after", "localize_nan", "exchange_every",
                 "telemetry_interval", "tensorboard", "check_every"]
OPTION_VALUES = st.one_of(st.text(max_size=30), st.sampled_from(
    ["-1", "0", "0.01", "nan", "inf", "-inf", "1e999", "1e400B", "9" * 300, "7B", "80GiB", "1.2.3", " 5 ", "abort",
     "REPORT", "true", "maybe", "0x10", "1_000", "5e-324", "604800", "604801", "\x00", "٣"]))


@st.composite
def option_values(draw) -> tuple[str, str]:
    return draw(st.sampled_from(OPTION_FIELDS + ["params", "bytes", "environment"])), draw(OPTION_VALUES)


CLI_OPTIONS = {
    "estimate": ["--params", "--largest-layer-params", "--gpus-per-node", "--nodes", "--gpu-memory", "--cpu-memory",
                 "--seq-len", "--hidden", "--layers", "--heads", "--micro-batch"],
    "analyze": ["--world-size"],
    "lr-range": ["--total-steps", "--loss-tag", "--lr-tag"],
}
NUMBERS = st.one_of(OPTION_VALUES, st.integers(-5, 10 ** 25).map(str), st.floats().map(repr))


@st.composite
def cli_calls(draw) -> tuple[str, ...]:
    """A command with some of its options set to odd values, run through the real CLI."""
    cmd = draw(st.sampled_from(sorted(CLI_OPTIONS)))
    args = [cmd]
    if cmd == "estimate":
        args += ["--gpu-memory", "80GiB", "--cpu-memory", "512GiB"]
    for opt in draw(st.lists(st.sampled_from(CLI_OPTIONS[cmd]), max_size=3)):
        args += [opt, draw(NUMBERS)]
    if cmd == "estimate" and "--params" not in args:
        args += ["--params", "7B"]
    args += {"analyze": ["{log}"], "lr-range": ["{csv}"]}.get(cmd, [])
    return tuple(args)


# ---------------------------------------------------------------- the targets
def run_log(data: bytes) -> None:
    _diagnose_file(data, ".log")


def run_notebook(data: bytes) -> None:
    _diagnose_file(data, ".ipynb", check=True)


def _diagnose_file(data: bytes, suffix: str, check: bool = False) -> None:
    """The bytes as an input file of this suffix, read and diagnosed (check: the up-front
    readability check analyze runs first, which is where a notebook with no outputs is refused)."""
    from dsdoctor.pipeline import Diagnoser
    from dsdoctor.sources.inputs import Input, InputError, check_readable
    from dsdoctor.sources.logs import read_log
    p = _tmpfile(data, suffix)
    try:
        inp = Input(str(p), p, "log", None)
        if check:
            check_readable(inp)
        d = Diagnoser()
        for ev in read_log(inp, []):
            d.feed(ev)
        d.finish()
    except InputError:
        pass
    finally:
        p.unlink()


def run_events(data: bytes) -> None:
    from dsdoctor.pipeline import Diagnoser
    from dsdoctor.sources.inputs import Input, InputError
    from dsdoctor.sources.logs import read_log
    p = _tmpfile(data, "-events-rank0.jsonl")
    try:
        d = Diagnoser()
        for ev in read_log(Input(str(p), p, "events", 0), []):
            d.feed(ev)
        d.finish()
    except InputError:
        pass
    finally:
        p.unlink()


def run_config(text: str) -> None:
    from dsdoctor.config.lint import lint
    from dsdoctor.config.loader import parse_config_text
    from dsdoctor.config_io import ConfigError
    from dsdoctor.context import Context
    try:
        cfg = parse_config_text(text)
    except ConfigError:
        return
    Context.from_config(cfg, world_size=2)
    lint(cfg, world_size=2)


def run_rules(text: str) -> None:
    from dsdoctor.findings import Symptom
    from dsdoctor.rules import RuleError, RuleSet
    p = _tmpfile(text.encode("utf-8", errors="replace"), ".yaml")
    try:
        rs = RuleSet.load(p)
        from dsdoctor.rules import make_finding
        sym = Symptom("cuda_oom", facts={"total": 80 << 30, "free": 1 << 30, "x": 5, "value": 1.5})
        for names in ({}, {"x": None, "ranks": [0, 1]}):
            r = rs.match(sym, names)
            if r is not None:
                make_finding(r, sym, names)
    except RuleError:
        pass
    finally:
        p.unlink()


def run_csv(text: str) -> None:
    from dsdoctor.lr.analysis import analyze
    from dsdoctor.lr.curve import LRRangeError
    from dsdoctor.lr.readers import read_run
    from dsdoctor.lr.recommend import recommendation
    p = _tmpfile(text.encode("utf-8", errors="replace"), ".csv")
    try:
        recommendation(analyze(read_run(p)), 1000)
    except LRRangeError:
        pass
    finally:
        p.unlink()


def run_option(pair: tuple[str, str]) -> None:
    from dsdoctor.estimate import parse_bytes, parse_count
    from dsdoctor.live.options import OptionError, SPECS, check_environment, from_environment, parse_option
    from dsdoctor.live.session import LiveOptions
    field, raw = pair
    try:
        if field == "params":
            parse_count(raw)
        elif field == "bytes":
            parse_bytes(raw)
        elif field == "environment":
            env = {s.env: raw for s in SPECS.values()}
            check_environment(env)
            from_environment(LiveOptions(), env)
        else:
            parse_option(field, raw)
    except (ValueError, OptionError):
        pass


_CLI_FILES: dict[str, Path] = {}


def run_cli(call: tuple[str, ...]) -> None:
    """In-process CLI: exit 0/1/2 are fine (2 is a usage or input error), an exception is not."""
    from typer.testing import CliRunner

    from dsdoctor import cli
    if not cli.app.registered_commands:
        cli._register()
    if not _CLI_FILES:
        _CLI_FILES["log"] = _tmpfile(LOG_PIECES[4].encode() + LOG_PIECES[1].encode(), ".log")
        rows = ["step,lr,loss"] + [f"{i},{1e-5 * 1.1 ** i!r},{2 - 0.02 * i + (0.01 * (i - 60) ** 2 if i > 60 else 0)!r}"
                                   for i in range(100)]
        _CLI_FILES["csv"] = _tmpfile(("\n".join(rows) + "\n").encode(), ".csv")
    args = [a.format(log=_CLI_FILES["log"], csv=_CLI_FILES["csv"]) if a in ("{log}", "{csv}") else a for a in call]
    res = CliRunner().invoke(cli.app, args)
    if res.exception is not None and not isinstance(res.exception, SystemExit):
        raise res.exception
    if res.exit_code not in (0, 1, 2):
        raise RuntimeError(f"exit code {res.exit_code}")


TARGETS: dict[str, tuple[Any, Callable[[Any], None], str]] = {
    # name: (strategy, run, file suffix for the corpus)
    "log": (text_logs(), run_log, ".log"),
    "events": (event_lines(), run_events, ".jsonl"),
    "notebook": (notebooks(), run_notebook, ".ipynb"),
    "config": (configs(), run_config, ".json"),
    "rules": (rule_files(), run_rules, ".yaml"),
    "lr_csv": (csv_files(), run_csv, ".csv"),
    "options": (option_values(), run_option, ".txt"),
    "cli": (cli_calls(), run_cli, ".txt"),
}


WARM = {"log": b"step 1 loss 2.0\n", "events": b'{"kind": "loss", "rank": 0, "step": 1, "data": {"value": 1.0}}\n',
        "notebook": b'{"cells": [{"cell_type": "code", "outputs": [{"output_type": "stream", "text": "step 1 loss 2.0"}]}]}',
        "config": '{"train_batch_size": "8", "zero_optimization": {"stage": 2}}', "rules": "rules: []\n",
        "lr_csv": "step,lr,loss\n1,0.1,1\n", "options": ("params", "7B"),
        "cli": ("estimate", "--params", "7B", "--gpu-memory", "80GiB")}
_warmed: set[str] = set()


def warm_up(target: str) -> None:
    """One run without a time limit: the first lint imports deepspeed (~5 s), which is not a hang."""
    if target not in _warmed:
        _warmed.add(target)
        try:
            TARGETS[target][1](WARM[target])
        except Exception:
            pass


def outcome(target: str, value: Any) -> tuple[str, str | None]:
    """('ok' | 'traceback' | 'hang', detail) for one input."""
    run = TARGETS[target][1]
    warm_up(target)
    t0 = time.monotonic()
    try:
        with time_limit():
            run(value)
    except Hang:
        return "hang", f"> {LIMIT_S:g} s"
    except Exception as e:           # what the user would have seen as a traceback
        return "traceback", f"{type(e).__name__}: {str(e)[:200]}"
    if time.monotonic() - t0 > LIMIT_S:
        return "hang", f"{time.monotonic() - t0:.1f} s"
    return "ok", None


def save(target: str, value: Any) -> Path:
    """Keep a failing input in the corpus (replayed by tests/test_fuzz.py)."""
    if isinstance(value, tuple):
        raw = json.dumps(list(value)).encode()
    elif isinstance(value, str):
        raw = value.encode("utf-8", errors="replace")
    else:
        raw = value
    FUZZ_CORPUS.mkdir(parents=True, exist_ok=True)
    p = FUZZ_CORPUS / f"{target}-{hashlib.sha1(raw).hexdigest()[:12]}{TARGETS[target][2]}"
    p.write_bytes(raw)
    return p


def load(path: Path) -> tuple[str, Any]:
    """(target, value) of a saved corpus file."""
    target = path.name.rsplit("-", 1)[0]
    raw = path.read_bytes()
    if target in ("options", "cli"):
        return target, tuple(json.loads(raw))
    if target in ("log", "events"):
        return target, raw
    return target, raw.decode("utf-8", errors="replace")
