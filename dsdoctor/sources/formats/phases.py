"""What a run was doing when it died: lines that start a memory-hungry phase (`phase_mark`
events) and DeepSpeed's host-memory readings (`memory` events with host_percent).

A rank that vanishes without a traceback is weighed by these (detect/failure.py): a SIGKILL
while every rank loads a checkpoint or builds ZeRO-Offload partitions is the host's OOM killer
far more often than anything else.

Texts, from the installed sources:
  deepspeed/runtime/engine.py          'Creating ZeRO Offload' (_configure_zero_optimizer),
                                       'Creating {dtype} ZeRO stage {n} optimizer',
                                       'loading {n} zero partition checkpoints for rank {r}',
                                       'loaded universal zero checkpoints from {dir} for rank {r}'
                                       (_load_zero_checkpoint)
  deepspeed/runtime/zero/stage_1_and_2.py  'Flattening param group {i} on ...', 'optimizer state initialized'
  deepspeed/runtime/zero/stage3.py     see_memory_usage('Stage 3 initialize beginning', 'Before creating
                                       fp32 partitions', 'Before initializing optimizer states')
  deepspeed/runtime/utils.py           see_memory_usage: 'CPU Virtual Memory:  used = {x} GB, percent = {y}%'
  transformers core_model_loading.py   tqdm desc 'Loading weights' (5.x); 'Loading checkpoint shards' (4.x
                                       modeling_utils.py)
  torch/utils/cpp_extension.py         'Building extension module {name}...' (_jit_compile)
  deepspeed/comm/comm.py               'Initializing TorchBackend in DeepSpeed with backend {b}' (init_distributed)
  lightning/fabric/utilities/distributed.py  'Initializing distributed: GLOBAL_RANK: {r}, MEMBER: {r+1}/{n}'
                                       (_init_dist_connection; not installed here, cited)
  torch/distributed/distributed_c10d.py 'Added key: store_based_barrier_key:{n} to store for rank: {r}'
  accelerate/state.py                  'Distributed environment: {type}  Backend: {b}' (PartialState.__repr__)
  transformers/modeling_utils.py       'loading weights file {f}', 'Detected DeepSpeed ZeRO-3: activating zero.init()
                                       for this model' (from_pretrained)
  deepspeed/utils/zero_to_fp32.py      'Processing zero checkpoint ...', 'Detected checkpoint of type zero stage ...',
                                       tqdm descs 'Gathering sharded weights', 'Saving checkpoint shards'
"""
from __future__ import annotations

from ...lazy_regex import compile_later
from ..lines import Line, StreamState
from ..recogniser import on

_MARKS: list[tuple[str, str]] = [
    ("Loading checkpoint shards", "model_load"),
    ("Loading weights", "model_load"),
    ("zero partition checkpoints for rank", "checkpoint_load"),
    ("loaded universal zero checkpoints", "checkpoint_load"),
    ("Creating ZeRO Offload", "zero_init"),
    ("ZeRO stage", "zero_init"),
    ("Flattening param group", "zero_init"),
    ("Stage 3 initialize beginning", "zero_init"),
    ("Before creating fp32 partitions", "zero_init"),
    ("Before creating fp16 partitions", "zero_init"),
    ("Before initializing optimizer states", "optimizer_init"),
    ("optimizer state initialized", "init_done"),
    ("Building extension module", "op_build"),
    # torch.distributed set-up: a run stopped long after this with no step since hung at start-up
    # (the rendezvous or the first collective), see detect/failure.py: _hung
    ("Initializing TorchBackend in DeepSpeed with backend", "dist_init"),
    ("Initializing distributed: GLOBAL_RANK:", "dist_init"),
    # torch/distributed/distributed_c10d.py _store_based_barrier (debug level) 'Added key: store_based_barrier_key:{n}
    # to store for rank: {r}'; accelerate/state.py PartialState.__repr__ 'Distributed environment: {type}  Backend: {b}'
    ("Added key: store_based_barrier_key", "dist_init"),
    ("Distributed environment: ", "dist_init"),
    # transformers/modeling_utils.py: 'loading weights file {file}' / '... from cache at {path}' (from_pretrained),
    # 'Detected DeepSpeed ZeRO-3: activating zero.init() for this model' (the model built partitioned)
    ("loading weights file ", "model_load"),
    ("activating zero.init() for this model", "zero_init"),
    # deepspeed/runtime/engine.py load_checkpoint: 'Unable to find latest file at {path}, if trying to load
    # latest checkpoint please ensure this file exists or pass an explicit checkpoint tag when loading a
    # checkpoint.' (a warning; load_checkpoint then returns (None, None) and nothing was resumed)
    ("Unable to find latest file at", "checkpoint_load"),
    # deepspeed/utils/zero_to_fp32.py (copied next to every ZeRO checkpoint): "Processing zero checkpoint
    # '{dir}'", "Detected checkpoint of type zero stage {stage}, world_size: {n}", its tqdm bars 'Gathering
    # sharded weights' and 'Saving checkpoint shards': the whole fp32 model is rebuilt in host RAM
    ("Processing zero checkpoint '", "checkpoint_convert"),
    ("Detected checkpoint of type zero stage", "checkpoint_convert"),
    ("Gathering sharded weights", "checkpoint_convert"),
    ("Saving checkpoint shards", "checkpoint_convert"),
]


@on(*(lit for lit, _ in _MARKS))
def phase_mark(line: Line, st: StreamState):
    t = line.text
    lit, phase = next((lit, p) for lit, p in _MARKS if lit in t)
    if phase == "zero_init" and "ZeRO stage" in t and "Creating" not in t:
        return None
    if phase == "model_load" and "Loading weights" in t and "%|" not in t and "Loading weights:" not in t:
        return None           # the tqdm bar ('Loading weights:  40%|...'), not any sentence with the words
    # a progress bar repeats on every refresh: one mark per line kind and rank in a row (another
    # line of the same phase is a step further into it, and the last line before a silence)
    last = st.scratch.setdefault("phase.last", {})
    if last.get(line.rank) == lit:
        return None
    last[line.rank] = lit
    if "Unable to find latest file at" in t:
        return line.event("phase_mark", step=st.step_of(line.rank), phase=phase, detail=t.strip()[:160], absent=True)
    return line.event("phase_mark", step=st.step_of(line.rank), phase=phase, detail=t.strip()[:160])


_VM = compile_later(r"CPU Virtual Memory:\s+used = ([\d.]+) GB, percent = ([\d.]+)%")


@on("CPU Virtual Memory:")
def host_memory(line: Line, st: StreamState):
    m = _VM.search(line.text)
    if not m:
        return None
    return line.event("memory", step=st.step_of(line.rank), host_used=int(float(m.group(1)) * (1 << 30)),
                      host_percent=float(m.group(2)))


# A JIT-built op (DeepSpeed's op_builder -> torch/utils/cpp_extension.py load/_jit_compile): every
# rank prints 'Using {root} as PyTorch extensions root...' (print in torch 1.x-2.11, logger.info
# after), one builds while the others wait on the build directory's lock, then each prints
# 'Loading extension module {name}...'; DeepSpeed's op_builder/builder.py jit_load adds
# 'Time to load {name} op: {t} seconds'. A wait with no load after it is where a stale lock hangs.
_OP_ROOT = compile_later(r"Using (\S+) as PyTorch extensions root")


@on("as PyTorch extensions root", "Loading extension module", "Time to load ")
def op_load(line: Line, st: StreamState):
    t = line.text
    m = _OP_ROOT.search(t)
    if m:
        return line.event("op_load", state="wait", root=m.group(1).rstrip("."))
    if "Loading extension module" in t or (" op: " in t and "seconds" in t):
        return line.event("op_load", state="loaded")
    return None


# torch/distributed/distributed_c10d.py: _store_based_barrier, while not every rank has joined a
# new process group: 'Waiting in store based barrier to initialize process group for rank: {r},
# key: {k} (world_size={n}, worker_count={j}, timeout={t})' (torch 1.x, logger.info), with
# 'num_workers_joined=' (2.0-2.2) and '... for {s} seconds' before 'rank:' (2.3+, logger.debug)
_STORE_WAIT = compile_later(r"world_size=(\d+), (?:worker_count|num_workers_joined)=(\d+)")


@on("Waiting in store based barrier")
def store_wait(line: Line, st: StreamState):
    m = _STORE_WAIT.search(line.text)
    if not m:
        return None
    return line.event("store_wait", world_size=int(m.group(1)), joined=int(m.group(2)))
