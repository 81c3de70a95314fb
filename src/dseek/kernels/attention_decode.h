// Absorbed-MLA attention of one query token against its latent cache rows (decode), as an online
// softmax: the heads share every cache row read, nothing is gathered or repacked, and a long
// context splits into ranges that separate threads reduce and merge.
//
// For query heads h < H with q_h = [q_lat_h (R) | q_pe_h (rope)] and cache rows c_j = [c_kv (R) | k_pe (rope)],
// score s_hj = scale * q_h · c_j, and the state of a range of rows is, per head,
//   m_h = max_j s_hj,  l_h = sum_j exp(s_hj - m_h),  o_h = sum_j exp(s_hj - m_h) * c_kv_j   (R floats).
// The attention output is o_h / l_h once every row is in.
#pragma once

#include <cstdint>

namespace dseek {

struct DecodeQuery {
  const float* q_lat = nullptr;  // (H, R), row stride R
  const float* q_pe = nullptr;   // (H, rope), row stride q_pe_stride
  int64_t q_pe_stride = 0;
  int64_t H = 0, R = 0, rope = 0;
  float scale = 1.f;
};

// Starts an empty state: m = -inf, l = 0, o = 0 (o: H * R floats, m and l: H).
void decode_state_init(float* o, float* m, float* l, int64_t H, int64_t R);

// n consecutive cache rows (each [c_kv | k_pe]) and their flags (null: all in; 0: the row is masked
// out, V3.2's sparse attention). A paged cache gives one run per block. The rows are float32, or
// bf16 bit patterns (uint16_t) where the call says bf16 (a bf16 KV cache).
struct LatentRun {
  const void* rows = nullptr;
  int64_t n = 0;
  const uint8_t* allowed = nullptr;
};

// How the products of decode attention over a bf16 cache are computed. kFloat32: FMAs on the rows
// widened (exactly) to float32. The other two round the queries and the probabilities to bf16 and sum
// in float32, the softmax float32: kAmx on AMX tiles (attention_decode_amx.h; asked only where AMX is
// granted, matmul_kernel_supported(MatmulKernel::kAmx)), kBf16Dot with vdpbf16ps
// (attention_decode_bf16.h; asked only where cpu_features() reports avx512bf16). Float32 rows always
// take kFloat32: converting them first cost what bf16 products save.
enum class DecodeProducts { kFloat32, kAmx, kBf16Dot };

// Adds the rows of runs[0 .. n_runs) (row stride `stride` elements) to the state, in order; chunks
// of the kernel span run ends, so short runs cost no more than one long one.
void decode_attend_rows(float* o, float* m, float* l, const DecodeQuery& q, const LatentRun* runs, int64_t n_runs,
                        int64_t stride, bool bf16 = false, DecodeProducts products = DecodeProducts::kFloat32);

// Merges state (o2, m2, l2) into (o, m, l).
void decode_state_merge(float* o, float* m, float* l, const float* o2, const float* m2, const float* l2, int64_t H,
                        int64_t R);

// o_h /= l_h: the attention output (zeros for a head whose rows were all masked out).
void decode_state_finish(float* o, const float* l, int64_t H, int64_t R);

// Scalar versions (any CPU; the reference the tests compare the SIMD kernel against).
void decode_attend_rows_ref(float* o, float* m, float* l, const DecodeQuery& q, const LatentRun* runs,
                            int64_t n_runs, int64_t stride, bool bf16 = false);

// The AVX-512 kernel (attention_decode_avx512.cpp); decode_attend_rows picks it where the CPU has it.
void decode_attend_rows_avx512(float* o, float* m, float* l, const DecodeQuery& q, const LatentRun* runs,
                               int64_t n_runs, int64_t stride, bool bf16 = false,
                               DecodeProducts products = DecodeProducts::kFloat32);

}  // namespace dseek
