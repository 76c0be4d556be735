#!/usr/bin/python3
"""Write a tiny random Hugging Face-style model directory (config.json + safetensors) of one family.

  /usr/bin/python3 make_tiny_model.py --family deepseek_v3 --out DIR --seed 1 [--dtype f32|bf16|fp8]
      [--set key=JSON ...] [--shards N] [--mtp] [--example B T]

Families: deepseek_v3, deepseek_v2_lite (model_type deepseek_v2), llama, qwen2, qwen3, qwen2_moe,
qwen3_moe.  Tensor names and config keys are the real HF ones (formats.md 1.7, 2).  Deterministic for
a seed (torch CPU generator, tensors drawn in expected_tensors() order).  See README.md.
"""

import argparse
import copy
import json
import os
import sys

import torch

sys.dont_write_bytecode = True          # keep the source tree free of __pycache__
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import stio  # noqa: E402
import qaft_torch_ref as ref  # noqa: E402

FAMILIES = ("deepseek_v3", "deepseek_v2_lite", "llama", "qwen2", "qwen3", "qwen2_moe", "qwen3_moe")


def family_config(family):
    """The tiny config of each family (before --set overrides)."""
    if family == "deepseek_v3":
        return {
            "architectures": ["DeepseekV3ForCausalLM"], "model_type": "deepseek_v3",
            "vocab_size": 320, "hidden_size": 64, "intermediate_size": 160, "moe_intermediate_size": 32,
            "num_hidden_layers": 3, "num_attention_heads": 4, "num_key_value_heads": 4,
            "n_shared_experts": 1, "n_routed_experts": 16, "num_experts_per_tok": 4,
            "n_group": 4, "topk_group": 2, "topk_method": "noaux_tc", "scoring_func": "sigmoid",
            "norm_topk_prob": True, "routed_scaling_factor": 2.5,
            "first_k_dense_replace": 1, "moe_layer_freq": 1,
            "q_lora_rank": 48, "kv_lora_rank": 32,
            "qk_nope_head_dim": 16, "qk_rope_head_dim": 16, "v_head_dim": 24,
            "hidden_act": "silu", "max_position_embeddings": 163840, "rms_norm_eps": 1e-6,
            "rope_theta": 10000.0,
            "rope_scaling": {"type": "yarn", "factor": 40.0, "original_max_position_embeddings": 4096,
                             "beta_fast": 32, "beta_slow": 1, "mscale": 1.0, "mscale_all_dim": 1.0},
            "attention_bias": False, "attention_dropout": 0.0, "tie_word_embeddings": False,
            "num_nextn_predict_layers": 0, "aux_loss_alpha": 0.001, "seq_aux": True, "ep_size": 1,
            "initializer_range": 0.02, "use_cache": True, "bos_token_id": 0, "eos_token_id": 1,
        }
    if family == "deepseek_v2_lite":
        return {
            "architectures": ["DeepseekV2ForCausalLM"], "model_type": "deepseek_v2",
            "vocab_size": 288, "hidden_size": 64, "intermediate_size": 128, "moe_intermediate_size": 24,
            "num_hidden_layers": 3, "num_attention_heads": 4, "num_key_value_heads": 4,
            "n_shared_experts": 2, "n_routed_experts": 8, "num_experts_per_tok": 3,
            "n_group": 1, "topk_group": 1, "topk_method": "greedy", "scoring_func": "softmax",
            "norm_topk_prob": False, "routed_scaling_factor": 1.0,
            "first_k_dense_replace": 1, "moe_layer_freq": 1,
            "q_lora_rank": None, "kv_lora_rank": 32,
            "qk_nope_head_dim": 16, "qk_rope_head_dim": 8, "v_head_dim": 16,
            "hidden_act": "silu", "max_position_embeddings": 163840, "rms_norm_eps": 1e-6,
            "rope_theta": 10000.0,
            "rope_scaling": {"type": "yarn", "factor": 40.0, "original_max_position_embeddings": 4096,
                             "beta_fast": 32, "beta_slow": 1, "mscale": 0.707, "mscale_all_dim": 0.707},
            "attention_bias": False, "attention_dropout": 0.0, "tie_word_embeddings": False,
            "aux_loss_alpha": 0.001, "seq_aux": True, "ep_size": 1,
            "initializer_range": 0.02, "use_cache": True, "bos_token_id": 0, "eos_token_id": 1,
        }
    if family == "llama":
        return {
            "architectures": ["LlamaForCausalLM"], "model_type": "llama",
            "vocab_size": 256, "hidden_size": 64, "intermediate_size": 176,
            "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16,
            "hidden_act": "silu", "max_position_embeddings": 131072, "rms_norm_eps": 1e-5,
            "rope_theta": 500000.0,
            "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                             "high_freq_factor": 4.0, "original_max_position_embeddings": 8192},
            "attention_bias": False, "attention_dropout": 0.0, "mlp_bias": False, "pretraining_tp": 1,
            "tie_word_embeddings": False, "initializer_range": 0.02, "use_cache": True,
            "bos_token_id": 1, "eos_token_id": 2,
        }
    if family == "qwen2":
        return {
            "architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2",
            "vocab_size": 300, "hidden_size": 64, "intermediate_size": 128,
            "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
            "hidden_act": "silu", "max_position_embeddings": 32768, "rms_norm_eps": 1e-6,
            "rope_theta": 1000000.0, "rope_scaling": None,
            "use_sliding_window": False, "sliding_window": 32768, "max_window_layers": 2,
            "attention_dropout": 0.0, "tie_word_embeddings": True, "initializer_range": 0.02,
            "use_cache": True, "bos_token_id": 1, "eos_token_id": 2,
        }
    if family == "qwen3":
        return {
            "architectures": ["Qwen3ForCausalLM"], "model_type": "qwen3",
            "vocab_size": 300, "hidden_size": 64, "intermediate_size": 128,
            "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 32,
            "hidden_act": "silu", "max_position_embeddings": 40960, "rms_norm_eps": 1e-6,
            "rope_theta": 1000000.0, "rope_scaling": None, "attention_bias": False,
            "use_sliding_window": False, "sliding_window": None, "max_window_layers": 2,
            "attention_dropout": 0.0, "tie_word_embeddings": True, "initializer_range": 0.02,
            "use_cache": True, "bos_token_id": 1, "eos_token_id": 2,
        }
    if family == "qwen2_moe":
        return {
            "architectures": ["Qwen2MoeForCausalLM"], "model_type": "qwen2_moe",
            "vocab_size": 320, "hidden_size": 64, "intermediate_size": 128, "moe_intermediate_size": 32,
            "shared_expert_intermediate_size": 64,
            "num_hidden_layers": 3, "num_attention_heads": 4, "num_key_value_heads": 2,
            "num_experts": 8, "num_experts_per_tok": 2, "norm_topk_prob": False,
            "decoder_sparse_step": 1, "mlp_only_layers": [1],
            "output_router_logits": False, "router_aux_loss_coef": 0.001,
            "hidden_act": "silu", "max_position_embeddings": 32768, "rms_norm_eps": 1e-6,
            "rope_theta": 1000000.0, "rope_scaling": None,
            "use_sliding_window": False, "sliding_window": 32768, "max_window_layers": 3,
            "attention_dropout": 0.0, "tie_word_embeddings": False, "initializer_range": 0.02,
            "use_cache": True, "bos_token_id": 1, "eos_token_id": 2,
        }
    if family == "qwen3_moe":
        return {
            "architectures": ["Qwen3MoeForCausalLM"], "model_type": "qwen3_moe",
            "vocab_size": 320, "hidden_size": 64, "intermediate_size": 128, "moe_intermediate_size": 32,
            "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16,
            "num_experts": 16, "num_experts_per_tok": 4, "norm_topk_prob": True,
            "decoder_sparse_step": 1, "mlp_only_layers": [],
            "output_router_logits": False, "router_aux_loss_coef": 0.001,
            "hidden_act": "silu", "max_position_embeddings": 40960, "rms_norm_eps": 1e-6,
            "rope_theta": 1000000.0, "rope_scaling": None, "attention_bias": False,
            "use_sliding_window": False, "sliding_window": None, "max_window_layers": 2,
            "attention_dropout": 0.0, "tie_word_embeddings": False, "initializer_range": 0.02,
            "use_cache": True, "bos_token_id": 1, "eos_token_id": 2,
        }
    raise ValueError(f"unknown family {family!r} (one of {', '.join(FAMILIES)})")


def apply_overrides(cfg, sets):
    """--set key=JSON (dotted keys reach into nested objects, e.g. rope_scaling.factor=4)."""
    for s in sets or []:
        if "=" not in s:
            raise ValueError(f"--set {s!r}: expected key=value")
        k, v = s.split("=", 1)
        try:
            val = json.loads(v)
        except json.JSONDecodeError:
            val = v
        d = cfg
        parts = k.split(".")
        for part in parts[:-1]:
            if not isinstance(d.get(part), dict):
                d[part] = {}
            d = d[part]
        d[parts[-1]] = val
    return cfg


def _init(name, shape, gen, family):
    """Random init: Linear weights N(0, clamp(0.8/sqrt(in), 0.02, 0.1)); norms 1 + N(0, 0.1);
    biases N(0, 0.1); embeddings like a Linear with fan_in = hidden (logits O(1) also when tied);
    e_score_correction_bias N(-0.5, 0.2) (shifted negative on
    purpose so biased sigmoid scores are sometimes < 0, where the official -inf group mask and HF's
    0.0 fill disagree)."""
    def randn(*s):
        return torch.randn(*s, generator=gen, dtype=torch.float32)
    if name.endswith("e_score_correction_bias"):
        return -0.5 + 0.2 * randn(*shape)
    if name.endswith("norm.weight") or name.endswith("layernorm.weight"):
        return 1.0 + 0.1 * randn(*shape)
    if name.endswith(".bias"):
        return 0.1 * randn(*shape)
    fan_in = shape[-1]
    std = min(max(0.8 / fan_in ** 0.5, 0.02), 0.1)
    return std * randn(*shape)


def _mtp_tensors(cfg, mc):
    """Shapes of one MTP layer model.layers.{num_hidden_layers}.* (official README_WEIGHTS layout)."""
    c2 = copy.deepcopy(cfg)
    c2["num_hidden_layers"] = mc.n_layers + 1
    mc2 = ref.ModelConfig(c2)
    L = mc.n_layers
    pre = f"model.layers.{L}."
    out = {k: v for k, v in ref.expected_tensors(mc2).items() if k.startswith(pre)}
    H, V = mc.hidden, mc.vocab
    out[pre + "embed_tokens.weight"] = [V, H]
    out[pre + "enorm.weight"] = [H]
    out[pre + "hnorm.weight"] = [H]
    out[pre + "eh_proj.weight"] = [H, 2 * H]
    out[pre + "shared_head.norm.weight"] = [H]
    out[pre + "shared_head.head.weight"] = [V, H]
    return out


def make_model(family, out, seed=0, dtype="f32", sets=None, shards=1, mtp=False, example=None):
    cfg = apply_overrides(family_config(family), sets)
    if dtype not in ("f32", "bf16", "fp8"):
        raise ValueError("--dtype must be f32, bf16 or fp8")
    cfg["torch_dtype"] = {"f32": "float32", "bf16": "bfloat16", "fp8": "bfloat16"}[dtype]
    if dtype == "fp8":
        cfg["quantization_config"] = {"activation_scheme": "dynamic", "fmt": "e4m3",
                                      "quant_method": "fp8", "weight_block_size": [128, 128]}
    if mtp:
        cfg["num_nextn_predict_layers"] = 1
    mc = ref.ModelConfig(cfg)
    shapes = dict(ref.expected_tensors(mc))
    if mtp:
        shapes.update(_mtp_tensors(cfg, mc))
    gen = torch.Generator().manual_seed(int(seed))
    tensors = {}      # name -> (tensor or numpy, dtype string)
    scales = {}
    for name, shape in shapes.items():
        w = _init(name, shape, gen, family)
        if name.endswith("e_score_correction_bias"):
            tensors[name] = (w, "F32")                      # always F32 (formats.md 1.7)
        elif dtype == "f32":
            tensors[name] = (w, "F32")
        elif dtype == "bf16" or not ref.is_fp8_candidate(name, shape):
            tensors[name] = (w, "BF16")
        else:
            codes, sc = stio.quantize_fp8_blocks(w, 128)
            tensors[name] = (codes, "F8_E4M3")
            scales[name + "_scale_inv"] = (sc, "F32")
    os.makedirs(out, exist_ok=True)
    for fn in os.listdir(out):
        if fn.endswith(".safetensors") or fn == "model.safetensors.index.json":
            os.remove(os.path.join(out, fn))
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
        f.write("\n")
    names = list(tensors.keys())
    if shards <= 1:
        allt = dict(tensors)
        allt.update(scales)
        stio.save_file(allt, os.path.join(out, "model.safetensors"))
    else:
        # DeepSeek-style names (5-digit index, 6-digit total); weight tensors split in order over the
        # first shards, every *_scale_inv in the last shard (exercises cross-shard scale lookup).
        n = shards
        fname = [f"model-{i + 1:05d}-of-{n:06d}.safetensors" for i in range(n)]
        parts = [dict() for _ in range(n)]
        nw = n - 1 if scales else n
        per = max(1, -(-len(names) // nw))
        for i, name in enumerate(names):
            parts[min(i // per, nw - 1)][name] = tensors[name]
        for k, v in scales.items():
            parts[n - 1][k] = v
        wm, total = {}, 0
        for i, part in enumerate(parts):
            stio.save_file(part, os.path.join(out, fname[i]))
            for k, (t, dt) in part.items():
                wm[k] = fname[i]
                numel = 1
                for d in (list(t.shape)):
                    numel *= int(d)
                total += numel * stio._ITEMSIZE[dt]
        with open(os.path.join(out, "model.safetensors.index.json"), "w") as f:
            json.dump({"metadata": {"total_size": total}, "weight_map": dict(sorted(wm.items()))}, f, indent=2)
    if example:
        B, T = example
        g2 = torch.Generator().manual_seed(int(seed) + 1000003)
        ids = torch.randint(0, mc.vocab, (B, T), generator=g2)
        tg = torch.full((B, T), -100, dtype=torch.int64)
        tg[:, :-1] = ids[:, 1:]
        if T > 2:
            tg[0, T // 2] = -100
        with open(os.path.join(out, "example_ids.json"), "w") as f:
            json.dump(ids.tolist(), f)
        with open(os.path.join(out, "example_targets.json"), "w") as f:
            json.dump(tg.tolist(), f)
    return cfg


def main(argv=None):
    ap = argparse.ArgumentParser(description="write a tiny random HF-style model directory")
    ap.add_argument("--family", required=True, choices=FAMILIES)
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--dtype", choices=["f32", "bf16", "fp8"], default="f32",
                    help="f32 (default), bf16, or fp8 = DeepSeek block-FP8 layout (F8_E4M3 Linear weights + "
                         "F32 weight_scale_inv, BF16 norms/router/embeddings/head, F32 e_score_correction_bias)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=JSON",
                    help="override a config key before the weights are made (dotted keys for nested)")
    ap.add_argument("--shards", type=int, default=1, help="write N shards + model.safetensors.index.json")
    ap.add_argument("--mtp", action="store_true", help="also write an MTP layer model.layers.{num_hidden_layers}.*")
    ap.add_argument("--example", type=int, nargs=2, metavar=("B", "T"),
                    help="also write example_ids.json / example_targets.json (next-token targets)")
    a = ap.parse_args(argv)
    try:
        make_model(a.family, a.out, a.seed, a.dtype, a.set, a.shards, a.mtp, a.example)
    except (ValueError, ref.ConfigError) as e:
        print(f"make_tiny_model: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
