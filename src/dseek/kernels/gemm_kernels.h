// Internal interface between gemm.cpp (packing, threading, dispatch) and the SIMD micro-kernel file
// gemm_avx512.cpp. As with matmul_kernels.h, only plain structs, constants and declarations live
// here: an inline function or template instantiated inside the -mavx512f file could be picked by
// the linker as the program-wide copy and crash a CPU without AVX-512.
#pragma once

#include <cstdint>

namespace dseek::gemm {

constexpr int64_t kMR = 12;   // rows of C per register tile
constexpr int64_t kNR = 32;   // columns of C per register tile (two 16-float vectors)
constexpr int64_t kKC = 256;  // k per packed block: a B panel (kKC × kNR) is 32 KB, an A tile 12 KB

// One thread's share of one k block: C (rows, cols) (+)= a · Bp.
struct Block {
  // a(i, k) = A[i * ars + k * acs], i < rows, k < kc; exactly one of ars, acs is 1.
  const float* A = nullptr;
  int64_t ars = 0, acs = 0;
  // Packed B: column panel p holds columns [p kNR, p kNR + kNR) as Bp[(p * kc + k) * kNR + j],
  // zero beyond `cols`.
  const float* Bp = nullptr;
  float* C = nullptr;  // row stride ldc
  int64_t ldc = 0;
  int64_t rows = 0, cols = 0, kc = 0;
  bool accumulate = false;  // false: C = a · Bp; true: C += a · Bp
};

void block_avx512(const Block& b);

// GemmPrecision::kBf16 (gemm_bf16_avx512.cpp): Bp packed by pack_b_bf16_avx512, whose panels hold
// per k pair the bf16 (k, k + 1) values of kNR columns as kNR 32-bit words, (kc + 1) / 2 pairs.
void block_bf16_avx512(const Block& b);
// The same product on AMX tiles (gemm_bf16_amx.cpp), for GemmKernel::kAmx; bf16_amx_built() says
// whether this build has it (AMX compiler flags).
void block_bf16_amx(const Block& b);
bool bf16_amx_built();
// Rows [0, kc) and columns [0, cols) of b(k, n) = B[k * brs + n * bcs] (brs or bcs is 1), rounded to
// bf16 and packed as above, zero-padded to whole panels and pairs.
void pack_b_bf16_avx512(float* dst, const float* B, int64_t brs, int64_t bcs, int64_t kc, int64_t cols);

// Packs rows [0, kc) and columns [0, cols) of a row-major B (row stride ldb) into panels as
// Block::Bp describes, zero-padded to whole panels.
void pack_b_rows_avx512(float* dst, const float* B, int64_t ldb, int64_t kc, int64_t cols);
// The same panels from B stored transposed, b(k, n) = B[n * ldb + k] (the nt layout: the training
// forward's weights, prefill attention's cache rows): 4 x 16 in-register transposes.
void pack_b_cols_avx512(float* dst, const float* B, int64_t ldb, int64_t kc, int64_t cols);

}  // namespace dseek::gemm
