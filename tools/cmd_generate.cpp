// dseek generate: stream a continuation of a prompt (raw text, or one chat turn with --chat).
#include <chrono>
#include <cstdio>
#include <future>
#include <nlohmann/json.hpp>

#include "commands.h"
#include "dseek/core/error.h"
#include "dseek/runtime/engine.h"
#include "dseek/runtime/generator.h"
#include "dseek/tokenizer/chat_template.h"
#include "run_flags.h"

namespace dseek::cli {

namespace {

// --speculative mtp: the serving engine runs the one sequence (MTP drafts, two-token verification
// passes; docs/server.md), so generate and serve share one implementation of speculation.
GenerateResult generate_speculative(const LoadedModel& m, std::vector<int32_t> ids, const SamplingParams& sp,
                                    const GenerateOptions& o, EngineStats& stats) {
  EngineOptions eo;
  eo.max_batch = 1;
  eo.context_length = m.ctx;
  eo.speculative_mtp = true;
  eo.prefix_cache = false;
  const int64_t blocks = (m.ctx + eo.block_size - 1) / eo.block_size;
  eo.kv_dtype = m.kv_dtype;
  eo.attn_precision = m.attn_precision;
  eo.kv_cache_bytes =
      blocks * PagedKVCache::bytes_per_block(m.model.config(), m.model.n_cache_layers(), eo.block_size, eo.kv_dtype);
  Engine engine(m.model, m.tokenizer, m.pool.get(), eo);
  using Clock = std::chrono::steady_clock;
  GenerateResult r;
  r.prompt_tokens = int64_t(ids.size());
  std::promise<void> done;
  const Clock::time_point t0 = Clock::now();
  Clock::time_point first = t0;
  EngineRequest req;
  req.prompt = std::move(ids);
  req.sampling = sp;
  req.max_new_tokens = o.max_new_tokens;
  req.stop = o.stop;
  req.stop_at_eos = o.stop_at_eos;
  req.skip_special_tokens = o.skip_special_tokens;
  req.on_event = [&](const EngineEvent& e) {  // on the engine thread; this thread only waits
    if (!e.tokens.empty() && r.tokens.empty()) first = Clock::now();
    r.tokens.insert(r.tokens.end(), e.tokens.begin(), e.tokens.end());
    r.text += e.text;
    std::fwrite(e.text.data(), 1, e.text.size(), stdout);
    std::fflush(stdout);
    if (!e.done) return;
    r.finish_reason = e.finish_reason == "error" ? "error: " + e.error : e.finish_reason;
    done.set_value();
  };
  engine.submit(std::move(req));
  done.get_future().wait();
  const Clock::time_point t1 = Clock::now();
  if (r.tokens.empty()) first = t1;
  r.prefill_seconds = std::chrono::duration<double>(first - t0).count();
  r.decode_seconds = std::chrono::duration<double>(t1 - first).count();
  stats = engine.stats();
  return r;
}

}  // namespace

int cmd_generate(int argc, char** argv) {
  Args a(argc, argv, merge({kSamplingFlags, kModelFlags, {"prompt", "n-predict", "stop", "system", "speculative"}}),
         {"chat", "no-bos", "no-eos-stop", "no-warm"}, kShortFlags);
  const std::string prompt = a.require("prompt");
  const std::string spec = a.get("speculative").value_or("none");
  if (spec != "none" && spec != "mtp") throw Error("generate: --speculative must be 'mtp' or 'none', not '" + spec + "'");
  LoadOptions lo;
  lo.load_mtp = spec == "mtp";
  LoadedModel m = load_model_for_text(a, lo);
  std::vector<int32_t> ids;
  if (a.has("chat")) {
    ChatTemplate tpl = ChatTemplate::load(a.require("model"));
    nlohmann::ordered_json messages = nlohmann::ordered_json::array();
    if (auto sys = a.get("system")) messages.push_back({{"role", "system"}, {"content", *sys}});
    messages.push_back({{"role", "user"}, {"content", prompt}});
    ids = m.tokenizer.encode(tpl.render(messages, true), false);  // the template writes the BOS
  } else {
    ids = m.tokenizer.encode(prompt, !a.has("no-bos"));
  }
  GenerateOptions o;
  o.max_new_tokens = a.get_int("n-predict", 128);
  o.stop = a.get_all("stop");
  o.stop_at_eos = !a.has("no-eos-stop");
  if (!a.has("chat")) std::fputs(prompt.c_str(), stdout);
  if (spec == "mtp") {
    EngineStats st;
    const GenerateResult r = generate_speculative(m, std::move(ids), sampling_from_args(a), o, st);
    std::fputc('\n', stdout);
    print_speed(r);
    std::fprintf(stderr, "speculative (MTP): %lld engine steps (prefill included), %.2f tokens per step; drafts accepted %lld of %lld (%.1f %%)\n",
                 (long long)(st.steps), st.steps > 0 ? double(r.tokens.size()) / double(st.steps) : 0.0,
                 (long long)st.mtp_accepted, (long long)st.mtp_drafts,
                 st.mtp_drafts > 0 ? 100.0 * double(st.mtp_accepted) / double(st.mtp_drafts) : 0.0);
    return r.finish_reason.rfind("error", 0) == 0 ? 1 : 0;
  }
  Sampler sampler(sampling_from_args(a), m.model.config().vocab_size);
  Generator gen(m.model, m.tokenizer, m.ctx, m.pool.get(), 512, m.kv_dtype, m.attn_precision);
  GenerateResult r = gen.generate(ids, sampler, o, [](std::string_view piece) {
    std::fwrite(piece.data(), 1, piece.size(), stdout);
    std::fflush(stdout);
    return true;
  });
  std::fputc('\n', stdout);
  print_speed(r);
  return 0;
}

}  // namespace dseek::cli
