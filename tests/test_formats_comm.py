"""Communication, host-memory and hardware messages: the recognisers (every wording of
torch c10d, NCCL, gloo and launcher message formats), the comm detector, and the root-cause order across ranks.
Log lines are written from the catalogue's templates and the installed torch sources; no DeepSpeed run."""
from __future__ import annotations


import pytest

from dsdoctor.context import Context
from dsdoctor.pipeline import Diagnoser
from dsdoctor.rules import RuleSet
from dsdoctor.sources.logs import events_from_text

RULES = RuleSet.load()


def events(text: str, kind: str | None = None):
    evs = events_from_text(text)
    return [e for e in evs if kind is None or e.kind == kind]


def one(text: str, kind: str):
    evs = events(text, kind)
    assert len(evs) == 1, [(e.kind, e.data) for e in events(text)]
    return evs[0]


def findings(text: str, **ctx):
    d = Diagnoser(Context.from_config(None, **ctx), RULES)
    d.feed_all(events_from_text(text))
    return d.finish()


# ---------------------------------------------------------------- collective timeouts (§2.2)
TIMEOUTS = {
    "1.8-1.10": ("[E ProcessGroupNCCL.cpp:566] [Rank 5] Watchdog caught collective operation timeout: "
                 "WorkNCCL(OpType=ALLREDUCE, TensorShape=[1024, 1024], Timeout(ms)=1800000) ran for 1800563 milliseconds before timing out.",
                 dict(rank=5, op="ALLREDUCE", seq=None, timeout_ms=1800000, elapsed_ms=1800563, shape="[1024, 1024]")),
    "1.11-2.0": ("[E ProcessGroupNCCL.cpp:737] [Rank 2] Watchdog caught collective operation timeout: "
                 "WorkNCCL(SeqNum=41, OpType=BROADCAST, TensorShape=[1], Timeout(ms)=600000) ran for 600311 milliseconds before timing out.",
                 dict(rank=2, op="BROADCAST", seq=41, timeout_ms=600000, elapsed_ms=600311)),
    "2.1-2.3 rank prefix": ("[rank1]:[E ProcessGroupNCCL.cpp:523] [Rank 1] Watchdog caught collective operation timeout: "
                            "WorkNCCL(SeqNum=1235, OpType=_ALLGATHER_BASE, NumelIn=4096, NumelOut=32768, Timeout(ms)=1800000) ran for 1800174 milliseconds before timing out.",
                            dict(rank=1, op="_ALLGATHER_BASE", seq=1235, numel_in=4096, numel_out=32768)),
    "2.4 PG desc": ("[rank3]:[E1015 06:12:31.462585216 ProcessGroupNCCL.cpp:607] [PG 0 (default_pg) Rank 3] Watchdog caught collective operation timeout: "
                    "WorkNCCL(SeqNum=7, OpType=ALLREDUCE, NumelIn=1, NumelOut=1, Timeout(ms)=600000) ran for 600012 milliseconds before timing out.",
                    dict(rank=3, seq=7, pg="0(default_pg)")),
    "2.5+ PG GUID": ("[rank6]:[E1015 06:12:31.462585216 ProcessGroupNCCL.cpp:616] [PG ID 0 PG GUID 0(default_pg) Rank 6] Watchdog caught collective operation timeout: "
                     "WorkNCCL(SeqNum=88, OpType=REDUCE_SCATTER, NumelIn=8, NumelOut=1, Timeout(ms)=600000) ran for 600088 milliseconds before timing out.",
                     dict(rank=6, seq=88, op="REDUCE_SCATTER", pg="0(default_pg)")),
    "2.5+ PG without desc, no rank prefix": ("[PG ID 1 PG GUID 1 Rank 9] Watchdog caught collective operation timeout: "
                                             "WorkNCCL(SeqNum=3, OpType=ALLREDUCE, NumelIn=2, NumelOut=2, Timeout(ms)=60000) ran for 60001 milliseconds before timing out.",
                                             dict(rank=9, seq=3, pg="1")),
    "blocking 1.8-2.0": ("[Rank 4] Caught collective operation timeout: WorkNCCL(SeqNum=12, OpType=BARRIER, Timeout(ms)=600000) ran for 600100 milliseconds before timing out.",
                         dict(rank=4, op="BARRIER", seq=12, blocking=True)),
    "blocking wait()": ("[Rank 4] Work WorkNCCL(SeqNum=12, OpType=BARRIER, Timeout(ms)=600000) timed out in call to wait().",
                        dict(rank=4, seq=12, blocking=True)),
    "blocking 2.2-2.5": ("[PG 0 Rank 4] Work WorkNCCL(SeqNum=12, OpType=BARRIER, NumelIn=1, NumelOut=1, Timeout(ms)=600000) timed out in blocking wait (TORCH_NCCL_BLOCKING_WAIT=1).",
                         dict(rank=4, seq=12, blocking=True)),
    "blocking 2.6+": ("[PG ID 0 PG GUID 0(default_pg) Rank 4] Work WorkNCCL(SeqNum=12, OpType=BARRIER, NumelIn=1, NumelOut=1, Timeout(ms)=600000) timed out in blocking wait.",
                      dict(rank=4, seq=12, blocking=True)),
}


@pytest.mark.parametrize("name", sorted(TIMEOUTS))
def test_collective_timeout_wordings(name):
    text, want = TIMEOUTS[name]
    ev = one(text, "collective_timeout")
    got = {"rank": ev.rank, **ev.data}
    for k, v in want.items():
        assert got.get(k) == v, (k, got)


def test_timeout_repeated_by_watchdog_exit_counts_once():
    line = ("[rank0]:[E ProcessGroupNCCL.cpp:523] [Rank 0] Watchdog caught collective operation timeout: "
            "WorkNCCL(SeqNum=5, OpType=ALLREDUCE, NumelIn=1, NumelOut=1, Timeout(ms)=600000) ran for 600001 milliseconds before timing out.")
    text = line + "\n" + "[rank0]:[E ProcessGroupNCCL.cpp:1182] [PG 0 Rank 0] Process group watchdog thread terminated with exception: " + \
        line.split("] ", 2)[2] + "\n"
    assert len(events(text, "collective_timeout")) == 1


WATCHDOG = {
    "2.6+": "[rank2]:[E1015 06:12:31.462585216 ProcessGroupNCCL.cpp:1595] [PG ID 0 PG GUID 0(default_pg) Rank 2]  failure detected by watchdog at work sequence id: 1235 PG status: last enqueued work: 1235, last completed work: 1234",
    "2.3-2.5 timeout": "[rank2]:[E ProcessGroupNCCL.cpp:565] [PG 0 Rank 2] Timeout at NCCL work: 1235, last enqueued NCCL work: 1235, last completed NCCL work: 1234.",
    "2.4-2.5 exception": "[rank2]:[E ProcessGroupNCCL.cpp:1316] [PG 0 (default_pg) Rank 2] Exception (either an error or timeout) detected by watchdog at work: 1235, last enqueued NCCL work: 1235, last completed NCCL work: 1234.",
}


@pytest.mark.parametrize("name", sorted(WATCHDOG))
def test_watchdog_state_wordings(name):
    ev = one(WATCHDOG[name], "watchdog_state")
    assert (ev.rank, ev.data["seq"], ev.data["last_enqueued"], ev.data["last_completed"]) == (2, 1235, 1235, 1234)


def test_dump_signal_line_has_work_status():
    ev = one("[rank1]:[E ProcessGroupNCCL.cpp:1400] [PG ID 0 PG GUID 0 Rank 1] Received a dump signal due to a collective timeout from this local rank "
             "and we will try our best to dump the debug info. Last enqueued NCCL work: 40, last completed NCCL work: 39.This is most likely caused by "
             "incorrect usages of collectives", "watchdog_state")
    assert (ev.rank, ev.data["seq"], ev.data["last_enqueued"], ev.data["last_completed"]) == (1, None, 40, 39)


def test_desync_report_lines():
    text = ("[rank0]:\t - To our best knowledge, ranks [3, 5] are the lagging ranks that caused this timeout. They never joined any collectives\n"
            "[rank0]:\t   - [0, 1, 2] joined but didn't finish collective #12 (count from 1)\n"
            "[rank0]:\t     [4] finished collective #12, but didn't join collective #13 (count from 1)\n")
    evs = events(text, "desync_report")
    assert [(e.data["lagging"], e.data["detail"]) for e in evs] == [
        ([3, 5], "never_joined"), ([0, 1, 2], "not_finished"), ([4], "not_joined_next")]


@pytest.mark.parametrize("text", [
    "[Rank 0] NCCL monitor thread timeout. Basically, this could be due to CUDA or NCCL calls being unexpectedly blocking",
    "[rank0]:[E ProcessGroupNCCL.cpp:1200] [PG 0 Rank 0] Heartbeat monitor timed out! Process will be terminated after dumping debug info.",
    "[rank0]:[E ProcessGroupNCCL.cpp:1375] [PG ID 0 PG GUID 0(default_pg) Rank 0] ProcessGroupNCCL's watchdog got stuck for 480 seconds without making progress in monitoring enqueued collectives.",
])
def test_heartbeat_monitor_is_a_watchdog_hang(text):
    fs = findings(text)
    assert fs[0].rule == "comm-watchdog-hang"


# ---------------------------------------------------------------- comm detector across ranks
def _timeout(rank: int, seq: int, numel: int = 1024, op: str = "ALLREDUCE") -> str:
    return (f"[rank{rank}]:[E1015 06:12:31.462585216 ProcessGroupNCCL.cpp:616] [PG ID 0 PG GUID 0(default_pg) Rank {rank}] "
            f"Watchdog caught collective operation timeout: WorkNCCL(SeqNum={seq}, OpType={op}, NumelIn={numel}, NumelOut={numel}, "
            f"Timeout(ms)=600000) ran for 600088 milliseconds before timing out.\n")


def test_suspect_rank_named_from_differing_seqnums():
    text = "".join(_timeout(r, 1235 if r != 5 else 1234) for r in range(8))
    f = findings(text)[0]
    assert f.rule == "comm-timeout-desync"
    assert "rank(s) 5 fell behind" in f.title
    assert "SeqNum 1234 on rank 5" in f.summary


def test_suspect_rank_from_last_enqueued():
    text = "".join(
        f"[rank{r}]:[E ProcessGroupNCCL.cpp:1595] [PG ID 0 PG GUID 0(default_pg) Rank {r}]  failure detected by watchdog at work "
        f"sequence id: {20 if r != 1 else 19} PG status: last enqueued work: {20 if r != 1 else 19}, last completed work: 19\n"
        for r in range(4))
    f = findings(text)[0]
    assert f.rule == "comm-timeout-desync" and "rank(s) 1 fell behind" in f.title


def test_silent_rank_named_with_world_size():
    text = "".join(_timeout(r, 50) for r in (0, 1, 2, 4, 5, 6, 7))
    f = findings(text, world_size=8)[0]
    assert f.rule == "comm-timeout-silent-rank" and "rank(s) 3 never reached" in f.title
    # without the world size, a hole in the ranks seen says the same
    assert findings(text)[0].rule == "comm-timeout-silent-rank"


def test_512_ranks_same_timeout_is_one_finding():
    text = "".join(_timeout(r, 900) for r in range(512))
    fs = findings(text)
    assert len(fs) == 1
    f = fs[0]
    assert f.rule == "comm-timeout-all-stuck"
    assert f.ranks_text == "0-511"
    assert len(f.evidence) <= 8


def test_numel_mismatch():
    text = _timeout(0, 88, 4096) + _timeout(1, 88, 2048)
    assert findings(text)[0].rule == "comm-timeout-numel-mismatch"


def test_a_rank_at_another_collective_with_the_same_seqnum_took_another_path():
    # part AV: rank 3's shard ran out first and it went on to the end-of-epoch barrier: the same SeqNum,
    # another OpType (not a size mismatch of one collective)
    text = "".join(_timeout(r, 3001, 134217728) for r in range(3)) + _timeout(3, 3001, 1, "BARRIER")
    f = findings(text)[0]
    assert f.rule == "comm-timeout-other-collective"
    assert "rank(s) 3 called BARRIER #3001 where the others called ALLREDUCE" in f.title
    # two ranks, one on each side: which one left the loop is not told; still not a size mismatch
    two = _timeout(0, 40, 4096) + _timeout(1, 40, 1, "BARRIER")
    assert findings(two)[0].rule == "comm-timeout-other-collective"


def test_peer_access_refused_is_the_p2p_transport_not_a_gpu_fault():
    text = ("box:4411:4490 [0] transport/p2p.cc:275 NCCL WARN Cuda failure 'peer access is not supported between "
            "these two devices'\n"
            "[rank0]: torch.distributed.DistBackendError: NCCL error in: ../torch/csrc/distributed/c10d/"
            "ProcessGroupNCCL.cpp:1970, unhandled cuda error (run with NCCL_DEBUG=INFO for details), NCCL version 2.20.5\n"
            "[rank0]: ncclUnhandledCudaError: Call to CUDA function failed.\n")
    f = findings(text)[0]
    assert f.rule == "nccl-error-p2p" and f.fixes[0].env == {"NCCL_P2P_DISABLE": "1"}


def test_an_internal_error_is_not_called_a_programming_error():
    text = ("RuntimeError: NCCL error in: ../torch/csrc/distributed/c10d/ProcessGroupNCCL.cpp:1191, internal error, "
            "NCCL version 2.10.3\nncclInternalError: Internal check failed. This is either a bug in NCCL or due to memory "
            "corruption\n")
    f = findings(text)[0]
    assert f.rule == "nccl-error-invalid-usage" and "inside NCCL" in f.title and "programming" not in f.title


def test_desync_report_names_lagging_ranks():
    text = _timeout(0, 12) + "[rank0]:\t - To our best knowledge, ranks [3] are the lagging ranks that caused this timeout. They never joined any collectives\n"
    f = findings(text)[0]
    assert f.rule == "comm-timeout-desync-report" and "rank(s) 3" in f.title


def test_oom_on_rank3_comes_before_timeouts_on_the_others():
    text = "".join(_timeout(r, 77) for r in (0, 1, 2))
    text += ("[rank3]:Traceback (most recent call last):\n"
             '[rank3]:  File "/x/deepspeed/runtime/engine.py", line 1976, in backward\n'
             "[rank3]:    self.optimizer.backward(loss, retain_graph=retain_graph)\n"
             "[rank3]:torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 3.91 GiB. GPU 3 has a total capacity of 79.25 GiB "
             "of which 1.02 GiB is free. Of the allocated memory 75.12 GiB is allocated by PyTorch, and 1.55 GiB is reserved by PyTorch but unallocated.\n")
    text += "".join(_timeout(r, 77) for r in (4, 5, 6, 7))
    fs = findings(text)
    assert fs[0].category == "oom" and fs[0].ranks == [3]
    comm = [f for f in fs if f.category == "comm_stall"]
    assert comm and comm[0].consequence_of == fs[0].rule
    assert "3" in comm[0].title          # and the timeout finding names rank 3 as the one that never arrived


def test_killed_rank_explains_timeouts_and_closed_connections():
    text = ("[rank0]:RuntimeError: [../third_party/gloo/gloo/transport/tcp/unbound_buffer.cc:81] Timed out waiting 1800000ms for recv operation to complete\n"
            "[rank1]:RuntimeError: [../third_party/gloo/gloo/transport/tcp/pair.cc:534] Connection closed by peer [10.0.0.2]:14522\n"
            "[2024-05-01 10:00:00,001] [ERROR] [launch.py:322:sigkill_handler] ['/usr/bin/python', '-u', 'train.py', '--local_rank=2'] exits with return code = -9\n")
    fs = findings(text)
    assert fs[0].category == "host_oom" and fs[0].rule == "host-oom-killed"
    rest = {f.rule: f.consequence_of for f in fs[1:]}
    assert rest == {"comm-timeout": "host-oom-killed", "gloo-connection-closed": "host-oom-killed"}


def test_comm_rules_never_explain_memory_or_hardware():
    for r in RULES.rules:
        if r.category in ("comm_stall", "nccl_error", "straggler"):
            assert not set(r.explains) & {"oom", "host_oom", "hardware"}, r.id


# ---------------------------------------------------------------- NCCL errors (§2.7, §3)
@pytest.mark.parametrize("text,error,version", [
    ("RuntimeError: NCCL error in: /pytorch/torch/lib/c10d/ProcessGroupNCCL.cpp:825, unhandled system error, NCCL version 2.7.8",
     "unhandled system error", "2.7.8"),
    ("torch.distributed.DistBackendError: NCCL error in: ../torch/csrc/distributed/c10d/NCCLUtils.hpp:275, unhandled cuda error (run with NCCL_DEBUG=INFO for details), NCCL version 2.19.3",
     "unhandled cuda error", "2.19.3"),
    ("[rank0]: torch.distributed.DistBackendError: NCCL error in: /pytorch/torch/csrc/distributed/c10d/ProcessGroupNCCL.cpp:3356, remote process exited or there was a network error, NCCL version 2.21.5",
     "remote process exited or there was a network error", "2.21.5"),
])
def test_nccl_error_line(text, error, version):
    ev = one(text, "nccl_error")
    assert (ev.data["error"], ev.data["nccl_version"]) == (error, version)


WARN_CAUSES = {
    "shm <=2.21": ("node1:1234:1290 [0] include/shm.h:28 NCCL WARN Error while creating shared memory segment /dev/shm/nccl-kF3Kqj (size 9637888)", "shm", None),
    "shm 2.26 timestamp": ("[2025-03-01 10:00:00] node1:1234:1290 [0] misc/shmutils.cc:89 NCCL WARN Error while creating shared memory segment /dev/shm/nccl-x (size 9637888), error: No space left on device (28)", "shm", None),
    "refused 2.7": ("r11i6n2:486514:486651 [1] include/socket.h:403 NCCL WARN Connect to 10.148.3.247<56821> failed : Connection refused", "connection_refused", "10.148.3.247"),
    "refused 2.16": ("node2:1:2 [3] misc/socket.cc:484 NCCL WARN socketStartConnect: Connect to 10.0.0.9<40211> failed : Connection refused", "connection_refused", "10.0.0.9"),
    "refused 2.27": ("node2:1:2 [3] misc/socket.cc:600 NCCL WARN socketPollConnect: connect to 10.0.0.9<40211> returned Connection refused, exceeded error retry count after 35 attempts", "connection_refused", "10.0.0.9"),
    "ib completion": ("gpu-60:1112:1250 [3] transport/net_ib.cc:1295 NCCL WARN NET/IB : Got completion from peer 10.1.2.3<43210> with error 12, opcode 32753, len 0, vendor err 129", "ib", "10.1.2.3"),
    "closed by peer": ("node3:1212:1300 [2] misc/socket.cc:538 NCCL WARN socketProgress: Connection closed by remote peer node4<48122>", "remote_exit", None),
    "truncated": ("node2:3345:3402 [0] include/socket.h:423 NCCL WARN NET/Socket : peer 10.0.0.3<51234> message truncated : receiving 1048576 bytes instead of 524288", "mismatch", "10.0.0.3"),
    "2.30 func": ("node2:1:2 [0] misc/socket.cc:600 (socketPollConnect) NCCL WARN connect to 10.0.0.9<40211> failed : Connection refused", "connection_refused", "10.0.0.9"),
}


@pytest.mark.parametrize("name", sorted(WARN_CAUSES))
def test_nccl_warn_cause(name):
    text, cause, peer = WARN_CAUSES[name]
    ev = one(text, "nccl_warn")
    assert (ev.data["cause"], ev.data["peer"]) == (cause, peer)


@pytest.mark.parametrize("warn,rule", [
    (WARN_CAUSES["shm 2.26 timestamp"][0], "nccl-error-shm"),
    (WARN_CAUSES["refused 2.16"][0], "nccl-error-connection-refused"),
    (WARN_CAUSES["ib completion"][0], "nccl-error-ib"),
    (WARN_CAUSES["closed by peer"][0], "nccl-error-remote-exit"),
])
def test_warn_line_gives_the_cause_of_the_error(warn, rule):
    text = ("torch.distributed.DistBackendError: NCCL error in: ../torch/csrc/distributed/c10d/ProcessGroupNCCL.cpp:1970, "
            "unhandled system error (run with NCCL_DEBUG=INFO for details), NCCL version 2.18.1\n"
            "ncclSystemError: System call (e.g. socket, malloc) or external library call failed or device error. \n" + warn + "\n")
    fs = findings(text)
    assert [f.rule for f in fs] == [rule]


def test_shm_warn_is_not_also_a_dataloader_shm_finding():
    fs = findings(WARN_CAUSES["shm 2.26 timestamp"][0])
    assert [f.rule for f in fs] == ["nccl-error-shm"]


def test_socket_transport_only_when_ib_missing_or_multi_node():
    single = "node1:1:1 [0] NCCL INFO NET/Socket : Using [0]eth0:10.0.0.1<0>\nnode1:1:1 [0] NCCL INFO Using network Socket\n"
    assert findings(single) == []
    multi = single + "node2:1:1 [0] NCCL INFO NET/Socket : Using [0]eth0:10.0.0.2<0>\nnode2:1:1 [0] NCCL INFO Using network Socket\n"
    f = findings(multi)[0]
    assert (f.rule, f.category, f.severity) == ("nccl-socket-transport", "straggler", "warning")
    ib = "node1:1:1 [0] NCCL INFO NET/IB : No device found.\n" + single
    f = findings(ib)[0]        # one node's log, nothing says the job spans nodes: a note, not a warning
    assert (f.rule, f.severity) == ("nccl-ib-not-found", "info")
    for spans in ("node1:1:1 [0] NCCL INFO Channel 00/0 : 0[0] -> 8[0] [send] via NET/Socket/0\n",
                  "node1:1:1 [0] NCCL INFO comm 0x55d0 rank 0 nRanks 16 nNodes 2 localRanks 8 localRank 0 MNNVL 0\n"):
        f = findings(ib + spans)[0]
        assert (f.rule, f.severity) == ("nccl-socket-transport", "warning"), spans

        # the same job trained to its end (HF's summary, a bar at its total, Megatron's end line):
        # sockets did not stop it, so a note for the next run, not a warning on a healthy one
        for end in ("{'train_runtime': 3311.4, 'train_samples_per_second': 24.155, 'train_steps_per_second': 0.189, "
                    "'train_loss': 1.432, 'epoch': 1.0}\n",
                    "100%|██████████| 625/625 [55:11<00:00,  5.30s/it]\n"):
            f = findings(ib + spans + end)[0]
            assert (f.rule, f.severity) == ("nccl-socket-transport-finished", "info"), (spans, end)


# ---------------------------------------------------------------- gloo (§2.9)
def test_gloo_messages():
    ev = one("RuntimeError: [../third_party/gloo/gloo/transport/tcp/unbound_buffer.cc:81] Timed out waiting 10000ms for recv operation to complete",
             "collective_timeout")
    assert (ev.data["backend"], ev.data["op"], ev.data["timeout_ms"]) == ("gloo", "RECV", 10000)
    ev = one("RuntimeError: [../third_party/gloo/gloo/transport/tcp/pair.cc:534] Connection closed by peer [10.0.0.2]:14522", "gloo_error")
    assert (ev.data["cause"], ev.data["peer"]) == ("remote_exit", "10.0.0.2")
    assert one("RuntimeError: [/x/gloo/transport/tcp/unbound_buffer.cc:133] Application timeout caused pair closure",
               "gloo_error").data["cause"] == "timeout_secondary"
    assert one("RuntimeError: Gloo connectFullMesh failed with [../third_party/gloo/gloo/transport/tcp/pair.cc:144] no error",
               "gloo_error").data["cause"] == "connect"
    assert findings("RuntimeError: Gloo connectFullMesh failed with [x/pair.cc:144] no error")[0].category == "nccl_error"


def test_gloo_real_torch_213_pair():
    # printed by torch 2.13 (gloo, 2 ranks, timeout 3 s, rank 1 late then gone)
    text = ("[rank0]:builtins.RuntimeError: [/__w/pytorch/pytorch/third_party/gloo/gloo/transport/tcp/unbound_buffer.cc:78] "
            "Timed out waiting 3000ms for recv operation to complete\n"
            "[rank1]:builtins.RuntimeError: [/__w/pytorch/pytorch/third_party/gloo/gloo/transport/tcp/pair.cc:553] Connection closed by peer "
            "[127.0.0.1]:22671. This is typically caused by a remote worker crashing. Check the logs of the remote worker before reporting "
            "an error. GLHF! \U0001f3d6\ufe0f\n")
    fs = findings(text)
    assert [(f.rule, f.ranks) for f in fs] == [("comm-timeout", [0]), ("gloo-connection-closed", [1])]
    assert fs[1].consequence_of == "comm-timeout"
    assert "127.0.0.1" in fs[1].title


@pytest.mark.parametrize("text,rdzv,rule", [
    ("torch.distributed.DistNetworkError: The client socket has timed out after 1800s while trying to connect to (10.0.0.1, 29500).",
     "connect_timeout", "rendezvous-timeout"),
    ("TCP client failed to connect/validate to host node1:29500 - timed out (try=3, timeout=600000ms, delay=100ms): timeout", "connect_timeout",
     "rendezvous-timeout"),
    ("torch.distributed.DistStoreError: Timeout waiting for key: default_pg/0//cuda//0 after 1800000 ms", "key_timeout", "rendezvous-timeout"),
    ("RuntimeError: The server socket has failed to bind to [::]:29500 (errno: 98 - Address already in use).", "address_in_use",
     "rendezvous-address-in-use"),
    ("torch.distributed.elastic.rendezvous.api.RendezvousTimeoutError", "join_timeout", "rendezvous-timeout"),
])
def test_rendezvous_errors(text, rdzv, rule):
    assert one(text, "nccl_error").data["rdzv"] == rdzv
    assert findings(text)[0].rule == rule


@pytest.mark.parametrize("errno", ["97 - Address family not supported by protocol", "99 - Cannot assign requested address"])
def test_a_bind_warning_for_one_address_is_not_the_port_in_use(errno):
    # socket.cpp warns per address it tries ([::] then 0.0.0.0): a host without IPv6 says so for [::] and binds 0.0.0.0
    text = f"[W1207 08:00:00.441023000 socket.cpp:697] [c10d] The server socket has failed to bind to [::]:29500 (errno: {errno})."
    assert not [e for e in events(text) if e.kind == "nccl_error"]


def test_rendezvous_timeout_named_in_a_frame_is_not_the_error():
    assert not [e for e in events("    except RendezvousTimeoutError:  # torch.distributed.elastic.rendezvous.api.RendezvousTimeoutError")
                if e.kind == "nccl_error"]


def test_rendezvous_retries_are_not_errors():
    evs = events("TCP client failed to connect/validate to host node1:29500 - retrying (try=0, timeout=600000ms, delay=100ms): refused")
    assert [e.kind for e in evs] == ["connect_retry"]      # a wait (detect/quiet_end.py), not an error


# ---------------------------------------------------------------- stack dumps
def test_pyspy_dump_rank_waiting_for_dataloader():
    text = ('Thread 1 (active): "MainThread"\nThread 2 (active): "MainThread"\n'
            "    broadcast (torch/distributed/distributed_c10d.py:1191)\n"
            "    eval_batch (deepspeed/runtime/pipe/engine.py:455)\n"
            'Thread 3 (idle): "pt_data_pin"\n'
            "    all_reduce (torch/distributed/distributed_c10d.py:2050)\n"
            'Thread 4 (idle): "MainThread"\n'
            "    wait (threading.py:306)\n"
            "    _try_get_data (torch/utils/data/dataloader.py:1011)\n"
            "    _next_data (torch/utils/data/dataloader.py:1207)\n")
    evs = events(text, "stack")
    assert [(e.data["thread"], e.data["where"]) for e in evs] == [("1", "collective"), ("2", "collective"), ("4", "dataloader")]
    f = findings(text)[0]
    assert f.rule == "comm-stall-dataloader" and "2 rank(s) wait in broadcast" in f.title


# ---------------------------------------------------------------- how ranks ended (§4, §5.6, §5.7, §9)
KILLS = {
    "deepspeed -9": ("[2024-05-01 10:00:00,001] [ERROR] [launch.py:322:sigkill_handler] ['/usr/bin/python', '-u', 'train.py', '--local_rank=3'] exits with return code = -9",
                     dict(signal=9, exitcode=-9, who="launcher", local_rank=3)),
    "deepspeed -6": ("['python', 'train.py', '--local_rank=0'] exits with return code = -6", dict(signal=6, who="launcher")),
    "elastic signal": ("  traceback : Signal 9 (SIGKILL) received by PID 4242", dict(signal=9, pid=4242, who="torchelastic")),
    "elastic agent": ("E0717 18:07:41.412000 139939 torch/distributed/elastic/multiprocessing/api.py:874] failed (exitcode: -9) local_rank: 1 (pid: 4243) of binary: /usr/bin/python",
                      dict(signal=9, pid=4243, local_rank=1)),
    "bare Killed": ("Killed", dict(signal=9, who="shell")),
    "bash Killed": ("/var/spool/slurmd/job123/slurm_script: line 12: 4567 Killed                  python train.py", dict(signal=9, pid=4567, who="shell")),
    "kernel 5.x": ("[1234567.890123] Out of memory: Killed process 4242 (python) total-vm:412345676kB, anon-rss:198765432kB, file-rss:0kB, shmem-rss:0kB, UID:0 pgtables:1kB oom_score_adj:0",
                   dict(signal=9, pid=4242, who="kernel", memcg=False, anon_rss=198765432 * 1024)),
    "kernel cgroup": ("Memory cgroup out of memory: Killed process 4242 (python) total-vm:1kB, anon-rss:2kB, file-rss:0kB, shmem-rss:0kB, UID:0 pgtables:1kB oom_score_adj:0",
                      dict(pid=4242, memcg=True)),
    "kernel 4.x": ("Out of memory: Kill process 4242 (python) score 912 or sacrifice child", dict(pid=4242, who="kernel")),
    "pdsh": ("pdsh@head: node7: ssh exited with exit code 1\npdsh@head: node7: python train.py killed by signal 9", dict(signal=9, who="pdsh", node="node7")),
    "slurm": ("srun: error: node12: task 3: Out Of Memory", dict(signal=9, who="slurm", memcg=True)),
    "dataloader killed": ("RuntimeError: DataLoader worker (pid 4242) is killed by signal: Killed. ", dict(signal=9, who="dataloader")),
}


@pytest.mark.parametrize("name", sorted(KILLS))
def test_killed_wordings(name):
    text, want = KILLS[name]
    ev = one(text, "killed")
    for k, v in want.items():
        assert ev.data.get(k) == v, (k, ev.data)


def test_elastic_summary_reports_the_root_cause_once():
    text = """============================================================
train.py FAILED
------------------------------------------------------------
Failures:
[1]:
  time      : 2024-05-01_10:00:05
  host      : node7
  rank      : 1 (local_rank: 1)
  exitcode  : -9 (pid: 4243)  (SIGKILL)
  error_file: <N/A>
  traceback : Signal 9 (SIGKILL) received by PID 4243
------------------------------------------------------------
Root Cause (first observed failure):
[0]:
  time      : 2024-05-01_10:00:00
  host      : node7
  rank      : 3 (local_rank: 3)
  exitcode  : -9 (pid: 4242)  (SIGKILL)
  error_file: <N/A>
  traceback : Signal 9 (SIGKILL) received by PID 4242
============================================================
"""
    evs = events(text, "killed")
    assert [(e.rank, e.data["pid"], e.data["root_cause"]) for e in evs] == [(3, 4242, True)]
    f = findings(text)[0]
    assert f.rule == "host-oom-killed" and f.ranks == [3]


def test_elastic_agent_line_then_1_9_summary():
    text = """E0717 18:07:41.412000 139939 torch/distributed/elastic/multiprocessing/api.py:874] failed (exitcode: -9) local_rank: 3 (pid: 4242) of binary: /usr/bin/python
Root Cause:
[0]:
  time: 2021-06-01_10:00:00
  rank: 3 (local_rank: 3)
  exitcode: -9 (pid: 4242)
  error_file: <N/A>
  msg: "Signal 9 (SIGKILL) received by PID 4242"
Other Failures:
[1]:
  time: 2021-06-01_10:00:01
  rank: 2 (local_rank: 2)
  exitcode: -9 (pid: 4241)
  error_file: <N/A>
  msg: "Signal 9 (SIGKILL) received by PID 4241"
"""
    evs = events(text, "killed")
    assert [(e.rank, e.data["pid"]) for e in evs] == [(None, 4242), (3, 4242)]
    fs = findings(text)
    assert len(fs) == 1 and fs[0].ranks == [3]


def test_sigterm_and_python_exit_are_not_host_oom():
    text = ("['python', 'train.py', '--local_rank=0'] exits with return code = 1\n"
            "  exitcode  : -15 (pid: 11)  (SIGTERM)\n")
    assert not [f for f in findings(text) if f.category == "host_oom"]


def test_cpu_allocator_oom_with_offload_context():
    cfg = {"train_micro_batch_size_per_gpu": 1,
           "zero_optimization": {"stage": 2, "offload_optimizer": {"device": "cpu", "pin_memory": True}}}
    d = Diagnoser(Context.from_config(cfg), RULES)
    d.feed_all(events_from_text("RuntimeError: [enforce fail at alloc_cpu.cpp:83] err == 0. DefaultCPUAllocator: can't allocate memory: "
                                "you tried to allocate 26843545600 bytes. Error code 12 (Cannot allocate memory)\n"))
    f = d.finish()[0]
    assert f.rule == "host-oom-allocator"
    assert f.fixes[0].config_patch == {"zero_optimization": {"offload_optimizer": {"pin_memory": False}}}
    assert "25.00 GiB" in f.title


@pytest.mark.parametrize("text,where", [
    ("ERROR: Unexpected bus error encountered in worker. This might be caused by insufficient shared memory (shm).", "dataloader"),
    ("RuntimeError: DataLoader worker (pid 30882) is killed by signal: Bus error. It is possible that dataloader's workers are out of shared memory. Please try to raise your shared memory limit.", "dataloader"),
    ("RuntimeError: unable to write to file </torch_18693_3026385734_0>: No space left on device (28)", "dataloader"),
    ("OSError: [Errno 28] No space left on device: '/dev/shm/cache_123'", "/dev/shm"),
])
def test_shm_errors(text, where):
    ev = one(text, "shm_error")
    assert ev.data["where"] == where
    assert findings(text)[0].rule == "shm-exhausted"


def test_disk_full_is_not_shm():
    assert events("OSError: [Errno 28] No space left on device: '/checkpoints/global_step100/mp_rank_00_model_states.pt'", "shm_error") == []


# ---------------------------------------------------------------- hardware (§1.1, §8)
@pytest.mark.parametrize("text,error,xid", [
    ("[Mon May  6 10:00:00 2024] NVRM: Xid (PCI:0000:3b:00): 79, pid='<unknown>', name=<unknown>, GPU has fallen off the bus.", "fell_off_bus", 79),
    ("NVRM: Xid (PCI:0000:3b:00): 48, pid=4242, name=python, An uncorrectable double bit error (DBE) has been detected on GPU in the framebuffer at partition 6, subpartition 0.", "ecc", 48),
    ("NVRM: Xid (PCI:0000:3b:00): 13, pid=4242, Graphics Exception: ESR 0x504648=0x84000e", "xid", 13),
    ("NVRM: Xid (PCI:0000:01:00 GPU-I:05 GPU-CI:01): 94, pid=4242, name=python, Contained: SM (0x1). RST: No, D-RST: No", "ecc", 94),
    ("NVRM: Xid (PCI:0000:ca:00): 119, pid=91234, name=python, Timeout after 6s of waiting for RPC response from GPU1 GSP!", "gsp", 119),
    ("RuntimeError: CUDA error: uncorrectable ECC error encountered", "ecc", None),
    ("RuntimeError: transform: failed to synchronize: cudaErrorECCUncorrectable: uncorrectable ECC error encountered", "ecc", None),
    ("  what():  CUDA error: unknown error", "cuda_unknown", None),
    ("RuntimeError: cuda runtime error (999) : unknown error at /pytorch/aten/src/THC/THCGeneral.cpp:47", "cuda_unknown", None),
    ("torch.AcceleratorError: CUDA error: an illegal memory access was encountered", "illegal_access", None),
    ("RuntimeError: CUDA error: unspecified launch failure", "launch_failure", None),
    ("RuntimeError: CUDA error: GPU has fallen off the bus", "fell_off_bus", None),
])
def test_hardware_wordings(text, error, xid):
    ev = one(text, "hardware")
    assert (ev.data["error"], ev.data["xid"]) == (error, xid)
    assert findings(text)[0].category == "hardware"


def test_ecc_error_comes_before_the_misleading_cuda_oom():
    text = ("RuntimeError: CUDA error: out of memory\n"            # order in the file must not matter
            "terminate called after throwing an instance of 'c10::Error'\n"
            "  what():  CUDA error: uncorrectable ECC error encountered\n")
    fs = findings(text)
    assert [f.category for f in fs] == ["hardware", "oom"]
    assert fs[1].consequence_of == "hw-ecc"


def test_cuda_oom_alone_is_still_oom():
    assert findings("RuntimeError: CUDA error: out of memory\n")[0].category == "oom"


# torch/csrc/distributed/c10d/ProcessGroupNCCL.cpp checkForNCCLErrorsInternal (CUDA builds only): an
# asynchronous NCCL error reaches the watchdog as 'NCCL error: <ncclGetErrorString>, NCCL version V',
# without the 'in: file:line' of the synchronous C10D_NCCL_CHECK form
@pytest.mark.parametrize("prefix", [
    "[rank3]:[E1205 10:00:00.000000 1234 ProcessGroupNCCL.cpp:1785] [PG ID 0 PG GUID 0(default_pg) Rank 3] "
    "Process group watchdog thread terminated with exception: ",
    "[E ProcessGroupNCCL.cpp:1316] [Rank 3] NCCL watchdog thread terminated with exception: ",
    "  what():  [PG ID 0 PG GUID 0(default_pg) Rank 3] Process group watchdog thread terminated with exception: ",
])
def test_the_watchdogs_asynchronous_nccl_error(prefix):
    text = prefix + "NCCL error: remote process exited or there was a network error, NCCL version 2.21.5\n"
    assert findings(text)[0].rule == "nccl-error-remote-exit"


# ---------------------------------------------------------------- the c10d client retrying the store
# torch/csrc/distributed/c10d/socket.cpp and TCPStore.cpp (their templates read in libtorch_cpu.so of
# torch 2.13; the 'errno' forms as older torch prints them)
CONNECT_RETRIES = {
    "socket 110": ("[W1202 14:00:31.000000 5522 torch/csrc/distributed/c10d/socket.cpp:752] [c10d] The client socket "
                   "has failed to connect to [node-1]:29500 (errno: 110 - Connection timed out).",
                   dict(peer="node-1:29500", errno=110, reason="Connection timed out")),
    "socket old": ("[W socket.cpp:601] [c10d] The client socket has failed to connect to [kubernetes.docker.internal]:29500 "
                   "(errno: 22 - Invalid argument).",
                   dict(peer="kubernetes.docker.internal:29500", errno=22, reason="Invalid argument")),
    "any address": ("[W socket.cpp:426] [c10d] The client socket has failed to connect to any network address of (node-1, 29500).",
                    dict(peer="node-1:29500", errno=None, reason=None)),
    "trace 111": ("[I1206 07:19:53.082038049 socket.cpp:931] [c10d - trace] The server socket on [::ffff:127.0.0.1]:60993 "
                  "is not yet listening (errno: 111 - Connection refused), will retry.",
                  dict(peer="127.0.0.1:60993", errno=111, reason="Connection refused")),
    "tcpstore": ("[W1206 07:09:39.535067433 TCPStore.cpp:340] [c10d] TCP client failed to connect/validate to host "
                 "127.0.0.1:60985 - retrying (try=0, timeout=900000ms, delay=10063ms): Interrupted system call",
                 dict(peer="127.0.0.1:60985", errno=None, reason="Interrupted system call")),
}


@pytest.mark.parametrize("name", sorted(CONNECT_RETRIES))
def test_connect_retry_wordings(name):
    text, want = CONNECT_RETRIES[name]
    ev = one(text, "connect_retry")
    assert {k: ev.data[k] for k in want} == want
    assert not events(text, "nccl_error")          # a retry is a wait, not the rendezvous error


def test_log_ending_on_connect_retries_is_a_rendezvous_wait():
    start = "[2026-12-02 14:00:00,002] [INFO] [launch.py:152:main] nnodes=2, num_local_procs=8, node_rank=1\n"
    retry = CONNECT_RETRIES["socket 110"][0] + "\n"
    top = findings(start + retry * 3)[0]
    assert top.rule == "rendezvous-connect-wait" and top.category == "nccl_error"
    assert "errno: 110" in top.evidence[0].text
    step = "[2026-12-02 14:05:00,000] [INFO] [logging.py:128:log_dist] [Rank 0] step=10, skipped=0, lr=[0.0001], mom=[(0.9, 0.999)]\n"
    assert not [f for f in findings(start + retry + step) if f.severity != "info"]   # it connected, training went on


def test_nccl_warning_repeated_after_last_error_names_its_cause():
    text = ("[rank1]: torch.distributed.DistBackendError: NCCL error in: ../torch/csrc/distributed/c10d/ProcessGroupNCCL.cpp:1970, "
            "invalid usage (run with NCCL_DEBUG=WARN for details), NCCL version 2.20.5\n"
            "[rank1]: ncclInvalidUsage: This usually reflects invalid usage of NCCL library.\n"
            "[rank1]: Last error:\n"
            "[rank1]: Duplicate GPU detected : rank 1 and rank 0 both on CUDA device 1b000\n")
    assert one(text, "nccl_warn").data["cause"] == "duplicate_gpu"
    assert findings(text)[0].rule == "nccl-error-duplicate-gpu"


_NCCL_SYSTEM_ERROR = ("[rank8]: torch.distributed.DistBackendError: NCCL error in: ../torch/csrc/distributed/c10d/"
                      "ProcessGroupNCCL.cpp:3463, unhandled system error (run with NCCL_DEBUG=INFO for details), NCCL version 2.21.5\n"
                      "[rank8]: ncclSystemError: System call (e.g. socket, malloc) or external library call failed or device error.\n"
                      "[rank8]: Last error:\n")


@pytest.mark.parametrize("last, cause, peer", [
    # nccl src/misc/socket.cc: 2.16-2.23 'socketStartConnect: Connect to %s failed : %s', 2.27+ lower case
    ("socketStartConnect: Connect to 10.0.0.2<45123> failed : Software caused connection abort", "connection_refused", "10.0.0.2"),
    ("socketPollConnect: connect to 10.1.4.7<38511> failed : Connection refused", "connection_refused", "10.1.4.7"),
    # socketProgressOpt's recv from a peer that went away
    ("socketProgressOpt: Call to recv from 10.0.0.9<51234> failed : Connection reset by peer", "remote_exit", "10.0.0.9"),
    # transport/net_ib.cc ncclIbTest: a work completion in error
    ("NET/IB : Got completion from peer 10.0.0.5<5334> with status=12 opcode=0 len=0 vendor err 129 (Recv)", "ib", "10.0.0.5"),
])
def test_the_warning_after_last_error_is_read_whatever_it_says(last, cause, peer):
    ev = one(_NCCL_SYSTEM_ERROR + f"[rank8]: {last}\n", "nccl_warn")
    assert (ev.data["cause"], ev.data["peer"], ev.rank) == (cause, peer, 8)
    top = findings(_NCCL_SYSTEM_ERROR + f"[rank8]: {last}\n")[0]
    assert top.category == "nccl_error" and any(last[:40] in e.text for e in top.evidence)


def test_last_error_reads_only_the_next_line_and_only_a_known_cause():
    # NCCL's own 'Unknown NCCL Error' says nothing: the finding stays the plain NCCL error
    assert not events(_NCCL_SYSTEM_ERROR + "[rank8]: Unknown NCCL Error\n", "nccl_warn")
    # a connect failure two lines below is another message, not the one 'Last error:' repeats
    assert not events(_NCCL_SYSTEM_ERROR + "[rank8]: \n[rank8]: Connect to 10.0.0.2<1> failed : Connection refused\n", "nccl_warn")
    # a line that only mentions 'Last error:' arms nothing
    assert not events("retry 3, Last error: timeout\nsocketStartConnect: Connect to 10.0.0.2<1> failed : x\n", "nccl_warn")


def test_nccl_set_up_without_init_complete_is_a_hang_and_with_it_is_not():
    start = ("gpu1:3301:3420 [0] NCCL INFO comm 0x55d5c3c0 rank 0 nranks 2 cudaDev 0 nvmlDev 0 busId 1b000 commId 0x5a1 - Init START\n"
             "gpu1:3301:3420 [0] NCCL INFO Channel 00/0 : 0[0] -> 1[1] via SHM/direct/direct\n")
    assert [e.data["state"] for e in events(start, "nccl_init")] == ["start", "channel"]
    top = findings(start)[0]
    assert top.rule == "nccl-init-hang" and "NCCL_SHM_DISABLE=1" in top.fixes[0].advice
    # another process's COMPLETE does not close this one's set-up
    other = "gpu1:3302:3421 [1] NCCL INFO ncclCommInitRank comm 0x55e1a7d0 rank 1 nranks 2 cudaDev 1 nvmlDev 1 busId 1c000 commId 0x5a1 - Init COMPLETE\n"
    assert findings(start + other)[0].rule == "nccl-init-hang"
    done = "gpu1:3301:3420 [0] NCCL INFO ncclCommInitRank comm 0x55d5c3c0 rank 0 nranks 2 cudaDev 0 nvmlDev 0 busId 1b000 commId 0x5a1 - Init COMPLETE\n"
    assert not [f for f in findings(start + done) if f.severity != "info"]


def test_monitored_barrier_root_pointer_yields_to_the_roots_list():
    """gloo's monitored barrier: the ranks that passed it say 'check rank 0 logs' (the root that threw);
    rank 0's own line names the rank that never arrived. That rank is the suspect, not rank 0, and the
    finding stands alone (the fallback for the same RuntimeError line is dropped, not left as its cause)."""
    root = "RuntimeError: [Rank 0]: Ranks 3 failed to pass monitoredBarrier in 1800000 ms\n"
    echo = ("[E ProcessGroupGloo.cpp:138] Rank {r} successfully reached monitoredBarrier, but received errors while "
            "waiting for send/recv from rank 0. Please check rank 0 logs for faulty rank.\n")
    fs = findings(root + echo.format(r=1) + echo.format(r=2))
    assert [f.rule for f in fs] == ["comm-timeout-desync-report"]
    assert fs[0].title.endswith("names rank(s) 3"), fs[0].title
    assert fs[0].consequence_of is None
    alone = findings(echo.format(r=1))           # only a passing rank's line: rank 0 is where to look
    assert "rank(s) 0" in alone[0].title


def test_dump_signal_from_another_rank_is_not_a_timeout_of_this_rank():
    """torch 2.5+: a rank that times out asks the others to dump; their 'Received a dump signal due to a
    collective timeout from rank N ... Last enqueued NCCL work: e, last completed NCCL work: c' says where they
    are, not that they waited. Ranks missing from a paste are then not 'silent', and the rank that timed out
    while the others had completed its collective is the one behind."""
    timeout = ("[rank4]:[E1201 02:10:44.009281774 ProcessGroupNCCL.cpp:691] [Rank 4] Watchdog caught collective operation "
               "timeout: WorkNCCL(SeqNum=88, OpType=ALLGATHER, NumelIn=33554432, NumelOut=268435456, Timeout(ms)=600000) "
               "ran for 600012 milliseconds before timing out.\n"
               "[rank4]:[E1201 02:10:44.009512003 ProcessGroupNCCL.cpp:2235] [PG ID 0 PG GUID 0(default_pg) Rank 4]  failure "
               "detected by watchdog at work sequence id: 88 PG status: last enqueued work: 88, last completed work: 87\n")
    dump = ("[rank{r}]:[E1201 02:10:44.551102455 ProcessGroupNCCL.cpp:1941] [PG ID 0 PG GUID 0(default_pg) Rank {r}] Received "
            "a dump signal due to a collective timeout from  rank 4 and we will try our best to dump the debug info. Last "
            "enqueued NCCL work: 89, last completed NCCL work: 88.This is most likely caused by incorrect usages of "
            "collectives, e.g., wrong sizes used across ranks.\n")
    ev = one(dump.format(r=0), "watchdog_state")
    assert (ev.rank, ev.data["dump_from"], ev.data["last_enqueued"]) == (0, 4, 89)
    assert one(timeout, "watchdog_state").data["dump_from"] is None
    fs = findings(timeout + dump.format(r=0) + dump.format(r=3))
    assert fs[0].rule == "comm-timeout-desync" and "rank(s) 4 " in fs[0].title, (fs[0].rule, fs[0].title)


@pytest.mark.parametrize("lines, why", [
    # Docker's bridge on both nodes: the same private address everywhere
    (["node-a:412:508 [0] NCCL INFO NET/Socket : Using [0]docker0:172.17.0.1<0>",
      "node-b:377:470 [0] NCCL INFO NET/Socket : Using [0]docker0:172.17.0.1<0>"], "same_addr"),
    # one host's bootstrap on loopback while the job spans two nodes
    (["node-a:412:412 [0] NCCL INFO Bootstrap : Using lo:127.0.0.1<0>",
      "node-a:412:508 [0] NCCL INFO Channel 00/0 : 0[0] -> 8[0] [send] via NET/Socket/0"], "virtual"),
])
def test_socket_interface_that_cannot_join_nodes(lines, why):
    timeout = ("[rank0]:[E1105 11:32:10.221004551 ProcessGroupNCCL.cpp:616] [Rank 0] Watchdog caught collective operation "
               "timeout: WorkNCCL(SeqNum=1, OpType=ALLREDUCE, NumelIn=1, NumelOut=1, Timeout(ms)=600000) ran for 600112 "
               "milliseconds before timing out.\n")
    ev = one(lines[0] + "\n", "nccl_transport")
    assert ev.data["iface"] in ("docker0", "lo")
    fs = findings("\n".join(lines) + "\n" + timeout)
    assert fs[0].rule == "comm-timeout-socket-interface", [f.rule for f in fs]
    assert fs[0].evidence[0].text.endswith(lines[0].split("NCCL INFO ", 1)[1]) or lines[0] in fs[0].evidence[0].text
    healthy = [ln.replace("docker0:172.17.0.1", "eth0:10.0.0.1").replace("lo:127.0.0.1", "eth0:10.0.0.1") for ln in lines]
    healthy[-1] = healthy[-1].replace("10.0.0.1", "10.0.0.2") if why == "same_addr" else healthy[-1]
    assert findings("\n".join(healthy) + "\n" + timeout)[0].rule != "comm-timeout-socket-interface"
