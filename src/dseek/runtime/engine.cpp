#include "dseek/runtime/engine.h"

#include <algorithm>
#include <span>

namespace dseek {

struct Engine::Sequence {
  uint64_t id = 0;
  EngineRequest req;
  std::vector<int32_t> tokens;  // prompt, then generated tokens
  int64_t n_prompt = 0;
  int64_t computed = 0;         // tokens[0, computed) have cache rows
  std::vector<int32_t> blocks;  // block table
  int64_t registered = 0;       // blocks[0, registered) are in the prefix index (or came from it)
  int64_t cached_prompt = -1;   // prompt tokens served by the prefix cache at first admission
  int64_t generated = 0;
  std::vector<int32_t> new_tokens;  // generated since the last event
  Sampler sampler;
  TextStream stream;
  bool finished = false;

  Sequence(EngineRequest r, int64_t vocab, const Tokenizer& tok)
      : req(std::move(r)), sampler(req.sampling, vocab), stream(tok, req.stop, req.skip_special_tokens) {}
  int64_t pending() const { return int64_t(tokens.size()) - computed; }
};

namespace {
int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

int64_t blocks_for_budget(const Model& m, const EngineOptions& o) {
  DSEEK_CHECK(o.block_size >= 1 && o.max_batch >= 1 && o.context_length >= 2, "engine: bad options");
  const int64_t per_block = PagedKVCache::bytes_per_block(m.config(), m.n_cache_layers(), o.block_size);
  const int64_t n = o.kv_cache_bytes / per_block;
  const int64_t need = ceil_div(o.context_length, o.block_size);
  if (n < need)
    throw Error("KV cache budget of " + std::to_string(o.kv_cache_bytes >> 20) + " MiB holds " +
                std::to_string(n * o.block_size) + " positions, fewer than one context of " +
                std::to_string(o.context_length) + " (" + std::to_string(per_block * need >> 20) +
                " MiB): raise --kv-cache-gb or lower --ctx");
  return n;
}
}  // namespace

Engine::Engine(const Model& model, const Tokenizer& tokenizer, ThreadPool* pool, const EngineOptions& opts)
    : model_(model),
      tokenizer_(tokenizer),
      opts_(opts),
      n_blocks_(blocks_for_budget(model, opts)),
      cache_(model.config(), model.n_cache_layers(), n_blocks_, opts.block_size),
      ws_(model.config(), std::max(opts.max_batch_tokens, opts.max_batch), opts.context_length, pool,
          /*naive_attention=*/false),
      logits_(size_t(opts.max_batch * model.config().vocab_size)) {
  opts_.max_batch_tokens = std::max(opts.max_batch_tokens, opts.max_batch);
  eos_ = tokenizer.eos_id() >= 0 ? tokenizer.eos_id() : int32_t(model.config().eos_token_id);
  stats_.kv_blocks_total = n_blocks_;
  thread_ = std::thread([this] { loop(); });
}

Engine::~Engine() {
  shutdown(/*drain=*/false);
  {
    std::lock_guard lk(mu_);
    quit_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

uint64_t Engine::submit(EngineRequest r) {
  const int64_t V = model_.config().vocab_size;
  if (r.prompt.empty()) throw Error("the prompt is empty");
  if (int64_t(r.prompt.size()) >= opts_.context_length)
    throw Error("the prompt has " + std::to_string(r.prompt.size()) + " tokens; the context holds " +
                std::to_string(opts_.context_length) + " (prompt plus at least one generated token)");
  for (int32_t t : r.prompt)
    if (t < 0 || t >= V) throw Error("prompt token id " + std::to_string(t) + " is outside the vocabulary");
  if (r.max_new_tokens < 1) throw Error("max_new_tokens must be at least 1");
  auto s = std::make_unique<Sequence>(std::move(r), V, tokenizer_);  // validates the sampling params
  s->tokens = s->req.prompt;
  s->n_prompt = int64_t(s->tokens.size());
  s->sampler.reset(s->tokens);
  std::lock_guard lk(mu_);
  if (stopping_) {
    ++stats_.requests_rejected;
    throw EngineBusy("the server is shutting down", true);
  }
  if (int64_t(inbox_.size()) + stats_.waiting >= opts_.max_queue) {
    ++stats_.requests_rejected;
    throw EngineBusy("the request queue is full (" + std::to_string(opts_.max_queue) + " waiting); retry later", false);
  }
  s->id = next_id_++;
  const uint64_t id = s->id;
  inbox_.push_back(std::move(s));
  ++stats_.requests_submitted;
  busy_ = true;
  cv_.notify_all();
  return id;
}

void Engine::cancel(uint64_t id) {
  std::lock_guard lk(mu_);
  cancels_.insert(id);
  cv_.notify_all();
}

void Engine::shutdown(bool drain) {
  std::unique_lock lk(mu_);
  stopping_ = true;
  if (!drain) cancels_.insert(0);  // 0 = every request
  cv_.notify_all();
  idle_cv_.wait(lk, [&] { return !busy_ && inbox_.empty(); });
}

EngineStats Engine::stats() const {
  std::lock_guard lk(mu_);
  return stats_;
}

void Engine::emit(Sequence& s, std::string text) {
  if (text.empty() && s.new_tokens.empty()) return;
  EngineEvent e;
  e.text = std::move(text);
  e.tokens.swap(s.new_tokens);
  s.req.on_event(e);
}

void Engine::finish(Sequence& s, const std::string& reason, const std::string& error) {
  if (s.finished) return;
  s.finished = true;
  EngineEvent e;
  e.text = (reason == "stop" || reason == "length") ? s.stream.finish() : std::string();
  e.tokens.swap(s.new_tokens);
  e.done = true;
  e.finish_reason = reason;
  e.error = error;
  e.prompt_tokens = s.n_prompt;
  e.completion_tokens = s.generated;
  e.cached_prompt_tokens = std::max<int64_t>(s.cached_prompt, 0);
  cache_.blocks().release_blocks(s.blocks);
  s.blocks.clear();
  {
    std::lock_guard lk(mu_);
    ++stats_.requests_finished;
    if (reason == "cancelled") ++stats_.requests_cancelled;
    stats_.generated_tokens += s.generated;
  }
  s.req.on_event(e);  // outside the lock: a callback may read stats()
}

void Engine::preempt(Sequence& s) {
  cache_.blocks().release_blocks(s.blocks);
  s.blocks.clear();
  s.computed = 0;
  s.registered = 0;
  auto it = std::find_if(running_.begin(), running_.end(), [&](auto& p) { return p.get() == &s; });
  waiting_.push_front(std::move(*it));
  running_.erase(it);
  std::lock_guard lk(mu_);
  ++stats_.preemptions;
}

bool Engine::ensure_blocks(Sequence& s, int64_t positions) {
  BlockPool& pool = cache_.blocks();
  while (int64_t(s.blocks.size()) * opts_.block_size < positions) {
    const int32_t b = pool.allocate();
    if (b < 0) return false;
    s.blocks.push_back(b);
  }
  return true;
}

void Engine::admit() {
  BlockPool& pool = cache_.blocks();
  while (!waiting_.empty() && int64_t(running_.size()) < opts_.max_batch) {
    Sequence& s = *waiting_.front();
    const int64_t len = int64_t(s.tokens.size());
    if (opts_.prefix_cache) {
      BlockPool::Match m = pool.match_prefix(s.tokens, len - 1);
      s.blocks = std::move(m.blocks);
      s.computed = m.n_tokens;
      s.registered = int64_t(s.blocks.size());
    }
    const int64_t need = ceil_div(len, opts_.block_size) - int64_t(s.blocks.size());
    if (need > pool.available_blocks()) {
      pool.release_blocks(s.blocks);
      s.blocks.clear();
      s.computed = s.registered = 0;
      if (!running_.empty()) break;  // wait for running sequences to free blocks
      // Nothing else holds blocks, so it can never fit.
      finish(s, "error", "the prompt needs more KV cache blocks than the cache has");
      waiting_.pop_front();
      continue;
    }
    if (s.cached_prompt < 0) {
      s.cached_prompt = s.computed;
      std::lock_guard lk(mu_);
      stats_.prompt_tokens += s.n_prompt;
    }
    running_.push_back(std::move(waiting_.front()));
    waiting_.pop_front();
  }
}

bool Engine::step() {
  struct Planned {
    Sequence* s;
    int64_t n;
  };
  // Decoding sequences first (one token each), then prefill chunks within the token budget.
  std::vector<Planned> plan;
  int64_t budget = opts_.max_batch_tokens;
  for (auto& p : running_)
    if (p->pending() == 1 && budget > 0) {
      plan.push_back({p.get(), 1});
      --budget;
    }
  for (auto& p : running_)
    if (p->pending() > 1 && budget > 0) {
      const int64_t n = std::min(p->pending(), budget);
      plan.push_back({p.get(), n});
      budget -= n;
    }
  // Blocks for the planned positions; when they run out, preempt the latest admitted sequence.
  for (size_t i = 0; i < plan.size(); ++i) {
    Sequence* s = plan[i].s;
    if (!s) continue;
    while (!ensure_blocks(*s, s->computed + plan[i].n)) {
      Sequence* victim = nullptr;
      for (auto it = running_.rbegin(); it != running_.rend() && !victim; ++it)
        if (!(*it)->finished) victim = it->get();
      if (victim == s && std::count_if(running_.begin(), running_.end(), [](auto& p) { return !p->finished; }) == 1) {
        finish(*s, "length");  // one sequence alone outgrew the whole cache
        break;
      }
      for (Planned& q : plan)
        if (q.s == victim) q.s = nullptr;
      preempt(*victim);
      if (victim == s) break;
    }
  }
  std::vector<SeqInput> in;
  std::vector<Planned> ran;
  for (const Planned& p : plan) {
    if (!p.s || p.s->finished) continue;
    Sequence& s = *p.s;
    const bool sample = s.computed + p.n == int64_t(s.tokens.size());
    in.push_back({s.tokens.data() + s.computed, p.n, s.computed, cache_.view(s.blocks), sample ? p.n - 1 : p.n});
    ran.push_back(p);
  }
  if (!in.empty()) {
    model_.forward_batch(in, AttnImpl::kAbsorb, ws_, logits_.data());
    const int64_t V = model_.config().vocab_size;
    int64_t row = 0, n_tokens = 0;
    for (size_t i = 0; i < ran.size(); ++i) {
      Sequence& s = *ran[i].s;
      s.computed += ran[i].n;
      n_tokens += ran[i].n;
      if (opts_.prefix_cache)
        for (; s.registered < s.computed / opts_.block_size; ++s.registered)
          cache_.blocks().register_full(s.blocks[size_t(s.registered)],
                                        std::span(s.tokens).first(size_t((s.registered + 1) * opts_.block_size)));
      if (in[i].logits_from == in[i].n_tokens) continue;
      const int32_t tok = s.sampler.sample(std::span(logits_.data() + row * V, size_t(V)));
      ++row;
      if (s.req.stop_at_eos && tok == eos_) {
        finish(s, "stop");
        continue;
      }
      s.tokens.push_back(tok);
      s.new_tokens.push_back(tok);
      ++s.generated;
      std::string text = s.stream.feed(tok);
      if (s.stream.stopped()) {
        emit(s, std::move(text));
        finish(s, "stop");
      } else if (s.generated >= s.req.max_new_tokens || int64_t(s.tokens.size()) > opts_.context_length) {
        emit(s, std::move(text));
        finish(s, "length");
      } else {
        emit(s, std::move(text));
      }
    }
    std::lock_guard lk(mu_);
    ++stats_.steps;
    stats_.step_tokens += n_tokens;
    stats_.step_sequences += int64_t(ran.size());
  }
  std::erase_if(running_, [](auto& p) { return p->finished; });
  return !in.empty();
}

void Engine::loop() {
  for (;;) {
    std::unordered_set<uint64_t> cancels;
    {
      std::unique_lock lk(mu_);
      cv_.wait(lk, [&] { return quit_ || !inbox_.empty() || !cancels_.empty() || !running_.empty() || !waiting_.empty(); });
      if (quit_ && inbox_.empty() && running_.empty() && waiting_.empty()) return;
      while (!inbox_.empty()) {
        waiting_.push_back(std::move(inbox_.front()));
        inbox_.pop_front();
      }
      cancels.swap(cancels_);
      if (cancels.count(0)) cancels_.insert(0);  // "cancel everything" holds until shutdown ends
    }
    const bool all = cancels.count(0) > 0;
    for (auto& p : running_)
      if (all || cancels.count(p->id)) finish(*p, "cancelled");
    for (auto& p : waiting_)
      if (all || cancels.count(p->id)) finish(*p, "cancelled");
    std::erase_if(running_, [](auto& p) { return p->finished; });
    std::erase_if(waiting_, [](auto& p) { return p->finished; });

    admit();
    if (!running_.empty()) {
      try {
        step();
      } catch (const std::exception& e) {
        // A failed step (bad logits, an internal check) ends the batch's sequences, not the server.
        for (auto& p : running_) finish(*p, "error", e.what());
        running_.clear();
      }
    }
    std::lock_guard lk(mu_);
    const BlockPool& pool = cache_.blocks();
    stats_.running = int64_t(running_.size());
    stats_.waiting = int64_t(waiting_.size());
    stats_.kv_blocks_used = pool.used_blocks();
    stats_.kv_blocks_cached = pool.cached_blocks();
    stats_.kv_evictions = pool.evictions();
    stats_.prefix_query_tokens = pool.prefix_query_tokens();
    stats_.prefix_hit_tokens = pool.prefix_hit_tokens();
    busy_ = !running_.empty() || !waiting_.empty() || !inbox_.empty();
    if (!busy_) {
      cancels_.erase(0);
      idle_cv_.notify_all();
    }
  }
}

}  // namespace dseek
