#!/usr/bin/python3
"""qaft_torch_ref: an independent PyTorch (CPU, autograd) oracle for the qaft C++ engine.

Computes logits, the mean cross-entropy loss and the gradient of the loss with respect to EVERY
parameter of a Hugging Face model directory of these families: deepseek_v3, deepseek_v2 (incl.
V2-Lite), llama (3.x), qwen2, qwen3, qwen2_moe, qwen3_moe.  Float64 by default, so that it is an
exact oracle up to float64 rounding; float32 on request.  Only Debian's python3 (torch 1.13 CPU,
numpy) is needed.  Run with `/usr/bin/python3 qaft_torch_ref.py --help`.

Semantics, each with its source (formats.md is /work/shared/spec/formats.md; "official" is
deepseek-ai/DeepSeek-V3 inference/model.py; "HF" is huggingface/transformers modeling code):

* Embedding: h = E[ids].  Positions are 0..T-1 in every row (no padding mask; padded positions are
  excluded from the loss with target -100 only).
* RMSNorm (all families, formats.md 1.5): y = w * x * rsqrt(mean(x^2, last dim) + eps), computed
  entirely in the working dtype (f64 or f32); eps = rms_norm_eps.
* Decoder block (official Block / HF *DecoderLayer): h += attn(input_layernorm(h));
  h += ffn(post_attention_layernorm(h)).  Final: model.norm, then lm_head (or the embedding matrix
  when tie_word_embeddings is true).
* DeepSeek MLA (official class MLA, formats.md 1.2, "naive" attn_impl):
    q = q_b_proj(q_a_layernorm(q_a_proj(x)))  if q_lora_rank else  q_proj(x);  viewed [T,H,nope+rope],
    split [q_nope | q_pe].  kv_a = kv_a_proj_with_mqa(x) split [latent (kv_lora_rank) | k_pe (rope)];
    k_pe is ONE rope vector per token, shared (broadcast) by all heads; latent = kv_a_layernorm(latent);
    kv = kv_b_proj(latent) viewed [T,H,nope+v] split [k_nope | v].
    RoPE on q_pe and k_pe: INTERLEAVED pairs (x[2i], x[2i+1]) rotated by angle t*f_i
    (official apply_rotary_emb: view_as_complex(x.view(...,-1,2)) * freqs_cis).
    f_i = rope_theta^(-2i/d), d = qk_rope_head_dim.  YaRN (official precompute_freqs_cis, formats.md
    1.3) is active iff rope_scaling.type/rope_type == "yarn" and max_position_embeddings >
    rope_scaling.original_max_position_embeddings: c(n) = d*ln(L0/(2*pi*n))/(2*ln theta),
    low = max(floor(c(beta_fast)),0), high = min(ceil(c(beta_slow)), d-1) (+0.001 if equal),
    smooth_i = 1 - clamp((i-low)/(high-low),0,1), f_i' = f_i/factor*(1-smooth_i) + f_i*smooth_i.
    NO magnitude scaling of cos/sin (the HF remote-code ratio mscale/mscale_all_dim is 1 in all real
    configs; a warning is printed if the two keys differ).
    Scores = (q_nope.k_nope + q_pe.k_pe) * softmax_scale, softmax_scale = (nope+rope)^-0.5, times
    mscale^2 when YaRN is active, mscale = 0.1*M*ln(factor)+1 with M = rope_scaling.mscale_all_dim
    (falls back to rope_scaling.mscale, then 1.0).  The official code uses args.mscale for M; the HF
    keys mscale and mscale_all_dim are equal in every real config.  Unlike HF's DeepseekV2 port, the
    mscale^2 factor IS applied for deepseek_v2 (formats.md 2.2 / open question 5): official wins.
    Causal mask (-inf above the diagonal), softmax in the working dtype, out = o_proj(P.v).
    No attention biases (attention_bias true is rejected: the official model has none).
* GQA attention (HF LlamaAttention / Qwen2Attention / Qwen3Attention): q/k/v/o_proj, head_dim =
  config head_dim or hidden/heads; kv head of query head h = h // (heads/kv_heads).  Biases:
  llama, qwen3, qwen3_moe: q,k,v,o biases iff attention_bias; qwen2, qwen2_moe: q,k,v biases always
  (qkv_bias, default true), o_proj none.  qwen3/qwen3_moe: q_norm / k_norm RMSNorm over head_dim
  applied per head BEFORE RoPE.  RoPE half-split (HF rotate_half): pairs (x[i], x[i+D/2]) rotated by
  t*f_i, f_i = rope_theta^(-2i/D).  llama3 rope_scaling (HF _compute_llama3_parameters):
  wavelen = 2pi/f; f' = f/factor if wavelen > L0/low_freq_factor; f if wavelen < L0/high_freq_factor;
  else (1-s)*f/factor + s*f with s = (L0/wavelen - low)/(high - low).  Scale D^-0.5, causal softmax.
* Dense MLP / expert (official Expert, HF *MLP): down(silu(gate(x)) * up(x)).
* MoE router:
  - deepseek, topk_method "noaux_tc" (official Gate, formats.md 1.4 / 2.1): logits = x.Wg^T;
    s = sigmoid(logits) (softmax if scoring_func == "softmax"); s_choice = s + e_score_correction_bias;
    if n_group > 1: group score = sum of the top-2 s_choice in each group, keep the topk_group best
    groups, set all other experts' s_choice to -INF (OFFICIAL; HF fills 0.0); idx = topk(s_choice, K);
    w = s.gather(idx); w /= sum(w) iff norm_topk_prob; w *= routed_scaling_factor.
  - deepseek, "greedy": s = softmax(logits) (or sigmoid), idx = topk(s, K), same gather/normalise/
    scale.  "group_limited_greedy": group score = max of s in the group, keep topk_group groups,
    -inf elsewhere, then as greedy.  (norm_topk_prob is honoured for every method; real configs: V3
    sigmoid+true, V2/V2-Lite softmax+false, which equals the official always/never rule.)
  - qwen2_moe / qwen3_moe (HF Qwen2MoeSparseMoeBlock): s = softmax(logits); idx = topk(s, K);
    w = s.gather(idx), w /= sum(w) iff norm_topk_prob; no scaling factor.
  Gradient reaches the router weight through w (and the softmax/sigmoid); the discrete top-k choice
  has no gradient; e_score_correction_bias is a buffer (no gradient, not output).
  MoE output = sum_k w_k * Expert_{idx_k}(x) + shared(x); deepseek shared = MLP mlp.shared_experts.*
  (inter n_shared_experts*moe_intermediate_size); qwen2_moe shared = sigmoid(x.Wsg^T) *
  mlp.shared_expert(x) (Wsg = mlp.shared_expert_gate.weight [1,H]).
* Layer placement: deepseek: MoE iff n_routed_experts and L >= first_k_dense_replace and
  L % moe_layer_freq == 0 (HF remote code / official n_dense_layers); qwen MoE: num_experts > 0 and
  L not in mlp_only_layers and (L+1) % decoder_sparse_step == 0.
* Loss: mean over positions whose target != -100 of logsumexp(logits) - logits[target] (no shift:
  targets[b,t] is the label of logits[b,t]).
* Checkpoint: config.json + model.safetensors or model.safetensors.index.json (weight_map);
  model.layers.{num_hidden_layers + k}.* (MTP) skipped with a notice; rotary_emb.inv_freq ignored.
  F32/F64/BF16/F16 weights are converted exactly to the working dtype.  FP8 layout (official
  README_WEIGHTS / weight_dequant): X.weight F8_E4M3 + X.weight_scale_inv F32
  [cdiv(out,128), cdiv(in,128)]; W = e4m3(code) * scale of its 128x128 block (partial edge blocks),
  the product rounded to float32 (official weight_dequant arithmetic; --fp8-dequant bf16 rounds it
  further to bfloat16 like fp8_cast_bf16.py / gemm_impl "bf16"; exact keeps the f64 product).
  Gradients of FP8 weights are the dense gradients w.r.t. the dequantized weight.
"""

import argparse
import collections
import json
import math
import os
import re
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

sys.dont_write_bytecode = True          # keep the source tree free of __pycache__
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import stio  # noqa: E402

DEEPSEEK_TYPES = ("deepseek_v3", "deepseek_v2")
GQA_TYPES = ("llama", "qwen2", "qwen3", "qwen2_moe", "qwen3_moe")


class ConfigError(Exception):
    pass


class CheckpointError(Exception):
    pass


def _req(cfg, key):
    if key not in cfg or cfg[key] is None:
        raise ConfigError(f"config.json: required key '{key}' missing or null")
    return cfg[key]


def _rope_type(rs):
    if rs is None:
        return None
    t = rs.get("rope_type", rs.get("type"))
    return t


class ModelConfig:
    """Everything the forward needs, from an HF config.json dict (unknown keys ignored)."""

    def __init__(self, cfg):
        self.raw = cfg
        mt = cfg.get("model_type")
        if mt not in DEEPSEEK_TYPES + GQA_TYPES:
            raise ConfigError(f"config.json: unsupported model_type {mt!r}")
        self.model_type = mt
        self.is_deepseek = mt in DEEPSEEK_TYPES
        self.hidden = int(_req(cfg, "hidden_size"))
        self.vocab = int(_req(cfg, "vocab_size"))
        self.n_layers = int(_req(cfg, "num_hidden_layers"))
        self.n_heads = int(_req(cfg, "num_attention_heads"))
        self.eps = float(cfg.get("rms_norm_eps", 1e-6))
        self.tie = bool(cfg.get("tie_word_embeddings", False))
        self.theta = float(cfg.get("rope_theta", 10000.0))
        self.max_pos = int(cfg.get("max_position_embeddings", 1 << 30))
        self.intermediate = int(cfg.get("intermediate_size", 0) or 0)
        act = cfg.get("hidden_act", "silu")
        if act != "silu":
            raise ConfigError(f"config.json: hidden_act {act!r} unsupported (only silu)")
        rs = cfg.get("rope_scaling")
        rt = _rope_type(rs)
        self.rope_scaling = rs
        self.rope_type = rt
        self.qcfg = cfg.get("quantization_config")
        self.block = [128, 128]
        if self.qcfg and self.qcfg.get("weight_block_size"):
            self.block = [int(v) for v in self.qcfg["weight_block_size"]]

        if self.is_deepseek:
            self._init_deepseek(cfg)
        else:
            self._init_gqa(cfg)
        self._init_moe(cfg)

    # ---- attention ------------------------------------------------------------------------
    def _init_deepseek(self, cfg):
        self.attn = "mla"
        q = cfg.get("q_lora_rank")
        self.q_lora_rank = int(q) if q else 0
        self.kv_lora_rank = int(_req(cfg, "kv_lora_rank"))
        self.nope = int(_req(cfg, "qk_nope_head_dim"))
        self.rope = int(_req(cfg, "qk_rope_head_dim"))
        self.v_dim = int(_req(cfg, "v_head_dim"))
        if self.rope % 2:
            raise ConfigError("config.json: qk_rope_head_dim must be even")
        if cfg.get("attention_bias"):
            raise ConfigError("config.json: attention_bias true unsupported for deepseek (official MLA has no biases)")
        if cfg.get("rope_interleave") is False:
            raise ConfigError("config.json: rope_interleave false unsupported (official RoPE is interleaved)")
        rs, rt = self.rope_scaling, self.rope_type
        self.softmax_scale = (self.nope + self.rope) ** -0.5
        self.yarn = False
        if rs is not None and rt not in ("yarn", "default", None):
            raise ConfigError(f"config.json: rope_scaling type {rt!r} unsupported for {self.model_type}")
        if rt == "yarn":
            self.yarn_factor = float(_req(rs, "factor"))
            self.yarn_orig = int(_req(rs, "original_max_position_embeddings"))
            self.beta_fast = float(rs.get("beta_fast", 32))
            self.beta_slow = float(rs.get("beta_slow", 1))
            m_all = rs.get("mscale_all_dim")
            m = rs.get("mscale")
            if m_all is not None and m is not None and float(m_all) != float(m):
                print(f"qaft_torch_ref: warning: rope_scaling.mscale {m} != mscale_all_dim {m_all}; using "
                      "mscale_all_dim for the softmax factor and no cos/sin scaling (official semantics)",
                      file=sys.stderr)
            self.mscale_key = float(m_all if m_all is not None else (m if m is not None else 1.0))
            if self.max_pos > self.yarn_orig:
                self.yarn = True
                ms = 0.1 * self.mscale_key * math.log(self.yarn_factor) + 1.0
                self.softmax_scale *= ms * ms

    def _init_gqa(self, cfg):
        self.attn = "gqa"
        mt = self.model_type
        self.n_kv = int(cfg.get("num_key_value_heads") or self.n_heads)
        if self.n_heads % self.n_kv:
            raise ConfigError("config.json: num_attention_heads must be a multiple of num_key_value_heads")
        hd = cfg.get("head_dim")
        if hd is None:
            if self.hidden % self.n_heads:
                raise ConfigError("config.json: hidden_size not divisible by num_attention_heads and no head_dim")
            hd = self.hidden // self.n_heads
        self.head_dim = int(hd)
        if self.head_dim % 2:
            raise ConfigError("config.json: head_dim must be even")
        if mt in ("qwen2", "qwen2_moe"):
            self.qkv_bias = bool(cfg.get("qkv_bias", True))
            self.o_bias = False
        else:
            ab = bool(cfg.get("attention_bias", False))
            self.qkv_bias = ab
            self.o_bias = ab
        if cfg.get("mlp_bias"):
            raise ConfigError("config.json: mlp_bias true unsupported")
        if cfg.get("use_sliding_window"):
            raise ConfigError("config.json: use_sliding_window true unsupported")
        self.qk_norm = mt in ("qwen3", "qwen3_moe")
        rt = self.rope_type
        if rt not in (None, "default") and not (rt == "llama3" and mt == "llama"):
            raise ConfigError(f"config.json: rope_scaling type {rt!r} unsupported for {mt}")
        self.softmax_scale = self.head_dim ** -0.5

    # ---- feed-forward -------------------------------------------------------------------
    def _init_moe(self, cfg):
        mt = self.model_type
        self.moe_layers = set()
        self.n_experts = 0
        if self.is_deepseek:
            E = cfg.get("n_routed_experts")
            self.n_experts = int(E or 0)
            fk = int(cfg.get("first_k_dense_replace", 0))
            freq = int(cfg.get("moe_layer_freq", 1))
            for L in range(self.n_layers):
                if self.n_experts and L >= fk and L % freq == 0:
                    self.moe_layers.add(L)
            if self.moe_layers:
                self.topk = int(_req(cfg, "num_experts_per_tok"))
                self.moe_inter = int(_req(cfg, "moe_intermediate_size"))
                self.n_shared = int(cfg.get("n_shared_experts") or 0)
                self.shared_inter = self.n_shared * self.moe_inter
                self.scoring = cfg.get("scoring_func", "softmax")
                if self.scoring not in ("softmax", "sigmoid"):
                    raise ConfigError(f"config.json: scoring_func {self.scoring!r} unsupported")
                self.topk_method = cfg.get("topk_method", "greedy")
                if self.topk_method not in ("noaux_tc", "greedy", "group_limited_greedy"):
                    raise ConfigError(f"config.json: topk_method {self.topk_method!r} unsupported")
                self.n_group = int(cfg.get("n_group") or 1)
                self.topk_group = int(cfg.get("topk_group") or 1)
                self.norm_topk = bool(cfg.get("norm_topk_prob", False))
                self.route_scale = float(cfg.get("routed_scaling_factor", 1.0))
                self.has_ebias = self.topk_method == "noaux_tc"
                self.grouped = self.topk_method in ("noaux_tc", "group_limited_greedy") and self.n_group > 1
                if self.grouped:
                    if self.n_experts % self.n_group:
                        raise ConfigError("config.json: n_routed_experts must be a multiple of n_group")
                    per = self.n_experts // self.n_group
                    if not 1 <= self.topk_group <= self.n_group:
                        raise ConfigError("config.json: topk_group must be in [1, n_group]")
                    if self.topk_method == "noaux_tc" and per < 2:
                        raise ConfigError("config.json: noaux_tc group score needs >= 2 experts per group")
                    if self.topk > self.topk_group * per:
                        raise ConfigError("config.json: num_experts_per_tok > experts in the kept groups")
                self.shared_gate = False
        else:
            E = cfg.get("num_experts") if mt in ("qwen2_moe", "qwen3_moe") else None
            self.n_experts = int(E or 0)
            if self.n_experts:
                only = set(int(v) for v in (cfg.get("mlp_only_layers") or []))
                step = int(cfg.get("decoder_sparse_step", 1))
                for L in range(self.n_layers):
                    if L not in only and (L + 1) % step == 0:
                        self.moe_layers.add(L)
            if self.moe_layers:
                self.topk = int(_req(cfg, "num_experts_per_tok"))
                self.moe_inter = int(_req(cfg, "moe_intermediate_size"))
                self.scoring = "softmax"
                self.topk_method = "greedy"
                self.grouped = False
                self.has_ebias = False
                self.norm_topk = bool(cfg.get("norm_topk_prob", False))
                self.route_scale = 1.0
                self.n_shared = 0
                if mt == "qwen2_moe":
                    self.shared_inter = int(cfg.get("shared_expert_intermediate_size") or 0)
                    self.shared_gate = self.shared_inter > 0
                else:
                    self.shared_inter = 0
                    self.shared_gate = False
        if self.moe_layers and not 1 <= self.topk <= self.n_experts:
            raise ConfigError("config.json: num_experts_per_tok must be in [1, number of experts]")
        if len(self.moe_layers) < self.n_layers and self.intermediate <= 0:
            raise ConfigError("config.json: intermediate_size required for dense layers")


# ----------------------------------------------------------------------------------------------
# expected tensors
# ----------------------------------------------------------------------------------------------

def expected_tensors(mc):
    """Ordered {hf name: shape} of every tensor the checkpoint must hold (excluding FP8 scales)."""
    t = collections.OrderedDict()
    H = mc.hidden
    t["model.embed_tokens.weight"] = [mc.vocab, H]
    for L in range(mc.n_layers):
        p = f"model.layers.{L}."
        t[p + "input_layernorm.weight"] = [H]
        if mc.attn == "mla":
            nh, qk = mc.n_heads, mc.nope + mc.rope
            if mc.q_lora_rank:
                t[p + "self_attn.q_a_proj.weight"] = [mc.q_lora_rank, H]
                t[p + "self_attn.q_a_layernorm.weight"] = [mc.q_lora_rank]
                t[p + "self_attn.q_b_proj.weight"] = [nh * qk, mc.q_lora_rank]
            else:
                t[p + "self_attn.q_proj.weight"] = [nh * qk, H]
            t[p + "self_attn.kv_a_proj_with_mqa.weight"] = [mc.kv_lora_rank + mc.rope, H]
            t[p + "self_attn.kv_a_layernorm.weight"] = [mc.kv_lora_rank]
            t[p + "self_attn.kv_b_proj.weight"] = [nh * (mc.nope + mc.v_dim), mc.kv_lora_rank]
            t[p + "self_attn.o_proj.weight"] = [H, nh * mc.v_dim]
        else:
            D, nq, nkv = mc.head_dim, mc.n_heads, mc.n_kv
            t[p + "self_attn.q_proj.weight"] = [nq * D, H]
            if mc.qkv_bias:
                t[p + "self_attn.q_proj.bias"] = [nq * D]
            t[p + "self_attn.k_proj.weight"] = [nkv * D, H]
            if mc.qkv_bias:
                t[p + "self_attn.k_proj.bias"] = [nkv * D]
            t[p + "self_attn.v_proj.weight"] = [nkv * D, H]
            if mc.qkv_bias:
                t[p + "self_attn.v_proj.bias"] = [nkv * D]
            t[p + "self_attn.o_proj.weight"] = [H, nq * D]
            if mc.o_bias:
                t[p + "self_attn.o_proj.bias"] = [H]
            if mc.qk_norm:
                t[p + "self_attn.q_norm.weight"] = [D]
                t[p + "self_attn.k_norm.weight"] = [D]
        t[p + "post_attention_layernorm.weight"] = [H]
        if L in mc.moe_layers:
            E, I = mc.n_experts, mc.moe_inter
            t[p + "mlp.gate.weight"] = [E, H]
            if mc.has_ebias:
                t[p + "mlp.gate.e_score_correction_bias"] = [E]
            for e in range(E):
                t[p + f"mlp.experts.{e}.gate_proj.weight"] = [I, H]
                t[p + f"mlp.experts.{e}.up_proj.weight"] = [I, H]
                t[p + f"mlp.experts.{e}.down_proj.weight"] = [H, I]
            if mc.is_deepseek and mc.n_shared:
                S = mc.shared_inter
                t[p + "mlp.shared_experts.gate_proj.weight"] = [S, H]
                t[p + "mlp.shared_experts.up_proj.weight"] = [S, H]
                t[p + "mlp.shared_experts.down_proj.weight"] = [H, S]
            if mc.shared_gate:
                S = mc.shared_inter
                t[p + "mlp.shared_expert.gate_proj.weight"] = [S, H]
                t[p + "mlp.shared_expert.up_proj.weight"] = [S, H]
                t[p + "mlp.shared_expert.down_proj.weight"] = [H, S]
                t[p + "mlp.shared_expert_gate.weight"] = [1, H]
        else:
            I = mc.intermediate
            t[p + "mlp.gate_proj.weight"] = [I, H]
            t[p + "mlp.up_proj.weight"] = [I, H]
            t[p + "mlp.down_proj.weight"] = [H, I]
    t["model.norm.weight"] = [H]
    if not mc.tie:
        t["lm_head.weight"] = [mc.vocab, H]
    return t


def is_buffer(name):
    return name.endswith("e_score_correction_bias")


def is_fp8_candidate(name, shape):
    """Tensors that the DeepSeek FP8 layout stores as F8_E4M3 + weight_scale_inv: the 2-D Linear
    weights of attention and (dense / expert / shared) MLPs; NOT norms, router gate, shared-expert
    gate, embeddings, lm_head, biases (formats.md 1.7)."""
    if len(shape) != 2 or not name.endswith("_proj.weight"):
        return False
    return ".self_attn." in name or ".mlp." in name


# ----------------------------------------------------------------------------------------------
# checkpoint loading
# ----------------------------------------------------------------------------------------------

_LAYER_RE = re.compile(r"^model\.layers\.(\d+)\.")


def open_checkpoint(model_dir):
    """-> {tensor name: SafetensorsFile}"""
    idx = os.path.join(model_dir, "model.safetensors.index.json")
    single = os.path.join(model_dir, "model.safetensors")
    files = {}
    where = {}
    if os.path.exists(idx):
        with open(idx) as f:
            wm = json.load(f).get("weight_map")
        if not isinstance(wm, dict):
            raise CheckpointError(f"{idx}: no weight_map")
        for name, fn in wm.items():
            if fn not in files:
                files[fn] = stio.SafetensorsFile(os.path.join(model_dir, fn))
            if name not in files[fn].entries:
                raise CheckpointError(f"{idx}: {name} mapped to {fn} but not in that file")
            where[name] = files[fn]
    elif os.path.exists(single):
        sf = stio.SafetensorsFile(single)
        for name in sf.keys():
            where[name] = sf
    else:
        raise CheckpointError(f"{model_dir}: neither model.safetensors nor model.safetensors.index.json")
    return where


def dequant_fp8(codes, scale, block, mode):
    """codes uint8 [out,in], scale float [cdiv(out,b0), cdiv(in,b1)] -> float64 tensor."""
    vals = stio.decode_fp8(codes)                                   # exact, f64
    rows, cols = vals.shape
    s = scale.to(torch.float64)
    s = s.repeat_interleave(block[0], 0)[:rows].repeat_interleave(block[1], 1)[:, :cols]
    w = vals * s                                                    # exact product (<= 28 bits)
    if mode == "f32":
        w = w.to(torch.float32).to(torch.float64)
    elif mode == "bf16":
        w = w.to(torch.float32).to(torch.bfloat16).to(torch.float64)
    elif mode != "exact":
        raise ValueError(mode)
    return w


def load_params(model_dir, mc, dtype=torch.float64, fp8_dequant="f32", quiet=False):
    """-> (params {name: leaf tensor, requires_grad except buffers}, info dict)."""
    where = open_checkpoint(model_dir)
    exp = expected_tensors(mc)
    missing, unexpected, misshaped, problems = [], [], [], []
    reported = set()
    params = collections.OrderedDict()
    mtp_skipped = 0
    fp8_names = []
    for name in where:
        m = _LAYER_RE.match(name)
        if m and int(m.group(1)) >= mc.n_layers:
            mtp_skipped += 1
            continue
        if name.endswith(".weight_scale_inv"):
            base = name[: -len("_scale_inv")]
            if base not in where:
                unexpected.append(name)
            continue
        if name.endswith("rotary_emb.inv_freq"):
            continue
        if name not in exp:
            if name == "lm_head.weight" and mc.tie:
                if not quiet:
                    print("qaft_torch_ref: notice: lm_head.weight ignored (tie_word_embeddings)", file=sys.stderr)
                continue
            unexpected.append(name)
            continue
        sf = where[name]
        shape = sf.shape(name)
        if shape != exp[name]:
            misshaped.append(f"{name}: {shape} (expected {exp[name]})")
            reported.add(name)
            continue
        dt = sf.dtype(name)
        reported.add(name)
        if dt in ("F8_E4M3",):
            sname = name + "_scale_inv"
            if sname not in where:
                problems.append(f"{name}: F8_E4M3 without {sname}")
                continue
            ss = where[sname]
            b0, b1 = mc.block
            want = [stio.cdiv(shape[0], b0), stio.cdiv(shape[1], b1)] if len(shape) == 2 else None
            if want is None or ss.shape(sname) != want:
                misshaped.append(f"{sname}: {ss.shape(sname)} (expected {want})")
                continue
            w = dequant_fp8(sf.get(name), ss.get(sname).to(torch.float64), mc.block, fp8_dequant)
            fp8_names.append(name)
        elif dt in ("F64", "F32", "F16", "BF16"):
            w = sf.get(name).to(torch.float64)
            if name + "_scale_inv" in where:
                problems.append(f"{name}_scale_inv present but {name} is {dt}, not F8_E4M3")
                continue
        else:
            problems.append(f"{name}: dtype {dt} is not a float weight dtype")
            continue
        if torch.isnan(w).any() or torch.isinf(w).any():
            problems.append(f"{name}: contains NaN/Inf")
            continue
        params[name] = w.to(dtype)
    for name in exp:
        if name not in params and name not in reported:
            missing.append(name)
    if missing or unexpected or misshaped or problems:
        lines = []
        if missing:
            lines.append("missing: " + ", ".join(missing))
        if unexpected:
            lines.append("unexpected: " + ", ".join(unexpected))
        if misshaped:
            lines.append("mis-shaped: " + "; ".join(misshaped))
        if problems:
            lines.append("bad: " + "; ".join(problems))
        raise CheckpointError(f"{model_dir}: checkpoint does not match config.json:\n  " + "\n  ".join(lines))
    if mtp_skipped and not quiet:
        print(f"qaft_torch_ref: notice: skipped {mtp_skipped} MTP tensors "
              f"(model.layers.{mc.n_layers}+)", file=sys.stderr)
    ordered = collections.OrderedDict()
    for name in exp:
        t = params[name].clone()
        if not is_buffer(name):
            t.requires_grad_(True)
        ordered[name] = t
    return ordered, {"mtp_skipped": mtp_skipped, "fp8": fp8_names}


# ----------------------------------------------------------------------------------------------
# building blocks
# ----------------------------------------------------------------------------------------------

def rms_norm(x, w, eps):
    return w * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps))


def deepseek_inv_freq(mc):
    """Official precompute_freqs_cis frequencies (f64 python math) incl. YaRN correction."""
    d, base = mc.rope, mc.theta
    freqs = [base ** (-(2.0 * i) / d) for i in range(d // 2)]
    if mc.yarn:
        def cdim(n):
            return d * math.log(mc.yarn_orig / (n * 2 * math.pi)) / (2 * math.log(base))
        low = max(math.floor(cdim(mc.beta_fast)), 0)
        high = min(math.ceil(cdim(mc.beta_slow)), d - 1)
        if low == high:
            high += 0.001
        out = []
        for i, f in enumerate(freqs):
            ramp = min(max((i - low) / (high - low), 0.0), 1.0)
            smooth = 1.0 - ramp
            out.append(f / mc.yarn_factor * (1 - smooth) + f * smooth)
        freqs = out
    return torch.tensor(freqs, dtype=torch.float64)


def gqa_inv_freq(mc):
    D, base = mc.head_dim, mc.theta
    inv = torch.tensor([base ** (-(2.0 * i) / D) for i in range(D // 2)], dtype=torch.float64)
    if mc.rope_type == "llama3":
        rs = mc.rope_scaling
        factor = float(rs["factor"])
        lo_f = float(rs.get("low_freq_factor", 1.0))
        hi_f = float(rs.get("high_freq_factor", 4.0))
        L0 = float(rs["original_max_position_embeddings"])
        lo_wl, hi_wl = L0 / lo_f, L0 / hi_f
        out = []
        for f in inv.tolist():
            wl = 2 * math.pi / f
            if wl < hi_wl:
                out.append(f)
            elif wl > lo_wl:
                out.append(f / factor)
            else:
                s = (L0 / wl - lo_f) / (hi_f - lo_f)
                out.append((1 - s) * f / factor + s * f)
        inv = torch.tensor(out, dtype=torch.float64)
    return inv


def rope_tables(mc, T, dtype):
    inv = deepseek_inv_freq(mc) if mc.attn == "mla" else gqa_inv_freq(mc)
    ang = torch.arange(T, dtype=torch.float64)[:, None] * inv[None, :]   # [T, d/2]
    return torch.cos(ang).to(dtype), torch.sin(ang).to(dtype)


def rope_interleaved(x, cos, sin):
    """x [..., T, (heads,) d]; pairs (x[2i], x[2i+1]); cos/sin [T, d/2] broadcast by the caller."""
    a = x[..., 0::2]
    b = x[..., 1::2]
    ra = a * cos - b * sin
    rb = a * sin + b * cos
    return torch.stack((ra, rb), dim=-1).flatten(-2)


def rope_half(x, cos, sin):
    """HF rotate_half convention: pairs (x[i], x[i + d/2])."""
    h = x.shape[-1] // 2
    a, b = x[..., :h], x[..., h:]
    return torch.cat((a * cos - b * sin, a * sin + b * cos), dim=-1)


def causal_softmax(scores):
    """scores [B, heads, T, T]; -inf above the diagonal, softmax in the working dtype."""
    T = scores.shape[-1]
    mask = torch.ones(T, T, dtype=torch.bool).triu(1)
    return torch.softmax(scores.masked_fill(mask, float("-inf")), dim=-1)


def linear(x, P, name, bias=None):
    y = x.matmul(P[name].t())
    if bias is not None and bias in P:
        y = y + P[bias]
    return y


def mla_attention(mc, P, p, x, cos, sin):
    """Official MLA (naive form).  x [B,T,H]."""
    B, T, _ = x.shape
    nh, nope, rope, vd = mc.n_heads, mc.nope, mc.rope, mc.v_dim
    if mc.q_lora_rank:
        q = linear(rms_norm(linear(x, P, p + "self_attn.q_a_proj.weight"),
                            P[p + "self_attn.q_a_layernorm.weight"], mc.eps), P, p + "self_attn.q_b_proj.weight")
    else:
        q = linear(x, P, p + "self_attn.q_proj.weight")
    q = q.view(B, T, nh, nope + rope)
    q_nope, q_pe = q[..., :nope], q[..., nope:]
    kv_a = linear(x, P, p + "self_attn.kv_a_proj_with_mqa.weight")
    latent, k_pe = kv_a[..., :mc.kv_lora_rank], kv_a[..., mc.kv_lora_rank:]
    q_pe = rope_interleaved(q_pe, cos[:, None, :], sin[:, None, :])       # [B,T,nh,rope]
    k_pe = rope_interleaved(k_pe, cos, sin)                               # [B,T,rope] (shared)
    kv = linear(rms_norm(latent, P[p + "self_attn.kv_a_layernorm.weight"], mc.eps), P,
                p + "self_attn.kv_b_proj.weight").view(B, T, nh, nope + vd)
    k_nope, v = kv[..., :nope], kv[..., nope:]
    scores = (torch.einsum("bshd,bthd->bhst", q_nope, k_nope)
              + torch.einsum("bshr,btr->bhst", q_pe, k_pe)) * mc.softmax_scale
    probs = causal_softmax(scores)
    o = torch.einsum("bhst,bthd->bshd", probs, v).reshape(B, T, nh * vd)
    return linear(o, P, p + "self_attn.o_proj.weight")


def gqa_attention(mc, P, p, x, cos, sin):
    B, T, _ = x.shape
    D, nq, nkv = mc.head_dim, mc.n_heads, mc.n_kv
    a = p + "self_attn."
    q = linear(x, P, a + "q_proj.weight", a + "q_proj.bias").view(B, T, nq, D)
    k = linear(x, P, a + "k_proj.weight", a + "k_proj.bias").view(B, T, nkv, D)
    v = linear(x, P, a + "v_proj.weight", a + "v_proj.bias").view(B, T, nkv, D)
    if mc.qk_norm:
        q = rms_norm(q, P[a + "q_norm.weight"], mc.eps)
        k = rms_norm(k, P[a + "k_norm.weight"], mc.eps)
    c, s = cos[:, None, :], sin[:, None, :]
    q = rope_half(q, c, s)
    k = rope_half(k, c, s)
    rep = nq // nkv
    k = k.repeat_interleave(rep, dim=2)           # query head h uses kv head h // rep
    v = v.repeat_interleave(rep, dim=2)
    scores = torch.einsum("bshd,bthd->bhst", q, k) * mc.softmax_scale
    probs = causal_softmax(scores)
    o = torch.einsum("bhst,bthd->bshd", probs, v).reshape(B, T, nq * D)
    return linear(o, P, a + "o_proj.weight", a + "o_proj.bias")


def swiglu(P, p, x):
    return linear(F.silu(linear(x, P, p + "gate_proj.weight")) * linear(x, P, p + "up_proj.weight"),
                  P, p + "down_proj.weight")


def route(mc, logits, ebias=None, forced_idx=None):
    """logits [N,E] -> (idx [N,K] int64, w [N,K] differentiable)."""
    N, E = logits.shape
    K = mc.topk
    if mc.scoring == "sigmoid":
        s = torch.sigmoid(logits)
    else:
        s = torch.softmax(logits, dim=-1)
    if forced_idx is not None:
        idx = forced_idx
    else:
        with torch.no_grad():
            choice = s.detach().clone()
            if ebias is not None:
                choice = choice + ebias.detach().to(choice.dtype)
            if mc.grouped:
                G = mc.n_group
                grp = choice.view(N, G, E // G)
                if mc.topk_method == "noaux_tc":
                    gscore = grp.topk(2, dim=-1).values.sum(-1)
                else:
                    gscore = grp.max(dim=-1).values
                keep = gscore.topk(mc.topk_group, dim=-1).indices
                drop = torch.ones(N, G, dtype=torch.bool)
                drop.scatter_(1, keep, False)
                choice = grp.masked_fill(drop[:, :, None], float("-inf")).view(N, E)
            idx = choice.topk(K, dim=-1).indices
    w = s.gather(1, idx)
    if mc.norm_topk:
        w = w / w.sum(-1, keepdim=True)
    if mc.route_scale != 1.0:
        w = w * mc.route_scale
    return idx, w


def moe(mc, P, p, x, forced_idx=None):
    """x [B,T,H] -> (out [B,T,H], idx [N,K], w [N,K])."""
    B, T, H = x.shape
    xf = x.reshape(B * T, H)
    logits = linear(xf, P, p + "mlp.gate.weight")
    idx, w = route(mc, logits, P.get(p + "mlp.gate.e_score_correction_bias"), forced_idx)
    K = idx.shape[1]
    flat = idx.reshape(-1)
    tok_of = torch.arange(B * T).repeat_interleave(K)
    wflat = w.reshape(-1)
    out = torch.zeros_like(xf)
    for e in range(mc.n_experts):
        sel = (flat == e).nonzero(as_tuple=False).squeeze(1)
        if sel.numel() == 0:
            continue
        tok = tok_of[sel]
        y = swiglu(P, p + f"mlp.experts.{e}.", xf[tok]) * wflat[sel][:, None]
        out = out.index_add(0, tok, y)
    if mc.is_deepseek and mc.n_shared:
        out = out + swiglu(P, p + "mlp.shared_experts.", xf)
    if mc.shared_gate:
        g = torch.sigmoid(linear(xf, P, p + "mlp.shared_expert_gate.weight"))
        out = out + g * swiglu(P, p + "mlp.shared_expert.", xf)
    return out.view(B, T, H), idx, w


def forward(mc, P, ids, forced_routes=None, want_hidden=False):
    """ids LongTensor [B,T] -> (logits [B,T,V], aux dict with routes / hidden states)."""
    B, T = ids.shape
    dtype = P["model.embed_tokens.weight"].dtype
    cos, sin = rope_tables(mc, T, dtype)
    h = P["model.embed_tokens.weight"][ids]
    aux = {"routes": collections.OrderedDict(), "hidden": collections.OrderedDict()}
    if want_hidden:
        aux["hidden"]["hidden.embed"] = h
    attn = mla_attention if mc.attn == "mla" else gqa_attention
    for L in range(mc.n_layers):
        p = f"model.layers.{L}."
        h = h + attn(mc, P, p, rms_norm(h, P[p + "input_layernorm.weight"], mc.eps), cos, sin)
        x = rms_norm(h, P[p + "post_attention_layernorm.weight"], mc.eps)
        if L in mc.moe_layers:
            fi = forced_routes.get(L) if forced_routes else None
            y, idx, w = moe(mc, P, p, x, fi)
            aux["routes"][L] = (idx, w)
        else:
            y = swiglu(P, p + "mlp.", x)
        h = h + y
        if want_hidden:
            aux["hidden"][f"hidden.layer.{L}"] = h
    h = rms_norm(h, P["model.norm.weight"], mc.eps)
    if want_hidden:
        aux["hidden"]["hidden.norm"] = h
    head = P["model.embed_tokens.weight"] if mc.tie else P["lm_head.weight"]
    return h.matmul(head.t()), aux


def cross_entropy(logits, targets):
    V = logits.shape[-1]
    return F.cross_entropy(logits.reshape(-1, V), targets.reshape(-1), ignore_index=-100, reduction="mean")


# ----------------------------------------------------------------------------------------------
# CLI
# ----------------------------------------------------------------------------------------------

def _read_ids(path, what):
    with open(path) as f:
        v = json.load(f)
    if not isinstance(v, list) or not v or not all(isinstance(r, list) for r in v):
        raise ValueError(f"{what}: expected a non-empty list of lists of ints")
    T = len(v[0])
    if T == 0 or any(len(r) != T for r in v):
        raise ValueError(f"{what}: rows must be non-empty and of equal length")
    return torch.tensor(v, dtype=torch.int64)


def load_model(model_dir, dtype=torch.float64, fp8_dequant="f32", quiet=False):
    with open(os.path.join(model_dir, "config.json")) as f:
        cfg = json.load(f)
    mc = ModelConfig(cfg)
    P, info = load_params(model_dir, mc, dtype, fp8_dequant, quiet)
    return mc, P, info


def run(mc, P, ids, targets=None, forced_routes=None, want_hidden=False):
    """-> ordered dict of output tensors (see README)."""
    for t in P.values():
        t.grad = None
    with torch.set_grad_enabled(targets is not None):
        logits, aux = forward(mc, P, ids, forced_routes, want_hidden)
        out = collections.OrderedDict()
        out["logits"] = logits.detach()
        if targets is not None:
            loss = cross_entropy(logits, targets)
            loss.backward()
            out["loss"] = loss.detach().reshape(())
            for name, t in P.items():
                if is_buffer(name):
                    continue
                g = t.grad if t.grad is not None else torch.zeros_like(t)
                out["grad." + name] = g.detach().clone()
    for L, (idx, w) in aux["routes"].items():
        out[f"route.{L}.topk_idx"] = idx.detach().to(torch.int64)
        out[f"route.{L}.topk_weight"] = w.detach()
    for k, v in aux["hidden"].items():
        out[k] = v.detach()
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="HF model directory (config.json + safetensors)")
    ap.add_argument("--ids", required=True, help="JSON [[int,...],...] B x T token ids")
    ap.add_argument("--targets", help="JSON B x T targets (-100 = ignored); enables loss and grads")
    ap.add_argument("--out", required=True, help="output .safetensors")
    ap.add_argument("--dtype", choices=["f64", "f32"], default="f64", help="working dtype (default f64)")
    ap.add_argument("--fp8-dequant", choices=["f32", "bf16", "exact"], default="f32",
                    help="rounding of code*scale for FP8 weights (default f32)")
    ap.add_argument("--routes", help="safetensors with route.{L}.topk_idx to force the expert choice")
    ap.add_argument("--dump-hidden", action="store_true", help="also write hidden.* residual states")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1: deterministic, immune to OpenMP spinning on a busy machine; 0 = all cores)")
    ap.add_argument("--repeat", type=int, default=1, help="run N times and report timing on stderr")
    ap.add_argument("--quiet", action="store_true")
    a = ap.parse_args(argv)

    torch.set_num_threads(a.threads if a.threads > 0 else (os.cpu_count() or 1))
    dtype = torch.float64 if a.dtype == "f64" else torch.float32
    try:
        mc, P, _ = load_model(a.model, dtype, a.fp8_dequant, a.quiet)
        ids = _read_ids(a.ids, "--ids")
        targets = _read_ids(a.targets, "--targets") if a.targets else None
    except (ConfigError, CheckpointError, stio.SafetensorsError, ValueError, OSError) as e:
        print(f"qaft_torch_ref: error: {e}", file=sys.stderr)
        return 2
    B, T = ids.shape
    err = None
    if int(ids.min()) < 0 or int(ids.max()) >= mc.vocab:
        err = f"token id out of range [0, {mc.vocab})"
    elif T > mc.max_pos:
        err = f"sequence length {T} > max_position_embeddings {mc.max_pos}"
    elif targets is not None:
        if list(targets.shape) != [B, T]:
            err = f"--targets shape {list(targets.shape)} != --ids shape {[B, T]}"
        else:
            valid = targets != -100
            if not bool(valid.any()):
                err = "--targets: every target is -100 (loss undefined)"
            elif int(targets[valid].min()) < 0 or int(targets[valid].max()) >= mc.vocab:
                err = f"target out of range [0, {mc.vocab}) (and not -100)"
    forced = None
    if err is None and a.routes:
        rf = stio.SafetensorsFile(a.routes)
        forced = {}
        for L in sorted(mc.moe_layers):
            key = f"route.{L}.topk_idx"
            if key not in rf.entries:
                err = f"--routes: {key} missing"
                break
            ix = rf.get(key).to(torch.int64)
            if list(ix.shape) != [B * T, mc.topk] or int(ix.min()) < 0 or int(ix.max()) >= mc.n_experts:
                err = f"--routes: {key} must be [{B * T},{mc.topk}] with ids in [0,{mc.n_experts})"
                break
            forced[L] = ix
    if err:
        print(f"qaft_torch_ref: error: {err}", file=sys.stderr)
        return 2
    times = []
    for _ in range(max(1, a.repeat)):
        t0 = time.perf_counter()
        out = run(mc, P, ids, targets, forced, a.dump_hidden)
        times.append(time.perf_counter() - t0)
    stio.save_file(out, a.out, {"format": "pt", "producer": "qaft_torch_ref", "dtype": a.dtype,
                                "model_type": mc.model_type})
    if a.repeat > 1 or not a.quiet:
        best = min(times)
        print(json.dumps({"model_type": mc.model_type, "tokens": B * T, "dtype": a.dtype,
                          "backward": targets is not None, "best_s": best,
                          "tokens_per_s": B * T / best, "threads": torch.get_num_threads()}),
              file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
