#include "dseek/runtime/engine.h"

#include <algorithm>
#include <cstring>
#include <exception>
#include <mutex>
#include <span>

#include "dseek/runtime/speculative.h"

namespace dseek {

// The prompt a group's leader computes for its followers (engine thread only).
struct Engine::PromptShare {
  bool ready = false;  // the leader computed the prompt (its full blocks are in the prefix index) or finished
  bool prompt_logprobs_done = false;  // prompt_logprobs holds every entry of the prompt
  std::vector<TokenLogprobs> prompt_logprobs;  // the leader's, when it wants them
};

struct Engine::Sequence {
  uint64_t id = 0;
  int64_t group_size = 1;  // sequences sharing the id (submit_group)
  EngineRequest req;
  std::vector<int32_t> tokens;  // prompt, then generated tokens
  int64_t n_prompt = 0;
  int64_t computed = 0;         // tokens[0, computed) have cache rows
  std::vector<int32_t> blocks;  // block table
  int64_t registered = 0;       // blocks[0, registered) are in the prefix index (or came from it)
  int64_t cached_prompt = -1;   // prompt tokens served by the prefix cache at first admission
  int64_t generated = 0;
  std::vector<int32_t> new_tokens;  // generated since the last event
  std::vector<TokenLogprobs> new_logprobs;  // theirs, when the request wants logprobs
  // Prompt logprobs: entries of prompt tokens [1, prompt_lp_next) so far, until the first event.
  int64_t prompt_lp_next = 1;
  std::vector<TokenLogprobs> prompt_lps;
  bool prompt_lps_sent = false;
  Sampler sampler;
  TextStream stream;
  bool finished = false;
  // Speculative decoding.
  int64_t mtp_computed = 0;   // positions [0, mtp_computed) have MTP cache rows
  int32_t draft = -1;         // drafted next token, -1 = none
  std::vector<float> draft_q; // the distribution it was drawn from (sampling only)
  int32_t feed[2] = {0, 0};   // [last token, draft]: what a verification pass feeds
  Xoshiro256 spec_rng;        // acceptance draws, separate from the sampler's stream
  // Groups: a leader with followers sets `lead`; a follower waits on `follow` (same object).
  std::shared_ptr<PromptShare> lead, follow;
  bool copy_prompt_logprobs = false;  // follower: take the leader's prompt entries (same top_logprobs)

  Sequence(EngineRequest r, int64_t vocab, const Tokenizer& tok)
      : req(std::move(r)),
        sampler(req.sampling, vocab),
        stream(tok, req.stop, req.skip_special_tokens),
        spec_rng(req.sampling.seed ^ 0x5bd1e9955bd1e995ull) {}
  int64_t pending() const { return int64_t(tokens.size()) - computed; }
  // Prompt logprobs still to compute: their rows are needed, so the prefix cache must not serve them.
  bool wants_prompt_rows() const { return req.prompt_logprobs && prompt_lp_next < n_prompt; }
  // Moves the prompt logprobs into the first event: once all are known, or into a final event.
  void give_prompt_logprobs(EngineEvent& e) {
    if (!req.prompt_logprobs || prompt_lps_sent || (wants_prompt_rows() && !e.done)) return;
    e.prompt_logprobs.swap(prompt_lps);
    prompt_lps_sent = true;
  }
};

namespace {
int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

int64_t blocks_for_budget(const Model& m, const EngineOptions& o) {
  DSEEK_CHECK(o.block_size >= 1 && o.max_batch >= 1 && o.context_length >= 2, "engine: bad options");
  const int64_t per_block = PagedKVCache::bytes_per_block(m.config(), m.n_cache_layers(), o.block_size, o.kv_dtype);
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
      cache_(model.config(), model.n_cache_layers(), n_blocks_, opts.block_size, opts.kv_dtype),
      ws_(model.config(), std::max(opts.max_batch_tokens, 2 * opts.max_batch), opts.context_length, pool,
          /*naive_attention=*/false),
      logits_(size_t(2 * opts.max_batch * model.config().vocab_size)),
      raw_logits_(size_t(model.config().vocab_size)) {
  opts_.max_batch_tokens = std::max(opts.max_batch_tokens, opts.max_batch);
  ws_.attn_precision = opts.attn_precision;
  if (opts_.speculative_mtp) {
    if (model.n_cache_layers() <= model.config().num_hidden_layers)
      throw Error("speculative decoding with MTP: the model has no MTP module (num_nextn_predict_layers is 0) or was "
                  "loaded without it");
    const size_t rows = size_t(ws_.max_tokens), D = size_t(model.config().hidden_size), V = size_t(model.config().vocab_size);
    hidden_.resize(rows * D);
    mtp_hidden_.resize(rows * D);
    mtp_logits_.resize(size_t(opts.max_batch) * V);
    probs_.resize(V);
  }
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
  std::vector<EngineRequest> one;
  one.push_back(std::move(r));
  return submit_group(std::move(one));
}

uint64_t Engine::submit_group(std::vector<EngineRequest> rs) {
  const int64_t V = model_.config().vocab_size;
  const int64_t k = int64_t(rs.size());
  if (k == 0) throw Error("the request has no sequences");
  if (k > opts_.max_queue)
    throw Error("the request has " + std::to_string(k) + " sequences; the queue holds at most " +
                std::to_string(opts_.max_queue) + " (--max-queue)");
  std::vector<std::unique_ptr<Sequence>> seqs;
  for (EngineRequest& r : rs) {
    if (r.prompt.empty()) throw Error("the prompt is empty");
    if (int64_t(r.prompt.size()) >= opts_.context_length)
      throw Error("the prompt has " + std::to_string(r.prompt.size()) + " tokens; the context holds " +
                  std::to_string(opts_.context_length) + " (prompt plus at least one generated token)");
    for (int32_t t : r.prompt)
      if (t < 0 || t >= V) throw Error("prompt token id " + std::to_string(t) + " is outside the vocabulary");
    if (r.max_new_tokens < 0) throw Error("max_new_tokens must not be negative");
    if (r.top_logprobs < 0 || r.top_logprobs > kMaxTopLogprobs)
      throw Error("top_logprobs must be in [0, " + std::to_string(kMaxTopLogprobs) + "], got " +
                  std::to_string(r.top_logprobs));
    auto s = std::make_unique<Sequence>(std::move(r), V, tokenizer_);  // validates the sampling params
    s->tokens = s->req.prompt;
    s->n_prompt = int64_t(s->tokens.size());
    s->sampler.reset(s->tokens);
    s->group_size = k;
    // The first earlier sequence with the same prompt leads this one.
    for (auto& l : seqs) {
      if (l->follow || l->req.prompt != s->req.prompt) continue;
      if (!l->lead) l->lead = std::make_shared<PromptShare>();
      s->follow = l->lead;
      s->copy_prompt_logprobs = s->req.prompt_logprobs && l->req.prompt_logprobs &&
                                s->req.top_logprobs == l->req.top_logprobs;
      break;
    }
    seqs.push_back(std::move(s));
  }
  std::lock_guard lk(mu_);
  if (stopping_) {
    stats_.requests_rejected += k;
    throw EngineBusy("the server is shutting down", true);
  }
  if (int64_t(inbox_.size()) + stats_.waiting + k > opts_.max_queue) {
    stats_.requests_rejected += k;
    throw EngineBusy("the request queue is full (" + std::to_string(opts_.max_queue) + " waiting" +
                         (k > 1 ? ", the request has " + std::to_string(k) + " sequences" : std::string()) +
                         "); retry later",
                     false);
  }
  const uint64_t id = next_id_++;
  for (auto& s : seqs) {
    s->id = id;
    inbox_.push_back(std::move(s));
  }
  stats_.requests_submitted += k;
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
  e.logprobs.swap(s.new_logprobs);
  s.give_prompt_logprobs(e);
  s.req.on_event(e);
}

void Engine::finish(Sequence& s, const std::string& reason, const std::string& error) {
  if (s.finished) return;
  s.finished = true;
  EngineEvent e;
  e.text = (reason == "stop" || reason == "length") ? s.stream.finish() : std::string();
  e.tokens.swap(s.new_tokens);
  e.logprobs.swap(s.new_logprobs);
  e.done = true;
  s.give_prompt_logprobs(e);
  e.finish_reason = reason;
  e.error = error;
  e.prompt_tokens = s.n_prompt;
  e.completion_tokens = s.generated;
  e.cached_prompt_tokens = std::max<int64_t>(s.cached_prompt, 0);
  // A sequence that ends in the step that computed its last blocks (max_tokens 0 or 1, an early
  // EOS) still leaves them to the prefix cache, for a group's followers above all.
  if (reason == "stop" || reason == "length") register_full_blocks(s);
  if (s.lead) s.lead->ready = true;  // followers stop waiting (and compute what they must)
  cache_.blocks().release_blocks(s.blocks);
  s.blocks.clear();
  {
    std::lock_guard lk(mu_);
    ++stats_.requests_finished;
    if (reason == "cancelled") ++stats_.requests_cancelled;
    stats_.generated_tokens += s.generated;
    // One sequence of a group failed: the request has failed, end the others at the next step.
    if (reason == "error" && s.group_size > 1) cancels_.insert(s.id);
  }
  s.req.on_event(e);  // outside the lock: a callback may read stats()
}

void Engine::preempt(Sequence& s) {
  cache_.blocks().release_blocks(s.blocks);
  s.blocks.clear();
  s.computed = 0;
  s.registered = 0;
  s.mtp_computed = 0;
  s.draft = -1;
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

bool Engine::defers(const Sequence& s) const {
  if (!s.follow || s.follow->ready) return false;
  if (s.req.prompt_logprobs) return s.copy_prompt_logprobs;  // else it computes its own rows, uncached
  // Waiting pays only when the prompt fills at least one block that the cache can hand over.
  return opts_.prefix_cache && (s.n_prompt - 1) / opts_.block_size >= 1;
}

void Engine::admit() {
  BlockPool& pool = cache_.blocks();
  for (auto it = waiting_.begin(); it != waiting_.end() && int64_t(running_.size()) < opts_.max_batch;) {
    Sequence& s = **it;
    if (defers(s)) {
      ++it;  // admitted once its leader has computed the prompt; later requests may go first
      continue;
    }
    if (s.copy_prompt_logprobs && s.follow->prompt_logprobs_done && !s.prompt_lps_sent && s.prompt_lp_next == 1) {
      s.prompt_lps = s.follow->prompt_logprobs;
      s.prompt_lp_next = s.n_prompt;
    }
    const int64_t len = int64_t(s.tokens.size());
    if (opts_.prefix_cache && !s.wants_prompt_rows()) {
      BlockPool::Match m = pool.match_prefix(s.tokens, len - 1);
      s.blocks = std::move(m.blocks);
      s.computed = m.n_tokens;
      s.mtp_computed = m.n_tokens;  // cached blocks carry their MTP rows too
      s.registered = int64_t(s.blocks.size());
    }
    const int64_t need = ceil_div(len, opts_.block_size) - int64_t(s.blocks.size());
    if (need > pool.available_blocks()) {
      pool.release_blocks(s.blocks);
      s.blocks.clear();
      s.computed = s.registered = s.mtp_computed = 0;
      if (!running_.empty()) break;  // wait for running sequences to free blocks
      // Nothing else holds blocks, so it can never fit.
      finish(s, "error", "the prompt needs more KV cache blocks than the cache has");
      it = waiting_.erase(it);
      continue;
    }
    if (s.cached_prompt < 0) {
      s.cached_prompt = s.computed;
      std::lock_guard lk(mu_);
      stats_.prompt_tokens += s.n_prompt;
    }
    running_.push_back(std::move(*it));
    it = waiting_.erase(it);
  }
}

void Engine::register_full_blocks(Sequence& s) {
  if (!opts_.prefix_cache) return;
  const int64_t done = opts_.speculative_mtp ? std::min(s.computed, s.mtp_computed) : s.computed;
  for (; s.registered < done / opts_.block_size; ++s.registered)
    cache_.blocks().register_full(s.blocks[size_t(s.registered)],
                                  std::span(s.tokens).first(size_t((s.registered + 1) * opts_.block_size)));
}

void Engine::keep_raw(const Sequence& s, const float* logits) {
  if (s.req.logprobs) std::memcpy(raw_logits_.data(), logits, raw_logits_.size() * sizeof(float));
}

int32_t Engine::sample(Sequence& s, float* logits) {
  keep_raw(s, logits);
  return s.sampler.sample(std::span(logits, raw_logits_.size()));
}

bool Engine::accept_token(Sequence& s, int32_t tok) {
  if (s.req.stop_at_eos && tok == eos_) {
    finish(s, "stop");  // EOS is not part of the output, nor of its logprobs
    return false;
  }
  s.tokens.push_back(tok);
  s.new_tokens.push_back(tok);
  if (s.req.logprobs) s.new_logprobs.push_back(token_logprobs(raw_logits_, tok, s.req.top_logprobs));
  ++s.generated;
  std::string text = s.stream.feed(tok);
  if (s.stream.stopped()) {
    emit(s, std::move(text));
    finish(s, "stop");
    return false;
  }
  emit(s, std::move(text));
  if (s.generated >= s.req.max_new_tokens || int64_t(s.tokens.size()) > opts_.context_length) {
    finish(s, "length");
    return false;
  }
  return true;
}

bool Engine::step() {
  struct Planned {
    Sequence* s;
    int64_t n;
    bool draw = false;  // the chunk's last row draws the next token
  };
  const bool spec = opts_.speculative_mtp;
  // Decoding sequences first (one token each, two when verifying a draft), then prefill chunks
  // within the token budget.
  std::vector<Planned> plan;
  int64_t budget = opts_.max_batch_tokens;
  for (auto& p : running_)
    if (p->pending() == 1 && budget > 0) {
      const bool verify = spec && p->draft >= 0 && p->computed + 2 <= opts_.context_length && budget >= 2;
      plan.push_back({p.get(), verify ? 2 : 1});
      budget -= verify ? 2 : 1;
    }
  int64_t prompt_rows = std::min(opts_.max_batch_tokens, kMaxPromptLogprobRows);
  for (auto& p : running_)
    if (p->pending() > 1 && budget > 0) {
      int64_t n = std::min(p->pending(), budget);
      if (p->wants_prompt_rows()) {
        // Positions below prompt_lp_next - 1 (recomputed after a preemption) need no row.
        const int64_t skip = std::max<int64_t>(p->prompt_lp_next - 1 - p->computed, 0);
        n = std::min(n, skip + prompt_rows);
        if (n == 0) continue;
        prompt_rows -= n - std::min(skip, n);
      }
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
  const int64_t V = model_.config().vocab_size;
  std::vector<SeqInput> in;
  std::vector<Planned> ran;
  int64_t n_rows = 0;  // logits rows the step asks for
  for (Planned p : plan) {
    if (!p.s || p.s->finished) continue;
    Sequence& s = *p.s;
    if (p.n == 2 && s.pending() == 1) {  // verify [last token, draft]
      s.feed[0] = s.tokens.back();
      s.feed[1] = s.draft;
      in.push_back({s.feed, 2, s.computed, cache_.view(s.blocks), 0});
    } else {
      // The chunk that completes the sequence's tokens draws the next one, unless max_new_tokens is 0.
      p.draw = s.computed + p.n == int64_t(s.tokens.size()) && s.generated < s.req.max_new_tokens;
      int64_t from = p.draw ? p.n - 1 : p.n;
      if (s.wants_prompt_rows()) {
        // Rows of the positions whose next prompt token still lacks its entry, through the end.
        const int64_t first = std::max(s.computed, s.prompt_lp_next - 1);
        if (first < std::min(s.computed + p.n, s.n_prompt - 1)) from = first - s.computed;
      }
      in.push_back({s.tokens.data() + s.computed, p.n, s.computed, cache_.view(s.blocks), from});
    }
    n_rows += in.back().n_tokens - in.back().logits_from;
    ran.push_back(p);
  }
  if (in.empty()) return false;
  if (logits_.size() < size_t(n_rows * V)) logits_.resize(size_t(n_rows * V));  // prompt-logprob rows
  model_.forward_batch(in, AttnImpl::kAbsorb, ws_, logits_.data(), spec ? hidden_.data() : nullptr);
  int64_t row = 0, n_tokens = 0, hrow = 0;
  std::vector<Sequence*> seqs;
  std::vector<int64_t> hidden_row;  // per sequence: row in hidden_ of its first position this step
  int64_t drafts = 0, accepted = 0;
  for (size_t i = 0; i < ran.size(); ++i) {
    Sequence& s = *ran[i].s;
    const int64_t n = ran[i].n;
    seqs.push_back(&s);
    hidden_row.push_back(hrow - s.computed);  // so hidden_row + position = row
    hrow += n;
    n_tokens += n;
    float* rows = logits_.data() + row * V;  // this sequence's logits rows
    row += in[i].n_tokens - in[i].logits_from;
    // What fails from here on (the sampler refusing a +inf or NaN logit, a logprob check) is this
    // sequence's own failure: it ends in "error" (and its group with it, see finish()); the other
    // sequences of the batch go on.
    try {
      if (in[i].tokens == s.feed) {
        // Verification: row 0 decides the draft; when it is accepted, row 1 gives a bonus token.
        float* l0 = rows;
        float* l1 = l0 + V;
        const int32_t draft = s.draft;
        s.draft = -1;
        int32_t x0;
        bool ok;
        if (s.req.sampling.temperature == 0.0f) {
          x0 = sample(s, l0);
          ok = x0 == draft;
        } else {
          keep_raw(s, l0);  // the verified target row: x0's logprobs come from it, accepted or not
          s.sampler.apply_penalties(std::span(l0, size_t(V)));
          s.sampler.distribution(std::span(l0, size_t(V)), probs_);
          const DraftVerdict v = verify_draft(probs_, s.draft_q, draft, s.spec_rng.uniform(), s.spec_rng.uniform());
          x0 = v.token;
          ok = v.accepted;
          s.sampler.accept(x0);
        }
        ++drafts;
        accepted += ok;
        s.computed += ok ? 2 : 1;  // a rejected draft's row is overwritten when x0 is fed
        if (!accept_token(s, x0) || !ok) continue;
        accept_token(s, sample(s, l1));
        continue;
      }
      const int64_t from = in[i].logits_from, first_pos = s.computed + from;
      s.computed += n;
      if (s.req.prompt_logprobs && from < n) record_prompt_logprobs(s, rows, first_pos, n - from);
      if (ran[i].draw) {
        accept_token(s, sample(s, rows + (n - from - 1) * V));
      } else if (s.computed == int64_t(s.tokens.size())) {
        finish(s, "length");  // max_new_tokens 0: the prompt alone
      }
    } catch (const std::exception& e) {
      finish(s, "error", e.what());
    }
  }
  if (spec) mtp_step(seqs, hidden_row);
  // Full blocks join the prefix index once every row in them (main and MTP) is written.
  for (Sequence* s : seqs) {
    if (s->finished) continue;
    register_full_blocks(*s);
    if (s->lead && s->computed >= s->n_prompt) s->lead->ready = true;  // its followers may come in
  }
  {
    std::lock_guard lk(mu_);
    ++stats_.steps;
    stats_.step_tokens += n_tokens;
    stats_.step_sequences += int64_t(ran.size());
    stats_.mtp_drafts += drafts;
    stats_.mtp_accepted += accepted;
  }
  std::erase_if(running_, [](auto& p) { return p->finished; });
  return true;
}

void Engine::record_prompt_logprobs(Sequence& s, const float* rows, int64_t first_pos, int64_t n_rows) {
  const int64_t V = model_.config().vocab_size;
  // Row p (a position) predicts prompt token p + 1.
  const int64_t begin = std::max(first_pos, s.prompt_lp_next - 1);
  const int64_t end = std::min(first_pos + n_rows, s.n_prompt - 1);
  if (begin >= end) return;
  DSEEK_CHECK(begin == s.prompt_lp_next - 1, "engine: prompt logprobs out of order");
  const size_t at = s.prompt_lps.size();
  s.prompt_lps.resize(at + size_t(end - begin));
  std::exception_ptr failed;
  std::mutex mu;
  auto reduce = [&](int64_t b, int64_t e) {
    try {
      for (int64_t p = begin + b; p < begin + e; ++p)
        s.prompt_lps[at + size_t(p - begin)] = token_logprobs(std::span(rows + (p - first_pos) * V, size_t(V)),
                                                              s.tokens[size_t(p + 1)], s.req.top_logprobs);
    } catch (...) {
      std::lock_guard lk(mu);
      if (!failed) failed = std::current_exception();
    }
  };
  // Each row is a pass over the vocabulary: spread the rows over the pool.
  if (ws_.pool && end - begin > 1)
    ws_.pool->parallel_for(end - begin, reduce);
  else
    reduce(0, end - begin);
  if (failed) std::rethrow_exception(failed);
  s.prompt_lp_next = end + 1;
  if (s.lead && s.prompt_lp_next == s.n_prompt) {  // all of them: the followers' copies
    s.lead->prompt_logprobs = s.prompt_lps;
    s.lead->prompt_logprobs_done = true;
  }
}

void Engine::mtp_step(const std::vector<Sequence*>& ran, const std::vector<int64_t>& hidden_row) {
  // MTP row i reads the main model's final hidden state at position i and token i+1 (known for
  // every position below computed), and its logits draft token i+2.
  const int64_t D = model_.config().hidden_size, V = model_.config().vocab_size;
  std::vector<SeqInput> in;
  std::vector<Sequence*> who;
  int64_t mrow = 0;
  for (size_t i = 0; i < ran.size(); ++i) {
    Sequence& s = *ran[i];
    if (s.finished) continue;
    const int64_t n = s.computed - s.mtp_computed;
    if (n <= 0) continue;
    const bool want_draft = s.pending() == 1;
    std::memcpy(mtp_hidden_.data() + mrow * D, hidden_.data() + (hidden_row[i] + s.mtp_computed) * D,
                size_t(n * D) * sizeof(float));
    mrow += n;
    in.push_back({s.tokens.data() + s.mtp_computed + 1, n, s.mtp_computed, cache_.view(s.blocks), want_draft ? n - 1 : n});
    who.push_back(&s);
  }
  if (in.empty()) return;
  model_.mtp_forward_batch(mtp_hidden_.data(), in, AttnImpl::kAbsorb, ws_, mtp_logits_.data());
  int64_t row = 0;
  for (size_t i = 0; i < who.size(); ++i) {
    Sequence& s = *who[i];
    s.mtp_computed = s.computed;
    if (in[i].logits_from == in[i].n_tokens) continue;
    std::span<float> l(mtp_logits_.data() + row * V, size_t(V));
    ++row;
    try {  // as in step(): a failed draft is this sequence's own failure
      s.sampler.apply_penalties(l);  // draft what the target will most likely pick
      if (s.req.sampling.temperature == 0.0f) {
        s.draft = int32_t(std::max_element(l.begin(), l.end()) - l.begin());  // first maximum: lowest id
      } else {
        s.draft_q.resize(size_t(V));
        s.sampler.distribution(l, s.draft_q);
        s.draft = draw_from(s.draft_q, s.spec_rng.uniform());
      }
    } catch (const std::exception& e) {
      finish(s, "error", e.what());
    }
  }
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
      // submit() counts these as waiting until the step's end refreshes the number (admitted ones
      // included meanwhile: the limit errs on the full side, never lets more in).
      stats_.waiting = int64_t(waiting_.size());
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
        // A failed batched forward (an internal check) ends the batch's sequences, not the server. A
        // failure of one sequence's sampling ends that sequence only (step()).
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
