// Decode attention's products as AVX-512 BF16 dot products over a bf16 KV cache
// (attention_decode_bf16.cpp), for attention_decode_avx512.cpp: the CPUs with vdpbf16ps but no AMX
// (Zen 4/5). The same rounding as the AMX tiles (attention_decode_amx.h): the queries and the
// probabilities rounded to bf16, the rows as stored, float32 sums; the softmax stays float32.
// Plain declarations only (matmul_kernels.h says why). Called only where cpu_features() reports
// avx512bf16.
#pragma once

#include <cstdint>

namespace dseek {

// 32-bit words of one head group's packed queries: 16 heads x L values rounded up to 32, as pairs.
constexpr int64_t bf16dot_pack_words(int64_t L) { return (L + 31) / 32 * 256; }

// The queries of 16 heads (rows of L floats, row stride L; zeros for absent heads) as bf16 pairs:
// head h's values 32 c .. 32 c + 31 at words [h * (L + 31) / 32 + c] * 16 ..., zeros past L.
void bf16dot_pack(uint32_t* qpack, const float* q, int64_t L);

// S[jj][h] = q_h · row_jj (bf16 operands, float32 sums) for jj < jn <= 64; rows: L bf16 values each.
// rows[jn .. got) are the next rows (prefetched into L1 a few rows ahead as these are scored).
void bf16dot_scores(float (*S)[16], const uint32_t* qpack, int64_t L, const uint16_t* const* rows, int64_t jn,
                    int64_t got);

// o_h = alpha_h o_h (where rescale) + sum over jj < jn <= 64 of P[jj][h] row_jj[0 .. R) for heads
// h < hn <= 16 (o: row stride R), P rounded to bf16, float32 sums (P: rows of 16 lanes, zero where a
// row is masked).
void bf16dot_weigh(float* o, int64_t R, int64_t hn, const float* alpha, bool rescale, const float (*P)[16],
                   const uint16_t* const* rows, int64_t jn);

}  // namespace dseek
