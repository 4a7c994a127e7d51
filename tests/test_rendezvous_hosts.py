"""Reading torchrun's c10d rendezvous state for the hosts of the nodes (dsdoctor/live/rendezvous_hosts.py):
a state torch itself pickles, the command lines torchrun is started with, and a pickle that
tries to run code."""
from __future__ import annotations

import pickle
from base64 import b64encode
from datetime import datetime, timezone

import pytest

pytest.importorskip("torch")

from dsdoctor.live import rendezvous_hosts  # noqa: E402


def _state(*addrs: str) -> bytes:
    from torch.distributed.elastic.rendezvous.dynamic_rendezvous import _NodeDesc, _RendezvousState
    st = _RendezvousState()
    for rank, addr in enumerate(sorted(addrs)):
        node = _NodeDesc(addr, 1000 + rank, 0)
        st.participants[node] = rank
        st.last_heartbeats[node] = datetime.now(timezone.utc)
    return b64encode(pickle.dumps(st))      # what C10dRendezvousBackend.set_state stores


def test_the_state_torch_writes_gives_each_group_rank_its_host():
    assert rendezvous_hosts.decode_state(_state("gpu-node-02", "gpu-node-01")) == {0: "gpu-node-01", 1: "gpu-node-02"}


def test_a_state_that_would_run_code_is_refused():
    class Evil:
        def __reduce__(self):
            return (print, ("owned",))
    with pytest.raises(pickle.UnpicklingError):
        rendezvous_hosts.decode_state(b64encode(pickle.dumps(Evil())))


@pytest.mark.parametrize("cmdline", [
    ["/venv/bin/python", "/venv/bin/torchrun", "--nnodes", "2", "--rdzv_backend", "c10d", "--rdzv_endpoint", "h:29400",
     "train.py", "--lr", "1"],
    ["/venv/bin/python", "-m", "torch.distributed.run", "--nnodes=2", "--rdzv-backend=c10d", "--rdzv-endpoint=h:29400",
     "train.py"],
])
def test_torchrun_command_lines_are_read_with_torchruns_parser(cmdline):
    args = rendezvous_hosts.torchrun_args(cmdline)
    assert args.rdzv_backend == "c10d" and args.rdzv_endpoint == "h:29400"


def test_static_rendezvous_and_other_launchers_know_no_hosts():
    env = {"TORCHELASTIC_RUN_ID": "none"}
    static = ["/venv/bin/python", "/venv/bin/torchrun", "--nnodes", "2", "--node_rank", "1", "--master_addr", "h",
              "train.py"]
    assert rendezvous_hosts.agent_hosts(env, static) is None
    assert rendezvous_hosts.torchrun_args(["/venv/bin/python", "-u", "-m", "deepspeed.launcher.launch", "x.py"]) is None
    assert rendezvous_hosts.agent_hosts({}, static) is None          # not under torchelastic at all
