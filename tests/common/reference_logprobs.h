// The reference distribution for logprobs tests: log_softmax (in double) of Model::forward's logits
// over prompt + generated tokens, run once on a contiguous cache. Row j is the distribution
// generated[j] was drawn from.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "dseek/model/model.h"
#include "dseek/runtime/kv_cache.h"

namespace dseek {

inline std::vector<std::vector<double>> reference_log_softmax(const Model& m, const std::vector<int32_t>& prompt,
                                                              const std::vector<int32_t>& generated) {
  std::vector<int32_t> all = prompt;
  all.insert(all.end(), generated.begin(), generated.end());
  const int64_t T = int64_t(all.size()), V = m.config().vocab_size, from = int64_t(prompt.size()) - 1;
  KVCache cache(m.config(), m.n_cache_layers(), T);
  Workspace ws(m.config(), T, T, nullptr, /*naive_attention=*/false);
  std::vector<float> logits(size_t((T - from) * V));  // (T - from, V)
  m.forward(all.data(), T, 0, cache.view(), AttnImpl::kAbsorb, ws, logits.data(), from);
  std::vector<std::vector<double>> out;
  for (size_t j = 0; j < generated.size(); ++j) {
    const float* l = logits.data() + j * size_t(V);
    double mx = -INFINITY, z = 0;
    for (int64_t i = 0; i < V; ++i) mx = std::max(mx, double(l[i]));
    for (int64_t i = 0; i < V; ++i) z += std::exp(double(l[i]) - mx);
    std::vector<double> row(static_cast<size_t>(V));
    for (int64_t i = 0; i < V; ++i) row[size_t(i)] = double(l[i]) - mx - std::log(z);
    out.push_back(std::move(row));
  }
  return out;
}

}  // namespace dseek
