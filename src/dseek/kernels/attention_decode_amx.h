// Decode attention on AMX tiles over a bf16 KV cache (attention_decode_amx.cpp), for
// attention_decode_avx512.cpp: plain declarations only (matmul_kernels.h says why). Called only where
// the CPU has AMX-BF16 and the process holds the tile state (amx_permitted()).
//
// Scores: the cache rows (bf16 as stored) are the A side (16 rows x 32 values per step), the queries
// of 16 heads rounded to bf16 the B side, so one tile of float32 sums is 16 rows x 16 heads: S as the
// decode kernel lays it out (lane h = head h). Weighted sum: the probabilities rounded to bf16 (A:
// 16 heads x 32 rows) times the rows' first R values (B: pairs of rows x 16 columns) added to o.
#pragma once

#include <cstdint>

namespace dseek {

// 32-bit words of one head group's packed queries: 256 per 32 values of the row width L.
constexpr int64_t amx_scores_pack_words(int64_t L) { return (L + 31) / 32 * 256; }

// Loads this thread's tile configuration / releases the tile state: around a run of the calls below.
void amx_scores_begin();
void amx_scores_end();

// The queries of 16 heads (rows of L floats, row stride L; zeros for absent heads) as B tiles.
void amx_scores_pack(uint32_t* qpack, const float* q, int64_t L);

// S[jj][h] = q_h · row_jj (bf16 operands, float32 sums) for jj < jn <= 64; S has 64 rows of 16
// floats, rows from jn on up to the next multiple of 16 are overwritten. Rows: L bf16 values each.
void amx_scores(float (*S)[16], const uint32_t* qpack, int64_t L, const uint16_t* const* rows, int64_t jn);

// o_h = alpha_h o_h (where rescale) + sum over jj < jn <= 64 of P[jj][h] row_jj[0 .. R) for heads
// h < hn <= 16 (o: row stride R), P rounded to bf16, float32 sums (P: rows of 16 lanes, zero where a
// row is masked).
void amx_weigh(float* o, int64_t R, int64_t hn, const float* alpha, bool rescale, const float (*P)[16],
               const uint16_t* const* rows, int64_t jn);

}  // namespace dseek
