"""The keys DeepSpeed reads below `data_efficiency`, at every level, recorded from the installed code.

DeepSpeed reads this section by hand (runtime/data_pipeline/config.py) and copies whole
sub-dicts (curriculum_learning, dynamic_batching, random_ltd) into its config, to be read
later by other code; unknown keys anywhere in it are silently ignored. So the keys are found
two ways, neither hand-copied:
- recorded: DeepSpeed's own readers are run on dicts that note every lookup
  (get_data_efficiency_config, CurriculumScheduler for every schedule type, RandomLTDScheduler,
  RandomLayerTokenDrop.init_config);
- scanned: the readers that need a dataset or an engine to run (data_sampler.py,
  variable_batch_size_and_lr.py, engine.py) are parsed, and every data_pipeline constant used
  there as a dict key (`x[KEY]`, `x.get(KEY)`, `KEY in x`) is allowed in the sections of its
  family (the constant's name prefix). That is lenient (a key may be allowed one level off)
  but never flags a key DeepSpeed reads.
"""
from __future__ import annotations

import ast
import inspect
from typing import Any, Callable

ROOT = "data_efficiency"
_DS = ROOT + ".data_sampling"
_CL = _DS + ".curriculum_learning"
METRICS = _CL + ".curriculum_metrics"      # metric name (chosen by the user) -> metric config
METRIC = METRICS + ".*"
_RL = ROOT + ".data_routing.random_ltd"

# section -> prefix of the constants (deepspeed.runtime.data_pipeline.constants) naming its keys
FAMILIES = {
    ROOT: "DATA_EFFICIENCY_",
    _DS: "DATA_SAMPLING_",
    _CL: "CURRICULUM_LEARNING_",
    METRIC: "CURRICULUM_LEARNING_",
    _DS + ".dynamic_batching": "DYNAMIC_BATCHING_",
    ROOT + ".data_routing": "DATA_ROUTING_",
    _RL: "RANDOM_LTD_",
}
# readers parsed rather than run (module names under deepspeed)
SCANNED = ("runtime.data_pipeline.data_sampling.data_sampler",
           "runtime.data_pipeline.data_sampling.variable_batch_size_and_lr",
           "runtime.engine")


def record(rec: Callable[[dict, str, dict], dict]) -> dict[str, set[str]]:
    """Dotted section path -> keys DeepSpeed reads there ("*" = any key). `rec(d, path, seen)`
    makes a dict that notes lookups into seen[path]."""
    import importlib
    from deepspeed.runtime.data_pipeline import config as dpc
    from deepspeed.runtime.data_pipeline import constants as C
    from deepspeed.runtime.data_pipeline.curriculum_scheduler import CurriculumScheduler
    from deepspeed.runtime.data_pipeline.data_routing.scheduler import RandomLTDScheduler

    seen: dict[str, set[str]] = {}

    def r(d: dict, path: str) -> dict:
        return rec(d, path, seen)

    def metric(schedule_type: str) -> dict:
        sc = r({"difficulty": [1, 2], "max_step": [1], "total_curriculum_step": 10,
                "difficulty_step": 8, "root_degree": 2}, METRIC + ".schedule_config")
        return r({"min_difficulty": 1, "max_difficulty": 2, "schedule_type": schedule_type,
                  "schedule_config": sc}, METRIC)

    def ltd() -> dict:
        steps = r({"require_steps": 1, "seq_per_step": 1}, _RL + ".random_ltd_schedule.schedule_config")
        sched = r({"min_value": 1, "max_value": 2, "schedule_type": "fixed_linear", "schedule_config": steps},
                  _RL + ".random_ltd_schedule")
        lr = r({"enabled": False}, _RL + ".layer_token_lr_schedule")
        return r({"enabled": True, "total_layer_num": 2, "random_ltd_layer_num": 1, "random_ltd_layer_id": [0],
                  "global_batch_size": 1, "micro_batch_size": 1, "random_ltd_schedule": sched,
                  "layer_token_lr_schedule": lr, "model_mask_name": "m", "model_type": "decoder",
                  "hidden_state_order": "batch_seq_dim"}, _RL)

    probe = r({"data_efficiency": r({
        "enabled": True,
        "data_sampling": r({
            "enabled": True,
            "curriculum_learning": r({"enabled": True, "curriculum_metrics": r({}, METRICS)}, _CL),
            "dynamic_batching": r({"enabled": True, "max_tokens": 1, "max_batch_size": 1}, _DS + ".dynamic_batching"),
        }, _DS),
        "data_routing": r({"enabled": True, "random_ltd": ltd()}, ROOT + ".data_routing"),
    }, ROOT)}, "")
    dpc.get_data_efficiency_config(probe)

    types = [getattr(C, n) for n in dir(C) if n.startswith("CURRICULUM_LEARNING_SCHEDULE_")
             and n.rsplit("_", 1)[-1] in ("DISCRETE", "ROOT", "LINEAR", "CUSTOM")]
    for t in types:
        try:
            CurriculumScheduler(metric(t))
        except Exception:       # a reader that changed shape: what it read so far is recorded
            pass
    try:
        s = RandomLTDScheduler(ltd())
        s.update_seq(0)
        from deepspeed.runtime.data_pipeline.data_routing.basic_layer import RandomLayerTokenDrop
        import torch
        RandomLayerTokenDrop(torch.nn.Identity()).init_config(ltd(), s, 0)
    except Exception:
        pass

    out = {path: set(keys) for path, keys in seen.items() if path.startswith(ROOT)}
    out[METRICS] = {"*"}        # data_sampler.py iterates it: every key is a metric name
    used = set()
    for mod in SCANNED:
        try:
            used |= _keys_used(importlib.import_module("deepspeed." + mod), C)
        except Exception:
            continue
    for path, prefix in FAMILIES.items():
        out.setdefault(path, set()).update(v for n, v in used if n.startswith(prefix))
    return out


def _keys_used(module: Any, constants: Any) -> set[tuple[str, str]]:
    """(constant name, value) for every data_pipeline constant used as a dict key in module."""
    tree = ast.parse(inspect.getsource(module))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Name):
            if not _is_state(node.value):
                names.add(node.slice.id)
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
              and node.func.attr in ("get", "pop") and node.args and isinstance(node.args[0], ast.Name)):
            names.add(node.args[0].id)
        elif (isinstance(node, ast.Compare) and isinstance(node.left, ast.Name)
              and any(isinstance(o, (ast.In, ast.NotIn)) for o in node.ops)):
            names.add(node.left.id)
    return {(n, getattr(constants, n)) for n in names
            if n.isupper() and isinstance(getattr(constants, n, None), str)}


def _is_state(node: ast.AST) -> bool:
    """`state_dict[KEY]` / `self.state[KEY]`: checkpoint state, not the user's config."""
    return ((isinstance(node, ast.Name) and node.id == "state_dict")
            or (isinstance(node, ast.Attribute) and node.attr == "state"))
