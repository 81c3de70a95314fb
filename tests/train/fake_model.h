// A tiny model with TrainModel's calls, for testing the loop without the real forward/backward:
// a linear predictor pred_t = w[x_t] + b of the next token's value y = x_{t+1} / V, loss
// mean 0.5 (pred - y)^2, and one "MoE layer" of 4 experts routing token x to expert x % 4 shifted
// by the rounded bias (so the aux-loss-free update visibly balances it).
#pragma once

#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "dseek/train/trainer.h"

namespace dseek::test {

inline ModelConfig fake_config(int64_t vocab = 16) {
  ModelConfig c;
  c.vocab_size = vocab;
  c.hidden_size = 1;
  c.n_routed_experts = 4;
  return c;
}

class FakeModel final : public TrainableModel {
 public:
  static constexpr int64_t kExperts = 4;
  const ModelConfig cfg_;
  explicit FakeModel(const ModelConfig& cfg) : cfg_(cfg), w_(size_t(cfg.vocab_size)), gw_(w_.size()), b_(1), gb_(1) {
    params_.push_back({"w", {cfg.vocab_size}, w_.data(), gw_.data(), true});
    params_.push_back({"b", {1}, b_.data(), gb_.data(), false});
    bias_.assign(kExperts, 0.0f);
    load_.assign(1, std::vector<int64_t>(kExperts, 0));
  }
  const ModelConfig& config() const override { return cfg_; }
  std::vector<ParamTensor>& params() override { return params_; }
  std::vector<StateTensor> checkpoint_tensors() const override {
    std::vector<StateTensor> out;
    for (const ParamTensor& p : params_) out.push_back({p.name, p.shape, p.data, true});
    out.push_back({"bias", {kExperts}, bias_.data(), false});
    return out;
  }
  bool hf_layout() const override { return false; }
  void init_weights(uint64_t seed, float std) override {
    std::mt19937_64 rng(seed);
    std::normal_distribution<float> nd(0.0f, std);
    for (float& x : w_) x = nd(rng);
    b_[0] = 0;
    std::fill(bias_.begin(), bias_.end(), 0.0f);
  }
  void load_from(const Checkpoint&) override {}
  StepResult forward_backward(const int32_t* tokens, int64_t B, int64_t T) override { return run(tokens, B, T, true); }
  double forward_loss(const int32_t* tokens, int64_t B, int64_t T) override { return run(tokens, B, T, false).loss; }
  void zero_grad() override {
    std::fill(gw_.begin(), gw_.end(), 0.0f);
    gb_[0] = 0;
  }
  const std::vector<std::vector<int64_t>>& expert_load() const override { return load_; }
  void update_bias(float gamma) override {
    double mean = 0;
    for (int64_t x : load_[0]) mean += double(x);
    mean /= kExperts;
    for (int64_t e = 0; e < kExperts; ++e) {
      const double d = mean - double(load_[0][size_t(e)]);
      bias_[size_t(e)] += gamma * float((d > 0) - (d < 0));
    }
    reset_load();
  }
  void reset_load() override { std::fill(load_[0].begin(), load_[0].end(), 0); }
  std::vector<float*> e_score_correction_bias() override { return {bias_.data()}; }
  std::vector<std::string> moe_layer_names() const override { return {"model.layers.0."}; }

  std::vector<float> w_, gw_, b_, gb_;
  std::vector<float> bias_;

 private:
  StepResult run(const int32_t* tokens, int64_t B, int64_t T, bool backward) {
    const double n = double(B * T);
    double loss = 0;
    for (int64_t r = 0; r < B; ++r)
      for (int64_t t = 0; t < T; ++t) {
        const int32_t x = tokens[r * (T + 1) + t], y = tokens[r * (T + 1) + t + 1];
        const float pred = w_[size_t(x)] + b_[0];
        const float err = pred - float(y) / float(cfg_.vocab_size);
        loss += 0.5 * double(err) * double(err);
        if (backward) {
          gw_[size_t(x)] += err / float(n);
          gb_[0] += err / float(n);
        }
        // Routing: the expert whose biased score is highest; scores favour expert x % 4.
        int64_t best = 0;
        float best_s = -1e30f;
        for (int64_t e = 0; e < kExperts; ++e) {
          const float s = (e == x % kExperts ? 1.0f : 0.0f) + bias_[size_t(e)];
          if (s > best_s) best_s = s, best = e;
        }
        ++load_[0][size_t(best)];
      }
    loss /= n;
    return {loss, loss, 0.0, 0.0};
  }

  std::vector<ParamTensor> params_;
  std::vector<std::vector<int64_t>> load_;
};

}  // namespace dseek::test
