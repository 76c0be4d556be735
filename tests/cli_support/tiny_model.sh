# Sourced by the CLI tests (tests/cli/*.sh): builds the tiny chat model directory they share.
#
#   make_tiny_chat_model QAFT DIR [MAX_POSITIONS]
#
# DIR receives a byte-level BPE tokenizer trained by `qaft tokenizer train` (300 tokens, ChatML
# special tokens, a ChatML chat template with the generation prompt, EOS <|im_end|>) and the
# config.json of a tiny DeepSeek-V3 (MLA, one dense layer then two MoE layers with 1 shared + 16
# routed experts, group-limited noaux_tc routing). No weights: the tests pretrain or fine-tune them.
make_tiny_chat_model() {
  local qaft="$1" dir="$2" max_positions="${3:-4096}"
  mkdir -p "$dir"
  local corpus="$dir/.corpus.txt"
  for i in $(seq 1 300); do printf 'user assistant: question %d, answer %d. The wine is red and dry.\n' "$i" $((i * 3)); done > "$corpus"
  "$qaft" --log-level warn tokenizer train "$corpus" --vocab-size 300 --output "$dir" \
    --special '<|im_start|>' --special '<|im_end|>' 2>/dev/null
  rm -f "$corpus"
  cat > "$dir/config.json" <<JSON
{"architectures": ["DeepseekV3ForCausalLM"], "model_type": "deepseek_v3", "vocab_size": 320, "hidden_size": 64,
 "intermediate_size": 160, "moe_intermediate_size": 32, "num_hidden_layers": 3, "num_attention_heads": 4,
 "num_key_value_heads": 4, "n_shared_experts": 1, "n_routed_experts": 16, "num_experts_per_tok": 4, "n_group": 4,
 "topk_group": 2, "topk_method": "noaux_tc", "scoring_func": "sigmoid", "norm_topk_prob": true,
 "routed_scaling_factor": 2.5, "first_k_dense_replace": 1, "moe_layer_freq": 1, "q_lora_rank": 48, "kv_lora_rank": 32,
 "qk_nope_head_dim": 16, "qk_rope_head_dim": 16, "v_head_dim": 24, "hidden_act": "silu",
 "max_position_embeddings": $max_positions, "rms_norm_eps": 1e-06, "rope_theta": 10000.0, "tie_word_embeddings": false,
 "bos_token_id": 0, "eos_token_id": 1}
JSON
  python3 - "$dir/tokenizer_config.json" <<'PY'
import json, sys
p = sys.argv[1]
c = json.load(open(p))
c["chat_template"] = ("{% for m in messages %}{{'<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>' + '\\n'}}"
                      "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")
c["eos_token"] = "<|im_end|>"
json.dump(c, open(p, "w"))
PY
}

#   pretrain_tiny_model QAFT MODEL_DIR DATA_JSONL STEPS RUN_DIR
#
# Pretrains the tiny model of MODEL_DIR (made by make_tiny_chat_model) from scratch in FP8 for STEPS
# steps on DATA_JSONL ({"text"} or chat records) with configs/pretrain-tiny-fp8.yaml, no evaluation
# and no checkpoints. RUN_DIR receives the run: RUN_DIR/model (HF, F32, with the tokenizer) and
# RUN_DIR/model-fp8 (DeepSeek's block-FP8 layout). Paths may be relative to the current directory.
pretrain_tiny_model() {
  local qaft="$1" model="$2" data="$3" steps="$4" run="$5"
  local repo
  repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
  "$qaft" --log-level warn train "$repo/configs/pretrain-tiny-fp8.yaml" --set model.config="$model/config.json" \
    --set model.tokenizer="$model" --set data.train="$data" --set data.eval= --set steps="$steps" --set eval.every=0 \
    --set checkpoint.every=0 --set optim.schedule.warmup_steps=0 --set output.dir="$run" >/dev/null
}

#   write_tiny_text_data FILE         100 {"text"} records ("question k, answer 3k. The wine is red and dry.")
#   write_tiny_chat_data FILE N       N chat records (user "question k", assistant "answer 3k, the wine is red")
#
# The data the CLI tests pretrain and fine-tune the tiny model on.
write_tiny_text_data() {
  python3 - "$1" <<'PY'
import json, sys
with open(sys.argv[1], "w") as f:
    for k in range(100):
        f.write(json.dumps({"text": f"question {k}, answer {k * 3}. The wine is red and dry."}) + "\n")
PY
}
write_tiny_chat_data() {
  python3 - "$1" "$2" <<'PY'
import json, sys
with open(sys.argv[1], "w") as f:
    for k in range(int(sys.argv[2])):
        f.write(json.dumps({"messages": [{"role": "user", "content": f"question {k}"},
                                         {"role": "assistant", "content": f"answer {k * 3}, the wine is red"}]}) + "\n")
PY
}
