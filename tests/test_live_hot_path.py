"""The training thread's per-step reads and the writer's step events, made cheaper (issue 13):
the same values and the same event data as before.

- hooks._host_float reads a loss / grad norm with Tensor.item(): the float that float(x.detach())
  gave, no autograd warning, None for a tensor of several elements;
- expand_pending's step event data: the keys, order and rounding of
  {"micro_steps": n, **_step_times(cur, keys)}, an extra phase key included.
Unit tests of small pieces (the real engine is trained in test_live_single_rank.py)."""
from __future__ import annotations

import json
import types
import warnings

import torch

from dsdoctor.live.hooks import EngineHooks, _host_float, _step_times
from dsdoctor.live.session import LiveOptions, LiveSession


def test_host_float_reads_what_float_of_a_detached_tensor_read():
    w = torch.tensor([0.5, -1.25, 3.0], requires_grad=True)
    loss = (w * w).sum()
    loss.backward()
    cases = [loss, torch.tensor(0.1), torch.tensor([2.5]), torch.tensor(float("nan")), torch.tensor(float("-inf")),
             torch.tensor(1.5, dtype=torch.bfloat16), torch.tensor(1.5, dtype=torch.float16), torch.tensor(7),
             torch.tensor(True)]
    with warnings.catch_warnings():
        warnings.simplefilter("error")          # no "Converting a tensor with requires_grad=True" warning
        got = [_host_float(x) for x in cases]
    want = [float(x.detach()) for x in cases]
    assert [repr(g) for g in got] == [repr(v) for v in want]
    assert all(type(g) is float for g in got)
    assert _host_float(torch.randn(3)) is None          # not one value
    assert [_host_float(v) for v in (None, 2, 2.5, True, "x", [1.0])] == [None, 2.0, 2.5, 1.0, None, None]


def test_step_event_data_as_before(tmp_path):
    s = LiveSession(LiveOptions(out=tmp_path, tensorboard=False), rank=0, world_size=1, local_rank=0,
                    store=None, quiet=True)
    s._stop_flusher.set()
    hooks = EngineHooks(types.SimpleNamespace(global_steps=0, skipped_steps=0), s, {"device": "cpu"})
    curs = [{}, {"fwd_ms": 1.23456789}, {"data_ms": 0.0004, "fwd_ms": 2.0, "bwd_ms": 3.33333, "step_ms": 1.0},
            {"batch_ms": 9.87654, "fwd_ms": 1.0}]
    for step, cur in enumerate(curs):
        hooks._pending.append((step, 2, cur, None, None, None, 100.0 + step))
    hooks.expand_pending()
    s.close()
    evs = [json.loads(ln) for ln in (tmp_path / "events-rank0.jsonl").read_text().splitlines()]
    got = [list(e["data"].items()) for e in evs if e["kind"] == "step"]
    want = [list({"micro_steps": 2, **_step_times(cur, EngineHooks.STEP_KEYS)}.items()) for cur in curs]
    assert got == want
