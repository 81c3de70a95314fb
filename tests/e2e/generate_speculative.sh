#!/bin/bash
# dseek generate --speculative mtp on the demo model: greedy text identical to plain generate, the
# acceptance line on stderr, a bad --speculative value refused. Usage: generate_speculative.sh DSEEK
source "$(dirname "$0")/common.sh" "$1"
for p in "The president said that" "It was a cold morning in"; do
  "$bin" generate --model "$model" --prompt "$p" -n 120 --temperature 0 -t 1 --no-warm >"$tmp/plain" 2>"$tmp/plain.err" ||
    fail "plain generate: $(cat "$tmp/plain.err")"
  "$bin" generate --model "$model" --prompt "$p" -n 120 --temperature 0 -t 1 --no-warm --speculative mtp >"$tmp/spec" 2>"$tmp/spec.err" ||
    fail "speculative generate: $(cat "$tmp/spec.err")"
  cmp -s "$tmp/plain" "$tmp/spec" || fail "'$p': speculative output differs: $(diff "$tmp/plain" "$tmp/spec")"
  grep -q 'generated: 120 tokens' "$tmp/spec.err" || fail "'$p': no 120-token speed line: $(cat "$tmp/spec.err")"
  grep -Eq 'drafts accepted [0-9]+ of [1-9][0-9]* \([0-9.]+ %\)' "$tmp/spec.err" || fail "'$p': no acceptance line: $(cat "$tmp/spec.err")"
done
if "$bin" generate --model "$model" --prompt x -n 1 --speculative eagle >/dev/null 2>"$tmp/bad.err"; then fail "--speculative eagle accepted"; fi
grep -q "must be 'mtp' or 'none'" "$tmp/bad.err" || fail "bad --speculative message: $(cat "$tmp/bad.err")"
echo "generate --speculative mtp: ok"
