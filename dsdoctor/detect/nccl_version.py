"""NCCL version mismatch: the `nccl_version` banners (one per process, NCCL src/init.cc showVersion)
of the ranks or nodes of one job name different NCCL releases -> one `nccl_version_mismatch` symptom.

NCCL needs the same release on every rank of a communicator (its bootstrap and wire formats change
between releases): a node with another torch wheel, or a system libnccl on LD_LIBRARY_PATH /
LD_PRELOAD, fails at init (internal error, invalid usage) or hangs in the first collective.

A log can also hold two runs one after the other (the user upgraded and ran again): a process
identity (host, rank) that printed two versions is such a re-run, not a mismatch, and banners with
neither host nor rank cannot be told apart from one, so they are not compared.
"""
from __future__ import annotations

from typing import Iterable

from ..events import Event
from ..findings import Symptom
from .base import Detector, symptom_from

MAX_IDENTS = 4096


class NcclVersionDetector(Detector):
    kinds = ("nccl_version",)

    def __init__(self) -> None:
        self._by_version: dict[str, set[tuple]] = {}
        self._first: dict[str, Event] = {}
        self._symptom: Symptom | None = None
        self._rerun = False

    def feed(self, ev: Event, seq: int) -> Iterable[Symptom]:
        d = ev.data
        version, host = d.get("version"), d.get("host")
        if not version or (host is None and ev.rank is None):
            return ()
        ident = (host, ev.rank)
        if any(ident in ids for v, ids in self._by_version.items() if v != version):
            self._rerun = True
        ids = self._by_version.setdefault(version, set())
        if len(ids) < MAX_IDENTS:
            ids.add(ident)
        self._first.setdefault(version, ev)
        if self._rerun or len(self._by_version) < 2:
            return ()
        versions = {v: sorted({h for h, _ in i if h}) for v, i in self._by_version.items()}
        ranks = {v: sorted({r for _, r in i if r is not None}) for v, i in self._by_version.items()}
        where = "; ".join(f"{v} on " + (", ".join(versions[v][:4]) or "rank(s) " + ", ".join(map(str, ranks[v][:8])))
                          for v in sorted(versions))
        if self._symptom is not None:       # a third version: widen the one symptom
            self._symptom.facts.update(versions=sorted(versions), where=where)
            self._symptom.add_evidence(ev)
            return ()
        first = self._first[min(self._first, key=lambda v: self._first[v].line or 0)]
        s = symptom_from(first, seq, "nccl_version_mismatch", key=(), versions=sorted(versions), where=where)
        s.add_evidence(ev)
        self._symptom = s
        return (s,)
