#!/usr/bin/env bash
# The data generators of data/wine-fr and data/corpus at a small size: each run twice into a temp dir
# must give byte-identical files; --check accepts them and rejects a modified file; the chat JSONL is
# valid (3 messages, fixed system prompt, a known variety as the answer, user text <= 60 words), every
# class appears, no review is repeated within or across train/eval; the corpus is {"text"} JSONL of
# 50-200-word documents with no Q/A prompt and no wine-fr review verbatim; stats.json agrees.
# With the qaft binary ($1), a tokenizer is trained on tokenizer_corpus.txt and both files pass
# `qaft dataset validate`.
# Usage: datagen.sh [PATH/TO/qaft]
set -euo pipefail
qaft="${1:-}"
here="$(cd "$(dirname "$0")" && pwd)"
root="$here/../.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
py=python3
[ -x /usr/bin/python3 ] && py=/usr/bin/python3  # Debian's, the one the README hashes were checked with

wine="$root/data/wine-fr/generate.py"
corpus="$root/data/corpus/generate.py"

# Determinism: two runs, identical bytes.
for d in a b; do
  $py "$wine" --train 300 --eval 100 --out "$tmp/wine-$d" > /dev/null
  $py "$corpus" --docs 200 --out "$tmp/corpus-$d" > /dev/null
done
for f in train.jsonl eval.jsonl stats.json; do
  cmp -s "$tmp/wine-a/$f" "$tmp/wine-b/$f" || fail "wine-fr $f differs between two runs"
done
for f in corpus.jsonl tokenizer_corpus.txt stats.json; do
  cmp -s "$tmp/corpus-a/$f" "$tmp/corpus-b/$f" || fail "corpus $f differs between two runs"
done

# --check: ok on the files, a failure on a modified file.
$py "$wine" --train 300 --eval 100 --out "$tmp/wine-a" --check > /dev/null || fail "wine-fr --check"
$py "$corpus" --docs 200 --out "$tmp/corpus-a" --check > /dev/null || fail "corpus --check"
sed -i '1s/Review: /Review:  /' "$tmp/wine-b/train.jsonl"
if $py "$wine" --train 300 --eval 100 --out "$tmp/wine-b" --check > /dev/null; then
  fail "wine-fr --check accepted a modified train.jsonl"
fi

# Content.
$py - "$wine" "$tmp/wine-a" "$tmp/corpus-a" <<'PY'
import importlib.util, json, sys
spec = importlib.util.spec_from_file_location("wine", sys.argv[1])
W = importlib.util.module_from_spec(spec); spec.loader.exec_module(W)
wdir, cdir = sys.argv[2], sys.argv[3]

def fail(msg):
    print("FAIL:", msg, file=sys.stderr); sys.exit(1)

texts = {}
for split, n in (("train", 300), ("eval", 100)):
    rows = [json.loads(l) for l in open(f"{wdir}/{split}.jsonl", encoding="utf-8")]
    if len(rows) != n: fail(f"{split}: {len(rows)} rows, want {n}")
    counts = {}
    seen = set()
    for i, r in enumerate(rows):
        m = r.get("messages")
        if set(r) != {"messages"} or not isinstance(m, list) or [x["role"] for x in m] != ["system", "user", "assistant"]:
            fail(f"{split}:{i+1}: bad schema {r}")
        if m[0]["content"] != W.SYSTEM_PROMPT: fail(f"{split}:{i+1}: system prompt")
        u, a = m[1]["content"], m[2]["content"]
        if a not in W.VARIETIES: fail(f"{split}:{i+1}: unknown answer {a!r}")
        if not u.startswith("Review: ") or not u.endswith("\n" + W.QUESTION): fail(f"{split}:{i+1}: user {u!r}")
        if len(u.split()) > 60: fail(f"{split}:{i+1}: {len(u.split())} words")
        if a.lower() in u.lower(): fail(f"{split}:{i+1}: the answer is in the review: {u!r}")
        if u in seen: fail(f"{split}:{i+1}: duplicate review")
        seen.add(u)
        counts[a] = counts.get(a, 0) + 1
    texts[split] = seen
    missing = [v for v in W.VARIETIES if v not in counts]
    if missing: fail(f"{split}: classes missing: {missing}")
    st = json.load(open(f"{wdir}/stats.json"))["splits"][split]
    if st["class_counts"] != {v: counts.get(v, 0) for v in W.VARIETIES} or st["examples"] != n:
        fail(f"{split}: stats.json disagrees: {st}")
if texts["train"] & texts["eval"]: fail("train/eval overlap")

docs = []
for i, l in enumerate(open(f"{cdir}/corpus.jsonl", encoding="utf-8")):
    r = json.loads(l)
    if set(r) != {"text"} or not isinstance(r["text"], str): fail(f"corpus:{i+1}: bad schema")
    n = len(r["text"].split())
    if not 50 <= n <= 200: fail(f"corpus:{i+1}: {n} words")
    docs.append(r["text"])
if len(docs) != 200: fail(f"corpus: {len(docs)} docs")
blob = "\n".join(docs)
for bad in ("Review:", W.QUESTION, W.SYSTEM_PROMPT):
    if bad in blob: fail(f"corpus contains {bad!r}")
for u in texts["eval"] | texts["train"]:
    review = u[len("Review: "):-len("\n" + W.QUESTION)]
    if review in blob: fail(f"corpus contains a wine-fr review verbatim: {review!r}")
if not any(v in blob for v in W.VARIETIES) or not any(r in blob for r in ("Bordeaux", "Alsace")):
    fail("corpus has no wine vocabulary")
tok = open(f"{cdir}/tokenizer_corpus.txt", encoding="utf-8").read().split("\n")
if tok[:len(docs)] != docs: fail("tokenizer_corpus.txt does not start with the documents")
for role in ("system", "user", "assistant"):
    if role not in tok: fail(f"tokenizer_corpus.txt lacks the role name {role}")
if json.load(open(f"{cdir}/stats.json"))["documents"] != 200: fail("corpus stats.json")
PY

# With the binary: a tokenizer from tokenizer_corpus.txt, and both files validate.
if [ -n "$qaft" ] && [ -x "$qaft" ]; then
  "$qaft" --log-level warn tokenizer train "$tmp/corpus-a/tokenizer_corpus.txt" --vocab-size 400 \
    --output "$tmp/tok" --special '<|im_start|>' --special '<|im_end|>' > /dev/null
  $py - "$tmp/tok/tokenizer_config.json" <<'PY'
import json, sys
p = sys.argv[1]
c = json.load(open(p))
c["chat_template"] = "{% for m in messages %}{{'<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>' + '\\n'}}{% endfor %}"
c["eos_token"] = "<|im_end|>"
json.dump(c, open(p, "w"))
PY
  for f in "$tmp/wine-a/train.jsonl" "$tmp/wine-a/eval.jsonl" "$tmp/corpus-a/corpus.jsonl"; do
    out=$("$qaft" dataset validate "$f" --model "$tmp/tok" --max-length 100000) || fail "validate $f: $out"
  done
fi
echo "datagen: ok"
