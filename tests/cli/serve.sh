#!/usr/bin/env bash
# `qaft serve` as a user runs it: a tiny DeepSeek-V3 with a ChatML tokenizer is pretrained for a few
# steps (`qaft tokenizer train`, `qaft train`), served over loopback and driven with curl: /health,
# /v1/models, chat and text completions (streamed and not), /metrics, OpenAI JSON errors, an API
# key from $QAFT_API_KEY, concurrent clients; SIGTERM and SIGINT shut it down gracefully (exit 0);
# a port in use, a corrupt checkpoint and an adapter with unknown keys are clear errors (exit 1).
# Usage: serve.sh PATH/TO/qaft
set -euo pipefail
source "$(dirname "$0")/../cli_support/common.sh"

# --- a tiny model directory: tokenizer with a ChatML template + a few pretraining steps ---------
source "$repo/tests/cli_support/tiny_model.sh"
make_tiny_chat_model "$qaft" "$tmp/tiny-model" 512
mkdir -p "$tmp/tiny-data"
write_tiny_text_data "$tmp/tiny-data/text.jsonl"
pretrain_tiny_model "$qaft" "$tmp/tiny-model" "$tmp/tiny-data/text.jsonl" 3 "$tmp/runs/serve" || fail "pretraining the test model"
model="$tmp/runs/serve/model"
[ -f "$model/tokenizer.json" ] || fail "no model directory"

# --- start / stop helpers ---------------------------------------------------------------------
port=""
server=""
start_server() {  # start_server ARGS... → $server (pid), $port
  # Emptied here, before the child exists: the loop below must never read a previous server's port.
  : > "$tmp/serve.log"
  : > "$tmp/serve.out"
  "$qaft" serve "$@" >> "$tmp/serve.out" 2>> "$tmp/serve.log" &
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
stop_server() {  # stop_server SIGNAL: the server must exit 0 within 10 s
  kill -s "$1" "$server"
  for _ in $(seq 1 100); do
    kill -0 "$server" 2>/dev/null || break
    sleep 0.1
  done
  kill -0 "$server" 2>/dev/null && fail "still running 10 s after SIG$1"
  local rc=0
  wait "$server" || rc=$?
  [ "$rc" = 0 ] || fail "exit code $rc after SIG$1 (expected 0)"
  grep -q "shutting down" "$tmp/serve.log" || fail "no shutdown message after SIG$1"
}
# curl_json METHOD PATH [BODY] → prints "STATUS BODY"
curl_json() {
  local url="http://127.0.0.1:$port$2"
  if [ -n "${3:-}" ]; then
    curl -s -o "$tmp/body" -w '%{http_code}' -X "$1" -H 'Content-Type: application/json' ${AUTH:+-H "Authorization: Bearer $AUTH"} --data-binary "$3" "$url"
  else
    curl -s -o "$tmp/body" -w '%{http_code}' -X "$1" ${AUTH:+-H "Authorization: Bearer $AUTH"} "$url"
  fi
}
expect() {  # expect STATUS JQ-LIKE-PYTHON-EXPR DESCRIPTION  (the body is j)
  local status=$1 check=$2 what=$3 got
  got=$(cat "$tmp/status")
  [ "$got" = "$status" ] || fail "$what: HTTP $got, expected $status: $(head -c 300 "$tmp/body")"
  python3 -c "import json,sys; j=json.load(open(sys.argv[1])); sys.exit(0 if ($check) else 1)" "$tmp/body" ||
    fail "$what: $(head -c 300 "$tmp/body")"
}
req() { curl_json "$@" > "$tmp/status"; }

# --- serving ----------------------------------------------------------------------------------
start_server "$model" --port 0
grep -q "live merge" "$tmp/serve.log" || fail "no live-merge time in the log"
req GET /health;      expect 200 'j["status"] == "ok"' "/health"
req GET /v1/models;   expect 200 'j["data"][0]["id"] == "model"' "/v1/models"
chat='{"model": "model", "messages": [{"role": "user", "content": "question 7"}], "max_tokens": 8, "temperature": 0}'
req POST /v1/chat/completions "$chat"
expect 200 'j["object"] == "chat.completion" and j["choices"][0]["finish_reason"] in ("stop", "length") and j["usage"]["total_tokens"] == j["usage"]["prompt_tokens"] + j["usage"]["completion_tokens"]' "chat completion"
text=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["choices"][0]["message"]["content"], end="")' "$tmp/body")
# Streamed: SSE events, [DONE] last, the deltas add up to the same (greedy) text.
curl -sN -H 'Content-Type: application/json' -d "${chat%\}}, \"stream\": true}" "http://127.0.0.1:$port/v1/chat/completions" > "$tmp/sse"
python3 - "$tmp/sse" "$text" <<'PY' || fail "streamed chat: $(head -c 400 "$tmp/sse")"
import json, sys
body, want = open(sys.argv[1]).read(), sys.argv[2]
events = body.split("\n\n")
assert events[-1] == "" and events[-2] == "data: [DONE]", events[-3:]
got = ""
for e in events[:-2]:
    assert e.startswith("data: "), e
    c = json.loads(e[6:])
    got += c["choices"][0]["delta"].get("content", "")
assert got == want, (got, want)
PY
req POST /v1/completions '{"prompt": "question 3,", "max_tokens": 5, "temperature": 0, "ignore_eos": true}'
expect 200 'j["object"] == "text_completion" and j["usage"]["completion_tokens"] == 5' "text completion"

# Errors: OpenAI JSON with the right status; the server keeps serving.
req POST /v1/chat/completions '{"messages": ['
expect 400 'j["error"]["code"] == "invalid_json"' "malformed JSON"
req POST /v1/chat/completions '{"model": "gpt-4", "messages": [{"role": "user", "content": "x"}]}'
expect 404 'j["error"]["code"] == "model_not_found"' "unknown model"
req POST /v1/chat/completions '{"messages": [{"role": "user", "content": "x"}], "temperature": -1}'
expect 400 'j["error"]["param"] == "temperature"' "negative temperature"
req POST /v1/chat/completions '{"messages": [], "max_tokens": 4}'
expect 400 'j["error"]["param"] == "messages"' "empty messages"
req POST /v1/chat/completions '{"messages": [{"role": "user", "content": "x"}], "max_tokens": 100000}'
expect 400 'j["error"]["code"] == "context_length_exceeded"' "context overflow"
python3 -c 'import json; print(json.dumps({"messages": [{"role": "user", "content": "a" * 5000000}]}))' > "$tmp/big.json"
curl -s -o "$tmp/body" -w '%{http_code}' -H 'Content-Type: application/json' --data-binary @"$tmp/big.json" \
  "http://127.0.0.1:$port/v1/chat/completions" > "$tmp/status"
expect 413 'j["error"]["code"] == "request_too_large"' "oversized body"
# Eight concurrent clients: all answered.
clients=()
for i in $(seq 1 8); do
  curl -s -o "$tmp/c$i" -w '%{http_code}' -H 'Content-Type: application/json' \
    -d '{"messages": [{"role": "user", "content": "question '"$i"'"}], "max_tokens": 12}' \
    "http://127.0.0.1:$port/v1/chat/completions" > "$tmp/s$i" &
  clients+=($!)
done
for c in "${clients[@]}"; do wait "$c" || true; done
for i in $(seq 1 8); do [ "$(cat "$tmp/s$i")" = 200 ] || fail "concurrent client $i: $(cat "$tmp/s$i") $(cat "$tmp/c$i")"; done
req GET /metrics
grep -q 'qaft_requests_total{endpoint="/v1/chat/completions",code="200"}' "$tmp/body" || fail "/metrics has no request counter"
grep -q '^qaft_generated_tokens_total [1-9]' "$tmp/body" || fail "/metrics has no generated tokens"

# A port in use is a clear error (exit 1), and the first server is not disturbed.
rc=0
"$qaft" serve "$model" --port "$port" > /dev/null 2> "$tmp/inuse.log" || rc=$?
[ "$rc" = 1 ] || fail "port in use: exit $rc (expected 1)"
grep -q "cannot listen on http://127.0.0.1:$port" "$tmp/inuse.log" || fail "port in use: $(cat "$tmp/inuse.log")"
req GET /health; expect 200 'j["status"] == "ok"' "/health after the port-in-use attempt"

stop_server TERM
echo "serve, endpoints, errors, SIGTERM: ok"

# --- API key from the environment; SIGINT --------------------------------------------------------
export QAFT_API_KEY=k3y
start_server "$model" --port 0 --model-name wine
unset QAFT_API_KEY
req POST /v1/chat/completions '{"messages": [{"role": "user", "content": "x"}], "max_tokens": 2}'
expect 401 'j["error"]["code"] == "invalid_api_key"' "no API key"
AUTH=k3y req POST /v1/chat/completions '{"model": "wine", "messages": [{"role": "user", "content": "x"}], "max_tokens": 2}'
expect 200 'j["model"] == "wine"' "with the API key"
req GET /health; expect 200 'True' "/health without a key"
stop_server INT
echo "API key, SIGINT: ok"

# --- bad inputs: clear errors, exit 1 -------------------------------------------------------------
# An adapter whose key names a module this model does not have.
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
rc=0
q serve "$model" --adapter "$tmp/bad-adapter" --port 0 > /dev/null 2> "$tmp/err.log" || rc=$?
[ "$rc" = 1 ] || fail "adapter with unknown keys: exit $rc (expected 1): $(cat "$tmp/err.log")"
grep -q "wizard_proj" "$tmp/err.log" || fail "adapter with unknown keys: the error does not name the key: $(cat "$tmp/err.log")"
# A corrupt checkpoint: the weights cut short.
cp -r "$model" "$tmp/corrupt"
for f in "$tmp"/corrupt/*.safetensors; do truncate -s 1000 "$f"; done
rc=0
q serve "$tmp/corrupt" --port 0 > /dev/null 2> "$tmp/err.log" || rc=$?
[ "$rc" = 1 ] || fail "corrupt checkpoint: exit $rc (expected 1): $(cat "$tmp/err.log")"
grep -q "qaft: error:.*safetensors" "$tmp/err.log" || fail "corrupt checkpoint: $(cat "$tmp/err.log")"
# A bad flag is a usage error.
rc=0
q serve "$model" --precision fp4 > /dev/null 2>&1 || rc=$?
[ "$rc" = 2 ] || fail "bad --precision: exit $rc (expected 2)"
echo "bad inputs: ok"
echo "PASS"
