"""What keys the installed DeepSpeed reads, at every level of a ds_config.

Introspected, not hand-copied:
- top-level keys and the sub-keys of the dict sections read by hand (activation_checkpointing,
  flops_profiler, checkpoint, data_types, aio, autotuning, torch_autocast, ...) are recorded by
  running DeepSpeedConfig on a config whose dicts note every key looked up;
- data_efficiency, read by hand at every level, is recorded by running DeepSpeed's readers
  (data_efficiency.py);
- sections modelled by pydantic (zero_optimization and its offload blocks, fp16, bf16,
  monitors, comms_logger, timers.throughput, compile, hybrid_engine, tensor_parallel) are read
  from the models' fields and aliases, recursing into nested models.
Without deepspeed, a snapshot of the same catalogue taken from deepspeed 0.19.8
(catalogue_snapshot.json, regenerated with `python -m dsdoctor.config.catalogue`) is used; it
also holds the params of DeepSpeed's own optimizers (optimizers.py).
"""
from __future__ import annotations

import json
import sys
import typing
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from . import data_efficiency
from .deepspeed_import import deepspeed_module, quiet_deepspeed
from .snapshot import SNAPSHOT


# top-level section -> pydantic model ("module:Class"); the fields come from the model.
PYDANTIC_SECTIONS = {
    "zero_optimization": "deepspeed.runtime.zero.config:DeepSpeedZeroConfig",
    "fp16": "deepspeed.runtime.precision_config:DeepSpeedFP16Config",
    "bf16": "deepspeed.runtime.precision_config:DeepSpeedBF16Config",
    "bfloat16": "deepspeed.runtime.precision_config:DeepSpeedBF16Config",
    "comms_logger": "deepspeed.comm.config:CommsLoggerConfig",
    "tensorboard": "deepspeed.monitor.config:TensorBoardConfig",
    "wandb": "deepspeed.monitor.config:WandbConfig",
    "csv_monitor": "deepspeed.monitor.config:CSVConfig",
    "comet": "deepspeed.monitor.config:CometConfig",
    "compile": "deepspeed.compile.config:CompileConfig",
    "hybrid_engine": "deepspeed.runtime.config:HybridEngineConfig",
    "tensor_parallel": "deepspeed.runtime.tensor_parallel.config:TPTrainingConfig",
    "weight_quantization": "deepspeed.inference.config:WeightQuantConfig",
}
# sections DeepSpeed reads with dict lookups (unknown keys silently ignored): record them
RECORDED_SECTIONS = ("activation_checkpointing", "flops_profiler", "checkpoint", "data_types", "aio",
                     "autotuning", "torch_autocast", "optimizer", "scheduler", "timers", "expert_parallel")
# probes that must not be empty for DeepSpeed to read the section (parse_autoep_config returns early on {})
PROBE_VALUES = {"expert_parallel": {"enabled": False}}


@dataclass
class Section:
    """The keys of one mapping in a ds_config."""
    keys: set[str] = field(default_factory=set)
    strict: bool = False                 # pydantic extra="forbid": an unknown key is a hard error
    children: dict[str, "Section"] = field(default_factory=dict)
    types: dict[str, str] = field(default_factory=dict)   # key -> 'int' | 'float' | 'bool' | 'str' | ...

    def to_dict(self) -> dict[str, Any]:
        return {"keys": sorted(self.keys), "strict": self.strict, "types": self.types,
                "children": {k: v.to_dict() for k, v in self.children.items()}}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Section":
        return cls(keys=set(d["keys"]), strict=d["strict"], types=dict(d.get("types", {})),
                   children={k: cls.from_dict(v) for k, v in d["children"].items()})


@dataclass
class Catalogue:
    root: Section
    removed: dict[str, str]            # top-level key -> DeepSpeed's own error message
    removed_zero: dict[str, str]       # zero_optimization key -> message
    source: str                        # "deepspeed 0.19.8 (introspected)" or "snapshot ..."

    def section(self, path: tuple[str, ...]) -> Section | None:
        s: Section | None = self.root
        for p in path:
            if s is None:
                return None
            s = s.children.get(p)
        return s


def _import(ref: str) -> Any:
    import importlib
    mod, _, name = ref.partition(":")
    return getattr(importlib.import_module(mod), name)


def _model_section(model: type) -> Section:
    from pydantic import BaseModel
    sec = Section(strict=model.model_config.get("extra") == "forbid")
    for name, f in model.model_fields.items():
        names = {name} | ({f.alias} if f.alias else set())
        if f.validation_alias and isinstance(f.validation_alias, str):
            names.add(f.validation_alias)
        sec.keys |= names
        sub = _nested_model(f.annotation, BaseModel)
        t = _type_name(f.annotation)
        for n in names:
            if t:
                sec.types[n] = t
            if sub is not None:
                sec.children[n] = _model_section(sub)
    # deprecated fields still accepted with a warning (e.g. zero_optimization.cpu_offload)
    return sec


def _nested_model(ann: Any, base: type) -> type | None:
    if isinstance(ann, type) and issubclass(ann, base):
        return ann
    for a in typing.get_args(ann):
        m = _nested_model(a, base)
        if m is not None:
            return m
    return None


def _type_name(ann: Any) -> str | None:
    """A simple name for scalar field types (used for wrong-type checks without deepspeed)."""
    import enum
    args = [a for a in typing.get_args(ann) if a is not type(None)] if typing.get_args(ann) else [ann]
    if len(args) != 1:
        return None
    a = args[0]
    if a is bool:
        return "bool"
    if a is int:
        return "int"
    if a is float:
        return "float"
    if a is str:
        return "str"
    if isinstance(a, type) and issubclass(a, enum.Enum):
        return "enum:" + "|".join(str(m.value) for m in a)
    return None


class _Recorder(dict):
    """A dict that notes every key DeepSpeed looks up in it."""
    seen: dict[str, set[str]]
    path: str

    def _note(self, k: Any) -> None:
        self.seen.setdefault(self.path, set()).add(k)

    def get(self, k, *a):
        self._note(k)
        return super().get(k, *a)

    def __getitem__(self, k):
        self._note(k)
        return super().__getitem__(k)

    def __contains__(self, k):
        self._note(k)
        return super().__contains__(k)

    def keys(self):
        return _RecordingKeys(self)

    def __copy__(self):
        return _rec(dict(self), self.path, self.seen)


class _RecordingKeys:
    """`KEY in d.keys()` is how runtime/config.py reads optimizer.legacy_fusion."""
    def __init__(self, d: _Recorder):
        self.d = d

    def __contains__(self, k):
        return k in self.d

    def __iter__(self):
        return iter(dict.keys(self.d))


def _rec(d: dict, path: str, seen: dict[str, set[str]]) -> _Recorder:
    r = _Recorder(d)
    r.path, r.seen = path, seen
    return r


def _introspect() -> Catalogue:
    ds = deepspeed_module()
    from deepspeed.runtime import config as dsc
    seen: dict[str, set[str]] = {}
    probe = {"train_micro_batch_size_per_gpu": 1,
             "optimizer": _rec({"type": "Adam", "params": {}}, "optimizer", seen),
             "scheduler": _rec({"type": "WarmupLR", "params": {}}, "scheduler", seen),
             "timers": _rec({}, "timers", seen)}
    for s in RECORDED_SECTIONS:
        probe.setdefault(s, _rec(dict(PROBE_VALUES.get(s, {})), s, seen))
    with quiet_deepspeed():
        dsc.DeepSpeedConfig(_rec(probe, "", seen))
    removed = dict(dsc._REMOVED_TOP_LEVEL_CONFIG_KEYS)
    removed_zero = dict(dsc._REMOVED_ZERO_CONFIG_KEYS)
    root = Section(keys=set(seen.get("", set())) - set(removed))
    root.keys |= set(PYDANTIC_SECTIONS) | set(RECORDED_SECTIONS) | {"pipeline"}
    for s in RECORDED_SECTIONS:
        root.children[s] = Section(keys=set(seen.get(s, set())))
    root.children["pipeline"] = Section(keys=set(dsc.get_pipeline_config({})))
    root.children["timers"].children["throughput"] = _model_section(
        _import("deepspeed.utils.config:DeepSpeedThroughputTimerConfig"))
    try:
        _add_paths(root, data_efficiency.record(_rec))
    except Exception:           # another layout: data_efficiency stays checked at its first level only
        pass
    for name, ref in PYDANTIC_SECTIONS.items():
        try:
            root.children[name] = _model_section(_import(ref))
        except Exception:       # a model moved in another version: leave that section unchecked
            continue
    for k in ("train_batch_size", "train_micro_batch_size_per_gpu", "gradient_accumulation_steps",
              "steps_per_print"):
        root.types[k] = "int"
    root.types["gradient_clipping"] = "float"
    return Catalogue(root, removed, removed_zero, f"deepspeed {ds.__version__} (introspected)")


def _add_paths(root: Section, paths: dict[str, set[str]]) -> None:
    """Merge recorded {"a.b.c": keys} into the tree; "*" in keys means any key."""
    for path, keys in paths.items():
        sec = root
        for part in path.split("."):
            sec.keys.add(part)
            sec = sec.children.setdefault(part, Section())
        sec.keys |= keys


@lru_cache(maxsize=None)
def catalogue() -> Catalogue:
    if deepspeed_module() is not None:
        try:
            return _introspect()
        except Exception:      # an unexpected DeepSpeed layout: the checked snapshot is still right for 0.19
            pass
    return snapshot_catalogue()


@lru_cache(maxsize=None)
def snapshot_catalogue() -> Catalogue:
    """The checked snapshot alone: no deepspeed import (analyze reads it for a key's spelling)."""
    d = json.loads(SNAPSHOT.read_text(encoding="utf-8"))
    return Catalogue(Section.from_dict(d["root"]), d["removed"], d["removed_zero"],
                     f"snapshot of deepspeed {d['version']} (deepspeed not importable)")


def dump_snapshot(path: Path = SNAPSHOT) -> None:
    cat = _introspect()
    ds = deepspeed_module()
    from .optimizers import introspect_table
    path.write_text(json.dumps({"version": ds.__version__, "root": cat.root.to_dict(),
                                "removed": cat.removed, "removed_zero": cat.removed_zero,
                                "optimizers": introspect_table()},
                               indent=1, sort_keys=True) + "\n", encoding="utf-8")


if __name__ == "__main__":
    dump_snapshot(Path(sys.argv[1]) if len(sys.argv) > 1 else SNAPSHOT)
    print(f"wrote {SNAPSHOT}")
