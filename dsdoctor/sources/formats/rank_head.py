"""The one line a fine-tuning front-end prints on every process at start-up naming that process:
in a file that is one rank's output (a per-rank redirect, a pod's log) it is the only clue to
which rank raised a traceback printed without a rank prefix.

Texts:
- LLaMA-Factory (llamafactory/hparams/parser.py: get_train_args, `logger.info` on every process):
  'Process rank: {process_index}, world size: {world_size}, device: {device}, distributed training:
  {bool}, compute dtype: {dtype}' (older releases: 'Process rank: {process_index}, device: {device},
  n_gpu: {n_gpu}, distributed training: {bool}, compute dtype: {dtype}'); process_index is the
  global rank.
- transformers' examples (examples/pytorch/*/run_*.py, `logger.warning` on every process):
  'Process rank: {local_rank}, device: {device}, n_gpu: {n_gpu}, distributed training: {bool},
  16-bits training: {fp16}': the LOCAL rank (-1 when not distributed).
- ms-swift (swift/arguments/base_args/base_args.py: BaseArguments.__post_init__): 'rank: {rank},
  local_rank: {local_rank}, world_size: {world}, local_world_size: {local_world}'; its logger
  (swift/utils/logger.py: get_logger) prints INFO on the local master only, so the line names the
  file's one process only when each node runs one (local_world_size 1).

The event (`rank_head`) carries the rank the line proves, or none; the pipeline
(pipeline.Diagnoser) lends it to a rank-less finding of the same input when the input holds
exactly one such rank (several heads: the launcher's merged output of every rank).
"""
from __future__ import annotations

from ...lazy_regex import compile_later
from ..lines import Line, StreamState
from ..recogniser import on

_PROCESS_RANK = compile_later(r"Process rank: (-?\d+),(?: world size: (\d+),)? device: ([\w:]+)")
_SWIFT = compile_later(r"\brank: (-?\d+), local_rank: (-?\d+), world_size: (\d+), local_world_size: (\d+)")
_CUDA_INDEX = compile_later(r"^cuda:(\d+)$")


@on("Process rank: ")
def process_rank(line: Line, st: StreamState):
    m = _PROCESS_RANK.search(line.text)
    if not m:
        return None
    rank, world, device = int(m.group(1)), m.group(2), m.group(3)
    gpu = _CUDA_INDEX.match(device)
    local = world is None                           # the examples' local_rank; LLaMA-Factory's global rank
    head = rank if rank >= 0 else None
    if local and head is not None:
        # a local rank is the global one on a single node only: with the DeepSpeed launcher's
        # 'nnodes=N, num_local_procs=K, node_rank=M' (launcher.py) it is M*K + local; with only a
        # sign of several nodes (torchrun's --nnodes/--node_rank) it names no global rank
        node = st.scratch.get("launcher.node", {}).get(line.host)
        if node is not None:
            head = node[0] * node[1] + head
        elif st.scratch.get(SEVERAL_NODES):
            head = None
    return line.event("rank_head", head_rank=head, world_size=int(world) if world else None, local=local,
                      local_rank=rank if local and rank >= 0 else None, gpu=int(gpu.group(1)) if gpu else None)


# torchrun / accelerate launch arguments echoed in a log (a job script's `set -x`, the command pasted
# above the output): '--nnodes=2', '--nnodes 2:4', '--node_rank=1', '--machine_rank 1', '--num_machines 2'
SEVERAL_NODES = "rank_head.several_nodes"
_NODES_ARG = compile_later(r"--(?:nnodes|num_machines)[= ](\d+)(?::(\d+))?|--(?:node_rank|machine_rank)[= ](\d+)")


@on("--nnodes", "--node_rank", "--num_machines", "--machine_rank")
def launch_nodes_argument(line: Line, st: StreamState) -> None:
    for m in _NODES_ARG.finditer(line.text):
        n = max(int(m.group(1) or 0), int(m.group(2) or 0))
        if n > 1 or int(m.group(3) or 0) > 0:
            st.scratch[SEVERAL_NODES] = True


@on(", local_rank: ")
def swift_rank(line: Line, st: StreamState):
    m = _SWIFT.search(line.text)
    if not m:
        return None
    rank, world, local_world = int(m.group(1)), int(m.group(3)), int(m.group(4))
    one_per_node = local_world == 1 or world == 1
    return line.event("rank_head", head_rank=rank if rank >= 0 and one_per_node else None, world_size=world,
                      local=False, gpu=None)


# torch_npu (Ascend) appends its error code to every exception it raises (torch_npu/utils/_error_code.py
# _format_error_msg): '[ERROR] {time} (PID:{pid}, Device:{device}, RankID:{rank}) ERR{submodule}{code} {SUBMODULE}
# {text}', rank from torch.distributed.get_rank() (-1 before init_process_group), device the NPU index. It names the
# process that raised; one such rank in an input is the rank of its rank-less traceback.
_NPU_ERROR_CODE = compile_later(r"\(PID:(\d+), Device:(-?\d+), RankID:(-?\d+)\) ERR\d{5}\b")


@on(", RankID:")
def npu_error_code(line: Line, st: StreamState):
    m = _NPU_ERROR_CODE.search(line.text)
    if not m:
        return None
    rank, device = int(m.group(3)), int(m.group(2))
    return line.event("rank_head", head_rank=rank if rank >= 0 else None, world_size=None, local=False,
                      gpu=device if device >= 0 else None)
