"""Communication: collective timeouts compared across ranks (who fell behind), NCCL and gloo
errors with the cause their WARN lines give, the network transport NCCL chose, the NCCL
watchdog hanging, and stack dumps showing ranks waiting in a collective for one rank that is
elsewhere (in the DataLoader).

Everything here needs the whole run (a rank that never reports is found by its absence, the
cause of an NCCL error is often printed after it), so symptoms come from `finish()`; each
keeps the order (`seq`) of its first event so the root-cause ordering still works. Memory:
one small record per rank plus a few evidence events.
"""
from __future__ import annotations

from collections import Counter
from typing import Iterable

from ..events import Event
from ..expr import ranks_text
from ..findings import MAX_EVIDENCE, Evidence, Symptom
from ..lazy_regex import compile_later
from .base import Detector
from .run_end import loop_finished
from .worn import WornPrefixes, rank_origin

# strongest first: a cause line beats a generic one ("closed by remote peer" is only an echo)
CAUSE_ORDER = ("duplicate_gpu", "shm", "interface", "connection_refused", "ib", "p2p", "cuda_env", "cuda", "mismatch", "invalid_usage", "internal",
               "remote_exit", "unknown")
_CODE_CAUSE = {"ncclUnhandledCudaError": "cuda", "ncclInvalidUsage": "invalid_usage",
               "ncclInvalidArgument": "invalid_usage", "ncclInternalError": "internal",
               "ncclRemoteError": "remote_exit"}
_ERROR_CAUSE = {"unhandled cuda error": "cuda", "invalid usage": "invalid_usage",
                "invalid argument": "invalid_usage", "remote process exited or there was a network error": "remote_exit"}


class _Collector:
    """The first event (by pipeline order) and a few evidence lines of one symptom."""

    def __init__(self) -> None:
        self.seq: int | None = None
        self.time: float | None = None
        self.events: list[Event] = []
        self.ranks: set[int] = set()
        self.steps: set[int] = set()
        self.count = 0
        self.origins: set[tuple[str, int, str | None]] = set()   # (input, rank, FROM_PREFIX/FROM_LABEL or None)

    def add(self, ev: Event, seq: int, keep: bool = True) -> None:
        self.count += 1
        if self.seq is None:
            self.seq, self.time = seq, ev.time
        if ev.rank is not None:
            self.ranks.add(ev.rank)
        if ev.step is not None and len(self.steps) < 64:
            self.steps.add(ev.step)
        if keep and len(self.events) < MAX_EVIDENCE:
            self.events.append(ev)
        if ev.rank is not None and len(self.origins) < 64:
            self.origins.add(rank_origin(ev))

    def unpin(self, worn: WornPrefixes) -> None:
        """Drop the ranks that only a prefix its input's launcher lines wore too gave (detect/worn.py)."""
        self.ranks = worn.unpinned(self.ranks, self.origins)

    def symptom(self, name: str, key: tuple = (), first: Iterable[Event] = (), **facts) -> Symptom:
        s = Symptom(name=name, facts=facts, ranks=set(self.ranks), steps=sorted(self.steps),
                    seq=self.seq or 0, time=self.time, key=key, count=max(self.count, 1))
        for ev in list(first) + self.events:
            if not any(e.line == ev.line and e.source == ev.source for e in s.evidence):
                s.add_evidence(ev)
        return s


def _with_interface(s: Symptom, iface: dict) -> Symptom:
    """The socket interface's facts on a timeout or an NCCL error (None when nothing is wrong with it),
    its line quoted first when it is the likely cause."""
    for k in ("socket_iface", "socket_addr", "socket_iface_hosts", "socket_iface_why"):
        s.facts[k] = iface.get(k)
    ev = iface.get("socket_iface_event")
    if ev is not None and ev.text is not None:
        e = Evidence(ev.source, ev.line, ev.text)
        s.evidence = [e] + [x for x in s.evidence if x != e][:MAX_EVIDENCE - 1]
    return s


# interfaces that never join two hosts: Docker's and libvirt's bridges, container veths, loopback
_VIRTUAL_IFACE = compile_later(r"(docker\d*|virbr\d*|br-[0-9a-f]{6,}|veth\w*|podman\d*|cni\d*|lo)$")

PASTE_GAP = range(3)     # blank lines an issue body leaves between a fence or 'log:' and the paste


class CommDetector(Detector):
    kinds = ("collective_timeout", "watchdog_state", "desync_report", "nccl_error", "nccl_warn",
             "nccl_transport", "gloo_error", "stack", "context", "paste_block", "clock", "throughput", "run_end")

    def __init__(self) -> None:
        self.world_size: int | None = None       # a context line's, when the detector runs without a Diagnoser
        self.paste_starts: set[tuple] = set()    # (source, line): where an issue's fenced block begins
        # (source, line) of a timestamped line within PASTE_GAP of a paste's start: the paste begins with output
        # before the timeouts, not inside their burst
        self.paste_heads: set[tuple] = set()
        # collective timeouts: one record per rank (its first timeout)
        self.timeouts: dict[int | None, dict] = {}
        self.timeout_events: dict[int | None, Event] = {}
        self.to = _Collector()
        self.wd: dict[int | None, dict] = {}
        self.wd_events: dict[int | None, Event] = {}
        self.lagging: set[int] = set()
        self.lagging_root: set[int] = set()
        self.desync_events: list[Event] = []
        # NCCL errors and the WARN lines that explain them
        self.err = _Collector()
        self.err_facts: dict = {}
        self.warn_by_cause: dict[str, Event] = {}
        self.warn_seq: dict[str, int] = {}
        self.first_warn: Event | None = None
        self.hang = _Collector()
        self.hang_s: int | None = None
        self.rdzv: dict[str, _Collector] = {}
        self.rdzv_peer: dict[str, str | None] = {}
        self.rdzv_port: dict[str, int | None] = {}
        self.rdzv_group: dict[str, str] = {}           # a rendezvous of a second group (an RL weight sync)
        # transport
        self.transport = _Collector()
        self.transports: Counter = Counter()
        self.spans_nodes = False          # a network channel or nNodes > 1 in NCCL's init lines
        self.hosts: set[str] = set()
        self.ib_not_found = False
        self.ifaces: dict[str, tuple[str, str | None, Event]] = {}   # host -> its socket interface, address, line
        # the training loop said it finished (HF's train_runtime summary, a progress bar at its total,
        # Lightning's or Megatron's end line): a socket transport did not stop that run
        self.loop_finished = False
        # gloo
        self.gloo: dict[str, _Collector] = {}
        self.gloo_peer: dict[str, str | None] = {}
        # stack dumps
        self.stack = _Collector()
        self.stack_where: Counter = Counter()
        self.stack_ops: Counter = Counter()
        self.stack_dl_events: list[Event] = []
        self.stack_ckpt = _Collector()           # dumped main threads in checkpoint I/O (torch.save, a checkpoint engine)

    def _world_size(self) -> int | None:
        """The world size tells which ranks never reported."""
        return self.known_world_size() or self.world_size

    # ------------------------------------------------------------------ feed
    def feed(self, ev: Event, seq: int) -> Iterable[Symptom]:
        d = ev.data
        k = ev.kind
        if k == "throughput":          # the most frequent kind here: first, and only to see the loop's end
            if not self.loop_finished and loop_finished(ev):
                self.loop_finished = True
            return ()
        if k == "run_end":
            self.loop_finished = True
        elif k == "context":
            ws = d.get("world_size")
            if isinstance(ws, int) and ws > 0:
                self.world_size = ws
        elif k == "paste_block":
            if len(self.paste_starts) < 64:
                self.paste_starts.add((ev.source, d.get("first_line")))
        elif k == "clock":
            if ev.line is not None and len(self.paste_heads) < 64 and \
                    any((ev.source, ev.line - gap) in self.paste_starts for gap in PASTE_GAP):
                self.paste_heads.add((ev.source, ev.line))
        elif k == "collective_timeout":
            self.to.add(ev, seq, keep=False)
            if ev.rank not in self.timeouts and len(self.timeouts) < 100_000:
                self.timeouts[ev.rank] = dict(d)
                self.timeout_events[ev.rank] = ev
        elif k == "watchdog_state":
            self.to.add(ev, seq, keep=False)
            if ev.rank not in self.wd and len(self.wd) < 100_000:
                self.wd[ev.rank] = dict(d)
                self.wd_events[ev.rank] = ev
        elif k == "desync_report":
            if d.get("detail") == "monitored_barrier_root":
                # a rank that passed gloo's monitored barrier points at the barrier's root (rank 0): the
                # root's own line names the missing ranks, so this is where to look only without it
                self.lagging_root.update(d.get("lagging") or ())
            else:
                self.lagging.update(d.get("lagging") or ())
            if len(self.desync_events) < 4:
                self.desync_events.append(ev)
        elif k == "nccl_error":
            if d.get("cause") == "watchdog_hang":
                self.hang.add(ev, seq)
                self.hang_s = self.hang_s or d.get("stuck_s")
            elif d.get("cause") == "rendezvous":
                col = self.rdzv.setdefault(d.get("rdzv") or "unknown", _Collector())
                col.add(ev, seq)
                self.rdzv_peer.setdefault(d.get("rdzv") or "unknown", d.get("peer"))
                self.rdzv_port.setdefault(d.get("rdzv") or "unknown", d.get("port"))
                if d.get("group"):
                    self.rdzv_group.setdefault(d.get("rdzv") or "unknown", d["group"])
            else:
                self._nccl_error(ev, seq)
        elif k == "nccl_warn":
            c = d.get("cause")
            if c and c not in self.warn_by_cause:
                self.warn_by_cause[c] = ev
                self.warn_seq[c] = seq
            elif not c and self.first_warn is None:
                self.first_warn = ev          # a WARN with no known cause: quoted, never guessed at
            if d.get("host"):
                self._host(d["host"])
        elif k == "nccl_transport":
            if d.get("host"):
                self._host(d["host"])
                if d.get("iface") and len(self.ifaces) < 4096:
                    self.ifaces.setdefault(d["host"], (d["iface"], d.get("addr"), ev))
            if d.get("detail") == "bootstrap":       # which interface, not which transport
                return ()
            if d.get("detail") in ("channel", "nodes"):
                self.spans_nodes = True
                if d.get("detail") == "channel":
                    self.transports[d.get("transport")] += 1
            else:
                self.transports[d.get("transport")] += 1
            if d.get("detail") == "ib_not_found":
                self.ib_not_found = True
            self.transport.add(ev, seq)
        elif k == "gloo_error":
            c = d.get("cause") or "unknown"
            self.gloo.setdefault(c, _Collector()).add(ev, seq)
            self.gloo_peer.setdefault(c, d.get("peer"))
        elif k == "stack":
            w = d.get("where")
            self.stack_where[w] += 1
            if w == "collective":
                self.stack_ops[d.get("op")] += 1
                self.stack.add(ev, seq)
            elif w == "checkpoint":
                self.stack_ckpt.add(ev, seq)
            elif w == "dataloader":
                self.stack.add(ev, seq, keep=False)
                if len(self.stack_dl_events) < 4:
                    self.stack_dl_events.append(ev)
        return ()

    def _host(self, h: str) -> None:
        if len(self.hosts) < 4096:
            self.hosts.add(h)

    def _nccl_error(self, ev: Event, seq: int) -> None:
        d = ev.data
        self.err.add(ev, seq)
        f = self.err_facts
        if d.get("error") and not f.get("error"):
            f["error"] = d["error"]
        for key in ("nccl_version", "code", "detail", "file"):
            if d.get(key) and not f.get(key):
                f[key] = d[key]
        cause = d.get("cause") or _CODE_CAUSE.get(d.get("code") or "") or _ERROR_CAUSE.get(d.get("error") or "")
        if cause:
            f.setdefault("causes", set()).add(cause)

    # ------------------------------------------------------------------ finish
    def finish(self) -> Iterable[Symptom]:
        out: list[Symptom] = []
        if self.worn:
            # (not the timeouts: their per-rank records compare ranks, and a prefix there is every line's)
            for col in [self.err, self.hang, self.transport, self.stack, self.stack_ckpt, *self.rdzv.values(), *self.gloo.values()]:
                col.unpin(self.worn)
        iface = self._socket_interface()
        if self.timeouts or self.wd:
            out.append(_with_interface(self._timeout_symptom(), iface))
        s = self._nccl_symptom()
        if s:
            out.append(_with_interface(s, iface))
        if self.hang.count:
            out.append(self.hang.symptom("watchdog_hang", stuck_s=self.hang_s))
        s = self._transport_symptom()
        if s:
            out.append(s)
        for cause, col in self.rdzv.items():
            out.append(col.symptom("rendezvous_error", key=(cause,), cause=cause, peer=self.rdzv_peer.get(cause),
                                   port=self.rdzv_port.get(cause), group=self.rdzv_group.get(cause)))
        for cause, col in self.gloo.items():
            if cause == "timeout_secondary" and self.timeouts:
                continue        # pair closures after a timeout: the timeout is the finding
            out.append(col.symptom("gloo_error", key=(cause,), cause=cause, peer=self.gloo_peer.get(cause)))
        s = self._stack_symptom()
        if s:
            out.append(s)
        return out

    def _timeout_symptom(self) -> Symptom:
        to = self.timeouts
        seqs = {r: t["seq"] for r, t in to.items() if t.get("seq") is not None and r is not None}
        for r, w in self.wd.items():           # 2.3+: the status line has the seq too
            if r is not None and r not in seqs and w.get("seq") is not None:
                seqs[r] = w["seq"]
        ops = Counter(t.get("op") for t in to.values() if t.get("op"))
        op = ops.most_common(1)[0][0] if ops else None
        seq_counts = Counter(seqs.values())
        seq = seq_counts.most_common(1)[0][0] if seq_counts else None
        desync = len(seq_counts) > 1
        apart_ops, apart = self._ops_apart()
        numel_mismatch = not apart_ops and self._numel_mismatch()
        enq = {r: w["last_enqueued"] for r, w in self.wd.items() if r is not None and w.get("last_enqueued") is not None}

        # a rank that only dumped because another timed out is alive and says where it is, not that it waited
        reporting = {r for r in set(to) | {r for r, w in self.wd.items() if w.get("dump_from") is None}
                     if r is not None}
        silent = self._silent(reporting)
        suspects: list[int] = []
        reason = None
        if self.lagging or self.lagging_root:
            suspects, reason = sorted(self.lagging or self.lagging_root), "desync_report"
        elif silent:
            suspects, reason = silent, "no_timeout_reported"
        elif apart:
            suspects, reason = apart, "other_op"
        elif desync:
            low = min(seq_counts)
            suspects, reason = sorted(r for r, s in seqs.items() if s == low), "behind_seq"
        elif len(set(enq.values())) > 1:
            low = min(enq.values())
            suspects, reason = sorted(r for r, v in enq.items() if v == low), "behind_enqueued"
        timeouts_ms = [t["timeout_ms"] for t in to.values() if t.get("timeout_ms")]
        elapsed = [t["elapsed_ms"] for t in to.values() if t.get("elapsed_ms")]
        backends = sorted({t.get("backend") or "nccl" for t in to.values()}) or ["nccl"]
        pgs = Counter(t.get("pg") for t in to.values() if t.get("pg"))
        first = [self.timeout_events[r] for r in suspects if r in self.timeout_events][:2]
        first += [self.wd_events[r] for r in suspects if r in self.wd_events][:2]
        first += self.desync_events[:2]
        first += list(self.timeout_events.values())[:4] + list(self.wd_events.values())[:2]
        s = self.to.symptom(
            "collective_timeout", first=first,
            op=op, seq=seq, timeout_ms=max(timeouts_ms) if timeouts_ms else None,
            elapsed_ms=max(elapsed) if elapsed else None,
            backend=backends[0] if len(backends) == 1 else ",".join(backends),
            pg=pgs.most_common(1)[0][0] if pgs else None,
            seqs_by_rank=dict(sorted(seqs.items())[:1024]), seqs_text=_seqs_text(seqs),
            desync=desync, numel_mismatch=numel_mismatch, ops_apart=bool(apart_ops),
            other_op=to[apart[0]].get("op") if apart else None,
            ops_text="; ".join(f"{o} on rank(s) {ranks_text(sorted(rs))}" for o, rs in sorted(apart_ops.items())),
            all_same_seq=bool(seqs) and not desync,
            suspects=suspects, suspects_text=ranks_text(suspects) if suspects else None,
            suspect_reason=reason, silent_ranks=silent, reporting=len(reporting),
            reporting_text=ranks_text(sorted(reporting)) if reporting else None,
            lagging_from=self.desync_events[0].data.get("detail") if self.desync_events else None,
            known_world_size=self._world_size(),
            last_completed=min((w["last_completed"] for w in self.wd.values()
                                if w.get("last_completed") is not None), default=None),
            blocking=any(t.get("blocking") for t in to.values()))
        s.ranks.update(suspects)        # the ranks everybody waited for are what the finding is about
        return s

    def _ops_apart(self) -> tuple[dict[str, list[int]], list[int]]:
        """The ranks by OpType of a SeqNum that timed out with two OpTypes (a BARRIER against everyone
        else's ALLREDUCE): at that point they called different collectives, as a rank that ran out of
        batches first and went on to the end-of-epoch barrier does. With the ranks of the fewer side,
        the ones that took the other path (none when the sides are even: two ranks, one each)."""
        by_seq: dict[int, dict[str, list[int]]] = {}
        for r, t in self.timeouts.items():
            if r is not None and t.get("seq") is not None and t.get("op"):
                by_seq.setdefault(t["seq"], {}).setdefault(t["op"], []).append(r)
        for ops in by_seq.values():
            if len(ops) == 2:
                few, many = sorted(ops.values(), key=len)
                return ops, (sorted(few) if len(few) < len(many) else [])
        return {}, []

    def _numel_mismatch(self) -> bool:
        by_seq: dict[int, set] = {}
        for t in self.timeouts.values():
            if t.get("seq") is not None and t.get("numel_in") is not None:
                by_seq.setdefault(t["seq"], set()).add((t.get("op"), t["numel_in"], t.get("numel_out")))
        return any(len(v) > 1 for v in by_seq.values())

    def _silent(self, reporting: set[int]) -> list[int]:
        """Ranks that never reported a timeout while most others did: the ones everybody waits for.
        Known only with the world size or from holes in the ranks seen, and only when at least two
        ranks reported (one rank's log says nothing about the others). With two ranks one report is
        enough: a collective that times out on one of them is one the other never entered."""
        ws = self._world_size()
        two = ws == 2 and bool(reporting)         # (the other rank, when one is missing, never came)
        if len(reporting) < 2 and not two:
            return []
        if ws:
            expected = set(range(ws))
        else:
            expected = set(range(max(reporting) + 1))
        silent = sorted(expected - reporting)
        # a paste that begins inside the burst of timeouts (its first line, or an issue's fenced
        # block's, is one) and lacks exactly the ranks before the lowest it shows has lost their
        # lines: they may well have reported there
        if silent == list(range(min(reporting))) and \
                any(e.line == 1 or any((e.source, e.line - gap) in self.paste_starts and
                                       not any((e.source, e.line - g) in self.paste_heads for g in range(1, gap + 1))
                                       for gap in PASTE_GAP)
                    for e in list(self.timeout_events.values()) + list(self.wd_events.values())):
            return []
        return silent if (two and len(silent) == 1) or 0 < len(silent) < len(reporting) else []

    def _nccl_symptom(self) -> Symptom | None:
        causes = set(self.err_facts.get("causes", ())) | set(self.warn_by_cause)
        if not self.err.count and not (causes - {"remote_exit"}):
            return None     # only an echo of a peer's exit, without any NCCL error: not a finding alone
        cause = next((c for c in CAUSE_ORDER if c in causes), "unknown")
        warn = self.warn_by_cause.get(cause)
        col = self.err
        if not col.count:         # WARN lines only (an excerpt without the exception)
            for c, ev in self.warn_by_cause.items():
                col.add(ev, self.warn_seq[c])
        if warn is None and cause == "unknown" and self.first_warn is not None and col.count:
            first = [self.first_warn]
        else:
            first = [warn] if warn is not None else []
        f = self.err_facts
        return col.symptom("nccl_error", first=first, error=f.get("error") or f.get("code"), cause=cause,
                           peer=warn.data.get("peer") if warn is not None else None,
                           warn=warn.data.get("msg") if warn is not None else None,
                           warn_host=warn.data.get("host") if warn is not None else None,
                           nccl_version=f.get("nccl_version"), code=f.get("code"), detail=f.get("detail"),
                           other_warn=self.first_warn.data.get("msg") if self.first_warn is not None and warn is None
                           else None)

    def _socket_interface(self) -> dict:
        """Facts about the socket interface NCCL chose when it cannot join the nodes: a Docker/libvirt
        bridge or loopback (the same private address on every host), or one address on two hosts."""
        if not self.ifaces or not self._multi_node():
            return {}
        by_addr: dict[str, list[str]] = {}
        for host, (_iface, addr, _ev) in self.ifaces.items():
            if addr:
                by_addr.setdefault(addr, []).append(host)
        for addr, hosts in by_addr.items():
            if len(hosts) > 1:
                hosts = sorted(hosts)
                iface, _addr, ev = self.ifaces[hosts[0]]
                return {"socket_iface": iface, "socket_addr": addr, "socket_iface_hosts": ", ".join(hosts[:4]),
                        "socket_iface_why": "same_addr", "socket_iface_event": ev}
        for host, (iface, addr, ev) in self.ifaces.items():
            if _VIRTUAL_IFACE.match(iface):
                return {"socket_iface": iface, "socket_addr": addr, "socket_iface_hosts": host,
                        "socket_iface_why": "virtual", "socket_iface_event": ev}
        return {}

    def _multi_node(self) -> bool:
        """The job spans nodes: two hosts in NCCL's lines, or a network channel / nNodes > 1 in its init."""
        return len(self.hosts) >= 2 or self.spans_nodes

    def _transport_symptom(self) -> Symptom | None:
        socket = self.transports.get("Socket", 0)
        if not socket:
            return None
        multi_node = self._multi_node()
        if not self.ib_not_found and (not multi_node or self.transports.get("IB", 0)):
            return None          # one node (Socket between nodes is not in play), or IB is in use
        return self.transport.symptom("nccl_transport", transport="Socket", ib_not_found=self.ib_not_found,
                                      hosts=len(self.hosts), ib_used=self.transports.get("IB", 0) > 0,
                                      multi_node=multi_node, loop_finished=self.loop_finished)

    def _stack_symptom(self) -> Symptom | None:
        n_coll = self.stack_where.get("collective", 0)
        n_dl = self.stack_where.get("dataloader", 0)
        if not n_coll:
            if not n_dl:
                return None
            # a dump of main threads that all wait for a batch (py-spy of a process that stopped
            # moving): the DataLoader's workers deliver nothing
            return self.stack.symptom("comm_stall", key=("stacks",), first=self.stack_dl_events[:2],
                                      cause="dataloader_only", op=None, n_waiting=0, n_dataloader=n_dl)
        op = self.stack_ops.most_common(1)[0][0] if self.stack_ops else None
        if self.stack_ckpt.count and not n_dl:
            # the ranks wait in a collective for the one(s) writing or reading a checkpoint: those are the cause
            return self.stack_ckpt.symptom("comm_stall", key=("stacks",), cause="checkpoint", op=op,
                                           n_waiting=n_coll, n_checkpoint=self.stack_ckpt.count,
                                           func=self.stack_ckpt.events[0].data.get("func"))
        return self.stack.symptom("comm_stall", key=("stacks",), first=self.stack_dl_events[:2],
                                  cause="dataloader" if n_dl else "collective", op=op,
                                  n_waiting=n_coll, n_dataloader=n_dl)


def _seqs_text(seqs: dict[int, int]) -> str | None:
    """{0: 7, 1: 7, 2: 6} -> 'SeqNum 7 on ranks 0-1; SeqNum 6 on rank 2'."""
    if not seqs:
        return None
    by: dict[int, list[int]] = {}
    for r, s in seqs.items():
        by.setdefault(s, []).append(r)
    parts = []
    for s, rs in sorted(by.items(), key=lambda kv: -len(kv[1]))[:6]:
        parts.append(f"SeqNum {s} on rank{'s' if len(rs) > 1 else ''} {ranks_text(rs)}")
    return "; ".join(parts)
