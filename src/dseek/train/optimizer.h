// AdamW (Loshchilov & Hutter 2019) with decoupled weight decay, global-norm gradient clipping and
// gradient scaling, over the ParamTensors of a TrainModel (or any list of them).
//
// The update follows torch.optim.AdamW (float32 state, step counted from 1):
//   p <- p * (1 - lr * weight_decay)                 (only where ParamTensor::decay)
//   m <- beta1 m + (1 - beta1) g;  v <- beta2 v + (1 - beta2) g^2
//   p <- p - lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
// Every result is independent of the thread count: updates are elementwise and the gradient norm
// is summed in double over fixed 64 Ki-element blocks, blocks added in order.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "dseek/core/thread_pool.h"
#include "dseek/train/params.h"

namespace dseek {

struct AdamWConfig {
  double beta1 = 0.9;
  double beta2 = 0.95;
  double eps = 1e-8;
  double weight_decay = 0.1;
};

// sqrt(sum of g^2) over every gradient.
double grad_global_norm(std::span<const ParamTensor> params, ThreadPool* pool = nullptr);
// Multiplies every gradient by `s`.
void scale_grads(std::span<const ParamTensor> params, float s, ThreadPool* pool = nullptr);
// torch.nn.utils.clip_grad_norm_: if the norm exceeds max_norm (> 0), scales gradients by
// max_norm / (norm + 1e-6). Returns the norm before clipping.
double clip_grad_norm(std::span<const ParamTensor> params, double max_norm, ThreadPool* pool = nullptr);
// The factor clip_grad_norm applies for a norm: max_norm / (norm + 1e-6) above max_norm (> 0), else 1.
float clip_scale(double norm, double max_norm);

class AdamW {
 public:
  // Zero moments sized to `params` (which must be the same list, in the same order, at every step).
  AdamW(std::span<const ParamTensor> params, const AdamWConfig& cfg);

  // grad_scale multiplies every gradient as it is read (the clipping factor, fused: the same result as
  // scale_grads first, without its pass over the gradients); the stored gradients are not changed.
  // One pass per parameter: reads p, g, m, v once.
  void step(std::span<const ParamTensor> params, double lr, ThreadPool* pool = nullptr, float grad_scale = 1.f);

  const AdamWConfig& config() const { return cfg_; }
  int64_t steps() const { return t_; }  // updates done so far
  void set_steps(int64_t t) { t_ = t; }
  size_t size() const { return m_.size(); }
  std::vector<float>& m(size_t i) { return m_[i]; }  // (numel of params[i]) first moment
  std::vector<float>& v(size_t i) { return v_[i]; }  // (numel of params[i]) second moment
  const std::vector<float>& m(size_t i) const { return m_[i]; }
  const std::vector<float>& v(size_t i) const { return v_[i]; }

 private:
  AdamWConfig cfg_;
  int64_t t_ = 0;
  std::vector<std::vector<float>> m_, v_;
};

}  // namespace dseek
