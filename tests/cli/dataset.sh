#!/usr/bin/env bash
# `qaft dataset validate` as a user runs it: a small trained tokenizer with a ChatML chat template,
# a clean file (exit 0, statistics), the error fixture tests/data/dataset_errors.jsonl (every error
# class with its line number, exit 1), --fail-fast, --json, --on-overflow, a too-long line, an
# empty file, binary garbage, an unknown template and usage errors (exit 2).
# Usage: dataset.sh PATH/TO/qaft
set -euo pipefail
qaft="$1"
here="$(cd "$(dirname "$0")" && pwd)"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

for i in $(seq 1 200); do
  printf 'user assistant system: question %d, answer %d. Hello world, café 数据\n' "$i" $((i * 3))
done > "$tmp/corpus.txt"
"$qaft" --log-level warn tokenizer train "$tmp/corpus.txt" --vocab-size 300 --output "$tmp/model" \
  --special '<|im_start|>' --special '<|im_end|>'
python3 - "$tmp/model/tokenizer_config.json" <<'PY'
import json, sys
p = sys.argv[1]
c = json.load(open(p))
c["chat_template"] = "{% for m in messages %}{{'<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>' + '\\n'}}{% endfor %}"
c["eos_token"] = "<|im_end|>"
json.dump(c, open(p, "w"))
PY

# A clean file: exit 0 and the statistics.
cat > "$tmp/good.jsonl" <<'EOF2'
{"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello"}, {"role": "assistant", "content": "Hi!"}]}
{"messages": [{"role": "user", "content": "question 1"}, {"role": "assistant", "content": "answer 3"}], "weight": 2}
{"prompt": "Hello", "completion": " world"}
EOF2
out=$("$qaft" dataset validate "$tmp/good.jsonl" --model "$tmp/model" --tokens-per-second 100) || fail "clean file: exit $?"
grep -q '^template      chatml' <<< "$out" || fail "no template line: $out"
grep -q '^rows          3 (3 valid, 0 with errors)' <<< "$out" || fail "rows: $out"
grep -q '^epoch time    ' <<< "$out" || fail "no epoch estimate: $out"
json=$("$qaft" dataset validate "$tmp/good.jsonl" --model "$tmp/model" --json)
python3 -c 'import json,sys; j=json.loads(sys.argv[1]); assert j["valid_rows"]==3 and j["errors"]==0 and j["trainable_tokens"]>0, j' "$json" \
  || fail "--json: $json"

# The error fixture: every class with its line number, exit 1.
set +e
out=$("$qaft" dataset validate "$here/../data/dataset_errors.jsonl" --model "$tmp/model" --max-length 200)
rc=$?
set -e
[ "$rc" -eq 1 ] || fail "errors must exit 1, got $rc"
for expect in ':2: duplicate' ':3: invalid-json' ':4: not-an-object' ':5: bad-schema' ':6: unknown-role' \
              ':7: empty-content' ':8: empty-content' ':9: no-assistant-turn' ':10: bad-weight' \
              ':12: invalid-utf8' ':14: too-long'; do
  grep -q -- "$expect" <<< "$out" || fail "missing '$expect' in: $out"
done
grep -q '(2 valid, 11 with errors)' <<< "$out" || fail "counts: $out"
# Truncation instead of dropping: line 14 is kept.
out=$("$qaft" dataset validate "$here/../data/dataset_errors.jsonl" --model "$tmp/model" --max-length 200 \
      --on-overflow truncate || true)
grep -q ':14:' <<< "$out" && fail "truncate must not report line 14: $out"
grep -q '1 truncated' <<< "$out" || fail "truncated count: $out"
# --fail-fast stops at line 2.
out=$("$qaft" dataset validate "$here/../data/dataset_errors.jsonl" --model "$tmp/model" --fail-fast || true)
grep -q ':3:' <<< "$out" && fail "--fail-fast went on: $out"
grep -q 'stopped at the first error' <<< "$out" || fail "--fail-fast: $out"

# A line over --max-line-bytes, an empty file, binary garbage: reported, exit 1, no crash.
{ printf '{"messages": "'; head -c 300000 /dev/zero | tr '\0' 'x'; printf '"}\n'; cat "$tmp/good.jsonl"; } > "$tmp/long.jsonl"
out=$("$qaft" dataset validate "$tmp/long.jsonl" --model "$tmp/model" --max-line-bytes 100000 || true)
grep -q ':1: line-too-long' <<< "$out" || fail "long line: $out"
grep -q '(3 valid, 1 with errors)' <<< "$out" || fail "long line counts: $out"
: > "$tmp/empty.jsonl"
set +e
out=$("$qaft" dataset validate "$tmp/empty.jsonl" --model "$tmp/model"); rc=$?
set -e
[ "$rc" -eq 1 ] && grep -q 'empty-file' <<< "$out" || fail "empty file: rc $rc, $out"
head -c 200000 /dev/urandom > "$tmp/garbage.bin"
set +e
"$qaft" dataset validate "$tmp/garbage.bin" --model "$tmp/model" > /dev/null; rc=$?
set -e
[ "$rc" -eq 1 ] || fail "garbage must exit 1, got $rc"

# A model whose template qaft does not know: a clear error naming the model directory.
cp -r "$tmp/model" "$tmp/mystery"
python3 - "$tmp/mystery/tokenizer_config.json" <<'PY'
import json, sys
p = sys.argv[1]; c = json.load(open(p)); c["chat_template"] = "{% for m in messages %}[INST] {{ m.content }}{% endfor %}"
json.dump(c, open(p, "w"))
PY
set +e
err=$("$qaft" dataset validate "$tmp/good.jsonl" --model "$tmp/mystery" 2>&1 >/dev/null); rc=$?
set -e
[ "$rc" -eq 1 ] || fail "unknown template: exit $rc"
grep -q "$tmp/mystery" <<< "$err" && grep -q 'DeepSeek-V3' <<< "$err" || fail "unknown template message: $err"

# Usage errors: exit 2.
set +e
"$qaft" dataset validate "$tmp/good.jsonl" > /dev/null 2>&1; rc=$?
[ "$rc" -eq 2 ] || fail "missing --model: exit $rc"
"$qaft" dataset validate "$tmp/good.jsonl" --model "$tmp/model" --on-overflow wrap > /dev/null 2>&1; rc=$?
[ "$rc" -eq 2 ] || fail "bad --on-overflow: exit $rc"
set -e
echo "dataset CLI: ok"
