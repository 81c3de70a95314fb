#!/bin/bash
# --attn-precision: on the demo model (F32 weights) `auto` is float32, so `f32` gives the same text;
# `bf16` runs where the CPU has AVX-512 BF16 (else a clear error); bench labels its rows; a bad
# value is refused naming the flag.
# Usage: attn_precision.sh DSEEK
source "$(dirname "$0")/common.sh" "$1"
p="The president of the committee said on Tuesday that"  # > 8 tokens: the prefill GEMM path
run() { "$bin" generate --model "$model" --prompt "$p" -n 40 --temperature 0 -t 2 --no-warm "$@"; }
run >"$tmp/auto" 2>"$tmp/auto.err" || fail "generate: $(cat "$tmp/auto.err")"
run --attn-precision f32 >"$tmp/f32" 2>"$tmp/f32.err" || fail "generate --attn-precision f32: $(cat "$tmp/f32.err")"
cmp -s "$tmp/auto" "$tmp/f32" || fail "F32 weights: auto differs from f32: $(diff "$tmp/auto" "$tmp/f32")"
if run --attn-precision bf16 >"$tmp/bf16" 2>"$tmp/bf16.err"; then
  [ -s "$tmp/bf16" ] || fail "generate --attn-precision bf16 wrote nothing"
else
  grep -q -- "--attn-precision bf16: this CPU lacks AVX-512 BF16" "$tmp/bf16.err" ||
    fail "generate --attn-precision bf16: $(cat "$tmp/bf16.err")"
fi
"$bin" bench --model "$model" -p 16 -n 2 -r 1 -t 1 --bandwidth-gb 0.05 --attn-precision f32 >"$tmp/bench" 2>"$tmp/bench.err" ||
  fail "bench --attn-precision f32: $(cat "$tmp/bench.err")"
grep -q '| pp16 attn f32 |' "$tmp/bench" || fail "bench rows do not say the attention precision: $(cat "$tmp/bench")"
if "$bin" generate --model "$model" --prompt x -n 1 --attn-precision f16 >/dev/null 2>"$tmp/bad.err"; then
  fail "--attn-precision f16 accepted"
fi
grep -q -- "--attn-precision: must be auto, f32 or bf16, not 'f16'" "$tmp/bad.err" ||
  fail "bad --attn-precision message: $(cat "$tmp/bad.err")"
echo "--attn-precision: ok"
