// Dense float32 GEMM for training: the three products a linear layer y = x·Wᵀ needs.
//
// All matrices are row-major and contiguous. With x (M, K), W (N, K):
//   forward  y  = x · Wᵀ     gemm_f32_nt   C (M, N) = A (M, K) · Bᵀ, B (N, K)
//   backward dx += dy · W    gemm_f32_nn   C (M, N) = A (M, K) · B (K, N)
//            dW += dyᵀ · x   gemm_f32_tn   C (M, N) = Aᵀ · B, A (K, M), B (K, N)
// `accumulate` adds into C (gradients accumulate with +=, STYLE.md); otherwise C is overwritten.
//
// Unlike kernels/matmul (the inference kernel, bit-exact with matmul_ref), this kernel is free to
// reorder and fuse (FMA) the float32 sums: results differ from a double reference by rounding only,
// ~K · 2⁻²⁴ relative to Σ|a·b| (tests/kernels/gemm_test.cpp states the bound it checks).
//
// Blocking (Goto/BLIS style, sized for 2-core Zen 5: 48 KB L1d, 1 MB L2): B is packed per thread
// into kGemmNR-column panels of kGemmKC rows (zero-padded, so the micro-kernel needs no column
// edge case on loads); A is read in place, kGemmMR values per k either from kGemmMR rows (nt, nn)
// or from one contiguous run (tn). One parallel_for per call: threads split the columns of C
// (each packs only its own B panels) or, when C has few column panels, its rows.
// The micro-kernel is AVX-512 (gemm_avx512.cpp) when the CPU has it, else portable C++ (gemm.cpp);
// kAuto picks the widest one cpu_features() allows; tests name one explicitly.
#pragma once

#include <cstdint>

#include "dseek/core/thread_pool.h"

namespace dseek {

// kAmx: kAvx512, with the kBf16 products on AMX tiles (CPUs with AMX-BF16, as matmul's kAmx).
enum class GemmKernel { kAuto, kPortable, kAvx512, kAmx };
enum class GemmLayout { kNT, kNN, kTN };
// kBf16: A and B rounded to bf16 (nearest even) as they are packed, products summed in float32
// (vdpbf16ps): twice the multiply-adds per instruction, |error| <= (2^-8 + 2^-8) Σ|a·b| more than
// kF32. Needs AVX-512 BF16 (gemm_bf16_supported()); elsewhere, and with GemmKernel::kPortable, gemm_f32
// throws dseek::Error (the trainer checks first and names the option).
enum class GemmPrecision : uint8_t { kF32, kBf16 };
bool gemm_bf16_supported();  // the CPU has the AVX-512 BF16 kernel

// C (M, N) (+)= A (M, K) · Bᵀ, B (N, K).
void gemm_f32_nt(float* C, const float* A, const float* B, int64_t M, int64_t K, int64_t N, bool accumulate,
                 ThreadPool* pool, GemmKernel kernel = GemmKernel::kAuto);
// C (M, N) (+)= A (M, K) · B (K, N).
void gemm_f32_nn(float* C, const float* A, const float* B, int64_t M, int64_t K, int64_t N, bool accumulate,
                 ThreadPool* pool, GemmKernel kernel = GemmKernel::kAuto);
// C (M, N) (+)= Aᵀ · B, A (K, M), B (K, N).
void gemm_f32_tn(float* C, const float* A, const float* B, int64_t M, int64_t K, int64_t N, bool accumulate,
                 ThreadPool* pool, GemmKernel kernel = GemmKernel::kAuto);


// The general form, with row strides (leading dimensions) for sub-matrices: C (M, N) row stride ldc;
// kNT: A (M, K) stride lda, B (N, K) stride ldb; kNN: A (M, K) stride lda, B (K, N) stride ldb;
// kTN: A (K, M) stride lda, B (K, N) stride ldb. The three functions above are this with packed rows.
void gemm_f32(GemmLayout layout, float* C, int64_t ldc, const float* A, int64_t lda, const float* B, int64_t ldb,
              int64_t M, int64_t K, int64_t N, bool accumulate, ThreadPool* pool,
              GemmKernel kernel = GemmKernel::kAuto, GemmPrecision precision = GemmPrecision::kF32);

// Double-precision reference for tests: same operands and meaning as the three functions above.
void gemm_f32_ref(GemmLayout layout, float* C, const float* A, const float* B, int64_t M, int64_t K, int64_t N,
                  bool accumulate);

// Whether this CPU can run `kernel` (kAuto and kPortable always can).
bool gemm_kernel_supported(GemmKernel kernel);
// "amx", "avx512" or "portable": what `kernel` resolves to on this CPU.
const char* gemm_kernel_name(GemmKernel kernel);

}  // namespace dseek
