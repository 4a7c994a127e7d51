"""The Event: one observation, the single currency of dsdoctor.

Log parsers and live hooks emit the same events, so every detector and rule works
for both. Live runs write them as JSON lines (events-rank<N>.jsonl) that
`dsdoctor analyze` reads back.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from typing import IO, Any, Iterable, Iterator


@dataclass(slots=True)
class Event:
    kind: str                      # see KINDS below
    rank: int | None = None        # global rank that produced it, None if unknown
    step: int | None = None        # global optimizer step, None if unknown
    time: float | None = None      # unix seconds, None if the log had no timestamp
    data: dict[str, Any] = field(default_factory=dict)
    source: str = "live"           # file path, "-" for stdin, or "live"
    line: int | None = None        # 1-based line number in `source`
    text: str | None = None        # the evidence text (log line), trimmed
    # where `rank` came from (sources/lines.py FROM_*; None: a live hook's own rank or an event file's)
    # and (origin, rank) a line prefix or srun's label put on the line: not written to JSON (a log's
    # decoration, read again when the log is)
    rank_from: str | None = None
    worn: tuple[str, int, int] | None = None   # (FROM_PREFIX or FROM_LABEL, rank, depth): sources/lines.py clean_line

    def to_json(self) -> str:
        d = {"kind": self.kind, "rank": self.rank, "step": self.step, "time": self.time,
             "data": self.data}
        if self.source != "live":
            d["source"] = self.source
        if self.line is not None:
            d["line"] = self.line
        if self.text is not None:
            d["text"] = self.text
        return _encode(d)


# The failure kinds (and a rank's own timer line, which names a slow rank) whose line names the machine it
# came from: a multi-node paste's pdsh / kubectl pod / Ray worker prefix (sources/parse.py adds it as
# `host` where the recogniser set none), NCCL's own 'host:pid:tid' head (nccl_warn). The pipeline ties
# that host to the event's rank, or places a finding with no rank by it: the host to drain is the answer
# on a 16-node job.
PLACED_KINDS = frozenset({"exception", "killed", "process_exit", "nccl_warn", "nccl_error", "hardware", "cuda_error", "oom",
                          "env_error", "timers"})

# Event kinds and the `data` keys each carries: the one list (tests/test_event_kinds.py checks
# that every kind emitted or consumed anywhere is here, and nothing here is dead).
KINDS: dict[str, str] = {
    # progress and metrics
    "step": "phase times of one optimizer step: fwd_ms, bwd_ms, step_ms, data_ms, micro_steps",
    "loss": "value (float, may be nan/inf), name ('loss', 'lm loss', ...); no_advantage (an RL row whose groups all had equal rewards: a loss of 0 is real)",
    "grad_norm": "value (float, may be nan/inf)",
    "lr": "value (float or list)",
    "throughput": "samples_per_sec, iter_ms, tflops (any subset); series ('desc|total' of a progress bar), bar, elapsed_s (the bar's own elapsed time); total (Megatron's train_iters); summary (an end-of-training average)",
    "labels_masked": "a data collator found no answer to train on in an example and masked all its labels (TRL 'Could not find response key'): detail",
    "run_end": "a front-end said its training loop finished: how ('lightning'|'megatron')",
    "timers": "rank-level DeepSpeed timer line: {timer_name: ms}",
    "comm_straggler": "one row of DeepSpeed's comms logger straggler breakdown (rank 0): op, size, count, comm_ms (the minimum across ranks, summed), straggler_ms (rank 0's latency above it, summed), avg_comm_ms, avg_straggler_ms",
    "rank_spread": "one report of the fastest and slowest rank (Megatron's StragglerDetector): metric ('compute'|'data'), min_ms, min_rank, max_ms, max_rank",
    "timer_spread": "one timer of Megatron's '(min, max) time across ranks (ms):' report: timer, min_ms, max_ms, report (the header's line number)",
    "skipped": "skipped (cumulative skipped steps), nan_iters (cumulative)",
    # precision
    "overflow": "prev_scale, new_scale (None for bf16/static), hysteresis (int or None), dtype; static (True: a fixed fp16.loss_scale, whose value is `scale`)",
    "loss_scale": "value: the live fp16 loss scale",
    "nonfinite_module": "module, module_type, inputs_finite: first module whose output was NaN/Inf (live, --localize-nan)",
    "scale_at_minimum": "DeepSpeed's 'Current loss scale already at minimum' exception",
    # memory
    "oom": "device ('cuda'|'cpu'), phase, requested, total, free, reserved, allocated (bytes), wording; gpu (the allocator's device index) and gpu_word (its word beside it: 'GPU', torch_npu's 'NPU')",
    "alloc_flushes": "flushes (int): ZeRO-3's warning that the CUDA caching allocator flushed its cache (retried an allocation) since the last step",
    "sdpa_refusal": "cause ('gpu_arch', 'dtype', 'dropout', 'dims', 'head_dim', 'stride', 'gqa'), kernel ('flash', 'mem_efficient', 'cudnn' or None), sm (the GPU's 'X.Y' of a gpu_arch refusal), reason (the warning's words): torch's scaled_dot_product_attention saying why it did not use a fused kernel (sources/formats/sdpa.py)",
    "cuda_error": "error (text after 'CUDA error: '), phase; via ('kernel_assert': a kernel's own 'Assertion `...` failed.' line, 'CUBLAS_STATUS_ALLOC_FAILED')",
    "killed": "signal (9, 7, ...), exitcode, pid, who ('launcher'|'torchelastic'|'kernel'|'shell'|'pdsh'|'slurm'|'dataloader'), memcg, first",
    "shm_error": "detail: /dev/shm, bus error or 'No space left on device'; where ('dataloader'|'/dev/shm'|'process')",
    "memory": "rss, available, gpu_allocated, gpu_reserved, gpu_peak (bytes; any subset); host_used (bytes), host_percent (DeepSpeed see_memory_usage)",
    # communication
    "collective_timeout": "op, seq, timeout_ms, elapsed_ms, numel_in, numel_out, backend, pg, blocking",
    "watchdog_state": "seq, last_enqueued, last_completed, pg, dump_from (the rank whose timeout asked this one to dump: this rank did not time out itself)",
    "nccl_error": "error ('unhandled system error', ...), detail, code ('ncclSystemError', ...), nccl_version, cause (set when the line itself says: 'watchdog_hang', 'remote_exit', 'rendezvous' + rdzv, peer, port, group: 'weight_sync' for an RL trainer's second group)",
    "nccl_warn": "msg, cause ('duplicate_gpu'|'shm'|'interface'|'connection_refused'|'ib'|'remote_exit'|'p2p'|'cuda'|'mismatch'|None), peer (IP), host, pid, device",
    "nccl_init": "state ('start'|'channel'|'complete'), via (the channel's transport: 'P2P'|'SHM'|'NET/Socket'|'NET/IB'|...|None), proc (host:pid of the NCCL line or None): NCCL's communicator set-up, NCCL_DEBUG=INFO",
    "nccl_transport": "transport ('Socket'|'IB'|...|None), detail ('ib_not_found'|'channel': a channel through the network|'nodes': the communicator's node count in `nodes`|'bootstrap': the bootstrap's interface|None), host, iface and addr (the socket interface, NET/Socket and Bootstrap lines)",
    "nccl_version": "version (e.g. '2.21.5'), cuda ('12.4'), host: NCCL's banner 'NCCL version {v}+cuda{c}' one process printed",
    "comm_abort": "error ('watchdog_abort'), backend ('hccl': torch_npu's; absent for NCCL): ProcessGroupNCCL's watchdog took the process down after a collective failed or timed out",
    "gloo_error": "msg, cause ('remote_exit'|'connect'|'timeout_secondary'), peer",
    "desync_report": "lagging ranks, seq, detail",
    "collective_mismatch": "error ('fingerprint'): TORCH_DISTRIBUTED_DEBUG=DETAIL's check found two ranks in different collectives: seq, op, shape, other_rank, other_op, other_shape, aspects",
    "stall": "id (verdict number), ranks behind, last_step, last_phase, waited_s, stacks (path), on_stall, abort_after_s, signalled",
    "stall_resolved": "id (of the stall verdict), ranks, stalled_s: every rank moved on after that stall",
    "stack": "thread, where ('collective'|'dataloader'), func, file, op: a thread in a py-spy/faulthandler dump",
    "attach": "a rank started watching (live): host, node (index or None), nnodes, label, launcher, pid, out",
    "roll_call": "rank 0's count of attached ranks (live): world_size, attached, missing, missing_hosts {label: ranks}, hosts, complete",
    "flight_recorder": "torch's Flight Recorder analysis: verdict ('missing'|'size_mismatch'|'dtype_mismatch'|'op_mismatch'|'state_mismatch'|'consistent'), seq, op, culprit_ranks, sizes, positions",
    "node_exit": "a node's processes ended (pdsh: 'node: exited with code N'): node, exitcode, who, ranks, first",
    "rank_times": "rank 0's cross-rank round (live exchange): nranks, median {fwd,bwd,step,data} ms, outliers {rank: which, phase, value_ms, median_ms, ratio}",
    # configuration and environment
    "config_error": "error (short id), key, message, numbers (dict)",
    "result_check": "megatron-core's rerun state machine's verdict on a result it rejected: error and verdict ('spike'|'transient'|'persistent'), check (its message), value, iteration",
    "env_error": "error (short id: op_build, glibcxx, import), op, message",
    "hardware": "error ('xid'|'ecc'|'fell_off_bus'|'gsp'|'sxid'|'cuda_unknown'|'launch_failure'|'illegal_access'|'rocm_memory_fault'), xid, pci, message, meaning, gpu_fault; ROCm's: gpu_node, reason",
    "error_line": "level ('error'|'fatal'|'critical'), message: an error-level line of any logger (the last resort of a failed run's evidence)",
    "exception": "type, message, phase (the last Python exception of a traceback); from logs also name, in_traceback, raise_site, frames, chained ('cause'|'context'|None), chain_of (line of the chain's first exception), aborted (C++ terminate), waits_in ('collective'|'dataloader'|'op_lock'|None: where the innermost waiting frame is), wait_frame ('path:func'), host (a pdsh 'host: ' label) and in_generate (True: raised under transformers' generate)",
    "exception_detail": "of (the line of the exception whose message it continues), text (one line of that message, shortened): torch's load_state_dict mismatch lines under 'Error(s) in loading state_dict for X:'",
    "process_exit": "a process ended badly without a signal the memory rules take: exitcode (>0 or None), signal (None, 11, 15, ...), pid, rank, who ('launcher'|'torchelastic'|'slurm'|'shell'|'faulthandler'), killing (the launcher stopping its ranks), external (a signal sent to the launcher), host, node, signal_name (a Windows crash's own name), maybe_handled (Windows faulthandler: fatal only if no progress follows); alone (torchrun's root cause whose summary listed <NO_OTHER_FAILURES>); Slurm's own stop: reason, job, at_time (unix seconds it names)",
    "stop_ignored": "a launcher's word that a worker outlived its stop signal (torchrun: 'Unable to shutdown process N via 2, forcefully exiting via 9'): pid, signal (the one ignored), who; the worker was blocked in one native call (a hung collective)",
    "script_end": "a training script's own end-of-training print ('training done', HF's 'Training completed.'), read by the LR schedule only",
    "rank_done": "a launcher's word that one rank returned 0 (deepspeed launch.py: 'Process N exits successfully.'): pid, local_rank and rank (from its 'spawned with command' line), spawned (ranks the launcher started on that host), who",
    "phase_mark": "what the run was doing (a log line that starts a phase): phase ('model_load'|'checkpoint_load'|'checkpoint_convert'|'zero_init'|'optimizer_init'|'op_build'|'training'), detail",
    "clock": "at (unix seconds): a time the log states on a line of its own (`date`'s output echoed by a job script); mid_run: a trainer's timestamped checkpoint line printed between progress bar frames",
    "checkpoint_save": "ms: how long one checkpoint save took (Megatron's 'save-checkpoint' timer, the slowest rank)",
    "block_head": "name: the head line of one host's/pod's/file's log pasted after another's ('==> worker-1.log <==', '=== gpu-node-02 ===')",
    "run_start": "a line that starts a run (again): how ('engine_start'|'trainer_start'|'trainer_resume'|'elastic_restart'|'checkpoint_loaded'), strong (a resume or restart by itself)",
    "exit": "exitcode of the run (live: the command's exit code)",
    "hang_said": "phrase: a pasted log's prose saying the run hangs ('it gets stuck after ...', '卡住'); read when the log shows no failure",
    "op_load": "state ('wait'|'loaded'), root: torch's JIT op loading ('Using DIR as PyTorch extensions root...', 'Loading extension module X...')",
    "store_wait": "world_size, joined: torch's store-based barrier still waiting for ranks to join a new process group",
    "connect_retry": "peer, errno, reason: torch's c10d client could not connect to the rendezvous store and tries again",
    "rank_head": "head_rank (None: the line does not prove one), world_size, local (the line names a local rank), local_rank (that local rank; head_rank is the global one only where the node is known: launcher.node, or a single node), gpu (cuda:N): a front-end's start-up line naming its process ('Process rank: N, world size: W, device: cuda:N')",
    "rerun": "phrase: a pasted log's prose that opens a later attempt ('after I changed X I now get'); the last attempt's failures rank first",
    "paste_block": "first_line: an issue body's Markdown code fence opens a block of pasted output there (what line 1 is for a bare paste: an excerpt may begin inside a burst of timeouts)",
    "context": "facts about the run: world_size, zero_stage, dtype, micro_batch, gas, versions ...",
    "doctor_error": "part, error: a part of dsdoctor failed and was disabled",
    "telemetry": "gpu/host readings: gpu_util, gpu_temp, sm_clock, throttle, ecc, power, ram, swap",
}


def _json_default(o: Any) -> Any:
    if isinstance(o, set):
        return sorted(o)
    if hasattr(o, "item"):          # numpy / torch scalars
        return o.item()
    return str(o)


# One encoder for every event: json.dumps with options builds a new JSONEncoder per call
# (~3 us, a fifth of writing a live step event).
_ENCODER = json.JSONEncoder(default=_json_default, allow_nan=False)


def _make_encode() -> Any:
    """encode(obj) -> str, the same text as _ENCODER.encode. JSONEncoder.encode builds a new C
    encoder object for every call (json/encoder.py: JSONEncoder.iterencode calls
    c_make_encoder each time), half of the ~9 us a live step event took to encode; this one is
    built once. No circular-reference check (markers=None): events are made by dsdoctor's own
    code, never cyclic. Pure-Python json (no _json module): the plain encoder."""
    from json import encoder as _enc
    make = getattr(_enc, "c_make_encoder", None)
    if make is None:
        return _ENCODER.encode
    try:
        c = make(None, _json_default, _enc.encode_basestring_ascii, None, ": ", ", ", False, False, False)
    except TypeError:                   # a Python whose C encoder takes other arguments
        return _ENCODER.encode
    join = "".join

    def encode(o: Any) -> str:
        return join(c(o, 0))
    return encode


_encode = _make_encode()


def finite_or_str(v: Any) -> Any:
    """JSON has no NaN/Infinity: write them as the strings 'nan', 'inf', '-inf'."""
    if isinstance(v, float) and not math.isfinite(v):
        return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf")
    if isinstance(v, dict):
        return {k: finite_or_str(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [finite_or_str(x) for x in v]
    return v


_NONFINITE = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}


def _restore_nonfinite(v: Any) -> Any:
    if isinstance(v, str) and v in _NONFINITE:
        return _NONFINITE[v]
    if isinstance(v, dict):
        return {k: _restore_nonfinite(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_restore_nonfinite(x) for x in v]
    return v


def event_line(ev: Event) -> str:
    """One JSONL line with nan/inf as strings (read_events restores them); the event itself
    keeps its float values (the live detectors see them). Fast path: to_json refuses nan/inf
    (allow_nan=False), and only then is the data copied with them as strings."""
    try:
        return ev.to_json() + "\n"
    except ValueError:
        pass
    return Event(ev.kind, ev.rank, ev.step, ev.time, finite_or_str(ev.data), ev.source, ev.line,
                 ev.text).to_json() + "\n"


class EventWriter:
    """Appends events to a JSONL file: the one writer of dsdoctor's event files (live mode,
    `dsdoctor run`, tests).

    `flush_each` (default) flushes every event, so a SIGKILL keeps the evidence; the live
    session batches step events and calls flush() itself. The first OSError (a full disk,
    EIO, a vanished folder) stops the writer: it is raised once and kept in `error`; later
    writes do nothing, so the caller reports it once and the training goes on."""

    def __init__(self, path: str | os.PathLike, flush_each: bool = True):
        self.path = os.fspath(path)
        self.flush_each = flush_each
        self.error: str | None = None
        self._fh: IO[str] | None = open(self.path, "a", encoding="utf-8", buffering=1 if flush_each else -1)

    def write(self, ev: Event) -> None:
        if self._fh is None:
            return
        try:
            self._fh.write(event_line(ev))
            if self.flush_each:
                self._fh.flush()
        except OSError as e:
            self._stop(e)
            raise

    def write_text(self, text: str) -> None:
        """Lines already made (the live writer's per-step lines, hooks.step_lines): the same
        containment as write()."""
        if self._fh is None:
            return
        try:
            self._fh.write(text)
            if self.flush_each:
                self._fh.flush()
        except OSError as e:
            self._stop(e)
            raise

    def flush(self) -> None:
        if self._fh is None:
            return
        try:
            self._fh.flush()
        except OSError as e:
            self._stop(e)
            raise

    def close(self) -> None:
        if self._fh is None:
            return
        fh, self._fh = self._fh, None
        try:
            fh.close()                     # flushes: a full disk says so here
        except OSError as e:
            self.error = self.error or (e.strerror or str(e))
            raise

    def _stop(self, e: OSError) -> None:
        self.error = self.error or (e.strerror or str(e))
        fh, self._fh = self._fh, None
        try:
            fh.close()
        except (OSError, AttributeError):
            pass


_MAX_INT = 1 << 62                  # a rank or step beyond this is not one (detectors do float math on it)


def _opt_int(v: Any) -> int | None:
    """An int field (rank, step, line) or None; ValueError for anything else ("abc", 1e400, true)."""
    if v is None:
        return None
    if isinstance(v, float) and v.is_integer():
        v = int(v)
    if isinstance(v, bool) or not isinstance(v, int) or abs(v) > _MAX_INT:
        raise ValueError(f"not an integer: {v!r}"[:80])
    return v


def _opt_time(v: Any) -> float | None:
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(float(v)):
        raise ValueError(f"not a time: {v!r}"[:80])
    return float(v)


def event_from_dict(d: dict[str, Any], source: str, line: int) -> Event:
    """An Event from one parsed JSON line; ValueError when a field has the wrong type (the
    line is then skipped like a truncated one: a detector must never see step="abc")."""
    kind, data = d["kind"], d.get("data") or {}
    if not isinstance(kind, str) or not isinstance(data, dict):
        raise ValueError("kind must be a string and data an object")
    src, text = d.get("source", source), d.get("text")
    src_line = d.get("line", line)
    return Event(kind=kind, rank=_opt_int(d.get("rank")), step=_opt_int(d.get("step")),
                 time=_opt_time(d.get("time")), data=_restore_nonfinite(data),
                 source=src if isinstance(src, str) else source,
                 line=src_line if isinstance(src_line, int) and not isinstance(src_line, bool) else line,
                 text=text if isinstance(text, str) else None)


def read_events(lines: Iterable[str], source: str) -> Iterator[Event]:
    """Parse dsdoctor JSONL lines. A bad line (truncated by a kill, a field of the wrong type,
    nested deeper than the parser goes) is skipped, not fatal."""
    for n, raw in enumerate(lines, 1):
        raw = raw.strip()
        if not raw:
            continue
        try:
            d = json.loads(raw)
            if isinstance(d, dict) and "kind" in d:
                ev = event_from_dict(d, source, n)
            else:
                continue
        except (ValueError, TypeError, KeyError, RecursionError):
            continue
        yield ev
