#!/usr/bin/env bash
# `qaft train` as a user runs it, with the ready configs of configs/: a tiny DeepSeek-V3 (MLA, one
# dense layer, MoE layers with shared + 16 routed experts, group-limited noaux_tc routing) is
# pretrained from scratch in FP8 and in BF16, then LoRA fine-tuned on the FP8-pretrained model for
# every base format with QAT on and off; a run stopped midway and resumed gives the same adapter
# byte for byte; bad configurations and inputs are clear errors with the right exit codes.
# Usage: train.sh PATH/TO/qaft
set -euo pipefail
qaft="$(realpath "$1")"
repo="$(cd "$(dirname "$0")/../.." && pwd)"
tmp=$(mktemp -d)
trap '[ -n "${KEEP:-}" ] || rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
q() { "$qaft" --log-level warn "$@"; }

# The tiny model directory (tests/cli_support/tiny_model.sh) and its data.
source "$repo/tests/cli_support/tiny_model.sh"
make_tiny_chat_model "$qaft" "$tmp/tiny-model"
mkdir -p "$tmp/tiny-data"
python3 - "$tmp" <<'PY'
import json, random, sys
t = sys.argv[1]
r = random.Random(0)
colors = ["red", "white", "rose"]
with open(t + "/tiny-data/text.jsonl", "w") as f:
    for k in range(200):
        f.write(json.dumps({"text": f"question {k}, answer {k * 3}. The wine is {colors[k % 3]} and dry."}) + "\n")
for name, ks in (("train", range(0, 96)), ("eval", range(96, 120))):
    with open(f"{t}/tiny-data/{name}.jsonl", "w") as f:
        for k in ks:
            f.write(json.dumps({"messages": [{"role": "user", "content": f"question {k}"},
                                             {"role": "assistant", "content": f"answer {k * 3}, the wine is {colors[k % 3]}"}]}) + "\n")
PY
cp "$repo"/configs/*.yaml "$tmp/"
cd "$tmp"  # relative --set paths resolve against the current directory

# Loss of the first and last five steps of a metrics file: the run must learn.
learned() {
  python3 - "$1" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if '"loss"' in l]
assert len(rows) >= 10, rows
first = sum(r["loss"] for r in rows[:5]) / 5
last = sum(r["loss"] for r in rows[-5:]) / 5
assert last < 0.97 * first, f"{sys.argv[1]}: loss {first:.4f} -> {last:.4f}"
assert all(not r["skipped"] for r in rows)
print(f"{first:.4f} -> {last:.4f}")
PY
}

# Pretraining from scratch on text records, FP8 and BF16 recipes.
for p in fp8 bf16; do
  out=$(q train "$tmp/pretrain-tiny-$p.yaml" --set data.train=tiny-data/text.jsonl --set data.eval=tiny-data/text.jsonl \
        --set steps=30 --set optim.lr=3e-3) || fail "pretrain $p: exit $?"
  run="$tmp/runs/pretrain-tiny-$p"
  [ -f "$run/model/config.json" ] && [ -f "$run/model/model.safetensors.index.json" ] && [ -f "$run/model/tokenizer.json" ] || fail "pretrain $p: no model"
  echo "pretrain $p: $(learned "$run/metrics.jsonl")"
  grep -q '"eval_loss"' "$run/metrics.jsonl" || fail "pretrain $p: no evaluation in metrics"
  grep -q '"max_expert_load_ratio"' "$run/metrics.jsonl" || fail "pretrain $p: no expert-load statistics"
done
[ -f "$tmp/runs/pretrain-tiny-fp8/model-fp8/model.safetensors.index.json" ] || fail "fp8 pretraining wrote no FP8 checkpoint"
grep -q '"quant_method": *"fp8"' "$tmp/runs/pretrain-tiny-fp8/model-fp8/config.json" || fail "FP8 checkpoint without quantization_config"
q inspect "$tmp/runs/pretrain-tiny-fp8/model-fp8" | grep -q e4m3 || fail "qaft inspect sees no e4m3 in the FP8 checkpoint"

# LoRA fine-tuning of the FP8-pretrained model: every base format, QAT on and off.
base="$tmp/runs/pretrain-tiny-fp8/model-fp8"
for qat in qat noqat; do
  for fmt in bf16 fp8 nf4; do
    name="sft-tiny-$qat-$fmt"
    q train "$tmp/$name.yaml" --set model.path="$base" --set optim.lr=5e-3 > "$tmp/$name.out" || fail "$name: exit $?"
    run="$tmp/runs/$name"
    [ -f "$run/adapter/adapter_config.json" ] && [ -f "$run/adapter/adapter_model.safetensors" ] || fail "$name: no adapter"
    python3 - "$run" <<'PY' || fail "$name: adapter or census"
import json, struct, sys
run = sys.argv[1]
cfg = json.load(open(run + "/adapter/adapter_config.json"))
assert cfg["peft_type"] == "LORA" and cfg["r"] == 8 and cfg["lora_alpha"] == 16, cfg
raw = open(run + "/adapter/adapter_model.safetensors", "rb").read()
n = struct.unpack("<Q", raw[:8])[0]
keys = json.loads(raw[8:8 + n])
for k in ("base_model.model.model.layers.1.mlp.experts.15.down_proj.lora_B.weight",
          "base_model.model.model.layers.0.self_attn.kv_b_proj.lora_A.weight",
          "base_model.model.model.layers.2.mlp.shared_experts.gate_proj.lora_A.weight"):
    assert k in keys, k
census = json.load(open(run + "/census.json"))
assert [row["layer"] for row in census["experts"]] == [1, 2], census
assert all(len(row["tokens"]) == 16 for row in census["experts"])
PY
    echo "$name: $(learned "$run/metrics.jsonl")"
  done
done

# Stopped and resumed: the same adapter, byte for byte, as the uninterrupted run.
set +e
q train "$tmp/sft-tiny-qat-nf4.yaml" --set model.path="$base" --set optim.lr=5e-3 --set output.dir=runs/resumed --stop-after 7 >/dev/null
rc=$?
set -e
[ "$rc" = 130 ] || fail "--stop-after: exit $rc, want 130"
[ -d "$tmp/runs/resumed/checkpoints/step-00000007" ] || fail "no checkpoint at the stop"
[ ! -e "$tmp/runs/resumed/adapter" ] || fail "a stopped run wrote its adapter"
q train "$tmp/sft-tiny-qat-nf4.yaml" --set model.path="$base" --set optim.lr=5e-3 --set output.dir=runs/resumed --resume >/dev/null \
  || fail "resume: exit $?"
cmp "$tmp/runs/resumed/adapter/adapter_model.safetensors" "$tmp/runs/sft-tiny-qat-nf4/adapter/adapter_model.safetensors" \
  || fail "resumed adapter differs from the uninterrupted run"
[ "$(grep -c '"loss"' "$tmp/runs/resumed/metrics.jsonl")" = 20 ] || fail "resumed metrics do not have 20 step lines"

# Bad input: clear errors, exit 2 for configuration, 1 for data and I/O.
expect() {  # expect CODE PATTERN -- command...
  local code="$1" pattern="$2"; shift 3
  set +e; out=$("$@" 2>&1); rc=$?; set -e
  [ "$rc" = "$code" ] || fail "$*: exit $rc, want $code: $out"
  grep -q -- "$pattern" <<< "$out" || fail "$*: message lacks '$pattern': $out"
}
cfg="$tmp/sft-tiny-qat-bf16.yaml"
expect 2 "optim.lrr" -- q train "$cfg" --set model.path="$base" --set optim.lrr=1
expect 2 "optim.lr" -- q train "$cfg" --set model.path="$base" --set optim.lr=0
expect 2 "matches no module" -- q train "$cfg" --set model.path="$base" --set 'lora.targets=[qkv_proj]' --set output.dir=runs/x1
expect 2 "rank" -- q train "$cfg" --set model.path="$base" --set lora.rank=200 --set output.dir=runs/x2
expect 2 "dropout" -- q train "$cfg" --set model.path="$base" --set lora.dropout=0.1 --set output.dir=runs/x3
: > "$tmp/empty.jsonl"
expect 1 "no valid example" -- q train "$cfg" --set model.path="$base" --set data.train="$tmp/empty.jsonl" --set output.dir=runs/x4
expect 1 "not writable\|cannot create" -- q train "$cfg" --set model.path="$base" --set output.dir=/proc/qaft-out
expect 2 "already holds a checkpoint" -- q train "$cfg" --set model.path="$base" --set optim.lr=5e-3 --set output.dir=runs/sft-tiny-qat-bf16
expect 2 "was made with" -- q train "$cfg" --set model.path="$base" --set optim.lr=1e-3 --set output.dir=runs/sft-tiny-qat-bf16 --resume
expect 2 "config.json\|model.path" -- q train "$cfg" --set model.path="$tmp/nowhere"
echo "train.sh: all checks passed"
