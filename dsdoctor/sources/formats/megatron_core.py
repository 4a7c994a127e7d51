"""Recognisers: megatron-core's own errors and verdicts (Megatron-LM, Megatron-DeepSpeed's newer forks and
NeMo all run them). Templates read in megatron-core 0.16.1 (pip wheel):

- num_microbatches_calculator.py ConstantNumMicroBatchesCalculator.__init__: 'global batch size ({}) is not
  divisible by micro batch size ({}) times data parallel size ({})' (the same words in Megatron-LM's older
  megatron/microbatches.py)
- parallel_state.py initialize_model_parallel: 'world_size ({world_size}) is not divisible by {model_size}'
  (model_size = tensor x pipeline x context parallel)
- transformer/transformer_config.py TransformerConfig.__post_init__: 'num_attention_heads ({}) must be a multiple
  of tensor_model_parallel_size ({}).' and 'num_query_groups ({}) must be a multiple or divisor of
  tensor_model_parallel_size ({}).'
- datasets/indexed_dataset.py IndexedDataset.__init__: 'One or both of the .idx and .bin files cannot be found at
  the path prefix {path_prefix}'
- dist_checkpointing: strategies/torch.py 'Global shape mismatch for loaded ({}) and expected ({}) tensor for key
  {}' and '{key} from model not in state dict:', validation.py validate_sharding_integrity 'Invalid access pattern
  for ShardedTensor(...)', verify_checkpoint_and_load_strategy 'Checkpoint directory {} does not exist' /
  '{} is not a distributed checkpoint', _validate_common_state_dict / maybe_report_missing_and_unexpected_keys
  'Missing keys (for all ranks)' / 'Unexpected keys (not found in the checkpoint)'
- rerun_state_machine.py RerunStateMachine.validate_result: 'Unexpected result {result} on rank {r} at iteration
  #{i} invocation #{n} (message='{message}')' and its verdicts after the re-runs, 'Possible transient error!'
  (the result was not reproduced on the same GPU), 'Possible persistent error!' (not reproduced on another GPU)
NeMo (nemo_toolkit 3.0.0, nemo/utils/exp_manager.py check_resume): 'There were no checkpoints found in
checkpoint_dir or no checkpoint folder at checkpoint_dir :{dir}. Cannot resume.'
"""
from __future__ import annotations

from ...lazy_regex import compile_later
from ..lines import Line, StreamState
from ..recogniser import on

_GBS = compile_later(r"global batch size \((\d+)\) is not divisible by micro batch size \((\d+)\) times data parallel size \((\d+)\)")


@on("is not divisible by micro batch size")
def batch_not_divisible(line: Line, st: StreamState):
    m = _GBS.search(line.text)
    if not m:
        return None
    gbs, mbs, dp = (int(x) for x in m.groups())
    return line.event("config_error", error="megatron_batch", key="global_batch_size", message=m.group(0),
                      numbers={"global_batch_size": gbs, "micro_batch_size": mbs, "data_parallel_size": dp},
                      global_batch_size=gbs, micro_batch_size=mbs, data_parallel_size=dp,
                      fits=(gbs // (mbs * dp)) * mbs * dp if mbs * dp else None)


_WORLD = compile_later(r"world_size \((\d+)\) is not divisible by (\d+)\s*$")


@on("world_size (")
def world_not_divisible(line: Line, st: StreamState):
    m = _WORLD.search(line.text.rstrip())
    if not m:
        return None
    ws, model = int(m.group(1)), int(m.group(2))
    return line.event("config_error", error="megatron_parallel_sizes", key="tensor_model_parallel_size",
                      message=m.group(0), numbers={"world_size": ws, "model_size": model}, world_size=ws,
                      model_size=model)


_HEADS = compile_later(r"(num_attention_heads|num_query_groups) \((\d+)\) must be a multiple (?:or divisor )?of "
                       r"tensor_model_parallel_size \((\d+)\)")


@on("must be a multiple of tensor_model_parallel_size", "must be a multiple or divisor of tensor_model_parallel_size")
def heads_not_divisible(line: Line, st: StreamState):
    m = _HEADS.search(line.text)
    if not m:
        return None
    return line.event("config_error", error="megatron_heads_tp", key=m.group(1), message=m.group(0),
                      numbers={m.group(1): int(m.group(2)), "tensor_model_parallel_size": int(m.group(3))},
                      field=m.group(1), heads=int(m.group(2)), tp=int(m.group(3)))


_PREFIX = compile_later(r"cannot be found at the path prefix (\S+)")


@on("One or both of the .idx and .bin files cannot be found")
def data_prefix_missing(line: Line, st: StreamState):
    m = _PREFIX.search(line.text)
    return line.event("config_error", error="megatron_data_path", key="data_path", message=line.text.strip()[-300:],
                      prefix=m.group(1) if m else None)


# (literal, reason) in the order they are tried
_CKPT = (("Global shape mismatch for loaded", "shape"), ("Invalid access pattern for ShardedTensor", "sharding"),
         ("from model not in state dict", "missing_keys"), ("Missing keys (for all ranks)", "missing_keys"),
         ("Unexpected keys (not found in the checkpoint)", "unexpected_keys"),
         ("is not a distributed checkpoint", "not_distributed"))
_KEY = compile_later(r"tensor for key (\S+)|ShardedTensor\(key='([^']+)'|^\W*(\S+) from model not in state dict")
_NO_DIR = compile_later(r"CheckpointingException: Checkpoint directory (\S+) does not exist")


@on(*(lit for lit, _ in _CKPT), "CheckpointingException: Checkpoint directory")
def dist_checkpoint_mismatch(line: Line, st: StreamState):
    t = line.text
    m = _NO_DIR.search(t)
    if m:
        return line.event("config_error", error="megatron_checkpoint", key="load", message=t.strip()[-300:],
                          reason="no_dir", path=m.group(1), tensor=None)
    reason = next((r for lit, r in _CKPT if lit in t), None)
    if reason is None:
        return None
    k = _KEY.search(t.split("KeyError:", 1)[-1].strip().strip("\"'"))
    tensor = next((g for g in k.groups() if g), None) if k else None
    return line.event("config_error", error="megatron_checkpoint", key="load", message=t.strip()[-300:],
                      reason=reason, tensor=tensor, path=None)


_UNEXPECTED = compile_later(r"Unexpected result (\S+) on rank (\d+) at iteration #(\d+) invocation #\d+ \(message='([^']*)'\)")


@on("Unexpected result ")
def rerun_rejected(line: Line, st: StreamState):
    """A spike the state machine rejected (a NaN/Inf is the loss detectors': anomaly.py reads its message)."""
    m = _UNEXPECTED.search(line.text)
    if not m or "NaN" in m.group(4) or "Inf" in m.group(4):
        return None
    msg = m.group(4)
    if "Spiky" not in msg and "large" not in msg:
        return None
    return line.event("result_check", step=int(m.group(3)), rank=int(m.group(2)), error="spike", verdict="spike", check=msg,
                      value=m.group(1), iteration=int(m.group(3)))


_VERDICT = compile_later(r"iteration #(\d+): Possible (transient|persistent) error!")


@on("Possible transient error!", "Possible persistent error!")
def rerun_verdict(line: Line, st: StreamState):
    m = _VERDICT.search(line.text)
    if not m:
        return None
    return line.event("result_check", step=int(m.group(1)), error=m.group(2), verdict=m.group(2), check=None, value=None,
                      iteration=int(m.group(1)))


@on("or no checkpoint folder at checkpoint_dir :")
def nemo_resume_no_checkpoint(line: Line, st: StreamState):
    t = line.text
    if "Cannot resume" not in t:
        return None         # 'Training from scratch.': resume_ignore_no_checkpoint was set, a warning
    d = t.split("checkpoint_dir :", 1)[1].split(". Cannot resume", 1)[0].strip()
    return line.event("config_error", error="nemo_resume_no_checkpoint", key="exp_manager.resume_if_exists",
                      message=t.strip()[-300:], path=d)
