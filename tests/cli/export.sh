#!/usr/bin/env bash
# `qaft export` as a user runs it: a tiny DeepSeek-V3 is pretrained in FP8 for a few steps and LoRA
# fine-tuned with FP8 QAT (`qaft train`); the tuned model is exported as a merged FP8 checkpoint, a
# merged BF16 checkpoint and a PEFT adapter. `qaft serve` on each exported directory (no adapter)
# answers the same greedy requests with exactly the same completions as `qaft serve BASE --adapter`
# (the live merge); the FP8 directory has DeepSeek's block-FP8 layout; bad inputs are clear errors
# (exit 2 for a bad command line or an existing output, 1 for an adapter of another model).
# Usage: export.sh PATH/TO/qaft
set -euo pipefail
source "$(dirname "$0")/../cli_support/common.sh"

# --- a tuned tiny model: FP8 pretraining (3 steps), then LoRA with FP8 QAT (4 steps) ------------
source "$repo/tests/cli_support/tiny_model.sh"
make_tiny_chat_model "$qaft" "$tmp/tiny-model" 512
mkdir -p "$tmp/tiny-data"
write_tiny_text_data "$tmp/tiny-data/text.jsonl"
write_tiny_chat_data "$tmp/tiny-data/chat.jsonl" 40
cp "$repo"/configs/sft-tiny-qat-fp8.yaml "$tmp/"
cd "$tmp"  # relative --set paths resolve against the current directory
pretrain_tiny_model "$qaft" tiny-model tiny-data/text.jsonl 3 runs/base || fail "pretraining the test model"
base="$tmp/runs/base/model-fp8"
q train sft-tiny-qat-fp8.yaml --set model.path="$base" --set data.train=tiny-data/chat.jsonl --set data.eval=tiny-data/chat.jsonl \
  --set steps=4 --set eval.every=0 --set eval.batches=1 --set checkpoint.every=0 --set optim.lr=5e-3 \
  --set optim.schedule.warmup_steps=0 --set output.dir=runs/sft >/dev/null || fail "fine-tuning the test model"
adapter="$tmp/runs/sft/adapter"
[ -f "$adapter/adapter_model.safetensors" ] || fail "no adapter"

# --- the exports ---------------------------------------------------------------------------------
q export "$base" --adapter "$adapter" --format fp8 --output "$tmp/exp-fp8" --json > "$tmp/fp8.json" || fail "export fp8: exit $?"
python3 - "$tmp/fp8.json" "$tmp/exp-fp8" <<'PY' || fail "export fp8: report or directory: $(cat "$tmp/fp8.json")"
import json, struct, sys, os
r, d = json.load(open(sys.argv[1])), sys.argv[2]
assert r["format"] == "fp8" and r["output"] == os.path.realpath(d), r
assert r["serving"] == {"precision": "fp8", "scale_format": "fp32", "quantize_activations": True, "source": r["serving"]["source"]}, r
assert r["merge"]["merged"] > 0 and r["fp8_weights"] == r["merge"]["linears"], r
assert {"config.json", "model.safetensors.index.json", "tokenizer.json", "tokenizer_config.json"} <= set(r["files"]), r
assert r["bytes"] == sum(os.path.getsize(os.path.join(d, f)) for f in os.listdir(d)), r
cfg = json.load(open(d + "/config.json"))
assert cfg["quantization_config"] == {"activation_scheme": "dynamic", "fmt": "e4m3", "quant_method": "fp8",
                                      "weight_block_size": [128, 128]}, cfg
index = json.load(open(d + "/model.safetensors.index.json"))
dtypes = {}
for shard in set(index["weight_map"].values()):
    raw = open(os.path.join(d, shard), "rb").read()
    n = struct.unpack("<Q", raw[:8])[0]
    h = json.loads(raw[8:8 + n])
    dtypes.update({k: (v["dtype"], v["shape"]) for k, v in h.items() if k != "__metadata__"})
e = "model.layers.1.mlp.experts.15.gate_proj.weight"  # per expert, HF names
assert dtypes[e] == ("F8_E4M3", [32, 64]) and dtypes[e + "_scale_inv"] == ("F32", [1, 1]), dtypes[e]
assert dtypes["model.layers.0.self_attn.q_b_proj.weight_scale_inv"] == ("F32", [1, 1])
assert dtypes["model.layers.1.mlp.gate.e_score_correction_bias"][0] == "F32"
for k in ("model.embed_tokens.weight", "lm_head.weight", "model.norm.weight", "model.layers.1.mlp.gate.weight"):
    assert dtypes[k][0] == "BF16", (k, dtypes[k])
PY
q export "$base" --adapter "$adapter" --format bf16 --output "$tmp/exp-bf16" > "$tmp/bf16.txt" || fail "export bf16: exit $?"
grep -q "^exported bf16 to $tmp/exp-bf16" "$tmp/bf16.txt" || fail "export bf16: $(cat "$tmp/bf16.txt")"
grep -q "quantization_config" "$tmp/exp-bf16/config.json" && fail "a BF16 export with a quantization_config"
q export "$base" --adapter "$adapter" --format peft --output "$tmp/exp-peft" > /dev/null || fail "export peft: exit $?"
for f in adapter_config.json adapter_model.safetensors; do
  cmp -s "$adapter/$f" "$tmp/exp-peft/$f" || fail "export peft: $f differs from the adapter"
done
ls -a "$tmp" | grep -q "staging" && fail "a staging directory was left behind"
echo "exports: ok"

# --- served: the exported directory answers exactly as the live merge ---------------------------
port=""
server=""
start_server() {  # start_server ARGS... → $server (pid), $port
  : > "$tmp/serve.log"
  : > "$tmp/serve.out"
  "$qaft" serve "$@" --port 0 --model-name m >> "$tmp/serve.out" 2>> "$tmp/serve.log" &
  server=$!
  pids+=("$server")
  for _ in $(seq 1 300); do
    port=$(sed -n 's|^listening on http://127.0.0.1:\([0-9]*\)$|\1|p' "$tmp/serve.out")
    [ -n "$port" ] && return 0
    kill -0 "$server" 2>/dev/null || fail "qaft serve exited before listening"
    sleep 0.1
  done
  fail "qaft serve did not print 'listening on'"
}
stop_server() {
  kill -s TERM "$server"
  local rc=0
  wait "$server" || rc=$?
  [ "$rc" = 0 ] || fail "qaft serve: exit $rc after SIGTERM"
}
# answers NAME: greedy chat and text completions (ignore_eos: every token counts) → $tmp/NAME.answers
answers() {
  : > "$tmp/$1.answers"
  for body in '{"model": "m", "messages": [{"role": "user", "content": "question 7"}], "max_tokens": 24, "temperature": 0, "ignore_eos": true}' \
              '{"model": "m", "messages": [{"role": "user", "content": "question 31"}], "max_tokens": 24, "temperature": 0}'; do
    curl -sf -H 'Content-Type: application/json' -d "$body" "http://127.0.0.1:$port/v1/chat/completions" > "$tmp/body" \
      || fail "$1: chat request failed"
    python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); print(json.dumps([j["choices"][0]["message"]["content"], j["usage"]]))' \
      "$tmp/body" >> "$tmp/$1.answers"
  done
  curl -sf -H 'Content-Type: application/json' -d '{"model": "m", "prompt": "question 3,", "max_tokens": 24, "temperature": 0, "ignore_eos": true}' \
    "http://127.0.0.1:$port/v1/completions" > "$tmp/body" || fail "$1: completion request failed"
  python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); print(json.dumps([j["choices"][0]["text"], j["usage"]]))' \
    "$tmp/body" >> "$tmp/$1.answers"
}
same_answers() {
  cmp -s "$tmp/$1.answers" "$tmp/$2.answers" || fail "$1 and $2 answer differently:
$(diff "$tmp/$1.answers" "$tmp/$2.answers")"
}

start_server "$base" --adapter "$adapter"; answers live-fp8; stop_server
start_server "$tmp/exp-fp8"; answers exported-fp8; stop_server
grep -q '"completion_tokens": 24' "$tmp/live-fp8.answers" || fail "the reference answers are not 24 tokens: $(cat "$tmp/live-fp8.answers")"
same_answers live-fp8 exported-fp8
start_server "$base" --adapter "$adapter" --precision bf16; answers live-bf16; stop_server
start_server "$tmp/exp-bf16" --precision bf16; answers exported-bf16; stop_server
same_answers live-bf16 exported-bf16
echo "served exports answer as the live merge (fp8, bf16): ok"

# --- bad inputs -------------------------------------------------------------------------------------
expect_exit() {  # expect_exit CODE TEXT -- COMMAND...
  local want=$1 text=$2 rc=0
  shift 3
  "$@" > /dev/null 2> "$tmp/err.log" || rc=$?
  [ "$rc" = "$want" ] || fail "$*: exit $rc (expected $want): $(cat "$tmp/err.log")"
  grep -q -- "$text" "$tmp/err.log" || fail "$*: the error does not say '$text': $(cat "$tmp/err.log")"
}
expect_exit 2 "not empty" -- q export "$base" --adapter "$adapter" --format fp8 --output "$tmp/exp-fp8"
expect_exit 2 "no --adapter" -- q export "$base" --format peft --output "$tmp/x"
expect_exit 2 "format" -- q export "$base" --format fp4 --output "$tmp/x"
expect_exit 2 "scale-format" -- q export "$base" --adapter "$adapter" --format bf16 --scale-format ue8m0 --output "$tmp/x"
# An adapter of another model: a key naming a module this model does not have.
python3 - "$tmp/bad-adapter" <<'PY'
import json, os, struct, sys
d = sys.argv[1]
os.makedirs(d)
json.dump({"peft_type": "LORA", "r": 4, "lora_alpha": 8, "target_modules": ["wizard_proj"]}, open(d + "/adapter_config.json", "w"))
key = "base_model.model.model.layers.0.self_attn.wizard_proj.lora_A.weight"
header = json.dumps({key: {"dtype": "F32", "shape": [4, 64], "data_offsets": [0, 1024]}}).encode()
with open(d + "/adapter_model.safetensors", "wb") as f:
    f.write(struct.pack("<Q", len(header)) + header + bytes(1024))
PY
expect_exit 1 "wizard_proj" -- q export "$base" --adapter "$tmp/bad-adapter" --format peft --output "$tmp/x"
expect_exit 1 "wizard_proj" -- q export "$base" --adapter "$tmp/bad-adapter" --format fp8 --output "$tmp/x"
[ ! -e "$tmp/x" ] || fail "a failed export left its output directory"
# --force replaces an existing export.
q export "$base" --adapter "$adapter" --format fp8 --output "$tmp/exp-fp8" --force > /dev/null || fail "--force: exit $?"
echo "bad inputs: ok"
echo "PASS"
