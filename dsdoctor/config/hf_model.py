"""Parameter counts from a Hugging Face config.json, mixture-of-experts included.

Two ways, the first that works:
1. transformers (and torch) installed: build the model on the meta device (no memory, no
   weights: `with torch.device("meta"): AutoModelForCausalLM.from_config(cfg)`) and count its
   parameters — exact for every architecture transformers knows.
2. otherwise count from the config's numbers: attention (grouped-query, or DeepSeek's
   multi-head latent attention), the dense MLP, and for MoE layers every expert, the router and
   the shared experts. The key names follow transformers' config classes
   (transformers/models/*/configuration_*.py):
     Mixtral, OLMoE   num_local_experts / num_experts; intermediate_size is per expert
     Qwen2-/Qwen3-MoE num_experts, moe_intermediate_size, shared_expert_intermediate_size,
                      decoder_sparse_step, mlp_only_layers
     DeepSeek-V2/V3   n_routed_experts, n_shared_experts, moe_intermediate_size,
                      first_k_dense_replace, moe_layer_freq, q_lora_rank, kv_lora_rank,
                      qk_nope_head_dim, qk_rope_head_dim, v_head_dim
     DBRX             d_model, n_heads, n_layers, attn_config.kv_n_heads,
                      ffn_config.ffn_hidden_size / moe_num_experts
"""
from __future__ import annotations

import contextlib
import io
from typing import Any

GATED = ("llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "gemma3", "mixtral", "phi3", "qwen2_moe",
         "qwen3_moe", "deepseek_v2", "deepseek_v3", "dbrx", "olmoe", "olmo2", "granitemoe")


def _int(c: dict[str, Any], *keys: str) -> int | None:
    # a shape number outside 1..2**24 is no real model's: treated as absent, never multiplied out
    return next((c[k] for k in keys if isinstance(c.get(k), int) and not isinstance(c.get(k), bool)
                 and 1 <= c[k] <= 1 << 24), None)


def _flat(c: dict[str, Any]) -> dict[str, Any]:
    """DBRX nests its attention and FFN numbers; give them the common names."""
    if c.get("model_type") != "dbrx" and "ffn_config" not in c:
        return c
    out = dict(c)
    attn = c["attn_config"] if isinstance(c.get("attn_config"), dict) else {}
    ffn = c["ffn_config"] if isinstance(c.get("ffn_config"), dict) else {}
    out.setdefault("hidden_size", c.get("d_model"))
    out.setdefault("num_attention_heads", c.get("n_heads"))
    out.setdefault("num_hidden_layers", c.get("n_layers"))
    out.setdefault("max_position_embeddings", c.get("max_seq_len"))
    out.setdefault("num_key_value_heads", attn.get("kv_n_heads"))
    out.setdefault("num_local_experts", ffn.get("moe_num_experts"))
    out.setdefault("intermediate_size", ffn.get("ffn_hidden_size"))
    return out


def _experts(c: dict[str, Any]) -> int:
    return _int(c, "num_local_experts", "num_experts", "n_routed_experts", "moe_num_experts") or 0


def _is_moe_layer(c: dict[str, Any], i: int) -> bool:
    if not _experts(c):
        return False
    if "first_k_dense_replace" in c or "moe_layer_freq" in c:       # DeepSeek
        return i >= (c.get("first_k_dense_replace") or 0) and i % (c.get("moe_layer_freq") or 1) == 0
    if i in (c.get("mlp_only_layers") or []):                        # Qwen-MoE
        return False
    return (i + 1) % (c.get("decoder_sparse_step") or 1) == 0


def _attention(c: dict[str, Any], h: int, heads: int | None) -> int:
    if c.get("kv_lora_rank"):                                        # DeepSeek multi-head latent attention
        nope, rope = c.get("qk_nope_head_dim") or 0, c.get("qk_rope_head_dim") or 0
        v, r, qr = c.get("v_head_dim") or 0, c["kv_lora_rank"], c.get("q_lora_rank")
        q = (h * qr + qr + qr * heads * (nope + rope)) if qr else h * heads * (nope + rope)
        return q + h * (r + rope) + r + r * heads * (nope + v) + heads * v * h
    heads = heads or 1
    kv = _int(c, "num_key_value_heads") or heads
    hd = _int(c, "head_dim") or h // heads
    n = h * heads * hd + 2 * h * kv * hd + heads * hd * h
    if c.get("qkv_bias") or c.get("attention_bias") or c.get("model_type") == "qwen2":
        n += heads * hd + 2 * kv * hd
    return n


def count_from_config(raw: dict[str, Any]) -> dict[str, Any]:
    """Parameters counted from the config's numbers (ValueError when the basics are missing)."""
    c = _flat(raw)
    h, layers, vocab = _int(c, "hidden_size", "n_embd", "d_model"), _int(c, "num_hidden_layers", "n_layer", "num_layers"), _int(c, "vocab_size")
    if not (h and layers and vocab):
        raise ValueError("needs hidden_size, num_hidden_layers and vocab_size")
    heads = _int(c, "num_attention_heads", "n_head")
    inter = _int(c, "intermediate_size", "n_inner") or 4 * h
    mats = 3 if (c.get("model_type") in GATED or _experts(c)) else 2
    experts = _experts(c)
    moe_inter = _int(c, "moe_intermediate_size") or inter
    shared = (_int(c, "n_shared_experts") or 0) * mats * h * moe_inter
    if _int(c, "shared_expert_intermediate_size"):
        shared += mats * h * c["shared_expert_intermediate_size"] + h          # + the shared expert's gate
    attn = _attention(c, h, heads)
    dense_layer = attn + mats * h * inter + 4 * h
    moe_layer = attn + experts * mats * h * moe_inter + experts * h + shared + 4 * h
    n_moe = sum(_is_moe_layer(c, i) for i in range(layers))
    emb = vocab * h * (1 if c.get("tie_word_embeddings", True) else 2)
    total = n_moe * moe_layer + (layers - n_moe) * dense_layer + emb
    return {"params": total, "largest": max(moe_layer if n_moe else dense_layer, vocab * h),
            "hidden": h, "layers": layers, "heads": heads,
            "seq": _int(c, "max_position_embeddings", "n_positions", "max_seq_len"),
            "experts": experts or None, "moe_layers": n_moe or None,
            "params_source": "counted from config.json" + (f" ({experts} experts in {n_moe} of {layers} layers)"
                                                            if n_moe else "")}


def count_on_meta_device(raw: dict[str, Any]) -> tuple[int, int] | str:
    """(parameters, largest module's own parameters) of the model transformers builds from this
    config on the meta device; a one-line reason when it cannot."""
    try:
        import torch
        import transformers
        from transformers import AutoModelForCausalLM
        from transformers.models.auto.configuration_auto import CONFIG_MAPPING
    except Exception as e:           # not installed, or broken: count from the config instead
        return f"transformers not importable ({type(e).__name__})"
    mt = raw.get("model_type")
    # the architecture transformers itself ships, never the repo's remote code (auto_map), and
    # no quantizer set-up: neither changes the parameter count
    raw = {k: v for k, v in raw.items() if k not in ("auto_map", "quantization_config")}
    if not isinstance(mt, str) or mt not in CONFIG_MAPPING:
        return f"transformers {transformers.__version__} does not know model_type {mt!r}"
    level = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()
    try:
        with contextlib.redirect_stderr(io.StringIO()):
            cfg = CONFIG_MAPPING[mt].from_dict(raw)
            with torch.device("meta"):
                model = AutoModelForCausalLM.from_config(cfg)
    except Exception as e:
        return f"transformers could not build {mt!r} from it ({type(e).__name__}: {str(e)[:120]})"
    finally:
        transformers.logging.set_verbosity(level)
    total = sum(p.numel() for p in model.parameters())      # tied weights are counted once
    # the largest set of parameters ZeRO-3 gathers at once: one module's own tensors (as
    # deepspeed/runtime/zero/stage3.py: estimate_zero3_model_states_mem_needs_all_live measures it)
    largest = max(sum(p.numel() for p in m.parameters(recurse=False)) for m in model.modules())
    return int(total), int(largest)


def params_from_config_dict(raw: dict[str, Any], use_transformers: bool = True) -> dict[str, Any]:
    """ValueError (one line) when the config lacks the basics or its numbers do not add up."""
    try:
        shape = count_from_config(raw)
    except (TypeError, ZeroDivisionError) as e:
        raise ValueError(f"the config's numbers are not usable ({e})") from None
    if not use_transformers:
        return shape
    meta = count_on_meta_device(raw)
    if isinstance(meta, tuple):
        import transformers
        shape["params"], shape["largest"] = meta
        shape["params_source"] = f"transformers {transformers.__version__} model built on the meta device"
    else:
        shape["params_source"] += f"; {meta}"
    return shape
