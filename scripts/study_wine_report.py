#!/usr/bin/env python3
"""Assembles docs/results.md and docs/img/*.png from the work files of scripts/study-wine and
scripts/make-tiny-dsv3 (eval JSON of `qaft eval`, metrics.jsonl and summary.json of `qaft train`).
Usage: study_wine_report.py WORK_DIR DOCS_DIR"""
import json
import os
import subprocess
import sys

work, docs = sys.argv[1], sys.argv[2]
img = os.path.join(docs, "img")
os.makedirs(img, exist_ok=True)
NAMES = ["none", "lora-noqat-nf4", "lora-noqat-fp8", "lora-noqat-bf16", "lora-qat-nf4", "lora-qat-fp8", "lora-qat-bf16"]


def load(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def metrics(path):
    try:
        return [json.loads(l) for l in open(path) if l.strip()]
    except OSError:
        return []


rows = []
for name in NAMES:
    summary = load(f"{work}/runs/{name}/summary.json") if name != "none" else None
    for prec in ("fp8", "bf16"):
        e = load(f"{work}/eval/{name}-{prec}.json")
        if e is None:
            continue
        p = e.get("parity_vs_served", {})
        base = "fp8 (as shipped)" if name == "none" else name.split("-")[2]
        qat = "—" if name == "none" else ("FP8 QAT" if "-qat-" in name else "no QAT")
        rows.append({
            "name": name, "served": prec, "base": base, "qat": qat,
            "accuracy": 100 * e["accuracy"], "correct": e["correct"], "examples": e["examples"],
            "kl_mean": p.get("kl_mean"), "kl_p99": p.get("kl_p99"), "kl_max": p.get("kl_max"),
            "top1": 100 * p["top1_agreement"] if p else None,
            "train_tps": summary["tokens_per_second"] if summary else None,
            "peak_mib": summary["peak_rss_bytes"] / 2**20 if summary else None,
            "serve_tps": e.get("generation_tokens_per_second"),
            "reference": e.get("reference_numerics"), "majority": 100 * e.get("majority_share", 0),
            "ppl": e.get("perplexity"),
        })


def fmt(v, spec, none="—"):
    return none if v is None else format(v, spec)


out = []
out.append("# Results\n")
out.append("Measured by the repository's own scripts on the development machine (2-core AMD EPYC VM, shared "
           "with other work while these ran: throughputs are indicative, single runs). Regenerate with "
           "`scripts/make-tiny-dsv3` and `scripts/study-wine`.\n")

gap = load("models/tiny-dsv3/loss-gap.json")
out.append("## tiny-dsv3: FP8 vs BF16 pretraining\n")
if gap:
    out.append(f"The same recipe (`models/tiny-dsv3/pretrain.yaml`, 1,200 steps of 4 × 256 tokens) run with FP8 "
               f"operands (DeepSeek-V3's recipe) and with BF16 operands. Held-out loss (200 documents): FP8 "
               f"**{gap['fp8_eval_loss']:.4f}**, BF16 **{gap['bf16_eval_loss']:.4f}**: relative gap "
               f"**{100 * gap['relative_gap']:+.2f} %** (DeepSeek-V3 reports < 0.25 % at scale; this is a 2 M-parameter "
               f"model trained for 1.2 M tokens, one run each, no seeds averaged). Mean training loss of the last 20 "
               f"steps: FP8 {gap['fp8_train_loss_last20']:.4f}, BF16 {gap['bf16_train_loss_last20']:.4f}.\n")
    out.append("![pretraining loss](img/pretrain-loss.png)\n")

out.append("## The wine-review QAT study\n")
if rows:
    ev = rows[0]
    out.append(f"`models/tiny-dsv3` fine-tuned with LoRA (r = 16, all linears including every routed expert) to "
               f"name the grape variety of a review (`data/wine-fr`; Bayes-optimal accuracy ≈ 86 %, majority class "
               f"{ev['majority']:.1f} % on this evaluation set), evaluated on {ev['examples']} held-out reviews by greedy "
               f"generation and exact match. *KL* and *top-1* compare, token by token over every position of the "
               f"evaluation records, the training-time evaluation numerics (the Transformer forward with the adapter "
               f"unmerged, QAT as trained) with the deployment that serves the model (live merge, then FP8 "
               f"E4M3 128×128 + 1×128 activations, or BF16).\n")
    out.append("| fine-tuning | base storage | served | accuracy | KL mean (train ∥ serve) | KL p99 | top-1 agreement | train tok/s | peak RSS (MiB) | serving tok/s |")
    out.append("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        out.append(f"| {r['qat'] if r['name'] != 'none' else 'none'} | {r['base']} | {r['served']} | "
                   f"{r['accuracy']:.1f} % | {fmt(r['kl_mean'], '.2e')} | {fmt(r['kl_p99'], '.2e')} | {fmt(r['top1'], '.2f')} % | "
                   f"{fmt(r['train_tps'], '.0f')} | {fmt(r['peak_mib'], '.0f')} | {fmt(r['serve_tps'], '.0f')} |")
    out.append("")
    out.append("Serving tok/s counts generated tokens per second of the batched greedy generation (16 sequences, "
               "prefill included). Training tok/s and peak RSS come from each run's `summary.json` (two runs in "
               "parallel, one thread each).\n")
    out.append("![accuracy](img/accuracy.png)\n")
    out.append("![fine-tuning loss](img/sft-loss.png)\n")
# The reading of the numbers is written by a person; a regeneration keeps it (check it still holds).
reading = "## Reading the numbers\n\n(To be written after looking at the numbers.)\n"
try:
    old = open(os.path.join(docs, "results.md")).read()
    if "## Reading the numbers" in old:
        reading = old[old.index("## Reading the numbers"):]
except OSError:
    pass
with open(os.path.join(docs, "results.md"), "w") as f:
    f.write("\n".join(out) + "\n" + reading)


def gnuplot(script):
    subprocess.run(["gnuplot"], input=script.encode(), check=True)


# Plots.
def write_series(path, pts):
    with open(path, "w") as f:
        for x, y in pts:
            f.write(f"{x} {y}\n")


tmp = os.path.join(work, "plot")
os.makedirs(tmp, exist_ok=True)
curves = []
for label, path in (("FP8", "models/tiny-dsv3/metrics-fp8.jsonl"), ("BF16", "models/tiny-dsv3/metrics-bf16.jsonl")):
    m = [r for r in metrics(path) if "loss" in r]
    if m:
        pts, acc = [], []
        for r in m:  # 20-step running mean
            acc.append(r["loss"])
            acc = acc[-20:]
            pts.append((r["step"], sum(acc) / len(acc)))
        write_series(f"{tmp}/pre-{label}.dat", pts)
        curves.append(f"'{tmp}/pre-{label}.dat' with lines lw 2 title '{label}'")
if curves:
    gnuplot(f"set terminal pngcairo size 800,450\nset output '{img}/pretrain-loss.png'\nset xlabel 'step'\n"
            f"set ylabel 'training loss (20-step mean)'\nset logscale y\nset title 'tiny-dsv3 pretraining'\nplot {', '.join(curves)}\n")
curves = []
for name in NAMES[1:]:
    m = [r for r in metrics(f"{work}/runs/{name}/metrics.jsonl") if "loss" in r]
    if m:
        pts, acc = [], []
        for r in m:
            acc.append(r["loss"])
            acc = acc[-10:]
            pts.append((r["step"], sum(acc) / len(acc)))
        write_series(f"{tmp}/{name}.dat", pts)
        curves.append(f"'{tmp}/{name}.dat' with lines lw 2 title '{name}'")
if curves:
    gnuplot(f"set terminal pngcairo size 800,450\nset output '{img}/sft-loss.png'\nset xlabel 'step'\n"
            f"set ylabel 'training loss (10-step mean)'\nset title 'wine-review LoRA fine-tuning'\nplot {', '.join(curves)}\n")
if rows:
    with open(f"{tmp}/acc.dat", "w") as f:
        for name in NAMES:
            vals = {r["served"]: r["accuracy"] for r in rows if r["name"] == name}
            if vals:
                f.write(f"{name} {vals.get('fp8', 0)} {vals.get('bf16', 0)}\n")
    gnuplot(f"set terminal pngcairo size 900,450\nset output '{img}/accuracy.png'\nset style data histograms\n"
            f"set style histogram clustered gap 1\nset style fill solid 0.8\nset ylabel 'accuracy (%)'\nset yrange [0:100]\n"
            f"set xtics rotate by -20\nset title 'grape-variety accuracy, served in FP8 and BF16'\n"
            f"plot '{tmp}/acc.dat' using 2:xtic(1) title 'served FP8', '' using 3 title 'served BF16'\n")
print(f"wrote {docs}/results.md")
