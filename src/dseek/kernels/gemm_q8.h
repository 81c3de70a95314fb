// Int8 prefill GEMM for Q8_0 / Q4_0 weights (gemm_q8_avx512.cpp, AVX-512 VNNI): the interface
// matmul.cpp uses. Plain declarations only, for the reason given in matmul_kernels.h.
//
// Arithmetic: activations are quantized per token and block of 32 exactly as quantize_act_block
// does (int8 codes, float scale dx), each (row, token, block) int32 dot product is exact
// (vpdpbusd), and y = sum over blocks of float(dot) * (d_w * dx) in float32: the product
// matmul_qact_ref models, as the decode kernels compute it (docs/kernels.md).
#pragma once

#include <cstdint>

#include "dseek/kernels/matmul_kernels.h"

namespace dseek::mm {

// Batch sizes matmul sends here (kAvx512Bf16, Q8_0 / Q4_0): all from kMatmulGemmMinTokens (9) on.
// At 17 to 64 tokens (a MoE expert's share of a prefill chunk) the bf16 kernel that broadcasts
// weights from their rows was faster for some dense shapes, but the expert shapes and pp512 end to
// end were faster here (docs/kernels.md).
constexpr bool qgemm_tokens(int64_t B) { return B >= 9; }

// Tokens per activation tile (one register tile is kQGemmTokens tokens x 32 rows).
constexpr int64_t kQGemmTokens = 6;

// One activation tile of K columns (K % 32 == 0), Job::act_stride bytes per tile:
//   codes  uint32 word g * kQGemmTokens + t = the int8 codes of columns 4g .. 4g + 3 of token t
//   dx     float   [j * kQGemmTokens + t]   block j's activation scale (0 for padding tokens)
//   corr   int32   [j * kQGemmTokens + t]   -128 * (sum of block j's codes): the weights are fed
//                                           to vpdpbusd unsigned, as code + 128
constexpr int64_t qgemm_codes_bytes(int64_t K) { return (K * kQGemmTokens + 63) / 64 * 64; }
constexpr int64_t qgemm_dx_offset(int64_t K) { return qgemm_codes_bytes(K); }
constexpr int64_t qgemm_corr_offset(int64_t K) {
  return qgemm_dx_offset(K) + ((K / 32) * kQGemmTokens * 4 + 63) / 64 * 64;
}
constexpr int64_t qgemm_tile_bytes(int64_t K) {
  return qgemm_corr_offset(K) + ((K / 32) * kQGemmTokens * 4 + 63) / 64 * 64;
}

struct QGemmKernels {
  KernelFn q8_0 = nullptr;  // Job::act: tiles as above, Job::act_stride = qgemm_tile_bytes(K)
  KernelFn q4_0 = nullptr;
  KernelFn q8_0_r16 = nullptr;  // Q8_0_R16 weights, any B (row tasks start at multiples of 32)
  KernelFn q4_0_r16 = nullptr;  // Q4_0_R16 likewise
  // One tile from `rows` (<= kQGemmTokens) tokens of x (row stride K); zeros past `rows`.
  void (*prep_tile)(uint8_t* out, const float* x, int64_t rows, int64_t K) = nullptr;
};

// Empty where the file is not built for x86 (matmul.cpp asks only when the CPU has AVX-512 VNNI).
QGemmKernels qgemm_avx512_kernels();

}  // namespace dseek::mm
