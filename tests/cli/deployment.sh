#!/usr/bin/env bash
# Deployments of the workspace as a user drives them (docs/workspace.md): with QAFT_HOME in a
# temporary directory, a tiny DeepSeek-V3 (pretrained for 2 FP8 steps) registered as a base model
# and fine-tuned for 2 steps into a tuned model, then
#   - clear refusals, nothing recorded: an unknown model, a tuned model without --live-merge, a bad name;
#   - `deployment create tuned --live-merge --detach --port 0`: the server runs in the background,
#     answers a real chat request (curl), and `list`/`get` show it running on the port it bound;
#   - a second create of the same name is refused (it runs: pid, address); a create on its port
#     fails naming the port (exit 1), recorded as failed, the registry intact;
#   - `deployment stop` (SIGTERM, graceful): stopped; stopping again says it is not running;
#   - re-creating a stopped or failed name needs no delete; an API key; a foreground create
#     stopped by SIGINT; `kill -9` reads as failed ("the server process is gone"); delete.
# Usage: deployment.sh PATH/TO/qaft
set -euo pipefail
source "$(dirname "$0")/../cli_support/common.sh"
export QAFT_HOME="$tmp/home"
export OMP_WAIT_POLICY=passive  # idle OpenMP threads sleep (tests share 2 cores)
unset QAFT_API_KEY
jq_py() { python3 -c 'import json,sys; j=json.load(sys.stdin); print(eval(sys.argv[1]))' "$1"; }
expect() {  # expect CODE PATTERN -- command...: exit code and a message matching PATTERN
  local code="$1" pattern="$2"; shift 3
  set +e; out=$("$@" 2>&1); rc=$?; set -e
  [ "$rc" = "$code" ] || fail "$*: exit $rc, want $code: $out"
  grep -q -- "$pattern" <<< "$out" || fail "$*: message lacks '$pattern': $out"
}
integrity_ok() {
  python3 - "$QAFT_HOME/registry.db" <<'PY' || fail "PRAGMA integrity_check"
import sqlite3, sys
assert sqlite3.connect(sys.argv[1]).execute("PRAGMA integrity_check").fetchone()[0] == "ok"
PY
}
status_of() { q deployment get "$1" --json | jq_py 'j["status"]'; }
# chat PORT [API_KEY] → the HTTP status; the body in $tmp/body
chat() {
  curl -s -o "$tmp/body" -w '%{http_code}' "http://127.0.0.1:$1/v1/chat/completions" \
    -H 'Content-Type: application/json' ${2:+-H "Authorization: Bearer $2"} \
    -d '{"messages": [{"role": "user", "content": "question 7"}], "max_tokens": 8, "temperature": 0}' || true
}
# create_detached ARGS... → $port, $pid of the started server
create_detached() {
  local out
  out=$(q deployment create "$@" --detach) || fail "deployment create $*: exit $?"
  grep -q "^deployment '.*' running at http://127.0.0.1:[0-9]* (pid [0-9]*" <<< "$out" || fail "create output: $out"
  port=$(sed -n "s|^deployment '.*' running at http://127.0.0.1:\([0-9]*\) (pid.*|\1|p" <<< "$out")
  pid=$(sed -n "s|^deployment '.*' running at .* (pid \([0-9]*\),.*|\1|p" <<< "$out")
  pids+=("$pid")
}
gone() { for _ in $(seq 1 100); do kill -0 "$1" 2>/dev/null || return 0; sleep 0.05; done; return 1; }

# ---- A base model (the tiny model of tests/cli/train.sh, 2 FP8 pretraining steps) and a tuned one.
source "$repo/tests/cli_support/tiny_model.sh"
make_tiny_chat_model "$qaft" "$tmp/tiny-model" 512
write_tiny_chat_data "$tmp/chat.jsonl" 64
pretrain_tiny_model "$qaft" "$tmp/tiny-model" "$tmp/chat.jsonl" 2 "$tmp/base-run" || fail "pretraining the tiny base model"
q model register tiny "$tmp/base-run/model-fp8" >/dev/null
q dataset create chat "$tmp/chat.jsonl" --model tiny >/dev/null
q sftj create --base-model tiny --dataset chat --output-model tuned --steps 2 --seq-len 64 --batch-size 2 \
  >/dev/null 2>&1 || fail "fine-tuning the tuned model"

# ---- Refusals before anything starts: exit 2, nothing recorded.
expect 2 "unknown model 'nope'; registered: tiny, tuned" -- q deployment create nope --live-merge --detach
expect 2 "is a tuned model.*served with --live-merge" -- q deployment create tuned --detach
expect 2 "invalid deployment name 'Web'" -- q deployment create tiny --name Web --detach
expect 2 "goes with --detach" -- q deployment create tiny --json
[ "$(q deployment list --json)" = "[]" ] || fail "a refused create recorded a deployment: $(q deployment list)"

# ---- A detached deployment of the tuned model: live merge, any free port, a real chat request.
create_detached tuned --live-merge --port 0
tuned_port=$port tuned_pid=$pid
[ "$tuned_port" -gt 0 ] || fail "no port"
[ "$(chat "$tuned_port")" = 200 ] || fail "chat request: $(cat "$tmp/body")"
jq_py '(j["object"], j["model"], j["usage"]["completion_tokens"] > 0)' < "$tmp/body" \
  | grep -qx "('chat.completion', 'tuned', True)" || fail "chat answer: $(cat "$tmp/body")"
json=$(q deployment get tuned --json)
[ "$(jq_py '(j["status"], j["port"], j["pid"], j["live_merge"], j["precision"], j["model"])' <<< "$json")" \
  = "('running', $tuned_port, $tuned_pid, True, 'fp8', 'tuned')" ] || fail "deployment get: $json"
[ "$(jq_py 'j["adapter"]' <<< "$json")" = "$QAFT_HOME/jobs/1/adapter" ] || fail "adapter: $json"
[ "$(jq_py 'j["url"]' <<< "$json")" = "http://127.0.0.1:$tuned_port" ] || fail "url: $json"
q deployment list | grep -q "^tuned  *tuned  *running  *127.0.0.1:$tuned_port  *$tuned_pid  *fp8 live-merge" \
  || fail "deployment list: $(q deployment list)"
[ "$(cat "$QAFT_HOME/deployments/tuned.lock")" = "$tuned_pid" ] || fail "the lock file does not hold the server's pid"
grep -q "listening on http://127.0.0.1:$tuned_port" "$QAFT_HOME/deployments/tuned.log" || fail "log: $(cat "$QAFT_HOME/deployments/tuned.log")"

# A second server of the same name is refused; the running one is untouched.
expect 2 "deployment 'tuned' is already running (pid $tuned_pid, http://127.0.0.1:$tuned_port)" -- \
  q deployment create tuned --live-merge --detach --port 0
expect 2 "deployment 'tuned' is already running" -- q deployment create tuned --live-merge --port 0
expect 2 "is running" -- q deployment delete tuned
expect 2 "served by deployment 'tuned'" -- q model delete tuned --force

# Its port taken: exit 1 naming the port and what serves there, recorded as failed, registry intact.
expect 1 "deployment 'web' did not start: cannot listen on http://127.0.0.1:$tuned_port: Address already in use (deployment 'tuned' serves there)" -- \
  q deployment create tiny --name web --port "$tuned_port" --detach
grep -q -- "--port" <<< "$out" || fail "no --port hint: $out"
json=$(q deployment get web --json)
[ "$(jq_py 'j["status"]' <<< "$json")" = failed ] && grep -q "Address already in use" <<< "$json" || fail "failed row: $json"
expect 1 "cannot listen on http://127.0.0.1:$tuned_port" -- q deployment create tiny --name web --port "$tuned_port"
integrity_ok
q deployment list | grep -q "^web  *tiny  *failed" || fail "list after the failure: $(q deployment list)"
[ "$(chat "$tuned_port")" = 200 ] || fail "the running server was disturbed"

# ---- stop: SIGTERM, graceful; the row says stopped.
q deployment stop tuned | grep -q "^deployment 'tuned' stopped (pid $tuned_pid)" || fail "deployment stop"
gone "$tuned_pid" || fail "the server still runs after stop"
[ "$(status_of tuned)" = stopped ] || fail "after stop: $(q deployment get tuned)"
[ "$(chat "$tuned_port")" = 000 ] || fail "still answering after stop"
q deployment stop tuned | grep -q "is not running (stopped); nothing to stop" || fail "stopping a stopped deployment"
expect 2 "unknown deployment 'nope'; registered: tuned, web" -- q deployment stop nope

# ---- Re-creating a stopped and a failed name needs no delete; an API key.
create_detached tuned --live-merge --port 0
[ "$(chat "$port")" = 200 ] || fail "chat after re-create"
tuned_pid=$pid
QAFT_API_KEY=s3cret create_detached tiny --name web --port 0
web_pid=$pid web_port=$port
[ "$(chat "$web_port")" = 401 ] || fail "no API key: want 401"
[ "$(chat "$web_port" s3cret)" = 200 ] || fail "API key from \$QAFT_API_KEY: $(cat "$tmp/body")"
[ "$(q deployment get web --json | jq_py '(j["status"], j["model"], j["adapter"], j["live_merge"])')" \
  = "('running', 'tiny', None, False)" ] || fail "base model deployment: $(q deployment get web)"
[ "$(q deployment list --json | jq_py 'len(j)')" = 2 ] || fail "re-create duplicated rows: $(q deployment list)"

# ---- kill -9: reads as failed, the server process is gone; re-creatable; delete.
kill -9 "$tuned_pid"
gone "$tuned_pid" || fail "kill -9"
json=$(q deployment get tuned --json)
[ "$(jq_py '(j["status"], j["error"])' <<< "$json")" = "('failed', 'the server process is gone')" ] || fail "after kill -9: $json"
q deployment list | grep -q "^tuned  *tuned  *failed" || fail "list after kill -9: $(q deployment list)"
q deployment stop tuned | grep -q "is not running (failed: the server process is gone)" || fail "stop after kill -9"
q deployment delete tuned | grep -q "deployment 'tuned' deleted" || fail "delete"
[ ! -e "$QAFT_HOME/deployments/tuned.log" ] || fail "delete left the log"

# ---- A foreground create, stopped by SIGINT (exit 0, stopped).
"$qaft" --log-level warn deployment create tuned --live-merge --name fg --port 0 > "$tmp/fg.out" 2>&1 &
fg=$!  # qaft itself (not a subshell running q: a background subshell ignores SIGINT)
pids+=("$fg")
for _ in $(seq 1 600); do [ "$(status_of fg 2>/dev/null || true)" = running ] && break; sleep 0.1; done
[ "$(status_of fg)" = running ] || fail "foreground deployment: $(cat "$tmp/fg.out")"
fg_port=$(q deployment get fg --json | jq_py 'j["port"]')
[ "$(chat "$fg_port")" = 200 ] || fail "foreground chat"
kill -INT "$fg"
rc=0; wait "$fg" || rc=$?
[ "$rc" = 0 ] || fail "foreground create: exit $rc after SIGINT: $(cat "$tmp/fg.out")"
[ "$(status_of fg)" = stopped ] || fail "foreground after SIGINT: $(q deployment get fg)"

# ---- delete of a running deployment is refused; stop it, delete everything, registry intact.
q deployment stop web >/dev/null
gone "$web_pid" || fail "stop web"
q deployment delete web >/dev/null
q deployment delete fg >/dev/null
[ "$(q deployment list)" = "(none)" ] || fail "deployments left: $(q deployment list)"
integrity_ok
echo "deployment.sh: all checks passed"
