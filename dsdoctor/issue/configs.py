"""The ds_config a user pasted into an issue body: a JSON object (fenced or not, with `//`
comments, trailing commas and HF's "auto" values, as DeepSpeed's hjson reads it), a Python dict
literal of the training code (`ds_config = {...}`, `deepspeed={...}`, with True/None), or
accelerate's YAML `deepspeed_config:` section (its keys mapped as accelerate maps them).

Only text a person pasted: a log line that prints a config (DeepSpeed's `[config.py:..:print]
json = {` dump, read as facts by sources/formats/context_lines.py) never starts a candidate,
because a candidate starts at a line's first character or at a ds-named assignment."""
from __future__ import annotations

import ast
import json
import re
from dataclasses import dataclass, field
from typing import Any

from ..config.loader import parse_config_text
from ..errors import ConfigError

MAX_LINES = 400         # a ds_config is a few dozen lines
# keys only a DeepSpeed config has (runtime/config.py, runtime/constants.py of 0.19.8)
_DS_KEYS = frozenset({"train_batch_size", "train_micro_batch_size_per_gpu", "gradient_accumulation_steps",
                      "zero_optimization", "fp16", "bf16", "bfloat16", "zero_allow_untested_optimizer",
                      "zero_force_ds_cpu_optimizer", "steps_per_print", "wall_clock_breakdown",
                      "activation_checkpointing", "aio", "flops_profiler", "communication_data_type",
                      "prescale_gradients", "gradient_predivide_factor", "sparse_gradients", "amp",
                      "data_efficiency", "pipeline", "tensorboard", "csv_monitor", "wandb", "comet",
                      "elasticity", "compression_training", "checkpoint", "data_types", "torch_autocast",
                      "tensor_parallel", "seq_parallel_communication_data_type", "dump_state"})
_MORE_KEYS = frozenset({"optimizer", "scheduler", "gradient_clipping"})
_ANY_KEY = tuple(sorted(_DS_KEYS | _MORE_KEYS))
# keys of a log record or a metrics line, never at a ds_config's top level
_RECORD_KEYS = frozenset({"loss", "step", "epoch", "global_step", "iteration", "grad_norm", "learning_rate", "lr",
                          "timestamp", "time", "level", "msg", "message", "samples_per_second"})
MAX_CANDIDATES = 8      # more objects than this is a log of JSON records, not a pasted config
MAX_PARSED = 200        # objects with a DeepSpeed key parsed at most (a JSON-lines log has thousands)
# a Python name that holds a ds_config: ds_config, deepspeed_config, ds_cfg, DS_CONFIG, deepspeed (a kwarg)
_ASSIGN = re.compile(r"(?i)(?:^|[\s(,])((?:\w*\.)?(?:ds_?(?:config|cfg|conf)\w*|deepspeed(?:_config|_cfg|_conf)?\w*))"
                     r"\s*[=:]\s*(?:dict\()?(\{)")
_YAML_SECTION = re.compile(r"^(\s*)deepspeed_config:\s*$")
_YAML_KV = re.compile(r"^(\s*)([A-Za-z_]\w*):\s*(.*?)\s*$")
# accelerate/utils/dataclasses.py DeepSpeedPlugin.__post_init__ (1.16.0): its keys -> ds_config paths
_ACCELERATE_KEYS = {"gradient_accumulation_steps": "gradient_accumulation_steps",
                    "gradient_clipping": "gradient_clipping",
                    "zero_stage": "zero_optimization.stage",
                    "offload_optimizer_device": "zero_optimization.offload_optimizer.device",
                    "offload_param_device": "zero_optimization.offload_param.device",
                    "offload_param_nvme_path": "zero_optimization.offload_param.nvme_path",
                    "offload_optimizer_nvme_path": "zero_optimization.offload_optimizer.nvme_path",
                    "zero3_save_16bit_model": "zero_optimization.stage3_gather_16bit_weights_on_model_save"}
# a file name a line gives the block below it: `cat ds_config.json`, "my ds_config.json:", "**ds.json**"
_FILE_NAME = re.compile(r"([\w./~-]+\.json)\b")


@dataclass
class PastedConfig:
    config: dict[str, Any]
    first_line: int
    last_line: int
    how: str                        # 'JSON' | 'Python dict' | 'accelerate YAML' | 'accelerate config'
    names: set[str] = field(default_factory=set)    # file names the text gives it
    text: str | None = None         # its own text (the lines lint's evidence cites)


def plausible(cfg: Any) -> bool:
    """A ds_config, not another JSON object (a metrics line, a model's config.json)."""
    if not isinstance(cfg, dict) or not cfg:
        return False
    keys = set(cfg)
    if keys & _RECORD_KEYS:
        return False
    return bool(keys & _DS_KEYS) or len(keys & _MORE_KEYS) >= 2


def _close(lines: list[str], i: int, col: int) -> tuple[int, int] | None:
    """(line, column after) of the brace that closes the one at lines[i][col]; strings and
    `//` / `#` comments skipped."""
    depth, quote = 0, ""
    for j in range(i, min(len(lines), i + MAX_LINES)):
        text = lines[j]
        k = col if j == i else 0
        while k < len(text):
            c = text[k]
            if quote:
                if c == "\\":
                    k += 1
                elif c == quote:
                    quote = ""
            elif c in "\"'":
                quote = c
            elif c == "#" or text.startswith("//", k):
                break
            elif c == "{":
                depth += 1
            elif c == "}":
                depth -= 1
                if depth == 0:
                    return j, k + 1
            k += 1
        quote = ""          # a string never spans lines in JSON or a dict literal
    return None


def _parse(text: str, python_first: bool) -> dict[str, Any] | None:
    def as_python():
        try:
            v = ast.literal_eval(text)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            return None
        return v if isinstance(v, dict) and all(isinstance(k, str) for k in v) else None

    def as_json():
        try:                    # plain JSON first (C speed); hjson for comments, trailing commas
            v = json.loads(text)
            return v if isinstance(v, dict) else None
        except (ValueError, RecursionError):
            pass
        try:
            return parse_config_text(text)
        except ConfigError:
            return None
    for f in ((as_python, as_json) if python_first else (as_json, as_python)):
        v = f()
        if v is not None:
            return v
    return None


def _name_above(lines: list[str], i: int) -> set[str]:
    """The file name the prose or command just above a block gives it (up to 3 lines up, past a fence)."""
    for j in range(i - 1, max(-1, i - 4), -1):
        m = _FILE_NAME.search(lines[j])
        if m:
            return {m.group(1).rsplit("/", 1)[-1]}
    return set()


def _objects(lines: list[str]) -> list[PastedConfig]:
    out: list[PastedConfig] = []
    i = parsed = 0
    while i < len(lines):
        raw = lines[i]
        text = raw.lstrip()
        m = _ASSIGN.search(raw) if "{" in raw else None
        start = None
        if text.startswith("{") and (text.rstrip() == "{" or text[1:2] in "\"' " or text[1:2] == ""):
            start, how, py = raw.index("{"), "JSON", False
        elif m:
            start, how, py = m.start(2), "Python dict", True
        if start is None:
            i += 1
            continue
        end = _close(lines, i, start)
        if end is None:
            i += 1
            continue
        j, col = end
        body = "\n".join([lines[i][start:], *lines[i + 1:j + 1]]) if j > i else lines[i][start:col]
        if j > i:
            body = body[:len(body) - len(lines[j]) + col]
        # (parsed only when a DeepSpeed key is in it: a pasted JSON-lines log has thousands of objects)
        cfg = None
        if any(k in body for k in _ANY_KEY):
            parsed += 1
            if parsed > MAX_PARSED:
                return []
            cfg = _parse(body, py)
        if cfg is not None and _accelerate_keys(cfg):
            # `accelerate env` prints the default config's section as a dict (accelerate/commands/env.py:
            # `deepspeed_config: {'zero_stage': 2, 'offload_optimizer_device': 'none', ...}`): accelerate's
            # own keys, which it maps into a ds_config as its YAML's
            cfg, how = _from_accelerate(cfg, lines, i), "accelerate config"
        if cfg is not None and plausible(cfg):
            if len(out) >= MAX_CANDIDATES:
                return []
            if py and how == "Python dict" and "True" not in body and "None" not in body and "False" not in body \
                    and "'" not in body:
                how = "JSON"    # a JSON object assigned in code reads as the same thing
            out.append(PastedConfig(cfg, i + 1, j + 1, how, _name_above(lines, i), body))
            i = j + 1
        else:
            i += 1
    return out


def _yaml_value(v: str) -> Any:
    v = v.strip().strip("'\"")
    low = v.lower()
    if low in ("true", "false"):
        return low == "true"
    if low in ("null", "~", ""):
        return None
    try:
        return int(v)
    except ValueError:
        pass
    try:
        return float(v)
    except ValueError:
        return v


def _set(cfg: dict, dotted: str, value: Any) -> None:
    *parents, last = dotted.split(".")
    for p in parents:
        cfg = cfg.setdefault(p, {})
    cfg[last] = value


def _accelerate(lines: list[str]) -> tuple[list[PastedConfig], set[str]]:
    """accelerate config YAML: the `deepspeed_config:` section as accelerate turns it into a
    ds_config (its inline keys), or the `deepspeed_config_file:` it names."""
    out, files = [], set()
    for i, raw in enumerate(lines):
        m = _YAML_SECTION.match(raw)
        if not m:
            continue
        indent, keys, j = len(m.group(1)), {}, i + 1
        while j < len(lines):
            kv = _YAML_KV.match(lines[j])
            if not kv or len(kv.group(1)) <= indent:
                break
            keys[kv.group(2)] = _yaml_value(kv.group(3))
            j += 1
        if keys.get("deepspeed_config_file"):
            files.add(str(keys["deepspeed_config_file"]).rsplit("/", 1)[-1])
            continue
        if "zero_stage" not in keys:
            continue
        out.append(PastedConfig(_from_accelerate(keys, lines, i), i + 1, j, "accelerate YAML"))
    return out, files


def _accelerate_keys(cfg: dict[str, Any]) -> bool:
    """Keys of accelerate's DeepSpeedPlugin (zero_stage, offload_*_device), not of a ds_config."""
    return "zero_stage" in cfg and not set(cfg) & (_DS_KEYS - {"gradient_accumulation_steps"})


def _from_accelerate(keys: dict[str, Any], lines: list[str], i: int) -> dict[str, Any]:
    """The ds_config accelerate builds from its plugin's keys at lines[i]."""
    cfg: dict[str, Any] = {"train_batch_size": "auto", "train_micro_batch_size_per_gpu": "auto"}
    for k, path in _ACCELERATE_KEYS.items():
        if keys.get(k) is not None:
            _set(cfg, path, keys[k])
    cfg.setdefault("gradient_accumulation_steps", 1)
    # the config's mixed_precision (accelerate's Accelerator sets fp16/bf16 'enabled' from it): the YAML's
    # top-level key, or `accelerate env`'s `- mixed_precision: bf16` line beside the dict
    for raw2 in lines[max(0, i - 40):i + 40]:
        mp = re.match(r"^\s*(?:-\s*)?mixed_precision:\s*['\"]?(fp16|bf16)", raw2)
        if mp:
            cfg[mp.group(1)] = {"enabled": True}
    return cfg


def find_configs(lines: list[str]) -> tuple[list[PastedConfig], set[str]]:
    """Every plausible ds_config in the text, in order (the same config pasted twice once), and
    the config file names accelerate's YAML points at."""
    found = _objects(lines)
    yaml_found, files = _accelerate(lines)
    found = sorted(found + yaml_found, key=lambda c: c.first_line)
    unique: list[PastedConfig] = []
    for c in found:
        same = next((u for u in unique if u.config == c.config), None)
        if same is None:
            unique.append(c)
        else:               # the later paste of the same config: keep its place, merge its names
            same.names |= c.names
    return unique, files


def choose(found: list[PastedConfig], named: set[str]) -> tuple[PastedConfig | None, str]:
    """The run's config among those found: the only one; else the one whose file name the
    launch command (or accelerate's deepspeed_config_file) names; else the last pasted."""
    if not found:
        return None, ""
    if len(found) == 1:
        return found[0], "the only ds_config in the text"
    hit = [c for c in found if c.names & named]
    if len(hit) == 1:
        return hit[0], f"the one the launch command names ({sorted(hit[0].names & named)[0]}), of {len(found)}"
    return found[-1], f"the last of {len(found)} different ds_configs in the text"
