"""The host of every torchrun node, read back from torch's own rendezvous, for ranks that never attached.

What torch keeps, by rendezvous backend (torch/distributed/elastic, read in torch 2.13):
  static (`torchrun --nnodes N --node_rank K --master_addr A`, the default with --node_rank):
          the agents only exchange (role, group rank, local world size) through the store
          (agent/server/api.py: SimpleElasticAgent._assign_worker_ranks, 'torchelastic/role_info/<K>').
          No host anywhere: a node whose ranks did not attach is known as 'node K' only.
  c10d    (`--rdzv_backend c10d --rdzv_endpoint H:P`): the rendezvous state, a pickled
          rendezvous/dynamic_rendezvous.py: _RendezvousState, sits base64-encoded under
          'torch.rendezvous.<run id>' in the TCPStore at the endpoint (c10d_rendezvous_backend.py:
          C10dRendezvousBackend). Its `participants` maps each agent's _NodeDesc (addr = the node's
          FQDN, or torchrun --local_addr) to its group rank (= the node index of its ranks).
The workers are not told the endpoint: it is read from their parent's command line (the torchrun
agent, as nodes.launcher_hosts does for deepspeed's --world_info), parsed with torchrun's own
argument parser. The state is unpickled with an unpickler that admits only the classes it is made
of (the two above, datetime's), so a store cannot make a rank run code.
"""
from __future__ import annotations

import io
import os
import pickle
from base64 import b64decode
from datetime import timedelta
from typing import Any

STATE_KEY = "torch.rendezvous."          # + run id: c10d_rendezvous_backend.py C10dRendezvousBackend._key
DEFAULT_PORT = 29400                      # c10d_rendezvous_backend.py DEFAULT_PORT
_ALLOWED = {("torch.distributed.elastic.rendezvous.dynamic_rendezvous", "_RendezvousState"),
            ("torch.distributed.elastic.rendezvous.dynamic_rendezvous", "_NodeDesc"),
            ("datetime", "datetime"), ("datetime", "timezone"), ("datetime", "timedelta")}


class _StateOnly(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _ALLOWED:
            raise pickle.UnpicklingError(f"refused {module}.{name}")
        return super().find_class(module, name)


def torchrun_args(cmdline: list[str]) -> Any:
    """torchrun's parsed arguments from an agent's command line, or None when it is not torchrun."""
    for i, a in enumerate(cmdline):
        if os.path.basename(a) == "torchrun" or a.endswith("torch/distributed/run.py") \
                or (a == "torch.distributed.run" and i > 0 and cmdline[i - 1] == "-m"):
            from torch.distributed.run import get_args_parser
            try:
                args, _ = get_args_parser().parse_known_args(cmdline[i + 1:])
            except SystemExit:           # argparse refusing what torchrun itself accepted: give up
                return None
            return args
    return None


def parent_cmdline() -> list[str] | None:
    try:
        with open(f"/proc/{os.getppid()}/cmdline", "rb") as fh:
            return [a.decode(errors="replace") for a in fh.read().split(b"\0") if a]
    except OSError:
        return None


def decode_state(raw: bytes) -> dict[int, str]:
    """group rank -> host, from the value stored under STATE_KEY + run id."""
    state = _StateOnly(io.BytesIO(b64decode(raw))).load()
    participants = getattr(state, "participants", None) or {}
    return {int(rank): str(node.addr) for node, rank in participants.items()}


def agent_hosts(env: Any = None, cmdline: list[str] | None = None, timeout: float = 2.0) -> dict[int, str] | None:
    """group rank (node index) -> host of each torchrun agent of this job, or None when torch
    does not keep it (static rendezvous, not torchrun) or it cannot be read. Asked only when
    ranks are missing; `timeout` bounds how long that report can wait for an unreachable store."""
    env = os.environ if env is None else env
    if env.get("TORCHELASTIC_RUN_ID") is None:
        return None
    cmdline = parent_cmdline() if cmdline is None else cmdline
    args = torchrun_args(cmdline) if cmdline else None
    if args is None or args.rdzv_backend != "c10d" or not args.rdzv_endpoint:
        return None
    try:
        from torch.distributed import TCPStore
        from torch.distributed.elastic.rendezvous.utils import parse_rendezvous_endpoint
        host, port = parse_rendezvous_endpoint(args.rdzv_endpoint, default_port=DEFAULT_PORT)
        store = TCPStore(host, port, is_master=False, timeout=timedelta(seconds=timeout))
        key = STATE_KEY + str(env.get("TORCHELASTIC_RUN_ID") or args.rdzv_id)
        if not store.check([key]):
            return None
        return decode_state(store.get(key)) or None
    except Exception:           # a store that went away, a state of another torch: say 'node K'
        return None
