#!/bin/bash
# dseek quantize --type q8|q8r|q4|q4r on the demo model through the CLI: each copy loads and
# generates; the interleaved formats (same values, other kernels) give the same greedy text as
# their row formats; the metadata names the format; a bad --type is refused.
# Usage: quantize_formats.sh DSEEK
source "$(dirname "$0")/common.sh" "$1"
for t in q8 q8r q4 q4r; do
  "$bin" quantize --model "$model" --out "$tmp/$t" --type "$t" >/dev/null 2>"$tmp/$t.err" || fail "quantize $t: $(cat "$tmp/$t.err")"
  for p in "The president said that" "It was a cold morning in"; do
    "$bin" generate --model "$tmp/$t" --prompt "$p" -n 40 --temperature 0 -t 2 --no-warm >"$tmp/$t.out" 2>"$tmp/$t.gen.err" ||
      fail "generate $t: $(cat "$tmp/$t.gen.err")"
    grep -q 'generated: 40 tokens' "$tmp/$t.gen.err" || fail "$t '$p': no 40-token line: $(cat "$tmp/$t.gen.err")"
    cat "$tmp/$t.out" >>"$tmp/$t.all"
  done
done
grep -aq '"dseek.quant.lm_head.weight":"Q8_0_R16"' "$tmp/q8r/model.safetensors" || fail "q8r: lm_head not stored as Q8_0_R16"
grep -aq '"dseek.quant.lm_head.weight":"Q4_0_R16"' "$tmp/q4r/model.safetensors" || fail "q4r: lm_head not stored as Q4_0_R16"
cmp -s "$tmp/q8.all" "$tmp/q8r.all" || fail "q8r text differs from q8: $(diff "$tmp/q8.all" "$tmp/q8r.all")"
cmp -s "$tmp/q4.all" "$tmp/q4r.all" || fail "q4r text differs from q4: $(diff "$tmp/q4.all" "$tmp/q4r.all")"
if "$bin" quantize --model "$model" --out "$tmp/bad" --type q5 >/dev/null 2>"$tmp/bad.err"; then fail "--type q5 accepted"; fi
grep -q "expected q8, q8r, q4 or q4r" "$tmp/bad.err" || fail "bad --type message: $(cat "$tmp/bad.err")"
echo "quantize q8 / q8r / q4 / q4r: ok"
