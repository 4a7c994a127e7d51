"""Symptoms of a job over several nodes: ranks that were not watched (the live roll call,
live/rollcall.py) and collectives torch's Flight Recorder analysis found broken
(sources/flight_recorder.py). Rules: rules/multinode.yaml.

Also `hosts_of(events)`: the host label of each rank, as the `attach`, `roll_call` and
`stall` events give it — how findings name hosts next to ranks (pipeline.Diagnoser).
"""
from __future__ import annotations

from typing import Any, Iterable

from ..events import Event
from ..expr import ranks_text
from ..sources.lines import FROM_FILE
from ..findings import Evidence, Symptom
from .base import Detector, symptom_from
from .families import classify


def learn_hosts(ev: Event, hosts: dict[int, str]) -> None:
    """Update rank -> host label from one event of the live run's kinds (bounded by the world size); a
    failure line's own host is `tie_line_host`'s."""
    d = ev.data
    if ev.kind == "attach" and ev.rank is not None:
        label = d.get("label") or d.get("host")
        if label:
            hosts[int(ev.rank)] = str(label)
    elif ev.kind == "roll_call":
        for key in ("hosts", "missing_hosts"):
            for label, ranks in (d.get(key) or {}).items():
                for r in ranks or ():
                    if isinstance(r, int) and label != "unknown host":
                        hosts.setdefault(r, str(label))
    elif ev.kind == "stall":
        for b in d.get("behind") or ():
            if isinstance(b, dict) and isinstance(b.get("rank"), int) and (b.get("node") or b.get("host")):
                hosts.setdefault(b["rank"], str(b.get("node") or b.get("host")))


def tie_line_host(ev: Event, host: str, hosts: dict[int, str]) -> None:
    """The host prefix of the line that failed (pdsh, a pod, a Ray worker's ip, NCCL's own head), its
    `line_host`, tied to its rank; not to a rank the whole input was given (a file's one failed rank):
    the line's host is surer."""
    if ev.rank is not None and ev.rank_from != FROM_FILE:
        hosts.setdefault(int(ev.rank), host)


def line_host(ev: Event) -> str | None:
    """The machine a failure's line says it came from: its host prefix, or the node a launcher's
    exit line names (srun's 'srun: error: {node}: task N', pdsh's, mpich's)."""
    d = ev.data
    h = d.get("host") or (d.get("node") if ev.kind in ("killed", "process_exit") else None)
    return str(h) if h else None


def where_text(missing_hosts: dict[str, Any]) -> str:
    return "; ".join(f"rank{'s' if len(rs) > 1 else ''} {ranks_text(rs)} on {h}"
                     for h, rs in (missing_hosts or {}).items())


def _remember(rank: Any, host: Any, ranks: set[int], hosts: set[str]) -> None:
    """Add a rank and a host label to bounded sets (100,000 ranks, 4,096 hosts)."""
    if rank is not None and len(ranks) < 100_000:
        ranks.add(int(rank))
    if host and len(hosts) < 4096:
        hosts.add(str(host))


def _exit_ranks(d: dict) -> list[int]:
    """The ranks a node_exit event names (the launcher's host -> ranks mapping)."""
    return [int(r) for r in d.get("ranks") or [] if isinstance(r, int)]


class MultiNodeDetector(Detector):
    kinds = ("roll_call", "flight_recorder", "node_exit", "exception", "collective_timeout")

    def __init__(self) -> None:
        self._roll: Symptom | None = None
        self._first_exit: Symptom | None = None
        self._later_exits: list[Event] = []         # pdsh's other failed nodes, in the order it saw them end
        self._echo_ranks: set[int] = set()          # ranks that failed because a peer went away
        self._echo_hosts: set[str] = set()          # ... and the pdsh host labels they printed under
        self._own_ranks: set[int] = set()           # ranks with an error of their own (not a lost peer)
        self._own_hosts: set[str] = set()

    def feed(self, ev: Event, seq: int) -> Iterable[Symptom]:
        if ev.kind == "roll_call":
            return self._roll_call(ev, seq)
        if ev.kind == "node_exit":
            return self._node_exit(ev, seq)
        if ev.kind == "exception":
            return self._learn_echo(ev)
        if ev.kind == "collective_timeout":     # the watchdog's timeout: this rank waited on another
            self._echo(ev.rank, ev.data.get("host"))
            return ()
        return self._flight_recorder(ev, seq)

    def finish(self) -> Iterable[Symptom]:
        self._first_exit_not_an_echo()
        return ()

    def _roll_call(self, ev: Event, seq: int) -> Iterable[Symptom]:
        d = ev.data
        if d.get("complete"):
            if self._roll is not None and not self._roll.facts.get("complete"):
                self._roll.facts["complete"] = True
                self._roll.evidence.append(Evidence(ev.source, ev.line,
                                                    f"every rank had attached after {d.get('waited_s')} s"))
            return ()
        missing = [int(r) for r in d.get("missing") or [] if isinstance(r, int)]
        s = symptom_from(ev, seq, "ranks_not_attached", key=(), world_size=d.get("world_size"),
                         attached=d.get("attached"), missing_count=d.get("missing_count", len(missing)),
                         waited_s=d.get("waited_s"), where=where_text(d.get("missing_hosts") or {}),
                         complete=False)
        s.ranks = set(missing)
        s.evidence.append(Evidence(ev.source, ev.line,
                                   f"roll call after {d.get('waited_s')} s: {d.get('attached')} of "
                                   f"{d.get('world_size')} ranks attached; not watched: {s.facts['where']}"))
        if self._roll is None:
            self._roll = s
        return (s,)

    def _node_exit(self, ev: Event, seq: int) -> Iterable[Symptom]:
        """The first node whose launch failed (pdsh reports them in the order they ended)."""
        d = ev.data
        if not d.get("first"):
            if d.get("who") == "pdsh" and len(self._later_exits) < 64:
                self._later_exits.append(ev)
            return ()
        ranks = _exit_ranks(d)
        s = symptom_from(ev, seq, "node_exit", key=(), node=d.get("node"), exitcode=d.get("exitcode"),
                         who=d.get("who"), ranks_known=bool(ranks), only_echoes=False)
        s.ranks = set(ranks)
        if self._first_exit is None:
            self._first_exit = s
        return (s,)

    def _learn_echo(self, ev: Event) -> Iterable[Symptom]:
        """A rank whose exception is a lost peer (gloo 'Connection reset by peer', NCCL 'remote
        process exited', a collective timeout): it ended because another rank had ended."""
        d = ev.data
        fam = classify(str(d.get("type") or ""), str(d.get("message") or ""), d.get("raise_site"), d.get("frames"))
        if fam.name == "comm":
            self._echo(ev.rank, d.get("host"))
        else:
            _remember(ev.rank, d.get("host"), self._own_ranks, self._own_hosts)
        return ()

    def _echo(self, rank: Any, host: Any) -> None:
        _remember(rank, host, self._echo_ranks, self._echo_hosts)

    def _is_echo(self, node: Any, ranks: list[int]) -> bool:
        # (a node with timeouts on some ranks and an error of its own on another is no echo)
        if ranks:
            return set(ranks) <= self._echo_ranks and not set(ranks) & self._own_ranks
        return node in self._echo_hosts and node not in self._own_hosts

    def _first_exit_not_an_echo(self) -> None:
        """pdsh names the nodes in the order their ssh ended, which is not always the order their
        ranks died: a rank that dies silently (os._exit, a kill) can take longer to tear down its
        ssh than the peer that then fails with 'Connection reset by peer'. When the node pdsh saw
        first only has such echoes and a later one has none, the later one ended first. When it is
        the only node pdsh names and it only has echoes, the node that ended first is not in this log
        (`only_echoes`: the node-exited-first rule then leaves the timeouts to speak); with several
        nodes that all only lost a peer, pdsh's order is the best word there is."""
        s = self._first_exit
        if s is None or s.facts.get("who") != "pdsh" or not self._is_echo(s.facts.get("node"), sorted(s.ranks)):
            return
        if not self._later_exits:
            s.facts["only_echoes"] = True
            return
        for ev in self._later_exits:
            d = ev.data
            ranks = _exit_ranks(d)
            if self._is_echo(d.get("node"), ranks):
                continue
            echo = (f"pdsh saw {s.facts.get('node')} end first (exit code {s.facts.get('exitcode')}), but its "
                    f"rank(s) failed on a lost peer: the echo of {d.get('node')}")
            s.facts.update(node=d.get("node"), exitcode=d.get("exitcode"), ranks_known=bool(ranks), only_echoes=False)
            s.ranks = set(ranks)
            s.evidence = [Evidence(ev.source, ev.line, ev.text or "")] if ev.text else []
            s.evidence.append(Evidence(ev.source, ev.line, echo))
            return

    def _flight_recorder(self, ev: Event, seq: int) -> Iterable[Symptom]:
        d = ev.data
        verdict = str(d.get("verdict") or "")
        if verdict in ("", "consistent"):
            return ()
        culprits = [int(r) for r in d.get("culprit_ranks") or [] if isinstance(r, int)]
        sizes = d.get("culprit_sizes") or {}
        facts: dict[str, Any] = {k: d.get(k) for k in ("seq", "op", "group", "caller", "positions", "expected_sizes",
                                                         "state", "detail")}
        facts.update(verdict=verdict, culprit_text=ranks_text(culprits),
                     joined_text=ranks_text(d.get("joined_ranks") or []),
                     culprit_sizes_text="; ".join(f"rank {r} passed {v}" for r, v in list(sizes.items())[:8]),
                     culprit_ops_text="; ".join(f"rank {r} called {v}" for r, v in list((d.get("culprit_ops") or {}).items())[:8]),
                     sizes=d.get("sizes"))
        s = symptom_from(ev, seq, f"fr_{verdict}", key=(d.get("group"), d.get("seq")), **facts)
        s.ranks = set(culprits)
        text = (f"Flight Recorder: collective #{d.get('seq')} {d.get('op')} ({d.get('group')}): "
                + (f"rank(s) {ranks_text(culprits)} never joined it" if verdict == "missing"
                   else f"{verdict.replace('_', ' ')}: expected {d.get('expected_sizes')}, {facts['culprit_sizes_text']}"))
        s.evidence.append(Evidence(ev.source, ev.line, text))
        if d.get("positions"):
            s.evidence.append(Evidence(ev.source, ev.line, f"where each rank was: {d['positions']}"))
        return (s,)
