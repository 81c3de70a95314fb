// The reference distributions for logprobs tests: log_softmax (in double) of Model::forward's
// logits, run once on a contiguous cache.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "dseek/model/model.h"
#include "dseek/runtime/kv_cache.h"

namespace dseek {

// Rows [from, tokens.size()) of log_softmax(Model::forward(tokens)): row i is the distribution at
// position from + i, the one that predicts the token after it.
inline std::vector<std::vector<double>> reference_log_softmax_rows(const Model& m, const std::vector<int32_t>& tokens,
                                                                   int64_t from) {
  const int64_t T = int64_t(tokens.size()), V = m.config().vocab_size;
  KVCache cache(m.config(), m.n_cache_layers(), T);
  Workspace ws(m.config(), T, T, nullptr, /*naive_attention=*/false);
  std::vector<float> logits(size_t((T - from) * V));  // (T - from, V)
  m.forward(tokens.data(), T, 0, cache.view(), AttnImpl::kAbsorb, ws, logits.data(), from);
  std::vector<std::vector<double>> out;
  for (int64_t j = 0; j < T - from; ++j) {
    const float* l = logits.data() + j * V;
    double mx = -INFINITY, z = 0;
    for (int64_t i = 0; i < V; ++i) mx = std::max(mx, double(l[i]));
    for (int64_t i = 0; i < V; ++i) z += std::exp(double(l[i]) - mx);
    std::vector<double> row(static_cast<size_t>(V));
    for (int64_t i = 0; i < V; ++i) row[size_t(i)] = double(l[i]) - mx - std::log(z);
    out.push_back(std::move(row));
  }
  return out;
}

// Over prompt + generated tokens: row j is the distribution generated[j] was drawn from.
inline std::vector<std::vector<double>> reference_log_softmax(const Model& m, const std::vector<int32_t>& prompt,
                                                              const std::vector<int32_t>& generated) {
  std::vector<int32_t> all = prompt;
  all.insert(all.end(), generated.begin(), generated.end());
  std::vector<std::vector<double>> out = reference_log_softmax_rows(m, all, int64_t(prompt.size()) - 1);
  out.resize(generated.size());
  return out;
}

// Prompt logprobs: row j is the distribution at position j, which prompt[j + 1] is scored under
// (prompt.size() - 1 rows).
inline std::vector<std::vector<double>> reference_prompt_log_softmax(const Model& m, const std::vector<int32_t>& prompt) {
  std::vector<std::vector<double>> out = reference_log_softmax_rows(m, prompt, 0);
  out.pop_back();
  return out;
}

}  // namespace dseek
