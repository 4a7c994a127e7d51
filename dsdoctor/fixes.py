"""Fixes: RFC 7386 merge patches to the ds_config, computed from the context, shown as a
diff against the user's config and checked by DeepSpeed's own config parser."""
from __future__ import annotations

import copy
import json
from typing import Any


from .expr import OMIT, evaluate
from .findings import Finding, Fix


def combine_patches(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """One merge patch doing what `a` then `b` do (b's keys win, mappings combined key by key);
    a null of either stays a deletion."""
    out = dict(a)
    for k, v in b.items():
        out[k] = combine_patches(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


class _Unknown(Exception):
    """A computed patch value needs a fact the context does not have."""


def _compute(value: Any, names: dict[str, Any]) -> Any:
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            try:
                out[k] = _compute(v, names)
            except _Unknown:
                out[k] = _Unknown
        return out
    if isinstance(value, str) and value.startswith("="):
        try:
            result = evaluate(value[1:], names)
        except TypeError:           # None (unknown fact) in arithmetic
            raise _Unknown from None
        except Exception as e:      # NameNotDefined and friends: the rule is wrong about a name
            if type(e).__name__ in ("NameNotDefined", "FunctionNotDefined", "AttributeDoesNotExist"):
                raise
            raise _Unknown from None
        if result is None:
            raise _Unknown
        return result
    return value


def _drop_unknown(patch: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    out, complete = {}, True
    for k, v in patch.items():
        if v is _Unknown:
            complete = False
            continue
        if v is OMIT:
            continue
        if isinstance(v, dict):
            sub, ok = _drop_unknown(v)
            complete &= ok
            if sub or not v:
                out[k] = sub
            continue
        out[k] = v
    return out, complete


def build_fix(spec, names: dict[str, Any]) -> Fix:
    from .expr import render
    patch, complete = None, True
    if isinstance(spec.config_patch, str):      # "=expr": the whole patch is computed (config lint)
        try:
            computed = _compute(spec.config_patch, names)
        except _Unknown:
            computed = None
        if isinstance(computed, dict):
            patch, complete = _drop_unknown(computed)
            patch = patch or None
    elif spec.config_patch:
        patch, complete = _drop_unknown(_compute(spec.config_patch, names))
        patch = patch or None
    advice = render(spec.advice, names) if spec.advice else None
    if not complete:
        note = "Some values depend on your current ds_config: run with --config ds_config.json to get them computed."
        advice = f"{advice} {note}" if advice else note
    env = {k: render(str(v), names) for k, v in spec.env.items()} if spec.env else None
    return Fix(title=render(spec.title, names), config_patch=patch, env=env, advice=advice,
               complete=complete)


def apply_patch(config: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """RFC 7386 merge (the input is never modified)."""
    import json_merge_patch       # only with a config (--config, --write-config): ~2 ms of a start-up
    return json_merge_patch.merge(copy.deepcopy(config), copy.deepcopy(patch))


def config_diff(before: dict[str, Any], after: dict[str, Any], name: str = "ds_config.json") -> str:
    import difflib               # only with --config: not on every start-up
    a = json.dumps(before, indent=2, sort_keys=False).splitlines()
    b = json.dumps(after, indent=2, sort_keys=False).splitlines()
    return "\n".join(difflib.unified_diff(a, b, f"a/{name}", f"b/{name}", lineterm="", n=2))


def validate_with_deepspeed(config: dict[str, Any], world_size: int | None = None) -> tuple[bool | None, str | None]:
    """Run DeepSpeed's own config parsing on `config`.

    Returns (True, None) when accepted, (False, message) when rejected, (None, reason) when
    DeepSpeed cannot be imported (the caller says 'not validated'). DeepSpeedConfig checks the
    batch equation against the world size it sees (1 outside a launcher), so for another
    world size we check that equation ourselves and let DeepSpeed derive train_batch_size.
    `world_size` None: not known (the equation must hold for some world size).
    """
    try:
        import os
        os.environ.setdefault("DS_ACCELERATOR", "cpu") if not _has_cuda_env() else None
        from deepspeed.runtime.config import DeepSpeedConfig
    except Exception as e:  # ImportError, or a broken install raising anything
        return None, f"deepspeed not importable ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})"
    cfg = _without_auto(config)
    tb, mb, gas = (cfg.get("train_batch_size"), cfg.get("train_micro_batch_size_per_gpu"),
                   cfg.get("gradient_accumulation_steps"))
    if world_size is None and all(isinstance(x, int) and not isinstance(x, bool) and x > 0 for x in (tb, mb, gas)):
        # the world size is not known (`doctor` on a login node, a log that does not say it): the batch
        # equation holds for the world size it implies, or for none; not checked at 1 rank, DeepSpeed's
        # default outside a launcher (every patch of a 4-rank config would be shown rejected)
        if tb % (mb * gas):
            return False, (f"train_batch_size {tb} is not a multiple of train_micro_batch_size_per_gpu {mb} * "
                           f"gradient_accumulation_steps {gas}: no world size satisfies it")
        cfg.pop("train_batch_size")
    elif world_size and world_size != 1:
        if all(isinstance(x, int) for x in (tb, mb, gas)) and tb != mb * gas * world_size:
            return False, (f"train_batch_size {tb} != train_micro_batch_size_per_gpu {mb} * "
                           f"gradient_accumulation_steps {gas} * world size {world_size}")
        if isinstance(tb, int) and isinstance(mb, int) and isinstance(gas, int):
            cfg.pop("train_batch_size")
        elif isinstance(tb, int) and (isinstance(mb, int) or isinstance(gas, int)):
            per = tb // world_size if tb % world_size == 0 else None
            if per is None:
                return False, f"train_batch_size {tb} is not divisible by world size {world_size}"
            cfg["train_batch_size"] = per
    from .config.deepspeed_import import quiet_deepspeed
    try:
        with quiet_deepspeed():   # a deprecated key's warning would land in --json's stdout
            DeepSpeedConfig(cfg)
    except Exception as e:
        msg = " ".join(str(e).split())
        return False, f"{type(e).__name__}: {msg[:400]}"
    return True, None


_BATCH_KEYS = ("train_batch_size", "train_micro_batch_size_per_gpu", "gradient_accumulation_steps")


def _without_auto(config: dict[str, Any]) -> dict[str, Any]:
    """`config` as DeepSpeed would get it from the HF integration, for checking: every "auto" value
    (transformers integrations/deepspeed.py HfTrainerDeepSpeedConfig.trainer_config_process and
    fill_match fill them from TrainingArguments and the model) left to DeepSpeed's default, the
    batch sizes to 1 when all of them are "auto". DeepSpeedConfig itself fails on the strings
    ("'>' not supported between instances of 'str' and 'int'"), which says nothing about a patch."""
    def strip(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: strip(v) for k, v in node.items() if v != "auto"}
        if isinstance(node, list):
            return [strip(v) for v in node]
        return node
    out = strip(config)
    # (gradient_accumulation_steps may be a number: accelerate's plugin sets it, the batch sizes stay "auto")
    if all(config.get(k) == "auto" or k not in config for k in _BATCH_KEYS[:2]) and \
            any(config.get(k) == "auto" for k in _BATCH_KEYS):
        out["train_micro_batch_size_per_gpu"] = 1
    return out


def _has_cuda_env() -> bool:
    import os
    return bool(os.environ.get("CUDA_VISIBLE_DEVICES")) or os.path.exists("/dev/nvidiactl")


def _leaves(patch: dict[str, Any], prefix: tuple = ()) -> dict[tuple, Any]:
    out: dict[tuple, Any] = {}
    for k, v in patch.items():
        if isinstance(v, dict) and v:
            out.update(_leaves(v, prefix + (k,)))
        else:
            out[prefix + (k,)] = v
    return out


def _conflicts(a: dict[tuple, Any], b: dict[tuple, Any]) -> bool:
    """Two patches conflict when one sets a key (or a section above it) the other sets differently."""
    for pa, va in a.items():
        for pb, vb in b.items():
            n = min(len(pa), len(pb))
            if pa[:n] == pb[:n] and not (pa == pb and va == vb):
                return True
    return False


def chosen_patches(findings: list[Finding], skip: Finding | None = None) -> list[dict[str, Any]]:
    """The patches `doctor --fix` and `analyze --write-config` apply (one rule for both).

    The first config patch of every finding that is not the consequence of another, in the
    findings' order (most likely root cause first); a patch that would change a key an earlier
    chosen patch sets is left out. A consequence's fix treats the symptom, not the cause
    (a longer NCCL timeout after an OOM on another rank), and of two conflicting fixes the one
    of the likelier cause wins."""
    chosen: list[dict[str, Any]] = []
    leaves: list[dict[tuple, Any]] = []
    for f in findings:
        if f.consequence_of:
            continue
        patch = next((fx.config_patch for fx in f.fixes if fx.config_patch), None)
        if not patch:
            continue
        mine = _leaves(patch)
        if any(_conflicts(mine, other) for other in leaves):
            continue
        leaves.append(mine)
        if f is not skip:
            chosen.append(patch)
    return chosen


def fixed_config(config: dict[str, Any], findings: list[Finding]) -> dict[str, Any]:
    """The config with the chosen patches applied (chosen_patches)."""
    for p in chosen_patches(findings):
        config = apply_patch(config, p)
    return config


def _offload_device(config: dict[str, Any]) -> Any:
    zero = config.get("zero_optimization")
    off = zero.get("offload_optimizer") if isinstance(zero, dict) else None
    return off.get("device") if isinstance(off, dict) else None


def _allow_client_optimizer(config: dict[str, Any], fx: Fix) -> None:
    """A fix that turns optimizer offload on, in a ds_config with no "optimizer" section, also sets
    zero_force_ds_cpu_optimizer false: the optimizer is then the script's own, and runtime/engine.py
    DeepSpeedEngine._configure_optimizer refuses any client optimizer but DeepSpeedCPUAdam/Lion under
    offload while that key is true (its default). Seen here: the plain offload fix failed the next run
    of a DeepSpeed script with that refusal. The HF Trainer's run passed without the key (accelerate
    accelerator.py _prepare_deepspeed maps a torch optimizer to DeepSpeedCPUAdam while the key is true)
    and with it (the torch optimizer then steps on the CPU, slower): the advice says so."""
    patched = apply_patch(config, fx.config_patch)
    if "optimizer" in patched or "zero_force_ds_cpu_optimizer" in patched or \
            _offload_device(patched) not in ("cpu", "nvme") or _offload_device(config) in ("cpu", "nvme"):
        return
    fx.config_patch = {**fx.config_patch, "zero_force_ds_cpu_optimizer": False}
    note = ("With no \"optimizer\" section the optimizer is the script's own, which DeepSpeed refuses under "
            "offload unless zero_force_ds_cpu_optimizer is false; an \"optimizer\" section instead lets DeepSpeed "
            "step with its faster DeepSpeedCPUAdam. Under the HF Trainer or accelerate leave that key out: they "
            "swap in DeepSpeedCPUAdam themselves while it is true.")
    fx.advice = f"{fx.advice} {note}" if fx.advice else note


def resolve_fixes(findings: list[Finding], config: dict[str, Any] | None,
                  world_size: int | None = None, validate: bool = True) -> None:
    """With the user's config: add a diff per fix and check by DeepSpeed's parser the config
    with this fix and the chosen fixes of the other findings (chosen_patches): another
    finding's mistake would otherwise mask whether this fix works."""
    if not config:
        return
    cache: dict[str, tuple[bool | None, str | None]] = {}
    for f in findings:
        for fx in f.fixes:
            if fx.config_patch:
                _allow_client_optimizer(config, fx)
    for f in findings:
        base = config
        if validate and any(fx.config_patch for fx in f.fixes):
            for p in chosen_patches(findings, skip=f):
                base = apply_patch(base, p)
        for fx in f.fixes:
            if not fx.config_patch:
                continue
            fx.diff = config_diff(config, apply_patch(config, fx.config_patch))
            if validate:
                patched = apply_patch(base, fx.config_patch)
                key = json.dumps(patched, sort_keys=True, default=str)
                if key not in cache:
                    cache[key] = validate_with_deepspeed(patched, world_size)
                ok, err = cache[key]
                fx.validated = ok
                fx.validation_error = err
