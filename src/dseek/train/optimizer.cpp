#include "dseek/train/optimizer.h"

#include <cmath>

#if defined(__x86_64__) || defined(__i386__)
#define DSEEK_ADAMW_AVX512 1
#include <immintrin.h>
// GCC 12's AVX-512 headers build some results from undefined placeholders and then warn about them
// once inlined (as in kernels/gemm_bf16_avx512.cpp).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#endif

#include "dseek/core/error.h"
#include "dseek/kernels/cpu_features.h"

namespace dseek {

namespace {

constexpr int64_t kBlock = int64_t(1) << 16;  // fixed reduction blocks: same sum for any thread count

// Runs fn(param index, begin, end) over every kBlock-sized piece of every parameter.
struct Piece {
  size_t param;
  int64_t begin, end;
};

std::vector<Piece> pieces(std::span<const ParamTensor> params) {
  std::vector<Piece> out;
  for (size_t i = 0; i < params.size(); ++i) {
    const int64_t n = params[i].numel();
    for (int64_t b = 0; b < n; b += kBlock) out.push_back({i, b, std::min(n, b + kBlock)});
  }
  return out;
}

template <class Fn>
void for_pieces(const std::vector<Piece>& ps, ThreadPool* pool, Fn&& fn) {
  if (pool && pool->size() > 1 && ps.size() > 1) {
    pool->parallel_for(int64_t(ps.size()), [&](int64_t b, int64_t e) {
      for (int64_t k = b; k < e; ++k) fn(k, ps[size_t(k)]);
    });
  } else {
    for (size_t k = 0; k < ps.size(); ++k) fn(int64_t(k), ps[k]);
  }
}

// Σ g² of one piece in double, 8 partial sums (a single double accumulator is a serial chain of
// adds the compiler may not vectorize or reorder).
__attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default"), optimize("O3")))
double sum_squares(const float* g, int64_t n) {
  constexpr int kLanes = 8;
  double acc[kLanes] = {};
  int64_t j = 0;
  for (; j + kLanes <= n; j += kLanes)
    for (int l = 0; l < kLanes; ++l) acc[l] += double(g[j + l]) * double(g[j + l]);
  double s = 0.0;
  for (int l = 0; l < kLanes; ++l) s += acc[l];
  for (; j < n; ++j) s += double(g[j]) * double(g[j]);
  return s;
}

struct AdamWCoefs {
  float b1, b2, eps, step_size, bc2_sqrt, decay, grad_scale;
};

// One pass over a piece: reads w, g, m, v once, writes w, m, v. g is multiplied by grad_scale as it is
// read (what scale_grads would have stored). Elementwise, no FMA: every variant below rounds each
// operation as this scalar loop does, so the result does not depend on the CPU.
void adamw_piece_scalar(float* __restrict w, const float* __restrict g, float* __restrict m, float* __restrict v,
                        int64_t n, bool decay, const AdamWCoefs& c) {
  const float b1 = c.b1, b2 = c.b2, eps = c.eps, step_size = c.step_size, bc2_sqrt = c.bc2_sqrt;
  const float wd = decay ? c.decay : 1.f, gs = c.grad_scale;
  const float one_b1 = 1.0f - b1, one_b2 = 1.0f - b2;
  for (int64_t j = 0; j < n; ++j) {
    const float gj = g[j] * gs;  // exact when gs is 1
    const float wj = w[j] * wd;  // exact when wd is 1 (no decay)
    const float mj = b1 * m[j] + one_b1 * gj;
    const float vj = b2 * v[j] + one_b2 * gj * gj;
    m[j] = mj;
    v[j] = vj;
    const float denom = std::sqrt(vj) / bc2_sqrt + eps;
    w[j] = wj - step_size * (mj / denom);
  }
}

#ifdef DSEEK_ADAMW_AVX512
// The same with AVX-512 (16 lanes; the tail by the scalar loop). -O2 keeps the scalar loop scalar (sqrt's
// errno path), and with one sqrt and two divisions per parameter it was ~3.5 % of a config-S step.
// fp-contract=off: GCC would fuse the mul/add intrinsics into FMAs, which round differently
// (AdamW.VectorUpdateEqualsScalarFormula).
__attribute__((target("avx512f"), optimize("fp-contract=off")))
void adamw_piece_avx512(float* w, const float* g, float* m, float* v, int64_t n, bool decay, const AdamWCoefs& c) {
  const __m512 b1 = _mm512_set1_ps(c.b1), b2 = _mm512_set1_ps(c.b2), eps = _mm512_set1_ps(c.eps);
  const __m512 step = _mm512_set1_ps(c.step_size), bc2 = _mm512_set1_ps(c.bc2_sqrt);
  const __m512 wd = _mm512_set1_ps(decay ? c.decay : 1.f), gs = _mm512_set1_ps(c.grad_scale);
  const __m512 one_b1 = _mm512_set1_ps(1.0f - c.b1), one_b2 = _mm512_set1_ps(1.0f - c.b2);
  int64_t j = 0;
  for (; j + 16 <= n; j += 16) {
    const __m512 gj = _mm512_mul_ps(_mm512_loadu_ps(g + j), gs);
    const __m512 wj = _mm512_mul_ps(_mm512_loadu_ps(w + j), wd);
    const __m512 mj = _mm512_add_ps(_mm512_mul_ps(b1, _mm512_loadu_ps(m + j)), _mm512_mul_ps(one_b1, gj));
    const __m512 vj = _mm512_add_ps(_mm512_mul_ps(b2, _mm512_loadu_ps(v + j)), _mm512_mul_ps(_mm512_mul_ps(one_b2, gj), gj));
    _mm512_storeu_ps(m + j, mj);
    _mm512_storeu_ps(v + j, vj);
    const __m512 denom = _mm512_add_ps(_mm512_div_ps(_mm512_sqrt_ps(vj), bc2), eps);
    _mm512_storeu_ps(w + j, _mm512_sub_ps(wj, _mm512_mul_ps(step, _mm512_div_ps(mj, denom))));
  }
  adamw_piece_scalar(w + j, g + j, m + j, v + j, n - j, decay, c);
}
#endif

void adamw_piece(float* w, const float* g, float* m, float* v, int64_t n, bool decay, const AdamWCoefs& c) {
#ifdef DSEEK_ADAMW_AVX512
  if (cpu_features().avx512f) return adamw_piece_avx512(w, g, m, v, n, decay, c);
#endif
  adamw_piece_scalar(w, g, m, v, n, decay, c);
}

}  // namespace

double grad_global_norm(std::span<const ParamTensor> params, ThreadPool* pool) {
  const std::vector<Piece> ps = pieces(params);
  std::vector<double> partial(ps.size(), 0.0);
  for_pieces(ps, pool, [&](int64_t k, const Piece& p) {
    partial[size_t(k)] = sum_squares(params[p.param].grad + p.begin, p.end - p.begin);
  });
  double total = 0.0;
  for (double s : partial) total += s;
  return std::sqrt(total);
}

void scale_grads(std::span<const ParamTensor> params, float s, ThreadPool* pool) {
  const std::vector<Piece> ps = pieces(params);
  for_pieces(ps, pool, [&](int64_t, const Piece& p) {
    float* g = params[p.param].grad;
    for (int64_t j = p.begin; j < p.end; ++j) g[j] *= s;
  });
}

float clip_scale(double norm, double max_norm) {
  return max_norm > 0 && norm > max_norm ? float(max_norm / (norm + 1e-6)) : 1.f;
}

double clip_grad_norm(std::span<const ParamTensor> params, double max_norm, ThreadPool* pool) {
  const double norm = grad_global_norm(params, pool);
  const float s = clip_scale(norm, max_norm);
  if (s != 1.f) scale_grads(params, s, pool);
  return norm;
}

AdamW::AdamW(std::span<const ParamTensor> params, const AdamWConfig& cfg) : cfg_(cfg) {
  for (const ParamTensor& p : params) {
    m_.emplace_back(size_t(p.numel()), 0.0f);
    v_.emplace_back(size_t(p.numel()), 0.0f);
  }
}

void AdamW::step(std::span<const ParamTensor> params, double lr, ThreadPool* pool, float grad_scale) {
  DSEEK_CHECK(params.size() == m_.size(), "AdamW::step: parameter list changed since construction");
  ++t_;
  AdamWCoefs c;
  c.b1 = float(cfg_.beta1);
  c.b2 = float(cfg_.beta2);
  c.eps = float(cfg_.eps);
  const double bc1 = 1.0 - std::pow(cfg_.beta1, double(t_));
  const double bc2 = 1.0 - std::pow(cfg_.beta2, double(t_));
  c.step_size = float(lr / bc1);
  c.bc2_sqrt = float(std::sqrt(bc2));
  c.decay = float(1.0 - lr * cfg_.weight_decay);
  c.grad_scale = grad_scale;
  const std::vector<Piece> ps = pieces(params);
  for_pieces(ps, pool, [&](int64_t, const Piece& pc) {
    const ParamTensor& p = params[pc.param];
    DSEEK_CHECK(size_t(p.numel()) == m_[pc.param].size(), "AdamW::step: parameter " + p.name + " changed size");
    adamw_piece(p.data + pc.begin, p.grad + pc.begin, m_[pc.param].data() + pc.begin, v_[pc.param].data() + pc.begin,
                pc.end - pc.begin, p.decay, c);
  });
}

}  // namespace dseek
