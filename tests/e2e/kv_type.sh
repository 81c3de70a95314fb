#!/bin/bash
# --kv-type bf16 on the demo model: generate and generate --speculative mtp agree (greedy) and say
# the cache type, bench labels its rows, and a bad value is refused naming the flag. The default
# (auto): f32 for the demo's F32 weights; for its Q8_0 form bf16 exactly where the CPU multiplies
# attention in bf16 (AVX-512 BF16, which AMX CPUs have too), f32 with --attn-precision f32.
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
grep -q -- "--kv-type: must be auto, f32 or bf16, not 'f16'" "$tmp/bad.err" || fail "bad --kv-type message: $(cat "$tmp/bad.err")"
load_line() { "$bin" generate --no-warm -n 1 --prompt x -t 1 "$@" 2>&1 >/dev/null | grep ' loaded in '; }
line=$(load_line --model "$model")
[[ $line == *", f32 KV cache (--kv-type auto)"* ]] || fail "auto on F32 weights: $line"
"$bin" quantize --model "$model" --out "$tmp/q8" --type q8 >/dev/null 2>&1 || fail "quantize q8"
cpu=$("$bin" generate --no-warm -n 1 --prompt x -t 1 --model "$tmp/q8" 2>&1 >/dev/null | grep 'dseek: cpu ')
want=f32; [[ $cpu == *" avx512bf16 "* ]] && want=bf16
line=$(load_line --model "$tmp/q8")
[[ $line == *", $want KV cache (--kv-type auto)"* ]] || fail "auto on Q8_0 weights ($cpu): want $want: $line"
line=$(load_line --model "$tmp/q8" --attn-precision f32)
[[ $line == *", f32 KV cache (--kv-type auto)"* ]] || fail "auto with --attn-precision f32: $line"
line=$(load_line --model "$tmp/q8" --kv-type f32)
[[ $line == *", f32 KV cache" && $line != *auto* ]] || fail "--kv-type f32 on Q8_0 weights: $line"
echo "--kv-type bf16 and auto: ok"
