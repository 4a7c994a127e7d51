"""TensorBoard: the events as scalars, findings as text, under DIR/tb/rank<N>.

A listener on the session (`on_event`, any thread, session lock held) that only does
bookkeeping: per-step scalars (loss, grad norm, phase times, memory) are summed over a window
of at least EVERY steps and PERIOD seconds; rare scalars (loss scale, skipped steps,
telemetry), non-finite values, event texts and new findings are queued. Writing happens in
`tick`, on the session's writer thread after each drain (every ~0.5 s), never on the training
thread: one record per window holding every mean, one per rare item. A non-finite value is
written at its own step in the same drain (a NaN is not averaged away).

Why not torch's SummaryWriter (measured on a 10 ms CPU step, benchmarks/overhead.py):
importing it costs ~0.15 s of CPU per process, creating one ~0.7 ms plus a thread of its own,
and each add_scalar ~55 us (protobuf objects, a queue hand-off to that thread, which then
competes for the GIL). The event-file format is small and stable (TFRecord framing of
`Event` protos, tensorboard/compat/proto), so `EventFile` writes it directly: no import,
no thread, ~20 us per record. Files are created lazily at the first write. The `tensorboard`
package is not needed to write them (only to view them, often on another machine); if writing
fails, the part is switched off and training goes on.
"""
from __future__ import annotations

import collections
import os
from functools import reduce
from operator import add
import socket
import struct
import threading
import time
from typing import Any

from ..events import Event

# event kind -> ((data key, scalar tag), ...)
AVERAGED = {                               # per-step kinds: mean over a window
    "loss": (("value", "loss"),),
    "grad_norm": (("value", "grad_norm"),),
    "step": (("fwd_ms", "time_ms/forward"), ("bwd_ms", "time_ms/backward"), ("step_ms", "time_ms/step"),
             ("data_ms", "time_ms/data"), ("batch_ms", "time_ms/train_batch")),
    "memory": (("rss", "memory/rss_bytes"), ("available", "memory/available_bytes"),
               ("gpu_allocated", "memory/gpu_allocated_bytes"), ("gpu_reserved", "memory/gpu_reserved_bytes"),
               ("gpu_peak", "memory/gpu_peak_bytes")),
}
RARE = {                                   # written as they come
    "loss_scale": (("value", "fp16/loss_scale"),),
    "skipped": (("skipped", "fp16/skipped_steps"),),
    "telemetry": None,                     # every number, as telemetry/<key>
}
# the tags of a usual step's values, in the order _average adds them (TensorBoard.on_step's rows)
_ROW_TAGS = ("time_ms/forward", "time_ms/backward", "time_ms/step", "time_ms/data", "loss", "grad_norm")
TEXT_KINDS = frozenset({"exception", "oom", "stall", "stall_resolved", "nonfinite_module", "doctor_error"})
EVERY = 10          # a window is at least EVERY steps ...
PERIOD = 1.0        # ... and at least PERIOD seconds: one record per second at most


class TensorBoard:
    PART = "tensorboard"

    def __init__(self, session: Any):
        self.session = session
        self.file: EventFile | None = None   # created at the first write, on the writer thread
        self.records = 0
        self._acc: dict[str, list[float]] = {}     # tag -> [sum, count] of the current window
        # the window's usual steps not yet summed into _acc: (fwd, bwd, step, data ms, loss, grad
        # norm) per step, summed once per window (_fold) in the order on_event would have summed them
        self._rows: list[tuple[float, float, float, float, float, float]] = []
        self._window_start: int | None = None
        self._window_time = 0.0
        self._last: tuple[int, float] | None = None  # (step, time) of the last averaged event
        self._findings_seen = 0
        # (step, wall time, [(tag, value)], [(tag, text)]) waiting for tick(); deque: appended
        # under the session lock, popped by tick() without it
        self._todo: collections.deque[tuple[int, float, list, list]] = collections.deque()
        self._lock = threading.Lock()        # tick() (writer thread) against stop() (closing thread)
        self._stopped = False

    def start(self) -> None:
        self.session.add_listener(self.on_event, self.on_step, self.on_usual_step)
        self.session.add_ticker(self.tick)

    # ---------------------------------------------------------------- bookkeeping (no I/O)
    def on_event(self, ev: Event) -> None:
        """Per event, on the writer thread (the lock held): session.guard written out as
        try/except, the same containment without two context-manager calls per event."""
        s = self.session
        if self.PART in s._disabled or s._closed:        # s.enabled(PART), without the call
            return
        try:
            if self._rows:
                self._fold()                 # the window's tags keep the order of their first values
            keys = AVERAGED.get(ev.kind)
            if keys is not None:
                self._average(ev, keys)
            elif ev.kind in RARE or ev.kind in TEXT_KINDS:
                self._queue_rare(ev)
            if len(s.findings) > self._findings_seen:
                self._queue_findings(ev)
        except Exception as e:
            s._record_error(self.PART, e)

    def on_step(self, evs: list[Event]) -> None:
        """on_event for a step's Prewritten events (session._handle: one step, one wall time,
        finite values, no rare or text kind) in one call: the window is looked at once, the
        values summed, new findings queued once at the end (the same step and time)."""
        s = self.session
        if self.PART in s._disabled or s._closed:
            return
        try:
            if len(evs) == 4:
                # the usual step (EngineHooks: four phase times, an lr, a loss, a grad norm, finite
                # floats): its six values kept as one row, summed once per window
                a, b, c, d = evs
                sd = a.data
                fw, bw, st, da = sd.get("fwd_ms"), sd.get("bwd_ms"), sd.get("step_ms"), sd.get("data_ms")
                lv, gv = c.data.get("value"), d.data.get("value")
                step = a.step
                if (type(fw) is float and type(bw) is float and type(st) is float and type(da) is float
                        and type(lv) is float and type(gv) is float and a.kind == "step" and b.kind == "lr"
                        and c.kind == "loss" and d.kind == "grad_norm" and "batch_ms" not in sd
                        and step is not None and fw + bw + st + da + lv + gv - (fw + bw + st + da + lv + gv) == 0):
                    self._add_row(step, a.time or 0.0, (fw, bw, st, da, lv, gv), d)
                    return
            if self._rows:
                self._fold()
            acc, first = self._acc, True
            for ev in evs:
                keys = AVERAGED.get(ev.kind)
                if keys is None:
                    continue
                if first:                        # the window bookkeeping of _average, once
                    first = False
                    step = ev.step
                    if step is None:
                        step = s.progress.step
                    t = ev.time or 0.0
                    self._window(step, t)
                    acc = self._acc              # (a new one if the window closed)
                data = ev.data
                for key, tag in keys:
                    v = data.get(key)
                    if v is None:
                        continue
                    if v - v == 0:
                        a = acc.get(tag)
                        if a is None:
                            acc[tag] = [v, 1]
                        else:
                            a[0] += v
                            a[1] += 1
                    else:                        # (not in a Prewritten; as _average, should one come)
                        self._todo.append((step, t, [(tag, float(v))], []))
            if len(s.findings) > self._findings_seen and evs:
                self._queue_findings(evs[-1])
        except Exception as e:
            s._record_error(self.PART, e)

    def on_usual_step(self, evs: list[Event]) -> None:
        """on_step for the usual step (live/session.py Prewritten.usual: its maker checked the
        shape and the values that on_step checks)."""
        s = self.session
        if self.PART in s._disabled or s._closed:
            return
        try:
            a, _, c, d = evs
            sd = a.data
            self._add_row(a.step, a.time or 0.0, (sd["fwd_ms"], sd["bwd_ms"], sd["step_ms"], sd["data_ms"],
                                                  c.data["value"], d.data["value"]), d)
        except Exception as e:
            s._record_error(self.PART, e)

    def _add_row(self, step: int, t: float, row: tuple, last: Event) -> None:
        """A usual step's six values kept for the window."""
        self._window(step, t)
        self._rows.append(row)
        if len(self.session.findings) > self._findings_seen:
            self._queue_findings(last)

    def _queue_findings(self, ev: Event) -> None:
        s = self.session
        new = s.findings[self._findings_seen:]
        self._findings_seen += len(new)
        step = ev.step if ev.step is not None else s.progress.step
        self._todo.append((step, ev.time or time.time(), [],
                           [("findings", f"**{f.severity}** {f.title}\n\n{f.summary}") for f in new]))

    def _average(self, ev: Event, keys: tuple[tuple[str, str], ...]) -> None:
        step = ev.step
        if step is None:
            step = self.session.progress.step
        t = ev.time or 0.0
        self._window(step, t)
        data, acc = ev.data, self._acc
        for key, tag in keys:
            v = data.get(key)
            if v is None:
                continue
            if v - v == 0:                   # finite (nan - nan and inf - inf are nan)
                a = acc.get(tag)
                if a is None:
                    acc[tag] = [v, 1]
                else:
                    a[0] += v
                    a[1] += 1
            else:                            # non-finite: its own record, at its own step, now
                self._todo.append((step, t, [(tag, float(v))], []))

    def _fold(self) -> None:
        """The kept rows summed into _acc, value by value in step order (the same float sums as
        _average's), each tag added where its first value would have added it."""
        rows, self._rows = self._rows, []
        acc = self._acc
        for col, tag in enumerate(_ROW_TAGS):
            vals = [r[col] for r in rows]
            a = acc.get(tag)
            if a is None:
                acc[tag] = [reduce(add, vals), len(vals)]
            else:
                a[0] = reduce(add, vals, a[0])
                a[1] += len(vals)

    def _window(self, step: int, t: float) -> None:
        """The window this step's values go to: a new one after EVERY steps and PERIOD seconds."""
        if self._window_start is None:
            self._window_start, self._window_time = step, t
        elif step - self._window_start >= EVERY and t - self._window_time >= PERIOD:
            self._close_window()
            self._window_start, self._window_time = step, t
        last = self._last
        if last is None or last[0] != step or last[1] != t:
            self._last = (step, t)           # a step's four events share both: one tuple per step

    def _close_window(self) -> None:
        if self._rows:
            self._fold()
        if self._acc and self._last is not None:
            means = [(tag, total / n) for tag, (total, n) in self._acc.items() if n]
            self._todo.append((self._last[0], self._last[1], means, []))
        self._acc = {}

    def _queue_rare(self, ev: Event) -> None:
        step = ev.step if ev.step is not None else self.session.progress.step
        t = ev.time or time.time()
        if ev.kind in TEXT_KINDS:
            self._todo.append((step, t, [], [(f"events/{ev.kind}", _md(ev.data))]))
            return
        keys = RARE[ev.kind]
        if keys is None:
            keys = tuple((k, f"{ev.kind}/{k}") for k in ev.data)
        values = []
        for key, tag in keys:
            v = ev.data.get(key)
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                values.append((tag, float(v)))
            elif isinstance(v, list):        # e.g. throttle reasons: how many
                values.append((f"{tag}_count", float(len(v))))
        if values:
            self._todo.append((step, t, values, []))

    # ---------------------------------------------------------------- writing
    def tick(self) -> None:
        """On the writer thread, after each drain: write what is queued (usually nothing)."""
        if not self._todo or self._stopped or not self.session.enabled(self.PART):
            return
        with self._lock, self.session.guard(self.PART):
            if not self._stopped:
                self._write()

    def _write(self) -> None:
        """Every queued item as one record, then one flush (a few per second at most)."""
        if self.file is None:
            self.file = EventFile(self.session.out_dir / "tb" / f"rank{self.session.rank}")
        todo = self._todo
        while todo:
            step, wall, scalars, texts = todo.popleft()
            self.file.write(step, wall, scalars, texts)
            self.records += 1
        self.file.flush()

    def stop(self) -> None:
        s = self.session
        with s._lock:                        # no on_event while the last window is taken
            if s.enabled(self.PART):
                self._close_window()
        with self._lock:
            self._stopped = True
            if self._todo and s.enabled(self.PART):
                with s.guard(self.PART):
                    self._write()
            f, self.file = self.file, None
            if f is not None:
                f.close()


def _md(d: dict[str, Any]) -> str:
    return "\n".join(f"- {k}: {v}" for k, v in d.items())


# ---------------------------------------------------------------- the event file format
# TFRecord: uint64 length, uint32 masked CRC-32C of the length, data, uint32 masked CRC-32C of
# the data. data = an `Event` proto (tensorboard/compat/proto/event.proto): wall_time (1,
# double), step (2, int64), file_version (3) or summary (5). Summary.value (1, repeated
# Value): tag (1), simple_value (2, float), tensor (8), metadata (9). Text is what the text
# plugin reads: metadata.plugin_data.plugin_name = "text", a DT_STRING tensor of shape [1].
# tests/test_live_single_rank.py reads the files back with TensorBoard's own EventAccumulator.

def _crc_table() -> list[int]:
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


_CRC = _crc_table()


def masked_crc32c(data: bytes) -> int:
    crc, table = 0xFFFFFFFF, _CRC
    for b in data:
        crc = table[(crc ^ b) & 0xFF] ^ (crc >> 8)
    crc ^= 0xFFFFFFFF
    return ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + 0xA282EAD8) & 0xFFFFFFFF


def _varint(n: int) -> bytes:
    n &= 0xFFFFFFFFFFFFFFFF                  # int64 two's complement, as protobuf does
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _field(key: int, payload: bytes) -> bytes:
    """A length-delimited field: key byte (field number << 3 | 2), length, payload."""
    return bytes((key,)) + _varint(len(payload)) + payload


_TEXT_META = _field(0x4A, _field(0x0A, _field(0x0A, b"text")))          # metadata.plugin_data.plugin_name
_SHAPE_1 = _field(0x12, _field(0x12, b"\x08\x01"))                      # tensor_shape { dim { size: 1 } }


def scalar_value(tag: str, v: float) -> bytes:
    return _field(0x0A, _field(0x0A, tag.encode()) + b"\x15" + struct.pack("<f", v))


def text_value(tag: str, text: str) -> bytes:
    tensor = b"\x08\x07" + _SHAPE_1 + _field(0x42, text.encode())        # dtype DT_STRING = 7
    return _field(0x0A, _field(0x0A, f"{tag}/text_summary".encode()) + _TEXT_META + _field(0x42, tensor))


def event_record(wall: float, step: int | None = None, summary: bytes = b"", version: str = "") -> bytes:
    ev = b"\x09" + struct.pack("<d", wall)
    if step is not None:
        ev += b"\x10" + _varint(int(step))
    if version:
        ev += _field(0x1A, version.encode())
    if summary:
        ev += _field(0x2A, summary)
    head = struct.pack("<Q", len(ev))
    return head + struct.pack("<I", masked_crc32c(head)) + ev + struct.pack("<I", masked_crc32c(ev))


class EventFile:
    """One TensorBoard event file, appended to and flushed by the caller's thread."""

    _seq = 0

    def __init__(self, logdir: Any):
        os.makedirs(logdir, exist_ok=True)
        EventFile._seq += 1
        name = f"events.out.tfevents.{int(time.time()):010d}.{socket.gethostname()}.{os.getpid()}.{EventFile._seq}"
        self.path = os.path.join(str(logdir), name)
        self._fh = open(self.path, "wb")
        self._fh.write(event_record(time.time(), version="brain.Event:2"))

    def write(self, step: int | None, wall: float, scalars: list[tuple[str, float]],
              texts: list[tuple[str, str]] = ()) -> None:
        summary = b"".join([scalar_value(t, v) for t, v in scalars] + [text_value(t, x) for t, x in texts])
        self._fh.write(event_record(wall, step, summary))

    def flush(self) -> None:
        self._fh.flush()

    def close(self) -> None:
        self._fh.close()
