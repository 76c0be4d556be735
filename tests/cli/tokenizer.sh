#!/usr/bin/env bash
# `qaft tokenizer` as a user runs it: train a small byte-level BPE on a generated corpus, encode and
# decode through the trained directory (the text comes back byte for byte), --text and the special
# token flags, and the exit codes and messages of bad input.
# Usage: tokenizer.sh PATH/TO/qaft
set -euo pipefail
qaft="$1"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

# A corpus with some variety (no external files): numbers, words, punctuation, UTF-8, CRLF.
for i in $(seq 1 400); do
  printf 'Line %d: the quick brown fox %d jumps over the lazy dog, naïve café — 数据 %d 😀\r\n' "$i" $((i * 7)) $((i % 13))
  printf "It's a test; we'll see. Tokenizers merge pairs of bytes into tokens #%d\n" "$i"
done > "$tmp/corpus.txt"

"$qaft" --log-level warn tokenizer train "$tmp/corpus.txt" --vocab-size 350 --output "$tmp/tok" \
  --special '<s>' --special '</s>' --add-bos-token
[ -f "$tmp/tok/tokenizer.json" ] && [ -f "$tmp/tok/tokenizer_config.json" ] || fail "train wrote no files"

text=$'Hello, naïve world!\r\n  数据 😀 <s> end'
printf '%s' "$text" > "$tmp/in.txt"
ids=$("$qaft" tokenizer encode "$tmp/tok" < "$tmp/in.txt")
[[ "$ids" == "[0,"* ]] || fail "encode should start with the BOS id 0: $ids"
"$qaft" tokenizer encode "$tmp/tok" --no-special < "$tmp/in.txt" > "$tmp/ids.json"
"$qaft" tokenizer decode "$tmp/tok" < "$tmp/ids.json" > "$tmp/out.txt"
cmp -s "$tmp/in.txt" "$tmp/out.txt" || fail "decode(encode(x)) != x"
grep -q ',1,' <<< "$ids" && fail "'</s>' is not in the text, id 1 must not appear"
[[ "$("$qaft" tokenizer encode "$tmp/tok" --no-special <<< '<s>')" == "[0,"* ]] || fail "<s> in text is a special token"
[[ "$("$qaft" tokenizer encode "$tmp/tok" --no-special --split-special <<< '<s>')" != "[0,"* ]] || fail "--split-special"
"$qaft" tokenizer encode "$tmp/tok" --text --no-special <<< 'Hello world' | grep -q '"Ġ' || fail "--text prints vocabulary strings"
[ "$(echo '[0, 1]' | "$qaft" tokenizer decode "$tmp/tok" --skip-special)" = "" ] || fail "--skip-special"

# Bad input: message on stderr, non-zero exit.
set +e
"$qaft" tokenizer encode "$tmp/missing" < /dev/null 2> "$tmp/err"; rc=$?
[ $rc -eq 1 ] && grep -q 'tokenizer.json' "$tmp/err" || fail "missing model dir: rc=$rc $(cat "$tmp/err")"
printf 'ab\xffcd' | "$qaft" tokenizer encode "$tmp/tok" 2> "$tmp/err"; rc=$?
[ $rc -eq 2 ] && grep -q 'not valid UTF-8' "$tmp/err" || fail "invalid UTF-8: rc=$rc $(cat "$tmp/err")"
echo '[1, 99999]' | "$qaft" tokenizer decode "$tmp/tok" 2> "$tmp/err"; rc=$?
[ $rc -eq 2 ] && grep -q '99999' "$tmp/err" || fail "id out of range: rc=$rc $(cat "$tmp/err")"
echo '{"ids": 1}' | "$qaft" tokenizer decode "$tmp/tok" 2> "$tmp/err"; rc=$?
[ $rc -eq 2 ] || fail "decode of a non-array: rc=$rc"
"$qaft" tokenizer train "$tmp/corpus.txt" --vocab-size 100 --output "$tmp/x" 2> "$tmp/err"; rc=$?
[ $rc -eq 2 ] && grep -q 'smaller than' "$tmp/err" || fail "tiny vocab: rc=$rc $(cat "$tmp/err")"
set -e
echo "tokenizer CLI: all checks passed"
