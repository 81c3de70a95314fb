#!/bin/bash
# --kv-type bf16 on the demo model: generate and generate --speculative mtp agree (greedy) and say
# the cache type, bench labels its rows, and a bad value is refused naming the flag.
# Usage: kv_type.sh DSEEK
source "$(dirname "$0")/common.sh" "$1"
p="The president said that"
"$bin" generate --model "$model" --prompt "$p" -n 80 --temperature 0 -t 1 --no-warm --kv-type bf16 >"$tmp/plain" 2>"$tmp/plain.err" ||
  fail "generate --kv-type bf16: $(cat "$tmp/plain.err")"
grep -q 'bf16 KV cache' "$tmp/plain.err" || fail "no cache type in the load line: $(cat "$tmp/plain.err")"
"$bin" generate --model "$model" --prompt "$p" -n 80 --temperature 0 -t 1 --no-warm --kv-type bf16 --speculative mtp \
  >"$tmp/spec" 2>"$tmp/spec.err" || fail "speculative generate --kv-type bf16: $(cat "$tmp/spec.err")"
cmp -s "$tmp/plain" "$tmp/spec" || fail "speculative output differs with a bf16 cache: $(diff "$tmp/plain" "$tmp/spec")"
"$bin" bench --model "$model" -p 8 -n 4 -r 1 -t 1 --bandwidth-gb 0.05 --kv-type bf16 >"$tmp/bench" 2>"$tmp/bench.err" ||
  fail "bench --kv-type bf16: $(cat "$tmp/bench.err")"
grep -q '| tg4 kv bf16 |' "$tmp/bench" || fail "bench rows do not say the cache type: $(cat "$tmp/bench")"
if "$bin" generate --model "$model" --prompt x -n 1 --kv-type f16 >/dev/null 2>"$tmp/bad.err"; then fail "--kv-type f16 accepted"; fi
grep -q -- "--kv-type: must be f32 or bf16, not 'f16'" "$tmp/bad.err" || fail "bad --kv-type message: $(cat "$tmp/bad.err")"
echo "--kv-type bf16: ok"
