#!/usr/bin/python3
"""Self-test of the qaft PyTorch reference (runs in well under 30 s with /usr/bin/python3).

  (a) autograd gradients vs central finite differences in float64, for every parameter tensor of a
      tiny model of each family (+ variants), as random directional derivatives per tensor (expert
      tensors grouped per layer and projection) and single entries;
  (b) MLA with YaRN vs a naive re-implementation of the official formulas written here (complex
      RoPE, python-math frequencies, per-head loops); GQA/llama3/qk-norm vs a naive HF-form version;
      router vs a per-token scalar re-implementation of the official Gate (incl. the -inf group mask
      in a case where HF's 0.0 fill differs); documented constants (V3/V2-Lite softmax scales, YaRN
      correction range 10..23);
  (c) FP8 layout: E4M3 table/encoder landmarks; a block-FP8 checkpoint (multi-block, partial edge
      blocks, scales in another shard, MTP layer present) dequantizes to code*scale exactly and gives
      the same logits/grads as an F32 checkpoint of the dequantized weights;
  plus CLI end-to-end, determinism, forced routes, f32 vs f64, bad-input errors.
Prints one summary line; exit status 1 on any failure.
"""

import cmath
import json
import math
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.dont_write_bytecode = True          # keep the source tree free of __pycache__
sys.path.insert(0, HERE)
import stio  # noqa: E402
import qaft_torch_ref as ref  # noqa: E402
import make_tiny_model as mtm  # noqa: E402

torch.set_num_threads(1)
FAILS = []
COUNTS = {"fd": 0, "checks": 0}


def check(cond, msg):
    COUNTS["checks"] += 1
    if not cond:
        FAILS.append(msg)
        print("FAIL:", msg, file=sys.stderr)


def close(a, b, rtol, atol=0.0):
    a = a.double()
    b = b.double()
    return bool(((a - b).abs() <= atol + rtol * b.abs().max()).all())


def ids_targets(mc, B, T, seed):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, mc.vocab, (B, T), generator=g)
    tg = torch.randint(0, mc.vocab, (B, T), generator=g)
    tg[0, 1] = -100
    tg[-1, -1] = -100
    return ids, tg


# ------------------------------------------------------------------------------------------------
# (a) finite differences
# ------------------------------------------------------------------------------------------------

def fd_check(tag, mc, P, ids, tg, seed):
    out = ref.run(mc, P, ids, tg)
    grads = {k[5:]: v for k, v in out.items() if k.startswith("grad.")}
    check(set(grads) == {n for n in P if not ref.is_buffer(n)}, f"{tag}: grad set != parameter set")
    check(all(g.shape == P[n].shape for n, g in grads.items()), f"{tag}: grad shape mismatch")
    base_routes = {k: v for k, v in out.items() if k.endswith("topk_idx")}
    groups = {}
    for n in grads:
        key = n
        if ".mlp.experts." in n:
            parts = n.split(".")
            key = ".".join(parts[:5] + ["*"] + parts[6:])      # per layer and projection
        groups.setdefault(key, []).append(n)
    gen = torch.Generator().manual_seed(seed)
    eps = 1e-5

    def loss_routes():
        with torch.no_grad():
            logits, aux = ref.forward(mc, P, ids)
            return float(ref.cross_entropy(logits, tg)), {f"route.{L}.topk_idx": i for L, (i, _) in aux["routes"].items()}

    def same_routes(r):
        return all(torch.equal(r[k], base_routes[k]) for k in base_routes)

    saved = {n: P[n].detach().clone() for n in grads}

    def perturb(names, dirs, s):
        with torch.no_grad():
            for n, d in zip(names, dirs):
                if s == 0:
                    P[n].copy_(saved[n])                    # restore bit-exactly
                else:
                    P[n].copy_(saved[n] + s * d)

    worst = 0.0
    for key, names in groups.items():
        ok = False
        for attempt in range(3):
            dirs = [torch.randn(P[n].shape, generator=gen, dtype=torch.float64) for n in names]
            nrm = math.sqrt(sum(float((d * d).sum()) for d in dirs))
            dirs = [d / nrm for d in dirs]
            perturb(names, dirs, eps)
            lp, rp = loss_routes()
            perturb(names, dirs, -eps)
            lm, rm = loss_routes()
            perturb(names, dirs, 0)
            COUNTS["fd"] += 2
            if not (same_routes(rp) and same_routes(rm)):
                continue                                     # a top-k flip: try another direction
            fd = (lp - lm) / (2 * eps)
            an = sum(float((grads[n] * d).sum()) for n, d in zip(names, dirs))
            gn = math.sqrt(sum(float((grads[n] ** 2).sum()) for n in names))
            err = abs(fd - an)
            worst = max(worst, err / (gn + 1e-12))
            check(err <= 1e-7 * gn + 1e-9, f"{tag}: {key}: directional fd {fd:.12g} vs autograd {an:.12g} (|g| {gn:.3g})")
            ok = True
            break
        check(ok, f"{tag}: {key}: routing flipped under every perturbation")
    # single entries: the largest-|g| entry of a few tensors
    for n in list(grads)[:: max(1, len(grads) // 6)]:
        g = grads[n]
        if float(g.abs().max()) == 0.0:
            continue
        j = int(g.abs().flatten().argmax())
        flat = P[n].view(-1)
        x0 = float(flat[j])
        with torch.no_grad():
            flat[j] = x0 + eps
        lp, rp = loss_routes()
        with torch.no_grad():
            flat[j] = x0 - eps
        lm, rm = loss_routes()
        with torch.no_grad():
            flat[j] = x0
        COUNTS["fd"] += 2
        if same_routes(rp) and same_routes(rm):
            fd = (lp - lm) / (2 * eps)
            an = float(g.view(-1)[j])
            check(abs(fd - an) <= 1e-6 * abs(an) + 1e-9, f"{tag}: {n}[{j}] fd {fd:.12g} vs {an:.12g}")
    return out, worst


# ------------------------------------------------------------------------------------------------
# (b) naive re-implementations written from the official / HF formulas
# ------------------------------------------------------------------------------------------------

def naive_rms(x, w, eps):
    return x / torch.sqrt((x * x).mean(dim=-1, keepdim=True) + eps) * w


def official_freqs(cfg, d):
    """deepseek-ai/DeepSeek-V3 inference/model.py precompute_freqs_cis, transcribed with math."""
    theta = cfg["rope_theta"]
    freqs = [1.0 / (theta ** (k / d)) for k in range(0, d, 2)]
    rs = cfg.get("rope_scaling")
    if rs and cfg["max_position_embeddings"] > rs["original_max_position_embeddings"]:
        L0, factor = rs["original_max_position_embeddings"], rs["factor"]

        def corr_dim(rot):
            return d * math.log(L0 / (rot * 2 * math.pi)) / (2 * math.log(theta))
        lo = max(math.floor(corr_dim(rs["beta_fast"])), 0)
        hi = min(math.ceil(corr_dim(rs["beta_slow"])), d - 1)
        if lo == hi:
            hi += 0.001
        ramp = [min(1.0, max(0.0, (j - lo) / (hi - lo))) for j in range(d // 2)]
        freqs = [f / factor * r + f * (1.0 - r) for f, r in zip(freqs, ramp)]
    return freqs


def official_scale(cfg):
    s = (cfg["qk_nope_head_dim"] + cfg["qk_rope_head_dim"]) ** -0.5
    rs = cfg.get("rope_scaling")
    if rs and cfg["max_position_embeddings"] > rs["original_max_position_embeddings"]:
        m = 0.1 * rs["mscale"] * math.log(rs["factor"]) + 1.0          # official args.mscale
        s = s * m * m
    return s


def complex_rope(x, freqs):
    """x [..., T, d] (T is dim -2): pairs as complex numbers times e^{i t f}."""
    T, d = x.shape[-2], x.shape[-1]
    rot = torch.tensor([[cmath.exp(1j * t * f) for f in freqs] for t in range(T)], dtype=torch.complex128)
    xc = torch.view_as_complex(x.double().reshape(*x.shape[:-1], d // 2, 2).contiguous())
    return torch.view_as_real(xc * rot).reshape(x.shape)


def naive_mla(cfg, W, p, x):
    B, T, _ = x.shape
    nh, nope, rope, vd = (cfg["num_attention_heads"], cfg["qk_nope_head_dim"], cfg["qk_rope_head_dim"],
                          cfg["v_head_dim"])
    r, eps = cfg["kv_lora_rank"], cfg["rms_norm_eps"]
    a = p + "self_attn."
    if cfg.get("q_lora_rank"):
        q = naive_rms(x @ W[a + "q_a_proj.weight"].T, W[a + "q_a_layernorm.weight"], eps) @ W[a + "q_b_proj.weight"].T
    else:
        q = x @ W[a + "q_proj.weight"].T
    kva = x @ W[a + "kv_a_proj_with_mqa.weight"].T
    latent, kpe = kva[..., :r], kva[..., r:]
    kv = naive_rms(latent, W[a + "kv_a_layernorm.weight"], eps) @ W[a + "kv_b_proj.weight"].T
    freqs = official_freqs(cfg, rope)
    kpe = complex_rope(kpe, freqs)                                   # [B,T,rope]
    scale = official_scale(cfg)
    out = torch.zeros(B, T, nh * vd, dtype=torch.float64)
    for h in range(nh):
        qh = q[..., h * (nope + rope):(h + 1) * (nope + rope)]
        qh = torch.cat([qh[..., :nope], complex_rope(qh[..., nope:], freqs)], dim=-1)
        kvh = kv[..., h * (nope + vd):(h + 1) * (nope + vd)]
        kh = torch.cat([kvh[..., :nope], kpe], dim=-1)
        vh = kvh[..., nope:]
        for b in range(B):
            sc = qh[b] @ kh[b].T * scale
            for i in range(T):
                row = sc[i, :i + 1]
                pr = torch.exp(row - row.max())
                pr = pr / pr.sum()
                out[b, i, h * vd:(h + 1) * vd] = pr @ vh[b, :i + 1]
    return out @ W[a + "o_proj.weight"].T


def hf_inv_freq(cfg, D):
    """HF default rope + _compute_llama3_parameters, written in the HF torch.where form."""
    base = cfg["rope_theta"]
    inv = 1.0 / (base ** (torch.arange(0, D, 2, dtype=torch.float64) / D))
    rs = cfg.get("rope_scaling")
    if rs and rs.get("rope_type") == "llama3":
        factor, lf, hf, L0 = rs["factor"], rs["low_freq_factor"], rs["high_freq_factor"], rs["original_max_position_embeddings"]
        low_wl, high_wl = L0 / lf, L0 / hf
        wl = 2 * math.pi / inv
        inv_l = torch.where(wl > low_wl, inv / factor, inv)
        smooth = (L0 / wl - lf) / (hf - lf)
        smoothed = (1 - smooth) * inv_l / factor + smooth * inv_l
        medium = ~(wl < high_wl) * ~(wl > low_wl)
        inv = torch.where(medium, smoothed, inv_l)
    return inv


def naive_gqa(cfg, W, p, x):
    B, T, H = x.shape
    nq, nkv = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    D = cfg.get("head_dim") or H // nq
    a = p + "self_attn."

    def lin(name, inp):
        y = inp @ W[a + name + ".weight"].T
        if a + name + ".bias" in W:
            y = y + W[a + name + ".bias"]
        return y
    q, k, v = lin("q_proj", x), lin("k_proj", x), lin("v_proj", x)
    inv = hf_inv_freq(cfg, D)
    t = torch.arange(T, dtype=torch.float64)
    emb = torch.cat([torch.outer(t, inv)] * 2, dim=-1)
    cos, sin = emb.cos(), emb.sin()

    def rotate_half(u):
        return torch.cat([-u[..., D // 2:], u[..., :D // 2]], dim=-1)
    out = torch.zeros(B, T, nq * D, dtype=torch.float64)
    for h in range(nq):
        kvh = h // (nq // nkv)
        qh, kh, vh = q[..., h * D:(h + 1) * D], k[..., kvh * D:(kvh + 1) * D], v[..., kvh * D:(kvh + 1) * D]
        if a + "q_norm.weight" in W:
            qh = naive_rms(qh, W[a + "q_norm.weight"], cfg["rms_norm_eps"])
            kh = naive_rms(kh, W[a + "k_norm.weight"], cfg["rms_norm_eps"])
        qh = qh * cos + rotate_half(qh) * sin
        kh = kh * cos + rotate_half(kh) * sin
        sc = qh @ kh.transpose(-1, -2) / math.sqrt(D)
        sc = sc + torch.full((T, T), float("-inf"), dtype=torch.float64).triu(1)
        out[..., h * D:(h + 1) * D] = torch.softmax(sc, dim=-1) @ vh
    return lin("o_proj", out)


def official_gate(row, bias, cfg, fill=float("-inf")):
    """Per-token scalar transcription of the official Gate (fill=0.0 gives HF's deepseek_v3 mask)."""
    E, K = len(row), cfg["num_experts_per_tok"]
    if cfg.get("scoring_func", "softmax") == "sigmoid":
        s = [1.0 / (1.0 + math.exp(-v)) for v in row]
    else:
        m = max(row)
        ex = [math.exp(v - m) for v in row]
        s = [v / sum(ex) for v in ex]
    orig = list(s)
    if bias is not None:
        s = [a + b for a, b in zip(s, bias)]
    G = cfg.get("n_group") or 1
    method = cfg.get("topk_method", "greedy")
    if G > 1 and method in ("noaux_tc", "group_limited_greedy"):
        per = E // G
        gs = []
        for g in range(G):
            vals = sorted(s[g * per:(g + 1) * per], reverse=True)
            gs.append(vals[0] + vals[1] if method == "noaux_tc" else vals[0])
        keep = sorted(range(G), key=lambda g: -gs[g])[:cfg["topk_group"]]
        s = [v if i // per in keep else fill for i, v in enumerate(s)]
    idx = sorted(range(E), key=lambda i: -s[i])[:K]
    w = [orig[i] for i in idx]
    if cfg.get("norm_topk_prob"):
        tot = sum(w)
        w = [v / tot for v in w]
    sc = cfg.get("routed_scaling_factor", 1.0) if cfg["model_type"].startswith("deepseek") else 1.0
    return idx, [v * sc for v in w]


def router_check(tag, cfg, N, seed, bias_mean=0.0, spread=1.0):
    mc = ref.ModelConfig(cfg)
    g = torch.Generator().manual_seed(seed)
    E = mc.n_experts
    logits = spread * torch.randn(N, E, generator=g, dtype=torch.float64)
    bias = (bias_mean + 0.3 * torch.randn(E, generator=g, dtype=torch.float64)) if mc.has_ebias else None
    idx, w = ref.route(mc, logits, bias)
    differs_hf = 0
    for n in range(N):
        bl = bias.tolist() if bias is not None else None
        ni, nw = official_gate(logits[n].tolist(), bl, cfg)
        order = sorted(range(len(ni)), key=lambda j: ni[j])
        got = sorted(zip(idx[n].tolist(), w[n].tolist()))
        want = sorted(zip(ni, nw))
        check([a for a, _ in got] == [a for a, _ in want], f"{tag}: token {n} experts {got} vs official {want}")
        check(all(abs(a - b) <= 1e-14 for (_, a), (_, b) in zip(got, want)), f"{tag}: token {n} weights")
        del order
        if bias is not None:
            hi, _ = official_gate(logits[n].tolist(), bl, cfg, fill=0.0)
            differs_hf += sorted(hi) != sorted(ni)
    return differs_hf


# ------------------------------------------------------------------------------------------------
# main
# ------------------------------------------------------------------------------------------------

def main():
    t0 = time.time()
    tmp = tempfile.mkdtemp(prefix="qaft_ref_selftest_")
    fams = list(mtm.FAMILIES)
    worst = {}
    models = {}
    # variants exercising more config branches
    variants = [
        ("deepseek_v2_glg", "deepseek_v2_lite", ["topk_method=\"group_limited_greedy\"", "n_group=4", "topk_group=2",
                                                  "norm_topk_prob=true", "routed_scaling_factor=16.0"]),
        ("deepseek_v3_noyarn", "deepseek_v3", ["max_position_embeddings=4096", "q_lora_rank=null"]),
        ("llama_bias", "llama", ["attention_bias=true", "tie_word_embeddings=true", "num_key_value_heads=4"]),
    ]
    runs = [(f, f, []) for f in fams] + variants
    for i, (tag, fam, sets) in enumerate(runs):
        d = os.path.join(tmp, tag)
        mtm.make_model(fam, d, seed=11 + i, dtype="f32", sets=sets)
        mc, P, _ = ref.load_model(d, quiet=True)
        models[tag] = (mc, P, d)
        ids, tg = ids_targets(mc, 2, 7, 100 + i)
        out, w = fd_check(tag, mc, P, ids, tg, 200 + i)
        worst[tag] = w
        check(math.isfinite(float(out["loss"])), f"{tag}: loss not finite")

    # ---- (b) MLA vs naive official ---------------------------------------------------------------
    mla_err = 0.0
    for tag in ("deepseek_v3", "deepseek_v2_lite", "deepseek_v3_noyarn"):
        mc, P, d = models[tag]
        cfg = json.load(open(os.path.join(d, "config.json")))
        W = {k: v.detach() for k, v in P.items()}
        x = torch.randn(2, 9, mc.hidden, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
        cos, sin = ref.rope_tables(mc, 9, torch.float64)
        for L in range(mc.n_layers):
            p = f"model.layers.{L}."
            with torch.no_grad():
                got = ref.mla_attention(mc, W, p, x, cos, sin)
            want = naive_mla(cfg, W, p, x)
            e = float((got - want).abs().max() / want.abs().max())
            mla_err = max(mla_err, e)
            check(e < 1e-13, f"{tag} layer {L}: MLA vs naive official: rel err {e:.3g}")
        check(abs(mc.softmax_scale - official_scale(cfg)) < 1e-15, f"{tag}: softmax scale")
        fr = ref.deepseek_inv_freq(mc).tolist()
        check(max(abs(a - b) / b for a, b in zip(fr, official_freqs(cfg, mc.rope))) < 1e-15, f"{tag}: yarn freqs")
    # documented constants (formats.md 1.2 / 1.3) at real V3 / V2-Lite dims
    v3 = dict(mtm.family_config("deepseek_v3"), qk_nope_head_dim=128, qk_rope_head_dim=64, v_head_dim=128)
    mc3 = ref.ModelConfig(v3)
    check(abs(mc3.softmax_scale - 0.1352338) < 5e-7, f"V3 softmax scale {mc3.softmax_scale}")
    f = ref.deepseek_inv_freq(mc3).tolist()
    base = [10000.0 ** (-(2.0 * i) / 64) for i in range(32)]
    check(all(f[i] == base[i] for i in range(11)) and all(abs(f[i] - base[i] / 40) < 1e-20 for i in range(23, 32))
          and all(base[i] / 40 < f[i] < base[i] for i in range(11, 23)), "V3 YaRN correction range 10..23")
    v2 = dict(mtm.family_config("deepseek_v2_lite"), qk_nope_head_dim=128, qk_rope_head_dim=64, v_head_dim=128)
    check(abs(ref.ModelConfig(v2).softmax_scale - 0.1147214) < 5e-7, "V2-Lite softmax scale")

    # ---- GQA vs naive HF form --------------------------------------------------------------------
    gqa_err = 0.0
    for tag in ("llama", "qwen2", "qwen3", "qwen2_moe", "qwen3_moe", "llama_bias"):
        mc, P, d = models[tag]
        cfg = json.load(open(os.path.join(d, "config.json")))
        W = {k: v.detach() for k, v in P.items()}
        x = torch.randn(2, 9, mc.hidden, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
        cos, sin = ref.rope_tables(mc, 9, torch.float64)
        with torch.no_grad():
            got = ref.gqa_attention(mc, W, "model.layers.0.", x, cos, sin)
        want = naive_gqa(cfg, W, "model.layers.0.", x)
        e = float((got - want).abs().max() / want.abs().max())
        gqa_err = max(gqa_err, e)
        check(e < 1e-13, f"{tag}: GQA vs naive HF: rel err {e:.3g}")
    # llama3 scaling really has all three regimes in the tiny llama
    mc = models["llama"][0]
    inv0 = torch.tensor([500000.0 ** (-(2.0 * i) / 16) for i in range(8)], dtype=torch.float64)
    r = (ref.gqa_inv_freq(mc) / inv0).tolist()
    check(r[0] == 1.0 and abs(r[-1] - 1 / 8) < 1e-15 and any(1 / 8 < v < 1 for v in r), f"llama3 regimes {r}")

    # ---- router vs per-token official Gate -------------------------------------------------------
    differs = router_check("router v3", mtm.family_config("deepseek_v3"), 300, 1)
    differs_neg = router_check("router v3 negative", mtm.family_config("deepseek_v3"), 200, 2, bias_mean=-0.8)
    check(differs_neg > 0, "crafted negative-bias case should distinguish -inf from 0.0 group fill")
    router_check("router v2-lite", mtm.family_config("deepseek_v2_lite"), 200, 3)
    router_check("router v2 glg", dict(mtm.family_config("deepseek_v2_lite"), topk_method="group_limited_greedy",
                                        n_group=4, topk_group=2, norm_topk_prob=True, routed_scaling_factor=16.0), 200, 4)
    router_check("router qwen2_moe", mtm.family_config("qwen2_moe"), 200, 5)
    router_check("router qwen3_moe", mtm.family_config("qwen3_moe"), 200, 6)
    # does the tiny deepseek_v3 model itself separate -inf from 0.0? (informational)
    mc, P, d = models["deepseek_v3"]
    cfg = json.load(open(os.path.join(d, "config.json")))
    seen = []
    orig_route = ref.route

    def spy(mc_, logits, ebias=None, forced_idx=None):
        seen.append((logits.detach().clone(), ebias.detach().clone()))
        return orig_route(mc_, logits, ebias, forced_idx)
    ref.route = spy
    try:
        ids, _ = ids_targets(mc, 4, 16, 7)
        with torch.no_grad():
            ref.forward(mc, P, ids)
    finally:
        ref.route = orig_route
    model_differs = 0
    for lg, eb in seen:
        for n in range(lg.shape[0]):
            a, _ = official_gate(lg[n].tolist(), eb.tolist(), cfg)
            b, _ = official_gate(lg[n].tolist(), eb.tolist(), cfg, fill=0.0)
            model_differs += sorted(a) != sorted(b)

    # ---- (c) FP8 ---------------------------------------------------------------------------------
    T8 = stio.e4m3_table()
    check(T8[0x7E] == 448 and T8[0x01] == 2 ** -9 and T8[0x08] == 2 ** -6 and T8[0x07] == 7 * 2 ** -9
          and math.isnan(T8[0x7F]) and math.isnan(T8[0xFF]) and T8[0x80] == 0 and T8[0xFE] == -448
          and T8[0x38] == 1.0, "E4M3 table landmarks")
    finite = [c for c in range(256) if c not in (0x7F, 0xFF)]
    rt = stio.encode_e4m3(np.array([T8[c] for c in finite]))
    check(all(int(a) == c for a, c in zip(rt, finite)), "E4M3 encode(decode(c)) == c")
    check(list(stio.encode_e4m3(np.array([1.0625, 1.1875, 464.0, 500.0, 2 ** -10, 3 * 2 ** -10, -1.0625]))) ==
          [0x38, 0x3A, 0x7E, 0x7E, 0x00, 0x02, 0xB8], "E4M3 RNE ties / saturation")
    sets8 = ["hidden_size=160", "q_lora_rank=136", "kv_lora_rank=130", "intermediate_size=272",
             "moe_intermediate_size=136", "n_routed_experts=8", "n_group=4", "topk_group=2", "num_experts_per_tok=2",
             "vocab_size=200", "num_hidden_layers=2"]
    d8 = os.path.join(tmp, "fp8")
    mtm.make_model("deepseek_v3", d8, seed=3, dtype="fp8", sets=sets8, shards=3, mtp=True)
    cfg8 = json.load(open(os.path.join(d8, "config.json")))
    idx8 = json.load(open(os.path.join(d8, "model.safetensors.index.json")))["weight_map"]
    mc8, P8, info8 = ref.load_model(d8, quiet=True)
    check(info8["mtp_skipped"] > 0 and len(info8["fp8"]) > 0, "fp8 model: MTP skipped, FP8 weights seen")
    n_multi = n_partial = 0
    fp8_exact = True
    for name in info8["fp8"]:
        wf = stio.SafetensorsFile(os.path.join(d8, idx8[name]))
        sf = stio.SafetensorsFile(os.path.join(d8, idx8[name + "_scale_inv"]))
        codes = wf.numpy(name).astype(np.int64)
        scale = sf.numpy(name + "_scale_inv").astype(np.float32)
        rows, cols = codes.shape
        check(list(scale.shape) == [-(-rows // 128), -(-cols // 128)], f"{name}: scale shape")
        n_multi += scale.size > 1
        n_partial += (rows % 128 != 0) or (cols % 128 != 0)
        s_, e_, m_ = codes >> 7, (codes >> 3) & 15, codes & 7
        val = np.where(e_ == 0, m_ / 8.0 * 2.0 ** -6, (1 + m_ / 8.0) * 2.0 ** (e_ - 7.0)) * np.where(s_ == 1, -1.0, 1.0)
        blk = scale[np.arange(rows)[:, None] // 128, np.arange(cols)[None, :] // 128]
        want = (val.astype(np.float32) * blk).astype(np.float32)          # fp32 product (official weight_dequant)
        fp8_exact &= bool(np.array_equal(P8[name].detach().numpy(), want.astype(np.float64)))
        check(idx8[name] != idx8[name + "_scale_inv"], f"{name}: scale in the same shard as the weight")
    check(fp8_exact, "FP8 dequant == e4m3(code) * block scale (fp32 product)")
    check(n_multi > 0 and n_partial > 0, "FP8 model has multi-block and partial-edge weights")
    # same model written as F32 with the dequantized weights gives identical outputs
    d32 = os.path.join(tmp, "fp8_as_f32")
    os.makedirs(d32)
    cfg32 = dict(cfg8)
    cfg32.pop("quantization_config")
    cfg32["num_nextn_predict_layers"] = 0
    json.dump(cfg32, open(os.path.join(d32, "config.json"), "w"))
    stio.save_file({k: (v.detach().to(torch.float32), "F32") for k, v in P8.items()}, os.path.join(d32, "model.safetensors"))
    mcf, Pf, _ = ref.load_model(d32, quiet=True)
    ids, tg = ids_targets(mc8, 2, 6, 9)
    o8 = ref.run(mc8, P8, ids, tg)
    of = ref.run(mcf, Pf, ids, tg)
    check(o8.keys() == of.keys() and all(torch.equal(o8[k], of[k]) for k in o8), "FP8 model == F32 model of dequantized weights")
    # bf16 dequant mode rounds the fp32 product to bf16
    _, P8b, _ = ref.load_model(d8, fp8_dequant="bf16", quiet=True)
    nm = info8["fp8"][0]
    check(torch.equal(P8b[nm].detach(), stio.bf16_round(P8[nm].detach().float()).double()), "--fp8-dequant bf16")
    # non-FP8 tensors are BF16, the bias F32 (DeepSeek layout)
    dts = {}
    for fn in set(idx8.values()):
        sfx = stio.SafetensorsFile(os.path.join(d8, fn))
        for k in sfx.keys():
            dts[k] = sfx.dtype(k)
    check(dts["model.layers.1.mlp.gate.e_score_correction_bias"] == "F32" and dts["model.layers.1.mlp.gate.weight"] == "BF16"
          and dts["model.embed_tokens.weight"] == "BF16" and dts["lm_head.weight"] == "BF16"
          and dts["model.layers.0.self_attn.kv_a_layernorm.weight"] == "BF16"
          and dts["model.layers.0.self_attn.q_a_proj.weight"] == "F8_E4M3", "FP8 layout dtypes")
    # sharded + MTP checkpoint == single file of the same seed
    ds = os.path.join(tmp, "ds_single")
    dsh = os.path.join(tmp, "ds_sharded")
    mtm.make_model("deepseek_v3", ds, seed=4, dtype="bf16")
    mtm.make_model("deepseek_v3", dsh, seed=4, dtype="bf16", shards=2, mtp=True)
    ma, Pa, _ = ref.load_model(ds, quiet=True)
    mb, Pb, ib = ref.load_model(dsh, quiet=True)
    check(ib["mtp_skipped"] > 0 and all(torch.equal(Pa[k], Pb[k]) for k in Pa), "sharded+MTP == single file")
    del cfg8

    # ---- CLI, determinism, forced routes, f32, errors -------------------------------------------
    mc, P, d = models["deepseek_v3"]
    ids, tg = ids_targets(mc, 2, 7, 100)
    json.dump(ids.tolist(), open(os.path.join(tmp, "ids.json"), "w"))
    json.dump(tg.tolist(), open(os.path.join(tmp, "tg.json"), "w"))
    outp = os.path.join(tmp, "out.safetensors")
    cli = [sys.executable, os.path.join(HERE, "qaft_torch_ref.py"), "--model", d, "--ids", os.path.join(tmp, "ids.json"),
           "--targets", os.path.join(tmp, "tg.json"), "--out", outp, "--quiet", "--dump-hidden", "--threads", "1"]
    r = subprocess.run(cli, capture_output=True, text=True)
    check(r.returncode == 0, f"CLI failed: {r.stderr}")
    if r.returncode == 0:
        got, sf = stio.load_file(outp)
        want = ref.run(mc, P, ids, tg, want_hidden=True)
        check(set(got) == set(want) and all(torch.equal(got[k], want[k]) for k in want), "CLI output == in-process run")
        check(sf.dtype("logits") == "F64" and sf.dtype("route.1.topk_idx") == "I64" and sf.shape("loss") == []
              and "grad.model.layers.1.mlp.gate.weight" in got
              and not any("e_score_correction_bias" in k for k in got), "CLI output dtypes/names")
        # forced routes reproduce the same outputs
        forced = {L: got[f"route.{L}.topk_idx"] for L in mc.moe_layers}
        o2 = ref.run(mc, P, ids, tg, forced_routes=forced)
        check(all(torch.equal(o2[k], want[k]) for k in o2), "forced routes == own routes")
        # f32 mode close to f64
        cli32 = [a if a != outp else outp + "32" for a in cli if a != "--dump-hidden"] + ["--dtype", "f32"]
        r32 = subprocess.run(cli32, capture_output=True, text=True)
        check(r32.returncode == 0, f"CLI f32 failed: {r32.stderr}")
        if r32.returncode == 0:
            g32, sf32 = stio.load_file(outp + "32")
            check(sf32.dtype("logits") == "F32" and close(g32["logits"], want["logits"], 1e-5)
                  and close(g32["grad.model.layers.1.self_attn.q_b_proj.weight"],
                            want["grad.model.layers.1.self_attn.q_b_proj.weight"], 1e-4), "f32 run ~ f64 run")
    bad = os.path.join(tmp, "bad.json")
    json.dump([[0, 1], [5000, 2]], open(bad, "w"))
    r = subprocess.run(cli[:2] + ["--model", d, "--ids", bad, "--out", outp + "x"], capture_output=True, text=True)
    check(r.returncode == 2 and "out of range" in r.stderr, "bad ids rejected")
    # a mis-shaped / missing tensor is reported by name
    dbad = os.path.join(tmp, "badckpt")
    mtm.make_model("llama", dbad, seed=1, sets=["num_key_value_heads=4"])
    cfgb = json.load(open(os.path.join(dbad, "config.json")))
    cfgb["num_key_value_heads"] = 2
    json.dump(cfgb, open(os.path.join(dbad, "config.json"), "w"))
    try:
        ref.load_model(dbad, quiet=True)
        check(False, "mis-shaped checkpoint accepted")
    except ref.CheckpointError as e:
        check("model.layers.0.self_attn.k_proj.weight" in str(e) and "mis-shaped" in str(e), f"mis-shape message: {e}")
    # determinism of make_tiny_model
    da, db = os.path.join(tmp, "det_a"), os.path.join(tmp, "det_b")
    mtm.make_model("qwen3_moe", da, seed=42)
    mtm.make_model("qwen3_moe", db, seed=42)
    check(open(os.path.join(da, "model.safetensors"), "rb").read() == open(os.path.join(db, "model.safetensors"), "rb").read(),
          "make_tiny_model deterministic")

    dt = time.time() - t0
    worst_fd = max(worst.values())
    status = "OK" if not FAILS else f"FAILED ({len(FAILS)})"
    print(f"qaft reference selftest: {status}: {len(runs)} models ({', '.join(t for t, _, _ in runs)}), "
          f"{COUNTS['checks']} checks, {COUNTS['fd']} FD evals, worst FD err/|g| {worst_fd:.1e}, "
          f"MLA-vs-naive {mla_err:.1e}, GQA-vs-naive {gqa_err:.1e}, -inf vs 0.0 mask differs on "
          f"{differs}/300 random + {differs_neg}/200 crafted tokens ({model_differs} in the tiny V3 model), "
          f"FP8 exact, {dt:.1f}s")
    import shutil
    shutil.rmtree(tmp, ignore_errors=True)
    return 1 if FAILS else 0


if __name__ == "__main__":
    sys.exit(main())
