// Text generation for one sequence: chunked prefill, then token-by-token decode through the latent
// KV cache, sampling, stop conditions and streaming of complete UTF-8 text.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "dseek/core/thread_pool.h"
#include "dseek/model/model.h"
#include "dseek/runtime/kv_cache.h"
#include "dseek/runtime/sampler.h"
#include "dseek/tokenizer/tokenizer.h"

namespace dseek {

struct GenerateOptions {
  int64_t max_new_tokens = 256;
  std::vector<std::string> stop;  // stop strings: generation ends before the first occurrence
  bool stop_at_eos = true;
  bool skip_special_tokens = false;  // in the streamed text
};

struct GenerateResult {
  std::vector<int32_t> tokens;  // generated ids (without a final EOS)
  std::string text;             // streamed text, stop string excluded
  std::string finish_reason;    // "stop" (EOS or stop string), "length" (max_new_tokens or context)
  int64_t prompt_tokens = 0;
  int64_t cached_prompt_tokens = 0;  // reused from the previous call (common prefix)
  double prefill_seconds = 0;
  double decode_seconds = 0;
};

class Generator {
 public:
  // context_length: positions the cache holds; prefill_chunk: tokens per prefill forward. 512: a
  // MoE prefill multiplies each expert by its share of the chunk (~chunk · k / E tokens), and the
  // packed GEMM needs tens of tokens per expert (601-token prompt, v2lite-4l BF16: 313 tokens/s at
  // 128, 356 at 512).
  Generator(const Model& model, const Tokenizer& tokenizer, int64_t context_length, ThreadPool* pool,
            int64_t prefill_chunk = 512, KVDtype kv_dtype = KVDtype::kF32,
            AttnPrecision attn_precision = AttnPrecision::kAuto);

  // Generates a continuation of prompt. The cache rows of the longest common prefix with the
  // previous call's sequence are reused (multi-turn chat does not recompute earlier turns).
  // on_text receives each piece of completed text; returning false stops generation.
  GenerateResult generate(std::span<const int32_t> prompt, Sampler& sampler, const GenerateOptions& opts,
                          const std::function<bool(std::string_view)>& on_text = {});

  int64_t context_length() const { return cache_.capacity(); }

 private:
  // Runs tokens_[from, to) through the model; logits of the last one into logits_.
  void prefill(int64_t from, int64_t to);

  const Model& model_;
  const Tokenizer& tokenizer_;
  KVCache cache_;
  Workspace ws_;
  int64_t chunk_;
  std::vector<int32_t> tokens_;  // the sequence whose rows the cache holds
  std::vector<float> logits_;    // (vocab)
};

}  // namespace dseek
