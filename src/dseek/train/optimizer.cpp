#include "dseek/train/optimizer.h"

#include <cmath>

#include "dseek/core/error.h"

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

}  // namespace

double grad_global_norm(std::span<const ParamTensor> params, ThreadPool* pool) {
  const std::vector<Piece> ps = pieces(params);
  std::vector<double> partial(ps.size(), 0.0);
  for_pieces(ps, pool, [&](int64_t k, const Piece& p) {
    const float* g = params[p.param].grad;
    double s = 0.0;
    for (int64_t j = p.begin; j < p.end; ++j) s += double(g[j]) * double(g[j]);
    partial[size_t(k)] = s;
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

double clip_grad_norm(std::span<const ParamTensor> params, double max_norm, ThreadPool* pool) {
  const double norm = grad_global_norm(params, pool);
  if (max_norm > 0 && norm > max_norm) scale_grads(params, float(max_norm / (norm + 1e-6)), pool);
  return norm;
}

AdamW::AdamW(std::span<const ParamTensor> params, const AdamWConfig& cfg) : cfg_(cfg) {
  for (const ParamTensor& p : params) {
    m_.emplace_back(size_t(p.numel()), 0.0f);
    v_.emplace_back(size_t(p.numel()), 0.0f);
  }
}

void AdamW::step(std::span<const ParamTensor> params, double lr, ThreadPool* pool) {
  DSEEK_CHECK(params.size() == m_.size(), "AdamW::step: parameter list changed since construction");
  ++t_;
  const float b1 = float(cfg_.beta1), b2 = float(cfg_.beta2), eps = float(cfg_.eps);
  const double bc1 = 1.0 - std::pow(cfg_.beta1, double(t_));
  const double bc2 = 1.0 - std::pow(cfg_.beta2, double(t_));
  const float step_size = float(lr / bc1);
  const float bc2_sqrt = float(std::sqrt(bc2));
  const float decay = float(1.0 - lr * cfg_.weight_decay);
  const std::vector<Piece> ps = pieces(params);
  for_pieces(ps, pool, [&](int64_t, const Piece& pc) {
    const ParamTensor& p = params[pc.param];
    DSEEK_CHECK(size_t(p.numel()) == m_[pc.param].size(), "AdamW::step: parameter " + p.name + " changed size");
    float* w = p.data;
    const float* g = p.grad;
    float* m = m_[pc.param].data();
    float* v = v_[pc.param].data();
    for (int64_t j = pc.begin; j < pc.end; ++j) {
      if (p.decay) w[j] *= decay;
      m[j] = b1 * m[j] + (1.0f - b1) * g[j];
      v[j] = b2 * v[j] + (1.0f - b2) * g[j] * g[j];
      const float denom = std::sqrt(v[j]) / bc2_sqrt + eps;
      w[j] -= step_size * (m[j] / denom);
    }
  });
}

}  // namespace dseek
