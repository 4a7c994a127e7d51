"""Roll call: which ranks of the job are watched, and on which nodes — said at once when some are not.

A rank attaches when its launcher passed DSDOCTOR_AUTOATTACH on to it. Multi-node launchers pass
on only some variables (deepspeed's runners: the EXPORT_ENVS prefixes and .deepspeed_env;
mpirun: only -x NAME), so a rank on another node may train unwatched; diagnosing half a job
as if it were all of it would be wrong. So:
  every rank   emits an `attach` event (host, node index, pid) into its own events file — how
               `analyze` later names hosts — and sets `dsdoctor/attach/<rank>` in the store, + 1 add.
  rank 0       counts (one `add(count, 0)` per POLL s) for up to DSDOCTOR_ATTACH_GRACE seconds
               (default 15: every rank returns from deepspeed.initialize within moments of the
               others, its collectives see to that), then emits one `roll_call` event: the ranks
               attached, per host, and the ranks missing with their host when it can be known (the
               deepspeed launcher's --world_info, the node of an attached neighbour, or the host
               torchrun's c10d rendezvous recorded: live/rendezvous_hosts.py). A missing
               rank is printed on stderr at once. If the missing ranks show up later (a slow
               node), a second `roll_call` says the job is complete after all.
"""
from __future__ import annotations

import json
import os
import threading
import time
from typing import Any

from .exchange import decode, own_store
from .nodes import host_of_rank, launcher_hosts
from .rendezvous_hosts import agent_hosts
from .say import say

ATTACH_PREFIX = "dsdoctor/attach/"
ATTACH_COUNT = "dsdoctor/attach/count"
GRACE_ENV = "DSDOCTOR_ATTACH_GRACE"
DEFAULT_GRACE = 15.0
POLL = 0.5
LATE_WATCH = 600.0              # after a report of missing ranks, keep counting (slowly) this long
MAX_NAMED = 64                  # ranks named per host in the event (the count is always exact)


def grace_seconds() -> float:
    try:
        return max(0.0, float(os.environ.get(GRACE_ENV) or DEFAULT_GRACE))
    except ValueError:
        return DEFAULT_GRACE


class RollCall:
    """A live part (start/stop)."""

    PART = "rollcall"

    def __init__(self, session: Any):
        self.session = session
        self._store: Any = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.report: dict[str, Any] | None = None

    def start(self) -> None:
        s = self.session
        info = s.node.to_dict()
        s.emit("attach", pid=os.getpid(), world_size=s.world_size, local_rank=s.local_rank,
               out=str(s.out_dir), **info)
        if s.store is None or s.world_size < 2:
            return
        self._store = own_store(s.store)
        self._store.set(ATTACH_PREFIX + str(s.rank), json.dumps({**info, "pid": os.getpid(),
                                                                 "local_rank": s.local_rank}))
        self._store.add(ATTACH_COUNT, 1)
        if s.rank == 0:
            self._thread = threading.Thread(target=self._run, name="dsdoctor-rollcall", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)

    def _run(self) -> None:
        with self.session.guard(self.PART):
            t0 = time.monotonic()
            self.call(grace_seconds())
            if self.report is not None and self.report["missing"]:
                self.watch_late(t0)

    def count(self) -> int:
        return int(self._store.add(ATTACH_COUNT, 0))

    def call(self, grace: float) -> None:
        world = self.session.world_size
        t0 = time.monotonic()
        while self.count() < world and time.monotonic() - t0 < grace:
            if self._stop.wait(POLL):
                return
        self.report = self.build(time.monotonic() - t0)
        self.session.emit("roll_call", **self.report)
        if self.report["missing"]:
            self._print(self.report)

    def watch_late(self, t0: float) -> None:
        """A slow node may still come: say so if it does."""
        world = self.session.world_size
        while not self._stop.wait(5.0) and time.monotonic() - t0 < LATE_WATCH:
            if self.count() >= world:
                late = self.build(time.monotonic() - t0)
                self.session.emit("roll_call", **late)
                if not getattr(self.session, "quiet", False):
                    say(f"dsdoctor: every rank has attached now ({world} of {world}, after "
                        f"{late['waited_s']} s)")
                return

    def build(self, waited: float) -> dict[str, Any]:
        """Who attached: one multi_get when every rank has (the usual case; multi_get would block
        on a missing key), else one check per rank, once, at the end of the grace period."""
        world = self.session.world_size
        st = self._store
        attached: dict[int, dict[str, Any]] = {}
        keys = [ATTACH_PREFIX + str(r) for r in range(world)]
        if self.count() >= world:
            attached = {r: decode(raw) or {} for r, raw in enumerate(st.multi_get(keys))}
        else:
            for r, key in enumerate(keys):
                if st.check([key]):
                    attached[r] = decode(st.get(key)) or {}
        missing = [r for r in range(world) if r not in attached]
        by_host: dict[str, list[int]] = {}
        for r, d in attached.items():
            by_host.setdefault(str(d.get("label") or d.get("host") or "?"), []).append(r)
        missing_hosts: dict[str, list[int]] = {}
        if missing:
            where = self._locate(missing, attached)
            for r in missing:
                missing_hosts.setdefault(where.get(r, "unknown host"), []).append(r)
        return {"world_size": world, "attached": len(attached), "missing": missing[:1024],
                "missing_count": len(missing), "waited_s": round(waited, 1),
                "hosts": {h: rs[:MAX_NAMED] for h, rs in by_host.items()},
                "missing_hosts": {h: rs[:MAX_NAMED] for h, rs in missing_hosts.items()},
                "complete": not missing}

    def _locate(self, missing: list[int], attached: dict[int, dict[str, Any]]) -> dict[int, str]:
        """Host of each missing rank: from the deepspeed launcher's world info, else from an
        attached rank of the same node (ranks numbered node by node, LOCAL_SIZE per node)."""
        out: dict[int, str] = {}
        hosts = launcher_hosts()
        if hosts:
            for r in missing:
                hn = host_of_rank(r, hosts)
                if hn is not None:
                    out[r] = f"{hn[0]} (node {hn[1]})"
            return out
        size = self.session.node.local_size
        if not size:
            return out
        node_label = {}
        for r, d in attached.items():
            node_label.setdefault(r // size, str(d.get("label") or d.get("host")))
        agents: dict[int, str] | None = None
        if any(r // size not in node_label for r in missing):
            agents = agent_hosts() or {}        # torchrun's c10d rendezvous knows every node's host
        for r in missing:
            k = r // size
            out[r] = node_label.get(k) or (f"{agents[k]} (node {k})" if agents and k in agents else f"node {k}")
        return out

    def _print(self, rep: dict[str, Any]) -> None:
        if getattr(self.session, "quiet", False):
            return
        where = "; ".join(f"{_ranks(rs)} on {h}" for h, rs in rep["missing_hosts"].items())
        say(f"dsdoctor: only {rep['attached']} of {rep['world_size']} ranks attached after {rep['waited_s']} s: "
            f"rank(s) {where} are NOT watched (their launcher did not pass DSDOCTOR_* on; see README "
            f"'Multi-node'). Findings cover the attached ranks only.")


def _ranks(rs: list[int]) -> str:
    from ..findings import ranks_text
    return ranks_text(rs)
