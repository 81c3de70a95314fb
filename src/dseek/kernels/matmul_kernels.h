// Internal interface between matmul.cpp (dispatch, threading, activation preparation) and the SIMD
// kernel files matmul_avx2.cpp / matmul_avx512.cpp.
//
// Those two files are compiled with -mavx2 / -mavx512* (CMakeLists.txt) while the rest of dseek is
// not, so this header holds only plain structs and function declarations: no inline functions or
// templates that the SIMD files could instantiate with wider instructions and hand to the linker
// as the program-wide copy (which would then crash on an AVX2-only machine). The SIMD files keep
// every helper in an anonymous namespace for the same reason.
#pragma once

#include <cstddef>
#include <cstdint>

namespace dseek::mm {

// One matmul call, y (B, N) = x (B, K) · Wᵀ, in the terms the kernels need.
struct Job {
  float* y = nullptr;          // (B, N)
  int64_t N = 0;               // output features = w.rows = row stride of y
  int64_t B = 0;               // tokens
  int64_t K = 0;               // input features = w.cols
  const float* x = nullptr;    // (B, K) float32 activations, as given
  // Activations converted once per call (bf16 or quantized blocks, see matmul_quant.h); null when
  // the kernel reads x directly. Token b's record starts at act + b * act_stride (64-byte aligned).
  const uint8_t* act = nullptr;
  int64_t act_stride = 0;
  int64_t act_corr_offset = 0;  // Q8_0/Q4_0: int32 lane corrections within a token's record
  int64_t act_scale_offset = 0; // Q8_0/Q4_0: float per-lane activation scales
  int64_t act_block_scale_offset = 0;  // Q8_0/Q4_0: float dx per block (QActLayout)
  int64_t act_block_corr_offset = 0;   // Q8_0/Q4_0: float offset correction per block
  // Row 0 of the weight view (row_offset already applied) and the distance between rows.
  const uint8_t* w = nullptr;
  int64_t w_row_bytes = 0;
  int64_t w_scales_offset = 0;  // Q8_0/Q4_0: byte offset of a row's f16 scales within the row
  // FP8-E4M3: scale of view row r, column k = scale_inv[((row_offset + r) / block) * scale_cols + k / block].
  const float* scale_inv = nullptr;
  int64_t scale_cols = 0;
  int64_t block = 128;
  int64_t row_offset = 0;
  const float* e4m3_lut = nullptr;  // 256 decoded E4M3 values (scalar tails)
  // BF16 rows read 4 at a time in lockstep (1-4 tokens) also prefetch the same columns of the row 4
  // below. Set on CPUs with AMX (the Intel Xeons, where one core's BF16 stream went 22-25 -> 27-30
  // GB/s with it); off elsewhere: on Zen 5 the hardware prefetchers alone stream BF16 rows faster.
  bool bf16_row_prefetch = false;
};

// The BF16 prefill GEMM (KernelSet::bf16_gemm) reads activations packed in tiles of kGemmTokens
// tokens: tile t holds tokens [t kGemmTokens, t kGemmTokens + kGemmTokens) (zeros past B) as
// uint32 pairs, pair p of token i (bf16 values 2p and 2p + 1, low half first) at word p * kGemmTokens + i,
// for p < gemm_pairs(K); Job::act_stride is the bytes of one tile.
constexpr int64_t kGemmTokens = 12;
// KernelSet::bf16_small (up to kSmallGemmMaxTokens tokens) reads the same layout with tiles of
// kSmallGemmTokens tokens.
constexpr int64_t kSmallGemmTokens = 16;
constexpr int64_t kSmallGemmMaxTokens = 96;
constexpr int64_t gemm_pairs(int64_t K) { return ((K + 1) / 2 + 15) / 16 * 16; }  // whole 16-pair steps

// Computes y[b, n] for n in [n0, n1) and every b. Each kernel file defines one per weight format.
using KernelFn = void (*)(const Job& job, int64_t n0, int64_t n1);

struct KernelSet {
  KernelFn f32 = nullptr;
  KernelFn f16 = nullptr;
  KernelFn bf16 = nullptr;      // float32 activations (bf16 weights widened exactly)
  KernelFn bf16_dot = nullptr;  // activations rounded to bf16 (Job::act), bf16 dot products
  KernelFn fp8 = nullptr;       // E4M3 with float32 block scales, Job::block a multiple of 32
  // FP8 at 1-4 tokens with bf16 products (AVX-512 BF16 + VBMI; fp8_dot_avx512.cpp), same Job.
  KernelFn fp8_dot = nullptr;
  KernelFn q8_0 = nullptr;      // Job::act holds Q8 activations in the Q8_0 lane layout
  KernelFn q4_0 = nullptr;      // Job::act holds Q8 activations in the Q4_0 lane layout
  // Many tokens (prefill) of BF16 weights: Job::act in kGemmTokens tiles (above). Q8_0 / Q4_0
  // prefill runs the int8 GEMM instead (gemm_q8.h).
  KernelFn bf16_gemm = nullptr;
  KernelFn fp8_gemm = nullptr;  // the same GEMM over FP8 rows decoded to bf16 panels (block % 32 == 0)
  // kSmallGemmTokens < B <= kSmallGemmMaxTokens: weights broadcast from the row, no packing.
  KernelFn bf16_small = nullptr;
  KernelFn fp8_small = nullptr;  // the same over FP8 rows decoded 16 pairs at a time (block % 32 == 0)
  // Optional vectorised activation conversions, bit-identical to the scalar ones in matmul.cpp /
  // quantize_activations (null: use those). out gets one token's record of `stride` bytes.
  void (*prep_bf16)(uint8_t* out, const float* x, int64_t K, int64_t stride) = nullptr;
  // One tile of bf16_gemm's (width kGemmTokens) or bf16_small's (kSmallGemmTokens) activations:
  // `rows` (<= width) tokens of x (row stride K).
  void (*prep_bf16_tile)(uint8_t* out, const float* x, int64_t rows, int64_t K, int64_t width) = nullptr;
  // One token's record (j.act_stride bytes, laid out by j's act_* offsets) from x (j.K).
  void (*prep_q8_0)(uint8_t* out, const float* x, const Job& j) = nullptr;
  void (*prep_q4_0)(uint8_t* out, const float* x, const Job& j) = nullptr;
  // Optional vectorised dequantization of whole 32-value blocks (dequantize_row_range's fast path):
  // out (32 * nb) from codes and f16 scales laid out as in matmul_quant.h; bf16: n values.
  void (*dequant_bf16)(float* out, const uint16_t* p, int64_t n) = nullptr;
  void (*dequant_q8_0)(float* out, const uint8_t* codes, const uint8_t* scales, int64_t nb) = nullptr;
  void (*dequant_q4_0)(float* out, const uint8_t* codes, const uint8_t* scales, int64_t nb) = nullptr;
  // Optional transposed product for one token (matmul_transposed's fast path): y[k] = sum over
  // n < N of x[n] * W[n, k], k < K (a multiple of 32), rows row_bytes apart from w.
  using RowsTFn = void (*)(float* y, const float* x, const uint8_t* w, int64_t row_bytes, int64_t N, int64_t K);
  RowsTFn rows_t_bf16 = nullptr;
  RowsTFn rows_t_q8_0 = nullptr;
  RowsTFn rows_t_q4_0 = nullptr;
  // FP8 rows of Job (w, w_row_bytes, N rows, K % 32 == 0, scale_inv / scale_cols / block % 32 == 0 /
  // row_offset): y (K) = x (N) · W; false when a NaN code was met (y then incomplete).
  bool (*rows_t_fp8)(float* y, const float* x, const Job& j) = nullptr;
};

void fp8_dot_avx512(const Job& job, int64_t n0, int64_t n1);  // fp8_dot_avx512.cpp

KernelSet avx2_kernels();    // matmul_avx2.cpp: AVX2 + FMA + F16C
KernelSet avx512_kernels();  // matmul_avx512.cpp: AVX-512 F/BW/VL/VNNI (+BF16 for bf16_dot)

}  // namespace dseek::mm
