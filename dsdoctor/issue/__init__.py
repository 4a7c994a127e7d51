"""What an issue body tells besides the log: the ds_config pasted in it (configs.py), the
versions the tools' reports state (versions.py) and the world size of the launch command
(launch.py). Read only for inputs the paste detector marked as pasted prose (a `paste_block`
event, sources/formats/paste.py), after a first pass over the log: api.diagnose_inputs then
analyses the input again with the config as `--config` would give it."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .configs import PastedConfig, choose, find_configs
from .gpus import bf16_supported
from .launch import launch_commands
from .versions import stated_versions

MAX_ISSUE_BYTES = 4 << 20          # an issue body is a few KiB; a big log with a fence is not read twice
# the facts a log states about the run that a pasted config must agree with to be the run's config
_CHECKED = ("zero_stage", "dtype", "micro_batch", "gas", "train_batch")


@dataclass
class IssueText:
    source: str
    config: PastedConfig | None = None
    chosen_by: str = ""
    rejected: str = ""                   # why a config found was not used
    versions: dict[str, tuple[str, int]] = field(default_factory=dict)
    world_size: tuple[int, int, str] | None = None     # (ranks, line, command)

    def facts(self) -> dict[str, Any]:
        f: dict[str, Any] = {k: v for k, (v, _) in self.versions.items()}
        if self.world_size:
            f["world_size"] = self.world_size[0]
        if f.get("gpu_name") and bf16_supported(f["gpu_name"]) is not None:
            f["bf16_supported"] = bf16_supported(f["gpu_name"])
        return f

    def reject_config(self, why: str) -> None:
        c, self.config = self.config, None
        self.rejected = (f"A ds_config is pasted ({self.source} lines {c.first_line}-{c.last_line}) but the log's "
                         f"own diagnosis does not hold with it ({why}): not used as the run's config.")

    def changes_the_analysis(self) -> bool:
        """Does a second pass read something the first did not (a config, a world size, a GPU
        without bf16, which drops the 'switch to bf16' fixes)?"""
        return bool(self.config or self.world_size or self.facts().get("bf16_supported") is False)

    def notes(self) -> list[str]:
        out = []
        if self.config:
            c = self.config
            out.append(f"Config read from the pasted text ({self.source} lines {c.first_line}-{c.last_line}, "
                       f"{c.how}; {self.chosen_by}): fixes are computed against it.")
        if self.rejected:
            out.append(self.rejected)
        if self.versions:
            said = ", ".join(f"{_LABEL.get(k, k)} {v} (line {n})" for k, (v, n) in self.versions.items())
            out.append(f"Versions stated in the pasted text: {said}.")
        if self.world_size:
            out.append(f"World size {self.world_size[0]} read from the launch command ({self.source} line "
                       f"{self.world_size[1]}: {self.world_size[2][:100]}).")
        return out

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"input": self.source}
        if self.config:
            d["config"] = {"first_line": self.config.first_line, "last_line": self.config.last_line,
                           "how": self.config.how, "chosen_by": self.chosen_by}
        if self.rejected:
            d["config_not_used"] = self.rejected
        if self.versions:
            d["versions"] = {k: {"value": v, "line": n} for k, (v, n) in self.versions.items()}
        if self.world_size:
            d["world_size"] = {"value": self.world_size[0], "line": self.world_size[1]}
        return d

    def found(self) -> bool:
        return bool(self.config or self.rejected or self.versions or self.world_size)


_LABEL = {"ds_version": "DeepSpeed", "torch_version": "torch", "cuda_version": "CUDA", "python_version": "Python",
          "transformers_version": "transformers", "accelerate_version": "accelerate", "nccl_version": "NCCL",
          "gpu_name": "GPU", "driver_version": "driver"}


def _disagrees(cfg: dict[str, Any], log_facts: dict[str, Any]) -> str | None:
    from ..context import facts_from_config
    mine = facts_from_config(cfg)
    if "dtype" not in mine and mine.get("fp16") is not None and mine.get("bf16") is not None:
        mine["dtype"] = "fp16" if mine["fp16"] else "bf16" if mine["bf16"] else "fp32"
    for k in _CHECKED:
        a, b = log_facts.get(k), mine.get(k)
        if a is not None and b is not None and a != b:
            return f"{k} {a} in the log, {b} in the pasted config"
    return None


def read_issue(text: str, source: str, log_facts: dict[str, Any]) -> IssueText:
    """What the text of one pasted input tells; `log_facts` what the log itself told (the first pass)."""
    lines = text.splitlines()
    out = IssueText(source)
    out.versions = {k: v for k, v in stated_versions(lines).items() if log_facts.get(k) is None}
    commands = launch_commands(lines)
    found, files = find_configs(lines)
    named = files | {c[3] for c in commands if c[3]}
    cfg, how = choose(found, named)
    if cfg is not None:
        why = _disagrees(cfg.config, log_facts)
        if why:
            out.rejected = (f"A ds_config is pasted ({source} lines {cfg.first_line}-{cfg.last_line}) but the log "
                            f"contradicts it ({why}): not used as the run's config.")
        else:
            out.config, out.chosen_by = cfg, how
    sized = [c for c in commands if c[2]]
    if sized and log_facts.get("world_size") is None:
        n, cmd, ws, _ = sized[-1]
        out.world_size = (ws, n, cmd)
    return out
