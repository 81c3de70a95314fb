// Linear layers: y = x · Wᵀ for weights in any stored dtype (F32, BF16, F16, FP8-E4M3 with block
// scales, and dseek's block-quantized Q8_0 / Q4_0 described in matmul_quant.h).
//
// B = tokens, K = in_features (w.cols), N = out_features (w.rows). Activations are float32.
// Weights are read where they lie (memory-mapped); FP8 is dequantized on the fly, per block.
//
// matmul picks a SIMD kernel at run time from cpu_features() (docs/kernels.md lists them and their
// accuracy). Per weight dtype:
//   F32, F16, FP8   float32 activations, float32 FMA: matmul_ref up to summation order (the FP8
//                   weights are decoded to exactly the float32 values matmul_ref uses).
//   BF16            AVX-512 BF16 CPUs: activations rounded to bf16 once per call, vdpbf16ps
//                   (kAvx512Bf16); elsewhere float32 activations as for F32.
//   Q8_0, Q4_0      activations quantized to int8 per block of 32 once per call, integer dot
//                   products per block (matmul_qact_ref is the scalar model); the scalar kernel
//                   instead uses matmul_ref's arithmetic.
// Prefill (B >= kMatmulGemmMinTokens) on AVX-512 BF16 CPUs: BF16 weights run bf16 products with
// bf16 activations, as a packed GEMM (> 64 tokens; rows streamed up to 16) or with the weights
// broadcast from their rows (17-64 tokens, a MoE expert's share of a chunk); Q8_0 / Q4_0 weights
// run the int8 GEMM (gemm_q8.h) with activations quantized as at decode, for every B >= 9.
// Decode batches stream rows.
// CPUs with AMX-BF16 (Intel Sapphire Rapids and later; kAmx): as kAvx512Bf16, except that from
// kAmxMinTokens tokens every format but F32 / F16 multiplies on AMX tiles (gemm_amx.h): weights
// decoded to bf16 panels, activations rounded to bf16.
#pragma once

#include <cstdint>
#include <span>
#include <string_view>

#include "dseek/core/tensor.h"
#include "dseek/core/thread_pool.h"

namespace dseek {

// Kernel families. kAuto resolves to the best one cpu_features() allows (matmul_best_kernel()).
enum class MatmulKernel : uint8_t {
  kAuto = 0,
  kScalar,      // matmul_ref's arithmetic, any CPU
  kAvx2,        // AVX2 + FMA + F16C
  kAvx512,      // AVX-512 F/BW/VL/VNNI, float32 activations for BF16 weights
  kAvx512Bf16,  // kAvx512 + AVX512_BF16: bf16 activations and vdpbf16ps for BF16 weights
  kAmx,         // kAvx512Bf16 + AMX-BF16 tiles for prefill (see above)
  kSentinel     // must be last
};

// Tokens from which kAvx512Bf16 multiplies as a packed GEMM (see above).
constexpr int64_t kMatmulGemmMinTokens = 9;
// FP8 on kAvx512Bf16 from this many tokens: rows decoded into that GEMM's bf16 panels (bf16
// products, as kAmx). Against the float32 register tiles on Zen 5 (matmul_bench, 2026-12-07):
// 9 tokens 1.1-1.6x, 16 tokens 1.6-1.8x, 23 tokens 1.8-2.6x. (On an Intel Xeon forced to this family
// 16 tokens were 0.8x, but Intel CPUs with AMX run kAmx, whose tiles take FP8 from 9 tokens too.)
constexpr int64_t kFp8GemmMinTokens = kMatmulGemmMinTokens;
// Tokens from which kAmx multiplies on AMX tiles (16 tokens per tile): BF16 / FP8 weights, and the
// block formats, whose decoding into bf16 panels costs more than their int8 GEMM below ~40 tokens
// (bench/matmul_bench, docs/kernels.md "AMX").
constexpr int64_t kAmxMinTokens = 9;
constexpr int64_t kAmxQuantMinTokens = 40;

bool matmul_kernel_supported(MatmulKernel k);  // by this CPU (kAuto and kScalar: always)
MatmulKernel matmul_best_kernel();            // what kAuto means here
// The best family below kAmx (what kAuto means where AMX is missing or not granted).
MatmulKernel matmul_best_kernel_without_amx();
// The best family whose F32 / F16 / BF16 / FP8 products keep float32 activations at every B
// (kAvx512Bf16 rounds BF16 activations, and FP8 prefill, to bf16; kAmx too): what the float32
// conformance tests run.
MatmulKernel matmul_float32_kernel();
// What matmul runs for weights of dtype t with kernel k, e.g. "avx512-vnni (int8 activations)",
// for logs (STYLE.md: SIMD dispatch logs its choice). kAuto is resolved first.
std::string_view matmul_kernel_name(DType t, MatmulKernel k = MatmulKernel::kAuto);
std::string_view matmul_kernel_family_name(MatmulKernel k);  // "scalar", "avx2", "avx512", ...
// The family named `name` (as matmul_kernel_family_name prints it; "auto" too); throws dseek::Error
// listing the names for anything else.
MatmulKernel matmul_kernel_from_name(std::string_view name);

// y (B, N) = x (B, K) · Wᵀ. Splits output rows across `pool` when given. x and y must not overlap.
// The conversions of x (bf16, int8 blocks) go to a per-thread scratch buffer that grows to the
// largest B * K seen and is reused, so after the first call of a shape nothing is allocated
// (docs/kernels.md, "Scratch memory").
void matmul(float* y, const float* x, const MatView& w, int64_t B, ThreadPool* pool = nullptr);
// The same with an explicit kernel family (tests, benchmarks). Throws dseek::Error when the CPU
// cannot run `kernel`.
void matmul(float* y, const float* x, const MatView& w, int64_t B, ThreadPool* pool, MatmulKernel kernel);
// Independent products y_i (B_i, N_i) = x_i · W_iᵀ as one pool dispatch: the row tasks of all of them
// are taken from one counter. MoE layers run tens of small expert products per token, whose separate
// dispatches (and the wait for the slower thread after each) cost more than their work at decode.
// Results equal matmul's for each task with the same kernel family.
struct MatmulTask {
  float* y;
  const float* x;
  MatView w;
  int64_t B;
};
void matmul_many(std::span<const MatmulTask> tasks, ThreadPool* pool, MatmulKernel kernel = MatmulKernel::kAuto);
// Scalar reference of matmul: one output at a time, float32 accumulation in index order.
void matmul_ref(float* y, const float* x, const MatView& w, int64_t B);

// y (B, K) = x (B, N) · W: the transposed product, used by absorbed MLA to fold W_UK into the query.
void matmul_transposed(float* y, const float* x, const MatView& w, int64_t B);

// Row r of w as float32: out (K).
void dequantize_row(float* out, const MatView& w, int64_t r);
// Columns [k0, k0 + n) of row r as float32: out (n).
void dequantize_row_range(float* out, const MatView& w, int64_t r, int64_t k0, int64_t n);

// Bytes of stored row r of w (row_offset applied), for any dtype including Q8_0 / Q4_0.
const uint8_t* mat_row_ptr(const MatView& w, int64_t r);

// Bytes read by one pass over w (for roofline accounting).
int64_t mat_bytes(const MatView& w);

}  // namespace dseek
