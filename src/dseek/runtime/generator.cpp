#include "dseek/runtime/generator.h"

#include <algorithm>
#include <chrono>

#include "dseek/core/error.h"
#include "dseek/runtime/text_stream.h"

namespace dseek {

namespace {
using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

}  // namespace

Generator::Generator(const Model& model, const Tokenizer& tokenizer, int64_t context_length, ThreadPool* pool,
                     int64_t prefill_chunk, KVDtype kv_dtype, AttnPrecision attn_precision)
    : model_(model),
      tokenizer_(tokenizer),
      cache_(model.config(), model.n_cache_layers(), context_length, kv_dtype),
      ws_(model.config(), prefill_chunk, context_length, pool, /*naive_attention=*/false),
      chunk_(prefill_chunk),
      logits_(size_t(model.config().vocab_size)) {
  ws_.attn_precision = attn_precision;
}

void Generator::prefill(int64_t from, int64_t to) {
  for (int64_t p = from; p < to; p += chunk_) {
    const int64_t n = std::min(chunk_, to - p);
    const bool last = p + n == to;
    model_.forward(tokens_.data() + p, n, p, cache_.view(), AttnImpl::kAbsorb, ws_, last ? logits_.data() : nullptr,
                   n - 1);
  }
}

GenerateResult Generator::generate(std::span<const int32_t> prompt, Sampler& sampler, const GenerateOptions& opts,
                                   const std::function<bool(std::string_view)>& on_text) {
  GenerateResult r;
  if (prompt.empty()) throw Error("generate: empty prompt");
  const int64_t ctx = cache_.capacity();
  if (int64_t(prompt.size()) >= ctx)
    throw Error("generate: prompt of " + std::to_string(prompt.size()) + " tokens does not fit the context of " +
                std::to_string(ctx));
  r.prompt_tokens = int64_t(prompt.size());

  // Reuse cached rows of the common prefix; at least the last prompt token is recomputed for its logits.
  int64_t common = 0;
  while (common < int64_t(tokens_.size()) && common < r.prompt_tokens && tokens_[size_t(common)] == prompt[size_t(common)])
    ++common;
  common = std::min(common, r.prompt_tokens - 1);
  r.cached_prompt_tokens = common;
  tokens_.assign(prompt.begin(), prompt.end());

  auto t0 = Clock::now();
  prefill(common, r.prompt_tokens);
  r.prefill_seconds = seconds_since(t0);
  int64_t fed = r.prompt_tokens;  // tokens_[0, fed) have rows in the cache

  sampler.reset(prompt);
  TextStream stream(tokenizer_, opts.stop, opts.skip_special_tokens);
  const int32_t eos = tokenizer_.eos_id() >= 0 ? tokenizer_.eos_id() : int32_t(model_.config().eos_token_id);
  auto t1 = Clock::now();
  r.finish_reason = "length";
  bool stopped = false;
  while (int64_t(r.tokens.size()) < opts.max_new_tokens) {
    const int32_t tok = sampler.sample(logits_);
    if (opts.stop_at_eos && tok == eos) {
      r.finish_reason = "stop";
      break;
    }
    r.tokens.push_back(tok);
    tokens_.push_back(tok);
    const std::string piece = stream.feed(tok);
    stopped = stream.stopped();
    if (!piece.empty()) {
      r.text += piece;
      if (on_text && !on_text(piece)) {
        r.finish_reason = "stop";
        break;
      }
    }
    if (stopped) {
      r.finish_reason = "stop";
      break;
    }
    const int64_t pos = int64_t(tokens_.size()) - 1;
    if (pos >= ctx) break;                                        // "length": the context is full
    if (int64_t(r.tokens.size()) == opts.max_new_tokens) break;  // its logits would go unused
    model_.forward(&tokens_[size_t(pos)], 1, pos, cache_.view(), AttnImpl::kAbsorb, ws_, logits_.data());
    fed = pos + 1;
  }
  if (!stopped) {
    const std::string rest = stream.finish();
    if (!rest.empty()) {
      r.text += rest;
      if (on_text) on_text(rest);
    }
  }
  tokens_.resize(size_t(fed));  // keep only tokens whose rows the cache holds, for prefix reuse
  r.decode_seconds = seconds_since(t1);
  return r;
}

}  // namespace dseek
