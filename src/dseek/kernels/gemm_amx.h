// Prefill GEMM on Intel AMX tiles (gemm_amx.cpp): the interface matmul.cpp uses. Plain declarations
// only, for the reason given in matmul_kernels.h.
//
// Arithmetic: bf16 products summed in float32 by TDPBF16PS. Activations are rounded to bf16 (nearest
// even) once per call, as the BF16 kernels do; weights of every format are decoded to their exact
// float32 values (q * d, E4M3 * scale) and rounded to bf16 as 32 rows at a time are unpacked into
// an L2-resident panel, which every 16-token tile then reads. So for BF16 weights this is the same
// product as kAvx512Bf16, and for Q8_0 / Q4_0 / FP8 it trades their int8 / float32 activations for
// bf16 ones on both sides (docs/kernels.md, "AMX").
#pragma once

#include <cstdint>

#include "dseek/kernels/matmul_kernels.h"

namespace dseek::mm {

// Tokens per AMX tile (rows of an activation tile and of an accumulator tile).
constexpr int64_t kAmxTokens = 16;
// Activations (Job::act): token b's bf16 values at act + b * act_stride, K rounded up to a multiple
// of 32 with zeros, and zero rows up to a multiple of kAmxTokens tokens. The stride gets one extra
// cache line so that 16 consecutive tokens do not fall into the same L1 set.
constexpr int64_t amx_act_stride(int64_t K) { return (K + 31) / 32 * 64 + 64; }
constexpr int64_t amx_act_bytes(int64_t K, int64_t B) {
  return (B + kAmxTokens - 1) / kAmxTokens * kAmxTokens * amx_act_stride(K);
}

struct AmxKernels {
  // y rows [n0, n1) for all Job::B tokens; n0 a multiple of 32 (matmul's GEMM row tasks).
  KernelFn bf16 = nullptr;
  KernelFn fp8 = nullptr;  // Job::block a multiple of 32
  KernelFn q8_0 = nullptr;
  KernelFn q4_0 = nullptr;
  KernelFn q8_0_r16 = nullptr;  // view rows start at a 16-row group
  KernelFn q4_0_r16 = nullptr;
};

// Empty where the file is not built for x86. matmul.cpp asks only when cpu_features() reports AMX
// and amx_permitted() said yes.
AmxKernels amx_kernels();

}  // namespace dseek::mm
