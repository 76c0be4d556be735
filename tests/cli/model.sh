#!/usr/bin/env bash
# `qaft inspect`, `qaft logits`, `qaft generate` as a user runs them, on a tiny DeepSeek-V3 written
# in the FP8 layout (and sharded) by the independent reference generator: inspect's census, logits
# that agree with the PyTorch reference, greedy generation, and clear errors for bad input.
# Usage: model.sh PATH/TO/qaft
set -euo pipefail
qaft="$1"
here="$(cd "$(dirname "$0")/.." && pwd)"
py=/usr/bin/python3
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
if ! $py -c 'import torch' 2>/dev/null; then echo "SKIP: $py cannot import torch"; exit 0; fi

$py "$here/reference/make_tiny_model.py" --family deepseek_v3 --seed 3 --dtype fp8 --shards 2 --out "$tmp/m" >/dev/null

"$qaft" inspect "$tmp/m" > "$tmp/inspect.txt"
grep -q "deepseek_v3 (MLA attention)" "$tmp/inspect.txt" || fail "inspect: $(cat "$tmp/inspect.txt")"
grep -q "e4m3" "$tmp/inspect.txt" || fail "inspect lists no e4m3 tensors"
grep -q "sharded" "$tmp/inspect.txt" || fail "inspect does not see the shards"
"$qaft" inspect "$tmp/m" --json | $py -c 'import json,sys; j=json.load(sys.stdin); assert j["active_parameters"] < j["parameters"], j'

# Logits through the CLI agree with the reference (which dequantizes the FP8 weights the same way).
echo '[[3, 14, 15, 9, 2, 6, 5, 35]]' > "$tmp/ids.json"
$py "$here/reference/qaft_torch_ref.py" --quiet --threads 1 --model "$tmp/m" --ids "$tmp/ids.json" --out "$tmp/ref.safetensors"
"$qaft" --log-level warn logits "$tmp/m" --ids 3,14,15,9,2,6,5,35 --targets 14,15,9,2,6,5,35,-100 \
  --precision fp64 --out "$tmp/qaft.safetensors" > "$tmp/logits.txt"
grep -q "^loss " "$tmp/logits.txt" || fail "logits printed no loss"
$py - "$tmp/qaft.safetensors" "$tmp/ref.safetensors" "$here/reference" <<'PY'
import sys
sys.path.insert(0, sys.argv[3])
import stio, torch
a = stio.load_file(sys.argv[1])[0]["logits"].double()
b = stio.load_file(sys.argv[2])[0]["logits"].double()
err = ((a - b).norm() / b.norm()).item()
assert err < 1e-6, f"qaft logits differ from the reference: relative L2 {err:.3e}"
PY

out=$("$qaft" --log-level warn generate "$tmp/m" --prompt-ids 3,14,15 --max-new-tokens 5 --ignore-eos)
[[ "$out" =~ ^\[[0-9]+(,[0-9]+){4}\]$ ]] || fail "generate printed: $out"

# Bad input: a clear message and a non-zero exit code.
set +e
msg=$("$qaft" logits "$tmp/m" --ids 1,x,3 --out "$tmp/x.safetensors" 2>&1); rc=$?
[ $rc -eq 2 ] && grep -q '"x" is not a token id' <<< "$msg" || fail "bad --ids: rc=$rc $msg"
msg=$("$qaft" logits "$tmp/m" --ids 1,99999 --out "$tmp/x.safetensors" 2>&1); rc=$?
[ $rc -ne 0 ] && grep -q "outside the vocabulary" <<< "$msg" || fail "out-of-range id: rc=$rc $msg"
msg=$("$qaft" inspect "$tmp/nowhere" 2>&1); rc=$?
[ $rc -ne 0 ] && grep -q "config.json" <<< "$msg" || fail "missing dir: rc=$rc $msg"
rm "$tmp/m/model.safetensors.index.json"
msg=$("$qaft" logits "$tmp/m" --ids 1,2 --out "$tmp/x.safetensors" 2>&1); rc=$?
[ $rc -ne 0 ] || fail "a directory without weights must fail"
set -e
echo "cli model: ok"
