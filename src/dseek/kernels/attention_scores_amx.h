// Decode attention's scores on AMX tiles (attention_scores_amx.cpp), for attention_decode_avx512.cpp:
// plain declarations only (matmul_kernels.h says why). Called only where the CPU has AMX-BF16 and the
// process holds the tile state (amx_permitted()).
//
// Operands: the cache rows rounded to bf16 (nearest even; a bf16 cache as it is) are the A side (16
// rows x 32 values per step), the queries of 16 heads rounded likewise the B side, so one tile of
// float32 sums is 16 rows x 16 heads: S as the decode kernel lays it out (lane h = head h).
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
// floats, rows from jn on up to the next multiple of 16 are overwritten. Rows are float32 or bf16
// bit patterns (rows_bf16), L values each.
void amx_scores(float (*S)[16], const uint32_t* qpack, int64_t L, const void* const* rows, bool rows_bf16,
                int64_t jn);

}  // namespace dseek
