#!/usr/bin/env bash
# The workspace registry as a user drives it (docs/workspace.md), with QAFT_HOME in a temporary
# directory and the tiny DeepSeek-V3 of tests/cli/train.sh (pretrained for 2 steps in FP8): model
# register, dataset create (validated, copied, hashed), a fine-tuning job run in the foreground
# with its tuned model's lineage, list/get as tables and JSON, a detached job killed with kill -9
# that reads as interrupted and is resumed to the same adapter, byte for byte, as an uninterrupted
# run; two processes registering at once; clear errors (exit 2) for unknown names, a duplicate
# output name, taken names, deletes that would break lineage; and, where this machine lets us
# mount (root in a mount namespace), a workspace on a full and on a read-only file system.
# Usage: workspace.sh PATH/TO/qaft
set -euo pipefail
qaft="$(realpath "$1")"
repo="$(cd "$(dirname "$0")/../.." && pwd)"
tmp=$(mktemp -d)
bg_pid=""
cleanup() {
  [ -z "$bg_pid" ] || kill -9 "$bg_pid" 2>/dev/null || true
  [ -n "${KEEP:-}" ] || rm -rf "$tmp"
}
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
q() { "$qaft" --log-level warn "$@"; }
export QAFT_HOME="$tmp/home"
# Idle OpenMP threads sleep instead of spinning: results are the same, and on a busy machine (tests
# run in parallel on 2 cores) spinning barriers make the tiny model's steps 10-20x slower.
export OMP_WAIT_POLICY=passive
# Reads a JSON document on stdin and evaluates a Python expression over it as `j`.
jq_py() { python3 -c 'import json,sys; j=json.load(sys.stdin); print(eval(sys.argv[1]))' "$1"; }
expect() {  # expect CODE PATTERN -- command...: exit code and a message matching PATTERN
  local code="$1" pattern="$2"; shift 3
  set +e; out=$("$@" 2>&1); rc=$?; set -e
  [ "$rc" = "$code" ] || fail "$*: exit $rc, want $code: $out"
  grep -q -- "$pattern" <<< "$out" || fail "$*: message lacks '$pattern': $out"
}
integrity_ok() {
  python3 - "$1" <<'PY' || fail "integrity_check of $1"
import sqlite3, sys
c = sqlite3.connect(sys.argv[1])
assert c.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
PY
}

# ---- The tiny model (as tests/cli/train.sh): tokenizer, config, chat data; 2 FP8 pretraining steps.
source "$repo/tests/cli_support/tiny_model.sh"
make_tiny_chat_model "$qaft" "$tmp/tiny-model"
mkdir -p "$tmp/tiny-data"
python3 - "$tmp" <<'PY'
import json, sys
t = sys.argv[1]
colors = ["red", "white", "rose"]
for name, ks in (("train", range(0, 96)), ("eval", range(96, 120))):
    with open(f"{t}/tiny-data/{name}.jsonl", "w") as f:
        for k in ks:
            f.write(json.dumps({"messages": [{"role": "user", "content": f"question {k}"},
                                             {"role": "assistant", "content": f"answer {k * 3}, the wine is {colors[k % 3]}"}]}) + "\n")
PY
pretrain_tiny_model "$qaft" "$tmp/tiny-model" "$tmp/tiny-data/train.jsonl" 2 "$tmp/base-run" || fail "pretraining the tiny base model"
base="$tmp/base-run/model-fp8"

# ---- Models.
q model register tiny "$base" > "$tmp/out.txt" || fail "model register: exit $?"
grep -q "^format *fp8" "$tmp/out.txt" || fail "model register did not detect FP8: $(cat "$tmp/out.txt")"
[ -f "$QAFT_HOME/registry.db" ] && [ -d "$QAFT_HOME/datasets" ] && [ -d "$QAFT_HOME/jobs" ] || fail "workspace layout"
expect 2 "already registered" -- q model register tiny "$base"
expect 2 "invalid model name" -- q model register Tiny "$base"
expect 1 "is not a directory" -- q model register nowhere "$tmp/nowhere-dir-x"
mkdir -p "$tmp/empty-model"
expect 1 "config.json" -- q model register empty "$tmp/empty-model"
[ "$(q model list --json | jq_py 'len(j)')" = 1 ] || fail "a failed register left a row"

# ---- Datasets: validated with the model's tokenizer, copied, hashed.
q dataset create chat "$tmp/tiny-data/train.jsonl" --model tiny >/dev/null || fail "dataset create: exit $?"
q dataset create chat-eval "$tmp/tiny-data/eval.jsonl" --model "$base" >/dev/null || fail "dataset create --model DIR"
json=$(q dataset get chat --json)
sha=$(sha256sum "$tmp/tiny-data/train.jsonl" | cut -d' ' -f1)
[ "$(jq_py 'j["sha256"]' <<< "$json")" = "$sha" ] || fail "dataset sha256: $json"
[ "$(jq_py 'j["rows"], j["stats"]["valid_rows"]' <<< "$json")" = "(96, 96)" ] || fail "dataset rows: $json"
cmp "$tmp/tiny-data/train.jsonl" "$QAFT_HOME/datasets/chat.jsonl" || fail "the copy differs"
expect 2 "already registered" -- q dataset create chat "$tmp/tiny-data/train.jsonl" --model tiny
expect 2 "unknown model 'nomodel'; registered: tiny" -- q dataset create x "$tmp/tiny-data/train.jsonl" --model nomodel
expect 1 "11 of 13 lines are invalid" -- q dataset create bad "$repo/tests/data/dataset_errors.jsonl" --model tiny --max-length 200
[ -z "$(ls -A "$QAFT_HOME/datasets" | grep -v '^chat')" ] || fail "a refused dataset left a file: $(ls -A "$QAFT_HOME/datasets")"
q dataset create bad "$repo/tests/data/dataset_errors.jsonl" --model tiny --max-length 200 --allow-errors >/dev/null \
  || fail "--allow-errors: exit $?"
q dataset delete bad >/dev/null
[ ! -e "$QAFT_HOME/datasets/bad.jsonl" ] || fail "dataset delete left the copy"
expect 2 "unknown dataset 'bad'; registered: chat, chat-eval" -- q dataset get bad
q dataset list | grep -q "^chat  *96 " || fail "dataset list: $(q dataset list)"

# Two processes registering at once: both succeed, nothing is lost.
q dataset create par-a "$tmp/tiny-data/train.jsonl" --model tiny >/dev/null & p1=$!
q dataset create par-b "$tmp/tiny-data/eval.jsonl" --model tiny >/dev/null & p2=$!
wait $p1 || fail "concurrent dataset create a"
wait $p2 || fail "concurrent dataset create b"
[ "$(q dataset list --json | jq_py 'sorted(d["name"] for d in j)')" = "['chat', 'chat-eval', 'par-a', 'par-b']" ] \
  || fail "concurrent creates: $(q dataset list)"

# ---- A fine-tuning job in the foreground, and its tuned model's lineage.
common=(--base-model tiny --dataset chat --seq-len 64 --batch-size 2 --lr 5e-3)
q sftj create "${common[@]}" --output-model tuned --steps 6 --eval-dataset chat-eval > "$tmp/job1.txt" 2>"$tmp/job1.err" \
  || fail "sftj create: exit $?: $(cat "$tmp/job1.err")"
grep -q "job 1 completed: model 'tuned' registered" "$tmp/job1.txt" || fail "sftj create output: $(cat "$tmp/job1.txt")"
grep -q "step 6/6" "$tmp/job1.err" || fail "no progress lines: $(cat "$tmp/job1.err")"
json=$(q sftj get 1 --json)
[ "$(jq_py 'j["status"], j["metrics"]["steps_done"], j["progress"]["step"]' <<< "$json")" = "('completed', 6, 6)" ] \
  || fail "sftj get: $json"
jq_py 'j["metrics"]["final_loss"] > 0 and j["metrics"]["eval"]["loss"] > 0 and j["metrics"]["tokens_per_second"] > 0' <<< "$json" \
  | grep -q True || fail "job metrics: $json"
json=$(q model get tuned --json)
version=$("$qaft" --version | awk '{print $2}')
[ "$(jq_py '(j["kind"], j["lineage"]["base_model"], j["lineage"]["dataset"], j["lineage"]["job"], j["qaft_version"])' <<< "$json")" \
  = "('tuned', 'tiny', 'chat', 1, '$version')" ] || fail "tuned model lineage: $json"
[ "$(jq_py 'j["lineage"]["dataset_sha256"]' <<< "$json")" = "$sha" ] || fail "lineage sha256: $json"
[ "$(jq_py '(j["config"]["steps"], j["config"]["base_format"], j["config"]["qat"]["enabled"], j["config"]["model"]["path"])' <<< "$json")" \
  = "(6, 'fp8', True, '$base')" ] || fail "lineage config: $json"
adapter=$(jq_py 'j["adapter"]' <<< "$json")
[ -f "$adapter/adapter_model.safetensors" ] && [ -f "$adapter/adapter_config.json" ] || fail "no adapter in $adapter"
q sftj list | grep -q "^1  *completed  *tuned  *tiny  *chat  *6/6" || fail "sftj list: $(q sftj list)"
q model list | grep -q "^tuned  *tuned  *lora  *tiny  *chat" || fail "model list: $(q model list)"

# Bad requests: clear errors, exit 2, nothing recorded.
expect 2 "already the output of job 1 (completed)" -- q sftj create "${common[@]}" --output-model tuned --steps 2
expect 2 "a model named 'tiny' is already registered" -- q sftj create "${common[@]}" --output-model tiny --steps 2
expect 2 "unknown model 'nope'; registered: tiny, tuned" -- q sftj create --base-model nope --dataset chat --output-model x
expect 2 "unknown dataset 'nope'; registered: chat, chat-eval, par-a, par-b" -- q sftj create --base-model tiny --dataset nope --output-model x
expect 2 "is a tuned model" -- q sftj create --base-model tuned --dataset chat --output-model x
expect 2 "optim.lrr" -- q sftj create "${common[@]}" --output-model x --set optim.lrr=1
expect 2 "invalid output model name" -- q sftj create "${common[@]}" --output-model "X Y"
expect 2 "unknown job '99'; registered: 1" -- q sftj get 99
[ "$(q sftj list --json | jq_py 'len(j)')" = 1 ] || fail "a refused job was recorded"
expect 2 "used by tuned model 'tuned'" -- q model delete tiny
expect 2 "produced model 'tuned'" -- q sftj delete 1

# ---- A detached job killed with kill -9: reads as interrupted, resumes from its last checkpoint
# to the same adapter as an uninterrupted run. Rows of 4x128 tokens make each step long enough that
# the job is caught mid-run (frozen with SIGSTOP as soon as a checkpoint is on disk, then killed).
long=(--base-model tiny --dataset chat --seq-len 128 --batch-size 4 --lr 5e-3 --steps 16 --set checkpoint.every=2)
out=$(q sftj create "${long[@]}" --output-model killed --detach) || fail "sftj create --detach: exit $?"
grep -q "^job 2 started in the background (pid [0-9]*)" <<< "$out" || fail "detach output: $out"
bg_pid=$(sed -n 's/^job 2 started in the background (pid \([0-9]*\)).*/\1/p' <<< "$out")
for _ in $(seq 1 6000); do  # until its first checkpoint is on disk (not a step-N.tmp-PID being written)
  compgen -G "$QAFT_HOME/jobs/2/checkpoints/step-[0-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9]" >/dev/null && break
  kill -0 "$bg_pid" 2>/dev/null || fail "the detached job ended early: $(cat "$QAFT_HOME/jobs/2/log.txt")"
  sleep 0.01
done
kill -STOP "$bg_pid" 2>/dev/null || fail "the detached job finished before it could be killed"
kill -9 "$bg_pid"
for _ in $(seq 1 100); do kill -0 "$bg_pid" 2>/dev/null || break; sleep 0.05; done
bg_pid=""
grep -q '"loss"' "$QAFT_HOME/jobs/2/metrics.jsonl" || fail "no metrics line before the kill"
[ "$(q sftj get 2 --json | jq_py 'j["status"]')" = interrupted ] || fail "killed job: $(q sftj get 2)"
q sftj list | grep -q "^2  *interrupted  *killed" || fail "sftj list after kill: $(q sftj list)"
[ ! -e "$QAFT_HOME/jobs/2/adapter" ] || fail "a killed job wrote its adapter"
expect 2 "is interrupted, not queued" -- q sftj run-job 2
"$qaft" --log-level info sftj resume 2 > "$tmp/resume.txt" 2>&1 || fail "sftj resume: exit $?: $(cat "$tmp/resume.txt")"
grep -q "from the checkpoint at step" "$tmp/resume.txt" || fail "resume did not start from a checkpoint: $(cat "$tmp/resume.txt")"
[ "$(q sftj get 2 --json | jq_py 'j["status"]')" = completed ] || fail "resumed job: $(q sftj get 2)"
[ "$(grep -c '"loss"' "$QAFT_HOME/jobs/2/metrics.jsonl")" = 16 ] || fail "resumed metrics do not have 16 step lines"
q model get killed >/dev/null || fail "the resumed job registered no model"
expect 2 "already completed" -- q sftj resume 2
q sftj create "${long[@]}" --output-model straight >/dev/null 2>&1 \
  || fail "uninterrupted job: exit $?"
cmp "$QAFT_HOME/jobs/2/adapter/adapter_model.safetensors" "$QAFT_HOME/jobs/3/adapter/adapter_model.safetensors" \
  || fail "the killed-and-resumed adapter differs from the uninterrupted run's"

# A job stopped by SIGTERM ends cleanly as interrupted; while it runs it can be neither resumed
# nor deleted.
q sftj create "${common[@]}" --output-model stopped --steps 200 --detach >/dev/null || fail "detach (SIGTERM job)"
bg_pid=$(q sftj get 4 --json | jq_py 'j["pid"]')
for _ in $(seq 1 1200); do grep -q '"loss"' "$QAFT_HOME/jobs/4/metrics.jsonl" 2>/dev/null && break; sleep 0.05; done
[ "$(q sftj get 4 --json | jq_py 'j["status"]')" = running ] || fail "detached job not running: $(q sftj get 4)"
expect 2 "is running" -- q sftj resume 4
expect 2 "is running" -- q sftj delete 4
kill -TERM "$bg_pid"
for _ in $(seq 1 400); do kill -0 "$bg_pid" 2>/dev/null || break; sleep 0.05; done
kill -0 "$bg_pid" 2>/dev/null && fail "SIGTERM did not stop the job"
bg_pid=""
json=$(q sftj get 4 --json)
[ "$(jq_py '(j["status"], j["error"], j["finished_at"] is not None, 0 < j["metrics"]["steps_done"] < 200)' <<< "$json")" \
  = "('interrupted', None, True, True)" ] || fail "SIGTERM'd job: $json"
q sftj delete 4 >/dev/null || fail "delete an interrupted job"

# A job that fails at run time is recorded as failed with its error; it can be deleted.
expect 2 "matches no module" -- q sftj create "${common[@]}" --output-model broken --steps 2 --set 'lora.targets=[qkv_proj]'
json=$(q sftj get 5 --json)
[ "$(jq_py 'j["status"]' <<< "$json")" = failed ] && grep -q "matches no module" <<< "$json" || fail "failed job: $json"
q sftj delete 5 >/dev/null || fail "delete a failed job"

# ---- Deletes keep the registry consistent.
q sftj delete 3 --force >/dev/null || fail "sftj delete --force"
[ ! -e "$QAFT_HOME/jobs/3" ] && ! q model get straight >/dev/null 2>&1 || fail "sftj delete --force left the job or its model"
q model delete killed >/dev/null || fail "model delete (tuned)"
[ -d "$QAFT_HOME/jobs/2/adapter" ] || fail "deleting a tuned model removed its job's files"
expect 2 "no deployment is registered yet" -- q deployment get web
[ "$(q deployment list --json)" = "[]" ] || fail "deployment list"
integrity_ok "$QAFT_HOME/registry.db"

# ---- A workspace on a full and on a read-only file system (needs mount rights; skipped without).
mkdir -p "$tmp/probe"
if unshare -m mount -t tmpfs -o size=1m tmpfs "$tmp/probe" 2>/dev/null; then
  unshare -m bash -s "$qaft" "$tmp" "$base" <<'SH' || fail "full / read-only workspace checks"
set -euo pipefail
qaft="$1"; tmp="$2"; base="$3"
fail() { echo "FAIL: $*" >&2; exit 1; }
q() { "$qaft" --log-level warn "$@"; }
mkdir -p "$tmp/small"
mount -t tmpfs -o size=2m tmpfs "$tmp/small"
export QAFT_HOME="$tmp/small/ws"
q model register tiny "$base" >/dev/null || fail "register on the small disk"
# Fill the disk, then write: a clear I/O error, no row, no stray file.
dd if=/dev/zero of="$tmp/small/fill" bs=64k 2>/dev/null || true
set +e; out=$(q dataset create chat "$tmp/tiny-data/train.jsonl" --model tiny 2>&1); rc=$?; set -e
[ "$rc" = 1 ] && grep -qi "full\|no space" <<< "$out" || fail "dataset create on a full disk: exit $rc: $out"
set +e; out=$(q model register other "$base" 2>&1); rc=$?; set -e
[ "$rc" = 1 ] && grep -qi "full\|no space" <<< "$out" || fail "model register on a full disk: exit $rc: $out"
rm "$tmp/small/fill"
[ "$(q dataset list)" = "(none)" ] || fail "a row survived the full disk: $(q dataset list)"
[ -z "$(ls -A "$QAFT_HOME/datasets")" ] || fail "a file survived the full disk: $(ls -A "$QAFT_HOME/datasets")"
q model list | grep -q "^tiny " && ! q model list | grep -q "^other " || fail "models after the full disk: $(q model list)"
q dataset create chat "$tmp/tiny-data/train.jsonl" --model tiny >/dev/null || fail "dataset create after freeing space"
# Read-only: reading works, every write is a clear I/O error.
mount -o remount,ro "$tmp/small"
q dataset list | grep -q "^chat " || fail "list on a read-only workspace: $(q dataset list 2>&1)"
set +e; out=$(q model register other "$base" 2>&1); rc=$?; set -e
[ "$rc" = 1 ] && grep -qi "read-only" <<< "$out" || fail "model register on a read-only workspace: exit $rc: $out"
set +e; out=$(q dataset create more "$tmp/tiny-data/eval.jsonl" --model tiny 2>&1); rc=$?; set -e
[ "$rc" = 1 ] && grep -qi "read-only" <<< "$out" || fail "dataset create on a read-only workspace: exit $rc: $out"
set +e; out=$(q sftj create --base-model tiny --dataset chat --output-model t --steps 2 2>&1); rc=$?; set -e
[ "$rc" = 1 ] && grep -qi "read-only" <<< "$out" || fail "sftj create on a read-only workspace: exit $rc: $out"
echo "full and read-only workspace: checked"
SH
else
  echo "SKIP: full / read-only workspace checks (no mount rights here)"
fi
echo "workspace.sh: all checks passed"
