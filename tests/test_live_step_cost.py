"""The doctor's CPU per training step cut again (issue 13, thirteenth session): the same values.

- the training thread reads DeepSpeed's learning rate and grad norm without DeepSpeed's
  getters (get_lr, _get_optimizer_param, the ZeRO optimizer's param_groups property,
  get_global_grad_norm: four Python calls per step): the values the getters return, on a real
  engine (ZeRO 0 and 2, a WarmupLR scheduler moving the LR), and the getters themselves on an
  engine that is not DeepSpeed's or whose optimizer was swapped after attach;
- TensorBoard takes a step's four events in one call (TensorBoard.on_step): the same records
  as on_event per event, windows, findings and a non-finite value included;
- the writer's output for the same per-step tuples is the bytes it was (tests/test_live_writer.py
  and test_live_hot_path.py compare the lines and the step data).
"""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import types

from dsdoctor.events import Event
from dsdoctor.live.hooks import _lr_from
from dsdoctor.live.session import LiveOptions, LiveSession
from dsdoctor.live.tboard import TensorBoard

REAL_ENGINE = textwrap.dedent("""
    import json, os, torch, deepspeed
    from dsdoctor.live.hooks import EngineHooks, _lr_from
    from dsdoctor.live.session import LiveOptions, LiveSession
    out = {}
    for stage in (0, 2):
        m = torch.nn.Linear(8, 8)
        cfg = {"train_micro_batch_size_per_gpu": 2,
               "optimizer": {"type": "AdamW", "params": {"lr": 1e-3, "torch_adam": True}},
               "scheduler": {"type": "WarmupLR", "params": {"warmup_min_lr": 0, "warmup_max_lr": 1e-3,
                                                            "warmup_num_steps": 5}},
               "zero_optimization": {"stage": stage}}
        eng, *_ = deepspeed.initialize(model=m, model_parameters=m.parameters(), config=cfg)
        s = LiveSession(LiveOptions(out=os.environ["OUT"] + f"/s{stage}", tensorboard=False), rank=0,
                        world_size=1, local_rank=0, store=None, quiet=True)
        s._stop_flusher.set()              # the tuples stay queued: read here
        hooks = EngineHooks(eng, s, {"device": "cpu"})
        hooks.install()
        for _ in range(7):
            loss = eng(torch.randn(2, 8)).sum()
            eng.backward(loss)
            eng.step()
        got = [(t[3], t[5]) for t in hooks._pending]
        hooks.remove()
        s.close()
        norm = eng.get_global_grad_norm()
        out[stage] = {"direct": [_lr_from(eng) is not None, hooks._norm_direct],
                      "last": list(got[-1]) if got else None,
                      "want": [eng.get_lr()[0], float(norm) if norm is not None else None],
                      "lrs": sorted({lr for lr, _ in got})}
    print("RESULT " + json.dumps(out))
""")


def test_lr_and_grad_norm_read_as_deepspeeds_getters_read_them(tmp_path):
    env = dict(os.environ, DS_ACCELERATOR="cpu", RANK="0", WORLD_SIZE="1", LOCAL_RANK="0",
               MASTER_ADDR="127.0.0.1", MASTER_PORT="29517", OUT=str(tmp_path), OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-c", REAL_ENGINE], env=env, capture_output=True, text=True,
                          timeout=240)
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
    assert proc.returncode == 0 and line, proc.stdout[-2000:] + proc.stderr[-3000:]
    import json
    res = json.loads(line[len("RESULT "):])
    for stage in ("0", "2"):
        r = res[stage]
        assert r["direct"] == [True, True], r        # the direct reads were used
        assert r["last"] == r["want"], r             # the values DeepSpeed's getters return
        assert len(r["lrs"]) >= 3, r                 # the warm-up moved the LR


def test_lr_getter_used_when_not_deepspeeds():
    class Opt:
        def __init__(self):
            self.param_groups = [{"lr": 0.5}]

    class NotDeepSpeed:
        optimizer = Opt()

        def get_lr(self):
            return [0.25]

    assert _lr_from(NotDeepSpeed()) is None
    assert _lr_from(types.SimpleNamespace(get_lr=lambda: [1.0])) is None


def _todo(tmp_path, name, per_event: bool, usual: bool = False) -> list:
    s = LiveSession(LiveOptions(out=tmp_path / name, tensorboard=True), rank=0, world_size=1, local_rank=0,
                    store=None, quiet=True)
    s._stop_flusher.set()
    tb = TensorBoard(s)
    t0 = 1.7e9
    found = iter(range(1000))
    for i in range(60):
        t = t0 + i * 0.3
        evs = [Event("step", 0, i, t, {"micro_steps": 1, "fwd_ms": 3.0 + i % 4, "bwd_ms": 5.5, "step_ms": 1.0,
                                        "data_ms": 0.01}),
               Event("lr", 0, i, t, {"value": 1e-4}),
               Event("loss", 0, i, t, {"value": 2.0 - i * 0.01, "name": "loss"}),
               Event("grad_norm", 0, i, t, {"value": 0.5 if i != 33 else float("inf")})]
        if i in (7, 41):
            s.findings.append(types.SimpleNamespace(severity="warning", title=f"f{next(found)}", summary="s"))
        if per_event:
            for ev in evs:
                tb.on_event(ev)
        elif usual and i != 33:              # (the inf is no usual step)
            tb.on_usual_step(evs)
        else:
            tb.on_step(evs)
        if i in (2, 12, 50):                 # a memory reading within a window: its tags after the step's
            tb.on_event(Event("memory", 0, i, t, {"rss": 1000.0 + i, "available": 5000}))
    tb._close_window()
    s.close()
    return list(tb._todo)


def test_tensorboard_on_step_keeps_what_on_event_keeps(tmp_path):
    one, each = _todo(tmp_path, "a", per_event=False), _todo(tmp_path, "b", per_event=True)
    assert one == each == _todo(tmp_path, "c", per_event=False, usual=True)
    assert any(tag == "memory/rss_bytes" for _, _, scalars, _ in one for tag, _ in scalars)
    assert any(texts for _, _, _, texts in one)                       # the findings are there
    assert any(v == float("inf") for _, _, scalars, _ in one for _, v in scalars)   # and the inf, at its step


def test_four_lines_are_the_bytes_step_lines_writes():
    import math
    import random

    from dsdoctor.live.hooks import four_lines, step_lines
    rnd = random.Random(13)
    odd = [float("nan"), float("inf"), -float("inf"), 1e308, -0.0, 0.0, 5e-324, 1, True, None, "x"]
    made = 0
    for i in range(3000):
        def val():
            return rnd.choice(odd) if rnd.random() < 0.05 else rnd.uniform(-1e3, 1e3) * 10 ** rnd.randint(-8, 8)
        t = val() if rnd.random() < 0.02 else 1.7e9 + rnd.random() * 1e6
        step = rnd.choice([i, i, i, None, True, 2.0])
        d = {"micro_steps": rnd.choice([1, 2, 1, True, 1.0]), "fwd_ms": val(), "bwd_ms": val(), "step_ms": val(),
             "data_ms": val()}
        if rnd.random() < 0.05:
            d["extra_ms"] = 1.5
        if rnd.random() < 0.05:
            del d["data_ms"]
        loss = {"value": val(), "name": rnd.choice(["loss"] * 20 + ["lm loss"])}
        evs = [Event("step", 0, step, t, d), Event("lr", 0, step, t, {"value": val()}),
               Event("loss", 0, step, t, loss), Event("grad_norm", 0, step, t, {"value": val()})]
        if rnd.random() < 0.05:
            evs[1], evs[2] = evs[2], evs[1]
        fast, slow = four_lines(evs, 0, step, t), step_lines(evs, 0, step, t)
        assert fast is None or fast == slow, (fast, slow)
        made += fast is not None
        if fast is None and slow is not None:           # only shapes four_lines leaves to step_lines
            vals = [v for ev in evs for v in ev.data.values()]
            assert (evs[0].kind != "step" or "extra_ms" in d or "data_ms" not in d or loss["name"] != "loss"
                    or evs[1].kind != "lr" or any(type(v) is not float for v in vals[1:5] + vals[5:6] + vals[6:7])
                    or type(d["micro_steps"]) is not int or not math.isfinite(sum(v for v in vals if type(v) is float))
                    ), evs
    assert made > 300                                    # the usual shape is taken by four_lines
