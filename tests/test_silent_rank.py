"""detect/silent_rank.py: the rank a SIGKILL took, named from a run folder when the launcher's line
names none. Found for real (part AY): `dsdoctor run -- deepspeed --num_gpus 2`, rank 1 SIGKILLed from
outside at step 8; launch.py's 'exits with return code = -9' quoted '--local_rank=1' only because rank 1
was the last rank it spawned, so neither analyze nor the post-mortem named a rank. The folder's events
(written as that run wrote them) show rank 1 going silent before rank 0 raised."""
from __future__ import annotations

from pathlib import Path

from dsdoctor.api import diagnose_inputs, usable_inputs
from dsdoctor.events import Event, EventWriter

LAUNCHER = ("[2026-12-07 21:17:55,180] [INFO] [launch.py:245:main] process 17313 spawned with command: "
            "['/work/venv/bin/python3', '-u', 'train.py', '--local_rank=1']\n"
            "[2026-12-07 21:17:55,184] [INFO] [launch.py:158:main] nnodes=1, num_local_procs=2, node_rank=0\n"
            "[2026-12-07 21:18:00,031] [ERROR] [launch.py:259:sigkill_handler] ['/work/venv/bin/python3', '-u', "
            "'train.py', '--local_rank=1'] exits with return code = -9\n")
GLOO = ("RuntimeError: [/__w/pytorch/pytorch/third_party/gloo/gloo/transport/tcp/pair.cc:553] Connection closed "
        "by peer [127.0.0.1]:7873. This is typically caused by a remote worker crashing.")


def _folder(tmp: Path, last_step: dict[int, int], raised: dict[int, float]) -> Path:
    """A run folder: each rank attached, stepped once a second up to last_step[r], raised at raised[r]."""
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / "console.log").write_text(LAUNCHER)
    for r, last in last_step.items():
        w = EventWriter(tmp / f"events-rank{r}.jsonl")
        w.write(Event("attach", rank=r, time=1000.0, data={"pid": 100 + r, "world_size": 2, "label": "vm (node 0)"}))
        for s in range(last + 1):
            w.write(Event("step", rank=r, step=s, time=1001.0 + s,
                          data={"micro_steps": 1, "fwd_ms": 1.0, "bwd_ms": 2.0, "step_ms": 1.0, "data_ms": 50.0}))
        if r in raised:
            w.write(Event("exception", rank=r, step=last + 1, time=raised[r],
                          data={"type": "RuntimeError", "message": GLOO[14:], "phase": "backward"}))
        w.close()
    return tmp


def _top(folder: Path):
    inputs, warnings = usable_inputs([str(folder)])
    return diagnose_inputs(inputs, warnings).findings[0]


def test_the_rank_whose_events_stopped_before_the_others_raised_is_the_killed_one(tmp_path):
    f = _top(_folder(tmp_path, {0: 8, 1: 8}, {0: 1009.6}))
    assert (f.rule, f.ranks) == ("host-oom-killed", [1])
    assert "Rank 1's own events stop at step 8 with no exception" in f.summary
    assert any(e.source.endswith("events-rank1.jsonl") for e in f.evidence)


def test_no_rank_when_the_events_do_not_single_one_out(tmp_path):
    # both ranks silent (the launcher killed them all): no rank
    assert _top(_folder(tmp_path / "a", {0: 8, 1: 8}, {})).ranks == []
    # the other rank raised before the silent one's last step: not the echo of its death
    assert _top(_folder(tmp_path / "b", {0: 3, 1: 8}, {0: 1004.5})).ranks == []
