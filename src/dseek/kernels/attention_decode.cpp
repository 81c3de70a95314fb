#include "dseek/kernels/attention_decode.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "dseek/core/dtype.h"
#include "dseek/core/error.h"

#include "dseek/kernels/cpu_features.h"

namespace dseek {

namespace {
constexpr float kNegInf = -std::numeric_limits<float>::infinity();
}  // namespace

void decode_state_init(float* o, float* m, float* l, int64_t H, int64_t R) {
  std::fill(o, o + H * R, 0.f);
  std::fill(m, m + H, kNegInf);
  std::fill(l, l + H, 0.f);
}

void decode_attend_rows_ref(float* o, float* m, float* l, const DecodeQuery& q, const LatentRun* runs,
                            int64_t n_runs, int64_t stride, bool bf16) {
  const int64_t R = q.R, L = q.R + q.rope;
  std::vector<float> wide(bf16 ? size_t(L) : 0);
  for (const LatentRun* run = runs; run < runs + n_runs; ++run)
    for (int64_t j = 0; j < run->n; ++j) {
      if (run->allowed && !run->allowed[j]) continue;
      const float* c;
      if (bf16) {
        const uint16_t* b = static_cast<const uint16_t*>(run->rows) + j * stride;
        for (int64_t k = 0; k < L; ++k) wide[size_t(k)] = bf16_to_f32(b[k]);
        c = wide.data();
      } else {
        c = static_cast<const float*>(run->rows) + j * stride;
      }
      for (int64_t h = 0; h < q.H; ++h) {
        const float* ql = q.q_lat + h * R;
        const float* qp = q.q_pe + h * q.q_pe_stride;
        float s = 0.f;
        for (int64_t k = 0; k < R; ++k) s += ql[k] * c[k];
        for (int64_t k = 0; k < q.rope; ++k) s += qp[k] * c[R + k];
        s *= q.scale;
        float* oh = o + h * R;
        if (s > m[h]) {  // a new maximum rescales what is summed so far (exp(-inf) = 0 at the start)
          const float a = std::exp(m[h] - s);
          for (int64_t k = 0; k < R; ++k) oh[k] *= a;
          l[h] *= a;
          m[h] = s;
        }
        const float p = std::exp(s - m[h]);
        l[h] += p;
        for (int64_t k = 0; k < R; ++k) oh[k] += p * c[k];
      }
    }
}

void decode_attend_rows(float* o, float* m, float* l, const DecodeQuery& q, const LatentRun* runs, int64_t n_runs,
                        int64_t stride, bool bf16, DecodeProducts products) {
  DSEEK_CHECK(products != DecodeProducts::kBf16Dot || cpu_features().avx512bf16,
              "attention: bf16 dot products asked for on a CPU without AVX-512 BF16");
  if (cpu_features().avx512_fma()) return decode_attend_rows_avx512(o, m, l, q, runs, n_runs, stride, bf16, products);
  decode_attend_rows_ref(o, m, l, q, runs, n_runs, stride, bf16);
}

void decode_state_merge(float* o, float* m, float* l, const float* o2, const float* m2, const float* l2, int64_t H,
                        int64_t R) {
  for (int64_t h = 0; h < H; ++h) {
    if (m2[h] == kNegInf) continue;  // nothing in the other state
    const float mx = std::max(m[h], m2[h]);
    const float a = std::exp(m[h] - mx), b = std::exp(m2[h] - mx);
    float* oh = o + h * R;
    const float* o2h = o2 + h * R;
    for (int64_t k = 0; k < R; ++k) oh[k] = a * oh[k] + b * o2h[k];
    l[h] = a * l[h] + b * l2[h];
    m[h] = mx;
  }
}

void decode_state_finish(float* o, const float* l, int64_t H, int64_t R) {
  for (int64_t h = 0; h < H; ++h) {
    const float inv = l[h] > 0.f ? 1.f / l[h] : 0.f;
    for (int64_t k = 0; k < R; ++k) o[h * R + k] *= inv;
  }
}

}  // namespace dseek
