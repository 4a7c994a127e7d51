"""Communication messages: torch ProcessGroupNCCL (watchdog timeouts, work-sequence status,
desync reports, heartbeat monitor, NCCL errors), NCCL's own WARN/INFO lines, gloo errors,
and py-spy / faulthandler stack dumps that show ranks waiting in a collective.

Templates: torch/csrc/distributed/c10d/ProcessGroupNCCL.cpp (watchdog, WorkNCCL::checkTimeout,
HeartbeatMonitor), TraceUtils.h: retrieveDesyncReport, NCCLUtils.hpp: C10D_NCCL_CHECK and
getNcclErrorDetailStr, TCPStore, gloo (bundled in libtorch_cpu), and NCCL's src/debug.cc:
ncclDebugLog and src/init.cc: ncclGetErrorString. Every regex searches
(not matches) so the rank prefixes, C++ log heads (`[E ProcessGroupNCCL.cpp:475] `,
`[E1015 06:12:31.462585216 ProcessGroupNCCL.cpp:616] `) and `[PG ID 0 PG GUID 0(default_pg)
Rank 3] ` prefixes of every torch version are all accepted.
"""
from __future__ import annotations

import re

from ...lazy_regex import compile_later
from ..lines import Line, StreamState, armed_within
from ..recogniser import on
from .traceback import wait_site

# ---------------------------------------------------------------- collective timeouts (ProcessGroupNCCL.cpp: WorkNCCL::checkTimeout)
_FIELD = compile_later(r"(SeqNum|OpType|NumelIn|NumelOut|Timeout\(ms\)|TensorShape)=(\[[^\]]*\]|[^,)]+)")
_RAN_FOR = compile_later(r"ran for (\d+) milliseconds")
# "[PG ID 0 PG GUID 0(default_pg) Rank 3]" (2.5+), "[PG 0 (default_pg) Rank 3]" / "[PG 0 Rank 3]" (2.3-2.4)
_PG = compile_later(r"\[PG (?:ID (\S+) PG GUID (\S+?)(?:\(([^)]*)\))?|(\S+)(?: \(([^)]*)\))?) Rank (\d+)\]")
_RANK = compile_later(r"\[Rank (\d+)\]")


def _int(s: str | None) -> int | None:
    try:
        return int(s) if s is not None else None
    except ValueError:
        return None


def _pg_and_rank(line: Line) -> tuple[str | None, int | None]:
    m = _PG.search(line.text)
    if m:
        pg = m.group(2) or m.group(4)
        desc = m.group(3) or m.group(5)
        if desc and desc != "undefined":
            pg = f"{pg}({desc})"
        return pg, int(m.group(6))
    m = _RANK.search(line.text)
    return None, int(m.group(1)) if m else line.rank


def _work_fields(text: str) -> dict:
    # torch_npu's ProcessGroupHCCL (Ascend) prints the same fields in a 'WorkHCCL(' (strings of libtorch_npu.so 2.14)
    i = text.find("WorkNCCL(")
    if i < 0:
        i = text.find("WorkHCCL(")
    d: dict = {}
    if i < 0:
        return d
    f = dict(_FIELD.findall(text[i:i + 400]))     # field names are unique; no need to balance parentheses
    d["seq"] = _int(f.get("SeqNum"))
    d["op"] = f.get("OpType")
    d["numel_in"] = _int(f.get("NumelIn"))
    d["numel_out"] = _int(f.get("NumelOut"))
    d["timeout_ms"] = _int(f.get("Timeout(ms)"))
    if f.get("TensorShape"):
        d["shape"] = f["TensorShape"]
    return d


@on("Watchdog caught collective operation timeout", "Caught collective operation timeout",
    "timed out in call to wait()", "timed out in blocking wait")
def collective_timeout(line: Line, st: StreamState):
    t = line.text
    pg, rank = _pg_and_rank(line)
    d = _work_fields(t)
    m = _RAN_FOR.search(t)
    d["elapsed_ms"] = int(m.group(1)) if m else None
    seen = st.scratch.setdefault("nccl.timeouts", set())
    k = (rank, d.get("seq"), d.get("op"))
    if k in seen:                           # "terminated with exception" repeats the timeout
        return None
    if len(seen) < 100_000:
        seen.add(k)
    blocking = "Watchdog" not in t
    # torch_npu: 'WorkHCCL(...)', '... timed out in blocking wait (TORCH_HCCL_BLOCKING_WAIT=1 or HCCL_BLOCKING_WAIT=1).'
    backend = "hccl" if "WorkHCCL(" in t or "HCCL_BLOCKING_WAIT" in t else "nccl"
    return line.event("collective_timeout", step=st.step_of(rank), rank=rank, backend=backend,
                      pg=pg, blocking=blocking, host=line.host, **d)


# A C++ stack trace of the watchdog thread whose head was cut off (pasted excerpts keep the
# frames): WorkNCCL::checkTimeout is where torch's ProcessGroupNCCL raises the collective
# timeout (torch/csrc/distributed/c10d/ProcessGroupNCCL.cpp: WorkNCCL::checkTimeout, called
# from watchdogHandler / workCleanupLoop). Only counted when no timeout line came before it.
@on("WorkNCCL::checkTimeout")
def watchdog_timeout_frame(line: Line, st: StreamState):
    if st.scratch.get("nccl.timeouts") or st.scratch.get("nccl.frame_timeout"):
        return None
    st.scratch["nccl.frame_timeout"] = True
    return line.event("collective_timeout", step=st.step_of(line.rank), backend="nccl", op=None, seq=None,
                      timeout_ms=None, elapsed_ms=None, numel_in=None, numel_out=None, pg=None,
                      blocking=False, from_frame=True)


# gloo's monitored barrier (torch/csrc/distributed/c10d/ProcessGroupGloo.cpp: monitoredBarrier),
# used by torch.distributed.monitored_barrier and by TORCH_DISTRIBUTED_DEBUG=DETAIL's wrapper:
#   "Rank 3 successfully reached monitoredBarrier, but received errors while waiting for send/recv
#    from rank 0. Please check rank 0 logs for faulty rank."       (a non-zero rank)
#   "[Rank 0]: Ranks 1, 2 failed to pass monitoredBarrier in 1800000 ms"   (rank 0)
#   "Rank 1 timed out in monitoredBarrier after 1800000 ms."
_MB_WAIT = compile_later(r"Rank (\d+) successfully reached monitoredBarrier, but received errors while waiting for "
                      r"send/recv from rank (\d+)")
_MB_FAILED = compile_later(r"Ranks? ([\d, ]+?) failed to pass monitoredBarrier in (\d+) ms")
_MB_TIMED_OUT = compile_later(r"Rank (\d+) timed out in monitoredBarrier after (\d+) ms")


@on("successfully reached monitoredBarrier", "failed to pass monitoredBarrier", "timed out in monitoredBarrier")
def monitored_barrier(line: Line, st: StreamState):
    t = line.text
    rank, lagging, timeout = line.rank, [], None
    m = _MB_WAIT.search(t)
    if m:
        # 'received errors ... from rank 0' points at the barrier's root, which saw who was missing
        rank, lagging = int(m.group(1)), [int(m.group(2))]
    elif (m := _MB_FAILED.search(t)):
        rank, lagging, timeout = 0, _rank_list(m.group(1)), int(m.group(2))
    elif (m := _MB_TIMED_OUT.search(t)):
        lagging, timeout = [int(m.group(1))], int(m.group(2))
    else:
        return None
    out = [line.event("collective_timeout", step=st.step_of(rank), rank=rank, backend="gloo",
                      op="monitoredBarrier", seq=None, timeout_ms=timeout, elapsed_ms=None, numel_in=None,
                      numel_out=None, pg=None, blocking=True)]
    if lagging:
        out.append(line.event("desync_report", step=st.step_of(rank), rank=rank, lagging=lagging, seq=None,
                              detail="monitored_barrier_root" if "successfully reached" in t else "monitored_barrier"))
    return out


# TORCH_DISTRIBUTED_DEBUG=DETAIL wraps every process group in ProcessGroupWrapper, which checks each
# collective's fingerprint against the other ranks' before running it
# (torch/csrc/distributed/c10d/ProcessGroupWrapper.cpp: CollectiveFingerPrint::verify):
#   "Detected mismatch between collectives on ranks. Rank 1 is running collective:
#    CollectiveFingerPrint(SequenceNumber=23, OpType=BROADCAST, TensorShape=[4], ...), but Rank 0 is running
#    collective: CollectiveFingerPrint(SequenceNumber=23, OpType=ALLREDUCE, ...).Collectives differ in the
#    following aspects:   Op type: BROADCASTvs ALLREDUCE"
_MISMATCH = compile_later(r"Rank (\d+) is running collective: CollectiveFingerPrint\((.*?)\), but Rank (\d+) is running "
                          r"collective: CollectiveFingerPrint\((.*?)\)\.\s*(?:Collectives differ in the following aspects:\s*(.*))?$")
_FP_SEQ = compile_later(r"SequenceNumber=(\d+)")
_FP_OP = compile_later(r"OpType=(\w+)")
_FP_SHAPE = compile_later(r"TensorShape=(\[[^\]]*\])")


@on("Detected mismatch between collectives on ranks")
def collective_mismatch(line: Line, st: StreamState):
    m = _MISMATCH.search(line.text)
    if not m:
        return None
    rank, other = int(m.group(1)), int(m.group(3))
    if not st.once(("collective_mismatch", *sorted((rank, other)))):
        return None                  # both ranks raise it, each naming the other
    mine, theirs = m.group(2), m.group(4)

    def field(rx: re.Pattern, fp: str) -> str | None:
        f = rx.search(fp)
        return f.group(1) if f else None
    seq = field(_FP_SEQ, mine)
    return line.event("collective_mismatch", step=st.step_of(rank), rank=rank, error="fingerprint",
                      seq=int(seq) if seq else None, op=field(_FP_OP, mine), shape=field(_FP_SHAPE, mine),
                      other_rank=other, other_op=field(_FP_OP, theirs), other_shape=field(_FP_SHAPE, theirs),
                      aspects=re.sub(r"(\S)vs ", r"\1 vs ", " ".join((m.group(5) or "").split()))[:300] or None)


# torch ProcessGroupNCCL.cpp: broadcastUniqueNCCLID - a rank creating its first NCCL communicator
# waits in the store for rank 0's ncclUniqueId; rank 0 never published it in time (it was busy
# elsewhere before its first collective, or died):
#   "[3] is setting up NCCL communicator and retrieving ncclUniqueId from [0] via c10d key-value
#    store by key '0', but store->get('0') got error: Socket Timeout"
_UNIQUE_ID = compile_later(r"\[(\d+)\] is setting up NCCL communicator and retrieving ncclUniqueId from \[(\d+)\]")


@on("is setting up NCCL communicator and retrieving ncclUniqueId from [")
def unique_id_wait(line: Line, st: StreamState):
    m = _UNIQUE_ID.search(line.text)
    if not m:
        return None
    rank, root = int(m.group(1)), int(m.group(2))
    if _STORE_DROPPED.search(line.text):
        # 'store->get('0') got error: Connection reset by peer': no wait, the store's connection broke
        return store_lost(line, st, rank=rank)
    if "got error" not in line.text:
        # the message cut before its reason (a paste's wrap): a timeout or a dropped store, unknown
        # (the exception it raised is still read); a rejoined text then reads more
        return None
    seen = st.scratch.setdefault("nccl.uid_wait", set())
    if rank in seen:
        return None
    seen.add(rank)
    return [line.event("collective_timeout", step=st.step_of(rank), rank=rank, backend="nccl",
                       op="NCCL communicator setup", seq=None, timeout_ms=None, elapsed_ms=None, numel_in=None,
                       numel_out=None, pg=None, blocking=True),
            line.event("desync_report", step=st.step_of(rank), rank=rank, lagging=[root], seq=None,
                       detail="unique_id_wait")]


# ---------------------------------------------------------------- watchdog work status (ProcessGroupNCCL.cpp: the watchdog)
_WD = [
    # 2.6+: "failure detected by watchdog at work sequence id: 5 PG status: last enqueued work: 5, last completed work: 4"
    compile_later(r"at work sequence id: (\d+) PG status: last enqueued work: (-?\d+), last completed work: (-?\d+)"),
    # 2.3-2.5: "Timeout at NCCL work: 5, last enqueued NCCL work: 5, last completed NCCL work: 4."
    compile_later(r"Timeout at NCCL work: (\d+), last enqueued NCCL work: (-?\d+), last completed NCCL work: (-?\d+)"),
    # 2.4-2.5: "Exception (either an error or timeout) detected by watchdog at work: 5, last enqueued ..."
    compile_later(r"detected by watchdog at work: (\d+), last enqueued NCCL work: (-?\d+), last completed NCCL work: (-?\d+)"),
    # 2.5+: "Received a dump signal due to a collective timeout from ... Last enqueued NCCL work: 5, last completed NCCL work: 4."
    compile_later(r"()Last enqueued NCCL work: (-?\d+), last completed NCCL work: (-?\d+)"),
]


_DUMP_FROM = compile_later(r"collective timeout from\s+rank (\d+)")


@on("last enqueued work:", "last enqueued NCCL work:", "Last enqueued NCCL work:")
def watchdog_state(line: Line, st: StreamState):
    for rx in _WD:
        m = rx.search(line.text)
        if m:
            pg, rank = _pg_and_rank(line)
            # 2.5+'s dump signal 'from rank N': another rank timed out, this one only reports where it is
            d = _DUMP_FROM.search(line.text) if rx is _WD[-1] else None
            return line.event("watchdog_state", step=st.step_of(rank), rank=rank, seq=_int(m.group(1) or None),
                              last_enqueued=int(m.group(2)), last_completed=int(m.group(3)), pg=pg,
                              dump_from=int(d.group(1)) if d else None)
    return None


# ---------------------------------------------------------------- desync report (TraceUtils.h: retrieveDesyncReport)
_LAGGING = compile_later(r"ranks \[([\d,\s]*)\] are the lagging ranks")
_NOT_FINISHED = compile_later(r"\[([\d,\s-]*)\] joined but didn't finish collective #(\d+)")
_NOT_JOINED = compile_later(r"\[([\d,\s-]*)\] finished collective #(\d+), but didn't join collective #(\d+)")


def _rank_list(s: str) -> list[int]:
    out: list[int] = []
    for part in s.replace(" ", "").split(","):
        if "-" in part[1:]:
            a, b = part.split("-", 1)
            if a.isdigit() and b.isdigit():
                out.extend(range(int(a), int(b) + 1))
        elif part.isdigit():
            out.append(int(part))
    return out


@on("are the lagging ranks", "joined but didn't finish collective", "but didn't join collective")
def desync_report(line: Line, st: StreamState):
    t = line.text
    m = _LAGGING.search(t)
    if m:
        return line.event("desync_report", lagging=_rank_list(m.group(1)), seq=None, detail="never_joined")
    m = _NOT_JOINED.search(t)
    if m:
        return line.event("desync_report", lagging=_rank_list(m.group(1)), seq=int(m.group(3)),
                          detail="not_joined_next")
    m = _NOT_FINISHED.search(t)
    if m:
        return line.event("desync_report", lagging=_rank_list(m.group(1)), seq=int(m.group(2)),
                          detail="not_finished")
    return None


# ---------------------------------------------------------------- heartbeat monitor (ProcessGroupNCCL.cpp: HeartbeatMonitor)
_STUCK = compile_later(r"watchdog got stuck for (\d+) seconds")


@on("NCCL monitor thread timeout", "monitoring thread detects no heartbeat", "Heartbeat monitor timed out",
    "watchdog got stuck for")
def watchdog_hang(line: Line, st: StreamState):
    m = _STUCK.search(line.text)
    _, rank = _pg_and_rank(line)
    return line.event("nccl_error", step=st.step_of(rank), rank=rank, error="watchdog hang",
                      cause="watchdog_hang", stuck_s=int(m.group(1)) if m else None)


# ---------------------------------------------------------------- NCCL errors via torch (NCCLUtils.hpp)
_NCCL_ERR = compile_later(r"NCCL (error|timeout) in: (\S+?):(\d+), (.+?)(?:, NCCL version ([\w.+-]+))?\s*$")
_DETAIL = compile_later(r"\b(ncclUnhandledCudaError|ncclSystemError|ncclInternalError|ncclInvalidArgument|"
                     r"ncclInvalidUsage|ncclRemoteError|ncclInProgress)\b:?\s*(.*)$")


@on("NCCL error in: ", "NCCL timeout in: ")
def nccl_error(line: Line, st: StreamState):
    m = _NCCL_ERR.search(line.text)
    if not m:
        # cut off (a pasted excerpt, a line limit): the error is still an NCCL error
        i = line.text.find("NCCL error in: ")
        if i < 0:
            return None
        st.scratch["nccl.last_error_line"] = line.lineno
        return line.event("nccl_error", step=st.step_of(line.rank), error=None,
                          file=line.text[i + 15:].strip()[:200] or None, nccl_version=None)
    err = m.group(4).strip()
    err = re.sub(r"\s*\((?:run with NCCL_DEBUG=\w+ for details)\)$", "", err)
    if m.group(1) == "timeout":
        err = "timeout"
    st.scratch["nccl.last_error_line"] = line.lineno
    return line.event("nccl_error", step=st.step_of(line.rank), error=err, file=f"{m.group(2)}:{m.group(3)}",
                      nccl_version=m.group(5))


# The same error as the watchdog sees it later, asynchronously (torch/csrc/distributed/c10d/
# ProcessGroupNCCL.cpp checkForNCCLErrorsInternal: "NCCL error: " + ncclGetErrorWithVersion(err), no
# file:line), usually inside 'NCCL watchdog thread terminated with exception: ...' (<= 2.2) or
# '[PG ...] Process group watchdog thread terminated with exception: ...' (2.3+) and its what().
_NCCL_ASYNC = compile_later(r"NCCL error: (.+?)(?:, NCCL version ([\w.+-]+))?\s*$")


@on("NCCL error: ")
def nccl_async_error(line: Line, st: StreamState):
    m = _NCCL_ASYNC.search(line.text)
    if not m or "NCCL error in: " in line.text:
        return None
    err = re.sub(r"\s*\((?:run with NCCL_DEBUG=\w+ for details)\)$", "", m.group(1).strip())
    if not st.once(("nccl-async", line.rank, err)):
        return None              # the log line and the what() of the same exception
    st.scratch["nccl.last_error_line"] = line.lineno
    return line.event("nccl_error", step=st.step_of(line.rank), error=err, file=None, nccl_version=m.group(2))


@on("ncclUnhandledCudaError", "ncclSystemError", "ncclInternalError", "ncclInvalidArgument",
    "ncclInvalidUsage", "ncclRemoteError")
def nccl_error_detail(line: Line, st: StreamState):
    # the detail line that follows "NCCL error in: ..." (or stands alone in a pasted excerpt)
    if "NCCL error in: " in line.text:
        return None
    m = _DETAIL.search(line.text)
    if not m:
        return None
    return line.event("nccl_error", step=st.step_of(line.rank), error=None, code=m.group(1),
                      detail=m.group(2).strip() or None)


# ProcessGroupNCCL's watchdog after a collective failed or timed out (torch 1.8-1.12 one line,
# 1.13-2.12 '[Rank {rank}] Some NCCL operations have failed or timed out. Due to the asynchronous
# nature of CUDA kernels, subsequent GPU operations might run on corrupted/incomplete data.' then
# '[Rank {rank}] To avoid data inconsistency, we are taking the entire process down.'): the rank
# aborts itself (SIGABRT). Often the only trace left when the timeout line itself was cut off.
# torch_npu's watchdog (ProcessGroupHCCL) says the same of HCCL: 'Some HCCL operations have failed or timed out. Due
# to the asynchronous nature of ASCEND kernels, subsequent NPU operations might run on corrupted/incomplete data.'
_ABORT_RANK = compile_later(r"\[Rank (\d+)\] Some [NH]CCL operations")


@on("Some NCCL operations have failed or timed out", "Some HCCL operations have failed or timed out")
def nccl_watchdog_abort(line: Line, st: StreamState):
    m = _ABORT_RANK.search(line.text)
    rank = int(m.group(1)) if m else line.rank
    return line.event("comm_abort", step=st.step_of(rank), rank=rank, error="watchdog_abort",
                      **({"backend": "hccl"} if "Some HCCL" in line.text else {}))


@on("NCCL communicator was aborted on rank")
def nccl_aborted(line: Line, st: StreamState):
    return line.event("nccl_error", step=st.step_of(line.rank), error="communicator aborted",
                      cause="remote_exit")


# ---------------------------------------------------------------- rendezvous / TCPStore (c10d)
_RDZV_PEER = compile_later(r"connect to \(([^,]+), (\d+)\)|to host (\S+?):(\d+) |failed to bind to (\S+)")
# the port itself: TCPStore's 'failed to listen on any local network address. port: 29500, ...' (socket.cpp,
# torch 2.x; run here with the port held by another process) and '... failed to bind to [::]:29500 (errno: 98 ...'
_RDZV_PORT = compile_later(r"\bport: (\d+)|failed to bind to \S*:(\d+)")


@on("The client socket has timed out after", "TCP client failed to connect/validate to host",
    "The server socket has failed to", "Wait timeout for name(s)", "Timeout waiting for key: ", "wait timeout after ",
    # torch/distributed/distributed_c10d.py: _store_based_barrier (not every rank joined the new group)
    "Timed out initializing process group in store based barrier",
    # torch/distributed/elastic/rendezvous/c10d_rendezvous_backend.py: _create_tcp_store (torchrun --rdzv-backend c10d)
    "The connection to the C10d store has failed",
    # torch/csrc/distributed/c10d/TCPStore.cpp: the server's waitForWorkers ('Timed out after {} seconds
    # waiting for clients. {}/{} clients joined.'): the master's store, waiting for nodes that never came
    "waiting for clients. ",
    # torch/distributed/elastic/rendezvous/dynamic_rendezvous.py: torchrun's agents did not gather --nnodes
    # within join_timeout (600 s by default; `raise RendezvousTimeoutError`, no message; a real run here)
    "rendezvous.api.RendezvousTimeoutError")
def rendezvous_error(line: Line, st: StreamState):
    t = line.text
    # c10's log of a TCPStore error carries the error's what(), whose backtrace ('Exception raised
    # from throwTimeoutError at .../socket.cpp', torch/csrc/distributed/c10d/TCPStore.cpp: the
    # client's retry loop) follows on the next line: it was logged, not raised (traceback.c10_error)
    st.scratch.setdefault("c10.logged", {})[line.rank] = line.lineno
    if "RendezvousTimeoutError" in t:
        if not t.lstrip().startswith("torch.distributed.elastic.rendezvous.api.RendezvousTimeoutError"):
            return None           # the name inside a frame or a sentence, not the raised exception's line
        cause = "join_timeout"
    elif "failed to bind" in t and "[c10d]" in t and "(errno: 98 " not in t and "Address already in use" not in t:
        # socket.cpp's warning, once per address it tries ([::] first, then 0.0.0.0); another errno (97: a host
        # without IPv6, 99), or none seen (a paste's wrap cut it off), is that one address, and the next one
        # may bind: only 'failed to listen on any local network address' means none did
        return None
    elif "Address already in use" in t or "failed to listen" in t or "failed to bind" in t:
        cause = "address_in_use"
    elif "C10d store has failed" in t and st.scratch.get("rdzv.store_lost"):
        return None               # torchrun's agent wrapping the store's broken connection (store_connection_lost)
    elif "C10d store has failed" in t and any(v is not None for v in st.last_step.values()):
        return store_lost(line, st)   # after training started: the store was reachable, then went away
    elif "client socket has timed out" in t or "failed to connect/validate" in t or "C10d store has failed" in t:
        if "retrying" in t:
            return connect_retry(line, st)   # the client retries while the server starts: a wait, not an error
        cause = "connect_timeout"
    elif "wait timeout after " in t and "keys:" not in t:
        return None
    else:
        cause = "key_timeout"     # a rank never wrote its key: it did not arrive
    m = _RDZV_PEER.search(t)
    peer = next((g for g in (m.groups() if m else ()) if g and not g.isdigit()), None)
    p = _RDZV_PORT.search(t)
    weight_sync = any(site in f for f in st.frames.get(line.rank) or () for site in _WEIGHT_SYNC_SITES)
    return line.event("nccl_error", step=st.step_of(line.rank), error="rendezvous", cause="rendezvous",
                      rdzv=cause, peer=peer, port=int(p.group(1) or p.group(2)) if p else None, detail=t.strip()[:300],
                      **({"group": "weight_sync"} if weight_sync else {}))


# The frames of an RL trainer opening its second group, for broadcasting the policy's weights to the generation
# engines (vLLM), after the job's own rendezvous: OpenRLHF's utils/distributed_util.py
# stateless_init_process_group (vLLM's StatelessProcessGroup.create: a TCPStore of its own, then PyNccl), called
# by trainer/ray/ppo_actor.py _init_vllm_weight_sync and vllm_worker_wrap.py WorkerWrap.init_process_group; TRL's
# generation/vllm_client.py VLLMClient.init_communicator. A store there that never sees all its clients means the
# engines never joined, whatever the job's own MASTER_ADDR
_WEIGHT_SYNC_SITES = (":stateless_init_process_group", ":_init_vllm_weight_sync", "vllm_worker_wrap.py:init_process_group",
                      "vllm_client.py:init_communicator")


# The c10d client retrying to reach the store, in libtorch_cpu's words (torch/csrc/distributed/c10d/
# socket.cpp: 'The client socket has failed to connect to {} {}.' with '[host]:port' and '(errno: 110 -
# Connection timed out)', '... failed to connect to any network address of ({}, {}).', and at trace level
# (TORCH_DISTRIBUTED_DEBUG=DETAIL) 'The server socket on {} is not yet listening (errno: 111 - Connection
# refused), will retry.'; TCPStore.cpp: 'TCP client failed to connect/validate to host {}:{} - retrying
# (try={}, timeout={}ms, delay={}ms): {}'): a warning while the master starts, until the client's timeout
# ('has timed out after', above). A log that ends on it was still waiting for the rendezvous
# (detect/quiet_end.py).
_RETRY = compile_later(r"(?:failed to connect to (?:any network address of )?|server socket on |to host )"
                       r"(\(.*?\)|\S+?)\.?(?: is not yet listening)?(?: \(errno: (-?\d+) - ([^)]*)\)|(?: - retrying \(.*?\))?: (.+?))?[.,]?(?: will retry\.)?\s*$")


@on("The client socket has failed to connect to ", "is not yet listening (errno: ")
def connect_retry(line: Line, st: StreamState):
    m = _RETRY.search(line.text)
    if m is None:
        return None
    peer = m.group(1).strip("()").replace(", ", ":").replace("[", "").replace("]", "").removeprefix("::ffff:")
    return line.event("connect_retry", step=st.step_of(line.rank), peer=peer or None,
                      errno=int(m.group(2)) if m.group(2) else None, reason=m.group(3) or m.group(4))


# The c10d store's connection broke (torch/csrc/distributed/c10d/Utils.hpp: tcputil recvBytes / sendBytes
# 'Failed to recv, got 0 bytes. Connection was likely closed. Did the remote server shutdown or crash?',
# or strerror: 'Connection reset by peer', 'Broken pipe'; TCPStore.cpp wraps it as 'recvValue failed on
# SocketImpl(fd=N, addr=[a]:p, remote=[host]:port): ...'): the TCPStore server is rank 0's process
# (init_method env://, MASTER_ADDR:MASTER_PORT) or torchrun's agent on the rendezvous node, so that
# process went away (crashed, killed) and every other rank that touches the store next says so; the
# cause is in that process's own log. A timeout ('Socket Timeout') is a wait, not this.
_STORE_DROPPED = compile_later(r"Connection reset by peer|Failed to recv, got 0 bytes|Failed to send, sent 0 bytes|"
                               r"Broken pipe|Connection was likely closed")
_RAISED = compile_later(r"\w(?:Error|Exception): ")
_STORE_REMOTE = compile_later(r"remote=\[?([^\]\s,)]+)\]?:\d+")


@on("recvValue failed on", "recvValueWithTimeout failed on", "sendBytes failed on", "Failed to recv, got 0 bytes",
    "Failed to send, sent 0 bytes", "DistNetworkError: ")
def store_connection_lost(line: Line, st: StreamState):
    t = line.text
    if not _RAISED.search(t):
        return None           # a warning quoting it (the heartbeat monitor's 'should dump' check at a normal end)
    if "DistNetworkError: " in t and not ("recvValue" in t or "sendBytes" in t or "0 bytes" in t):
        # torch < 2.4: the bare strerror of the store's socket
        if not t.rstrip().endswith(("DistNetworkError: Connection reset by peer", "DistNetworkError: Broken pipe")):
            return None
    elif not _STORE_DROPPED.search(t):
        return None
    return store_lost(line, st)


def store_lost(line: Line, st: StreamState, rank: int | None = None):
    st.scratch["rdzv.store_lost"] = True
    if not st.once(("store_lost", line.rank if rank is None else rank)):
        return None
    m = _STORE_REMOTE.search(line.text)
    return line.event("nccl_error", step=st.step_of(line.rank), rank=rank, error="rendezvous", cause="rendezvous",
                      rdzv="store_lost", peer=m.group(1) if m else None, detail=line.text.strip()[:300])


# ---------------------------------------------------------------- NCCL's own lines (src/debug.cc)
# "{host}:{pid}:{tid} [{dev}] {file}:{line} NCCL WARN {msg}" (2.26+: "[{date time}] " before; 2.30: "({func}) ")
_NCCL_LINE = compile_later(r"(?:(\S+?):(\d+):(\d+) )?\[(\d+)\] (?:(\S+):(\d+) )?(?:\(\w+\) )?NCCL (WARN|INFO) (.*)$")
_PEER = compile_later(r"(\d{1,3}(?:\.\d{1,3}){3}|\[[0-9a-fA-F:]+\])(?:<(\d+)>|:(\d+))?")


def _peer(msg: str, cause: str | None) -> str | None:
    """The address an NCCL warning of a connection, a peer's exit, an IB completion or a size mismatch names."""
    p = _PEER.search(msg) if cause in ("connection_refused", "remote_exit", "ib", "mismatch") else None
    return p.group(1) if p else None


# NCCL's socket connect failing with any errno (src/misc/socket.cc: 'Connect to {addr} failed : {strerror}',
# 2.16-2.23 'socketStartConnect: Connect to ...', 2.27+ '{func}: connect to {addr} failed : {strerror}'):
# Connection refused, Connection timed out, No route to host, Network is unreachable, Software caused
# connection abort all say the peer could not be reached
_CONNECT_FAILED = compile_later(r"[Cc]onnect to \S+ failed : ")


def warn_cause(msg: str) -> str | None:
    """What an NCCL WARN (or a gloo/socket message) says the cause is."""
    m = msg
    if "Duplicate GPU detected" in m:
        return "duplicate_gpu"          # nccl src/init.cc: two ranks of one communicator on one device
    if "shared memory" in m or "/dev/shm" in m:
        return "shm"
    if _NO_INTERFACE.search(m):
        return "interface"
    if "Connection refused" in m or "exceeded error retry count" in m or "No route to host" in m or _CONNECT_FAILED.search(m):
        return "connection_refused"
    if "message truncated" in m:
        return "mismatch"
    if ("NET/IB" in m or "ibv_" in m) and any(k in m for k in ("completion", "async", "rror", "failed")) \
            and not _IB_BENIGN_EVENT.search(m):
        return "ib"
    if "closed by remote peer" in m or "Connection reset by peer" in m or "Call to recv" in m:
        return "remote_exit"
    if "Cuda failure" in m or "CUDA failure" in m or "cudaError" in m:
        # the CUDA error NCCL quotes (cudaGetErrorString) names a build or a driver, not a GPU fault,
        # or the GPUs' peer-to-peer path (cudaErrorPeerAccessUnsupported / ...NotEnabled from NCCL's P2P
        # transport, src/transport/p2p.cc): no fault of a GPU either
        if _CUDA_PEER.search(m):
            return "p2p"
        return "cuda_env" if _CUDA_ENV.search(m) else "cuda"
    return None


_CUDA_PEER = compile_later(r"peer access is not supported between these two devices|peer access has not been enabled|"
                           r"cudaErrorPeerAccess")
_CUDA_ENV = compile_later(r"no kernel image is available|driver version is insufficient|"
                          r"forward compatibility was attempted|cudaErrorNoKernelImageForDevice|cudaErrorInsufficientDriver")


# NCCL transport/net_ib.cc ncclIbAsyncThreadMain warns every async event but COMM_EST ('NET/IB :
# {dev}:{port} Got async event : {ibv_event_type_str}'); the informational ones (rdma-core
# libibverbs/verbs.c ibv_event_type_str: a port coming up, an SM/LID/P_Key/GID change, a client
# re-registration) are no fault
_IB_BENIGN_EVENT = compile_later(r"async event : (?:port active|LID change|P_Key change|SM change|"
                                 r"client reregistration|GID table change|communication established)")


# torch (1.13+) repeats NCCL's last warning after 'NCCL error in: ...' (NCCLUtils.cpp
# getNcclErrorDetailStr: '\nLast error:\n' + ncclGetLastError()), on its own line without the
# 'NCCL WARN' head. The warnings that name their cause are read here as the warning they are:
# no network interface to bootstrap / talk over (NCCL_SOCKET_IFNAME names one that does not exist
# or filters all out; nccl src/bootstrap.cc: bootstrapNetInit 'Bootstrap : no socket interface
# found', src/transport/net_socket.cc: ncclNetSocketInit 'NET/Socket : no interface found'), and
# two ranks of one communicator on one GPU (src/init.cc 'Duplicate GPU detected : rank %d and rank
# %d both on CUDA device %lx'), and a verbs call of the InfiniBand transport that failed (libnccl's
# 'Call to ibv_reg_mr failed with error %s', 'Call to ibv_create_cq failed with error %s', ...).
_NO_INTERFACE = compile_later(r"(?i)no socket interface found|NET/Socket : no interface found|"
                           r"no usable listening interface found")


_HEADLESS_LITERALS = ("no socket interface found", "no interface found", "o usable listening interface found",
                     "Duplicate GPU detected : rank ", "Call to ibv_")


@on(*_HEADLESS_LITERALS)
def headless_warn(line: Line, st: StreamState):
    t = line.text
    if "NCCL WARN " in t:
        return None                     # an NCCL WARN line: nccl_warn reads it
    cause = "duplicate_gpu" if "Duplicate GPU detected" in t else "interface" if _NO_INTERFACE.search(t) else \
        "ib" if t.lstrip().startswith("Call to ibv_") and " failed" in t else None
    if cause is None:
        return None
    return line.event("nccl_warn", step=st.step_of(line.rank), msg=t.strip()[-200:], cause=cause,
                      peer=None, host=line.host, pid=None, device=None)


# The rest of NCCL's last warnings in that 'Last error:' line (whatever function printed them: a
# socket connect, a recv, an IB completion, a CUDA call, the shm segment): the line right after a
# line that is 'Last error:' alone, handed over by any lowercase letter (not chained), read as the
# WARN it repeats when warn_cause knows its cause. The ones headless_warn reads by their own
# literals, and an NCCL WARN line itself, are left to those.
_READ_ELSEWHERE = ("NCCL WARN ", *_HEADLESS_LITERALS)


@on("Last error:", continuation=tuple("abcdefghijklmnopqrstuvwxyz"), chain=False)
def last_error(line: Line, st: StreamState):
    t = line.text.strip()
    if t == "Last error:":
        st.scratch["nccl.last_error"] = line.lineno
        return None
    if not armed_within(st.scratch.get("nccl.last_error"), line, 1) or any(k in t for k in _READ_ELSEWHERE):
        return None
    cause = warn_cause(t)
    if cause is None:
        return None
    return line.event("nccl_warn", step=st.step_of(line.rank), msg=t[-200:], cause=cause,
                      peer=_peer(t, cause), host=line.host, pid=None, device=None)


@on("NCCL WARN ")
def nccl_warn(line: Line, st: StreamState):
    m = _NCCL_LINE.search(line.text)
    msg = m.group(8) if m else line.text.split("NCCL WARN ", 1)[1]
    cause = warn_cause(msg)
    return line.event("nccl_warn", step=st.step_of(line.rank), msg=msg.strip(), cause=cause, peer=_peer(msg, cause),
                      host=(m.group(1) if m else None) or line.host, pid=_int(m.group(2)) if m else None,
                      device=_int(m.group(4)) if m else None)


_TRANSPORT = compile_later(r"Using network (\S+)|NET/(Socket|IB) : Using|NET/IB : No device found")


@on("Using network ", "NET/Socket : Using", "NET/IB : Using", "NET/IB : No device found")
def nccl_transport(line: Line, st: StreamState):
    if "NCCL INFO" not in line.text and "NCCL WARN" not in line.text:
        return None
    m = _TRANSPORT.search(line.text)
    if not m:
        return None
    if "No device found" in line.text:
        return line.event("nccl_transport", transport="Socket", detail="ib_not_found",
                          host=_host_of(line))
    transport = m.group(1) or m.group(2)
    iface, addr = _first_interface(line.text) if m.group(2) == "Socket" else (None, None)
    return line.event("nccl_transport", transport=transport, detail=None, host=_host_of(line),
                      iface=iface, addr=addr)


# The interface and address NCCL's sockets use ('NET/Socket : Using [0]eth0:10.0.0.1<0> [1]...', bootstrap.cc's
# 'Bootstrap : Using eth0:10.0.0.1<0>'): a Docker bridge, or one address on two hosts, cannot join the nodes.
_IFACE = compile_later(r"Using\s+(?:\[\d+\])?([A-Za-z][\w.\-@]*):([0-9A-Fa-f.:%\w]+?)<\d+>")


def _first_interface(text: str) -> tuple[str | None, str | None]:
    m = _IFACE.search(text)
    return (m.group(1), m.group(2)) if m else (None, None)


@on("Bootstrap : Using")
def nccl_bootstrap_interface(line: Line, st: StreamState):
    if "NCCL INFO" not in line.text:
        return None
    iface, addr = _first_interface(line.text)
    if iface is None:
        return None
    return line.event("nccl_transport", transport=None, detail="bootstrap", host=_host_of(line), iface=iface, addr=addr)


# Signs that the job spans nodes, which one node's log can show even when the other nodes' lines are
# elsewhere: a channel through the network transport (NCCL src/transport.cc, 'Channel 00/0 : 0[0] -> 8[0]
# [send] via NET/Socket/0') and the communicator's node count (NCCL 2.19+ src/init.cc, 'comm 0x.. rank 0
# nRanks 16 nNodes 2 localRanks 8 localRank 0 MNNVL 0').
_NET_CHANNEL = compile_later(r"via NET/(Socket|IB)")
_NNODES = compile_later(r"nRanks \d+ nNodes (\d+)")


@on("via NET/", "nNodes ")
def nccl_span(line: Line, st: StreamState):
    if "NCCL INFO" not in line.text:
        return None
    m = _NET_CHANNEL.search(line.text)
    if m and st.once(("nccl-net-channel", m.group(1))):
        return line.event("nccl_transport", transport=m.group(1), detail="channel", host=_host_of(line))
    n = _NNODES.search(line.text)
    if n and int(n.group(1)) > 1 and st.once(("nccl-nnodes",)):
        return line.event("nccl_transport", transport=None, detail="nodes", nodes=int(n.group(1)),
                          host=_host_of(line))
    return None


# NCCL's version banner, printed once per process at communicator init (NCCL src/init.cc showVersion:
# INFO 'NCCL version %d.%d.%d%s+cuda%d.%d'; rank 0 prints it with NCCL_DEBUG=VERSION too, without the
# INFO head). The '+cuda' part sets it apart from torch's 'NCCL error in: ..., NCCL version 2.21.5', which
# names the NCCL torch was linked with, not the one a peer runs.
_NCCL_BANNER = compile_later(r"NCCL version (\d+\.\d+\.\d+)[\w.-]*\+cuda(\d+\.\d+)")


@on("NCCL version ")
def nccl_version(line: Line, st: StreamState):
    m = _NCCL_BANNER.search(line.text)
    if not m:
        return None
    host = _host_of(line)
    if not st.once(("nccl-version", m.group(1), host, line.rank)):
        return None
    return line.event("nccl_version", version=m.group(1), cuda=m.group(2), host=host)


# NCCL's communicator set-up with NCCL_DEBUG=INFO (src/init.cc: 'ncclCommInitRank comm {p} rank {r} nranks {n}
# cudaDev {d} nvmlDev {d} busId {id} commId 0x{id} - Init START' and '... - Init COMPLETE', 2.23+ '{func} comm
# ...'), and between them the channels it connects (src/transport.cc: 'Channel {c}/{n} : {r}[{d}] -> {p}[{d}]
# via P2P/IPC', 'via SHM/direct/direct', 'via NET/Socket/0'). A log that stops after a START or a channel line
# of a process with no COMPLETE of that process stopped while the ranks were connecting (detect/quiet_end.py).
_VIA = compile_later(r"via (P2P|SHM|NET/\w+|CollNet\w*)")


@on("- Init START", "- Init COMPLETE", "via P2P/", "via SHM/", "via NET/")
def nccl_init(line: Line, st: StreamState):
    t = line.text
    if "NCCL INFO" not in t:
        return None
    m = _NCCL_LINE.search(t)
    proc = f"{m.group(1) or line.host or ''}:{m.group(2)}" if m and m.group(2) else None
    if "Init COMPLETE" in t:
        return line.event("nccl_init", state="complete", via=None, proc=proc)
    if "Init START" in t:
        return line.event("nccl_init", state="start", via=None, proc=proc)
    v = _VIA.search(t)
    if v is None or not st.once(("nccl-channel", proc, v.group(1))):
        return None           # one event per process and transport: a job prints hundreds of channel lines
    return line.event("nccl_init", state="channel", via=v.group(1), proc=proc)


def _host_of(line: Line) -> str | None:
    m = _NCCL_LINE.search(line.text)
    return (m.group(1) if m and m.group(1) else None) or line.host


# ---------------------------------------------------------------- gloo
_GLOO_TIMEOUT = compile_later(r"Timed out waiting (\d+)ms for (recv|send) operation to complete")


@on("for recv operation to complete", "for send operation to complete")
def gloo_timeout(line: Line, st: StreamState):
    m = _GLOO_TIMEOUT.search(line.text)
    if not m:
        return None
    return line.event("collective_timeout", step=st.step_of(line.rank), backend="gloo", op=m.group(2).upper(),
                      timeout_ms=int(m.group(1)), elapsed_ms=None, seq=None, numel_in=None, numel_out=None,
                      pg=None, blocking=False)


_GLOO_PEER = compile_later(r"(?:peer|Read error|Write timeout|Read timeout|Socket closed|writev)\s+\[?([0-9a-fA-F.:]+?)\]?:(\d+)")


@on("Connection closed by peer", "Application timeout caused pair closure", "Gloo connectFullMesh failed",
    "Socket unexpectedly closed", "Read error [", "writev [")
def gloo_error(line: Line, st: StreamState):
    t = line.text
    if "Application timeout caused pair closure" in t:
        cause = "timeout_secondary"          # other pairs closed after a timeout: never the root cause
    elif "connectFullMesh failed" in t:
        cause = "connect"
    else:
        cause = "remote_exit"
    m = _GLOO_PEER.search(t)
    return line.event("gloo_error", step=st.step_of(line.rank), msg=t.strip()[:300], cause=cause,
                      peer=m.group(1) if m else None)


# ---------------------------------------------------------------- stack dumps (py-spy, faulthandler)
# py-spy:        'Thread 688510 (active): "MainThread"' then '    broadcast (torch/distributed/distributed_c10d.py:1191)'
# faulthandler:  'Thread 0x00007f... (most recent call first):' then '  File "/x/distributed_c10d.py", line 1191 in broadcast'
_PYSPY_HEAD = compile_later(r"^\s*Thread (\d+|0x[0-9a-f]+) \((?:active|idle)[^)]*\)(?::\s*\"([^\"]*)\")?")
_FH_HEAD = compile_later(r"^\s*(?:Current thread|Thread) (0x[0-9a-f]+) \(most recent call first\):")
_PYSPY_FRAME = compile_later(r"^\s*([\w<>.]+) \(([^():]+\.py):\d+\)\s*$")      # (indentation lost in a paste)
_FH_FRAME = compile_later(r'^\s*File "([^"]+)", line \d+ in ([\w<>.]+)\s*$')


# py-spy's head of each process it dumps (src/dump.rs print_traces: 'Process {pid}: {cmdline}' then 'Python
# v{version} ({executable})'): the launcher's '--local_rank=N' (DeepSpeed, torch.distributed.launch) in the command
# line names the rank of the threads below it
_PYSPY_PROCESS = compile_later(r"^\s*Process \d+: \S*python\S*\s.*?--local[_-]rank[= ](\d+)")


@on("--local_rank", "--local-rank")
def pyspy_process(line: Line, st: StreamState):
    m = _PYSPY_PROCESS.match(line.text)
    if m:
        st.scratch["stack.rank"] = int(m.group(1))
    return None


# torch.save / torch.load (torch/serialization.py) and DeepSpeed's checkpoint engines writing a file: a
# dumped main thread there is a rank in checkpoint I/O, which the ranks waiting in a collective wait for
_CHECKPOINT_IO = ("torch/serialization.py", "/checkpoint_engine/")


@on(" (active", " (idle)", "(most recent call first):")
def stack_header(line: Line, st: StreamState):
    m = _PYSPY_HEAD.match(line.text)
    if m:
        name = m.group(2)
        cur = st.scratch.get("stack.cur")
        main = name is None or name == "MainThread"
        # py-spy dumps pasted with several headers stacked over one shared frame list
        if main and isinstance(cur, dict) and cur["main"] and not cur["done"]:
            cur["threads"].append(m.group(1))
        else:
            st.scratch["stack.cur"] = {"threads": [m.group(1)], "main": main, "done": False}
        return None
    m = _FH_HEAD.match(line.text)
    if m:
        st.scratch["stack.cur"] = {"threads": [m.group(1)], "main": True, "done": False}
    return None


@on("distributed_c10d.py", "torch/utils/data/", "deepspeed/comm/", *_CHECKPOINT_IO)
def stack_frame(line: Line, st: StreamState):
    cur = st.scratch.get("stack.cur")
    m = _PYSPY_FRAME.match(line.text)
    if cur is None and m:
        # a py-spy dump pasted without its 'Thread N (active)' head: its 'func (file.py:N)' frame
        # lines are py-spy's own format, which nothing else prints
        cur = st.scratch["stack.cur"] = {"threads": ["?"], "main": True, "done": False}
    if not isinstance(cur, dict) or cur["done"] or not cur["main"]:
        return None
    if m:
        func, path = m.group(1), m.group(2)
    else:
        m = _FH_FRAME.match(line.text)
        if not m:
            return None           # a Python traceback frame ('line N, in f'): not a dump
        path, func = m.group(1), m.group(2)
    where = wait_site(path, func) or ("checkpoint" if any(p in path for p in _CHECKPOINT_IO) else None)
    if where is None:
        return None
    op = func if where == "collective" else None
    cur["done"] = True          # the innermost classified frame says where the thread waits
    rank = line.rank if line.rank is not None else st.scratch.get("stack.rank")
    return [line.event("stack", rank=rank, thread=th, where=where, func=func, file=path, op=op)
            for th in cur["threads"]]
