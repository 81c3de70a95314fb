// Continuous batching (Orca / vLLM style) over the paged latent KV cache.
//
// One engine thread owns the model's workspace, the KV cache and every sequence. Each step it
// admits waiting requests into the running batch (reusing cached prefix blocks), then runs one
// batched forward: one token for every decoding sequence plus prefill chunks of newly admitted
// ones, up to max_batch_tokens. On a memory-bound CPU one read of the weights then serves every
// sequence. When blocks run out, the most recently admitted sequence is preempted (its blocks
// freed, to be recomputed from the prefix cache when it is readmitted).
//
// Prompt logprobs (EngineRequest::prompt_logprobs, the legacy completions' echo + logprobs): the
// prefill chunks of such a request ask the model for every row's logits, not just the last, and
// each row is reduced to its TokenLogprobs in the same step, so at most one step's rows (capped at
// kMaxPromptLogprobRows) are ever held. The prefix cache cannot serve such a prompt (the cached
// positions' logits were never computed), so its prompt is always computed in full; its blocks
// still join the prefix index for other requests.
//
// Groups (submit_group: one API request's n choices and prompts): the sequences share one id, are
// queued all or none, and end together (cancel, or one failing). Sequences of a group with the same
// prompt compute it once: the first ("leader") prefills it, the others wait until it has and then
// take its full blocks from the prefix cache, prefilling only the rest of the last block (and, with
// prompt_logprobs, they get copies of the leader's entries instead of computing their own).
//
// Other threads only submit, cancel and read statistics; results come back through the request's
// on_event callback, called on the engine thread (keep it short: push to a queue).
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_set>
#include <vector>

#include "dseek/core/error.h"
#include "dseek/core/thread_pool.h"
#include "dseek/model/model.h"
#include "dseek/runtime/paged_kv_cache.h"
#include "dseek/runtime/sampler.h"
#include "dseek/runtime/text_stream.h"
#include "dseek/tokenizer/tokenizer.h"

namespace dseek {

struct EngineOptions {
  int64_t max_batch = 8;            // sequences decoding together
  int64_t max_batch_tokens = 256;   // tokens per forward step (decodes + prefill chunks)
  int64_t context_length = 4096;    // positions per sequence
  int64_t block_size = 16;          // positions per KV block
  int64_t kv_cache_bytes = int64_t(1) << 30;
  KVDtype kv_dtype = KVDtype::kF32;   // latent rows: bf16 holds twice the positions in the same budget
  AttnPrecision attn_precision = AttnPrecision::kAuto;  // prefill attention's products (workspace.h)
  int64_t max_queue = 64;           // waiting requests beyond which submit() refuses
  bool prefix_cache = true;
  // MTP speculative decoding: the model's MTP module drafts the next token of every decoding
  // sequence; the main model verifies draft and bonus token in one two-token pass per sequence.
  // Greedy output is identical to plain decoding; sampled output keeps its distribution.
  bool speculative_mtp = false;
};

// What on_event receives: text as it completes, then one final event.
struct EngineEvent {
  std::string text;              // streamable text since the previous event (may be empty)
  std::vector<int32_t> tokens;   // tokens generated since the previous event
  // With EngineRequest::logprobs: one entry per entry of `tokens` (the raw model distribution each
  // was drawn from, see token_logprobs in sampler.h); else empty.
  std::vector<TokenLogprobs> logprobs;
  // With EngineRequest::prompt_logprobs: in the first event (the one with the first generated token,
  // or the final one), an entry for each prompt token but the first (which has no context): entry
  // j is prompt token j + 1 under log_softmax of the logits at position j. P - 1 entries when the
  // prompt was computed; fewer only in a final "cancelled" or "error" event.
  std::vector<TokenLogprobs> prompt_logprobs;
  bool done = false;
  std::string finish_reason;     // done: "stop", "length", "cancelled" or "error"
  std::string error;             // finish_reason "error": why
  int64_t prompt_tokens = 0;     // done: usage
  int64_t completion_tokens = 0;
  int64_t cached_prompt_tokens = 0;
};

struct EngineRequest {
  std::vector<int32_t> prompt;
  SamplingParams sampling;
  int64_t max_new_tokens = 256;  // 0: compute the prompt only (for prompt_logprobs), finish "length"
  std::vector<std::string> stop;
  bool stop_at_eos = true;
  bool skip_special_tokens = false;
  // Report each generated token's log-probability and the top_logprobs (0..kMaxTopLogprobs) most
  // likely tokens at its position. With speculative decoding they come from the main model's
  // verification rows, so they do not depend on the drafts.
  bool logprobs = false;
  int top_logprobs = 0;
  // Also report the prompt tokens' logprobs (EngineEvent::prompt_logprobs), with top_logprobs
  // alternatives each: the raw distribution at every prompt position. Bypasses the prefix cache.
  bool prompt_logprobs = false;
  std::function<void(const EngineEvent&)> on_event;
};

// A snapshot for /metrics. The request counters count sequences: a group of k counts k.
struct EngineStats {
  int64_t requests_submitted = 0, requests_finished = 0, requests_cancelled = 0, requests_rejected = 0;
  int64_t prompt_tokens = 0, generated_tokens = 0, steps = 0, step_tokens = 0, step_sequences = 0;
  int64_t running = 0, waiting = 0, preemptions = 0;
  int64_t kv_blocks_total = 0, kv_blocks_used = 0, kv_blocks_cached = 0, kv_evictions = 0;
  int64_t prefix_query_tokens = 0, prefix_hit_tokens = 0;
  int64_t mtp_drafts = 0, mtp_accepted = 0;  // speculative decoding, draft position 1
};

// submit() when the queue is full or the engine is stopping; the server answers 429 / 503.
struct EngineBusy : Error {
  bool stopping;
  EngineBusy(const std::string& m, bool s) : Error(m), stopping(s) {}
};

class Engine {
 public:
  // Logits rows that prompt-logprob prefill chunks may ask for in one step (all such requests
  // together; a chunk is shortened to fit). Bounds the extra logits memory to this many rows of
  // vocab floats (66 MB for DeepSeek-V3's 129280), allocated when the first such request runs.
  static constexpr int64_t kMaxPromptLogprobRows = 128;

  Engine(const Model& model, const Tokenizer& tokenizer, ThreadPool* pool, const EngineOptions& opts);
  ~Engine();  // cancels what is left and joins the engine thread
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  // Queues a request; returns its id. Throws Error for a request that can never run (empty or
  // too long prompt, bad sampling parameters) and EngineBusy when the queue is full or stopping.
  uint64_t submit(EngineRequest r);
  // Queues several sequences as one request (n choices, an array of prompts): all of them or none
  // (a bad one throws Error; EngineBusy when the queue cannot take all of them, Error when it never
  // could: more than max_queue). They share the returned id. When one finishes with "error", the
  // others are cancelled at the next step (each gets one final "cancelled" event; the blocks of all
  // are freed). Same-prompt sequences share its computation (see the top of this file). Each keeps
  // its own on_event.
  //
  // Errors after submission: a failure of one sequence's own work (its sampler refusing a +inf or
  // NaN logit, a logprob check, its prompt never fitting the cache) ends that sequence with "error"
  // (and its group, as above) and nothing else; a failure of the batched forward pass ends every
  // running sequence with "error".
  uint64_t submit_group(std::vector<EngineRequest> rs);
  // Ends a request early (client gone): the blocks of every sequence with this id are freed at the
  // next step; each on_event gets a final "cancelled" event. Unknown or finished ids are ignored.
  void cancel(uint64_t id);
  // Stops accepting; with drain, lets queued and running requests finish, else cancels them.
  // Returns when nothing is left. Idempotent.
  void shutdown(bool drain);

  EngineStats stats() const;
  const EngineOptions& options() const { return opts_; }
  int64_t kv_blocks() const { return n_blocks_; }

 private:
  struct Sequence;
  struct PromptShare;
  void loop();
  // A group's follower whose leader has not computed the shared prompt yet stays in the queue.
  bool defers(const Sequence& s) const;
  void admit();
  // Adds s's full blocks whose rows (main and MTP) are all written to the prefix index.
  void register_full_blocks(Sequence& s);
  bool step();
  bool ensure_blocks(Sequence& s, int64_t positions);
  // When s wants logprobs, copies a logits row (V) as the model wrote it into raw_logits_, before
  // the sampler applies its penalties in place.
  void keep_raw(const Sequence& s, const float* logits);
  // keep_raw, then the sampler's draw from the row (changed in place).
  int32_t sample(Sequence& s, float* logits);
  // Appends a generated token and applies the stop rules; false when the sequence finished. When s
  // wants logprobs, raw_logits_ holds the row tok was drawn from (keep_raw).
  bool accept_token(Sequence& s, int32_t tok);
  // Prompt logprobs: rows (n_rows, vocab) are the logits of positions first_pos .. first_pos +
  // n_rows - 1; records the entries of the prompt tokens they predict that s still lacks.
  void record_prompt_logprobs(Sequence& s, const float* rows, int64_t first_pos, int64_t n_rows);
  // Speculative decoding: runs the MTP module over the new positions of the sequences in ran and
  // draws the next draft of each decoding one. hidden: the main pass's final-norm rows.
  void mtp_step(const std::vector<Sequence*>& ran, const std::vector<int64_t>& hidden_row);
  void preempt(Sequence& s);
  void finish(Sequence& s, const std::string& reason, const std::string& error = {});
  void emit(Sequence& s, std::string text);  // a non-final event, if there is anything to say

  const Model& model_;
  const Tokenizer& tokenizer_;
  EngineOptions opts_;
  int64_t n_blocks_ = 0;
  int32_t eos_ = -1;
  // Engine-thread state.
  PagedKVCache cache_;
  Workspace ws_;
  // (2 * max_batch, vocab): one row per sampled position; grown by up to kMaxPromptLogprobRows
  // rows when prompt-logprob chunks run.
  std::vector<float> logits_;
  std::vector<float> raw_logits_;  // (vocab) a row before the sampler's penalties, for logprobs
  // Speculative decoding only.
  std::vector<float> hidden_;      // (max tokens per step, hidden) final-norm output of the main pass
  std::vector<float> mtp_hidden_;  // (max tokens per step, hidden) gathered MTP inputs
  std::vector<float> mtp_logits_;  // (max_batch, vocab)
  std::vector<float> probs_;       // (vocab)
  std::vector<std::unique_ptr<Sequence>> running_;
  std::deque<std::unique_ptr<Sequence>> waiting_;  // admission order; preempted ones go first
  // Shared with other threads.
  mutable std::mutex mu_;
  std::condition_variable cv_, idle_cv_;
  std::deque<std::unique_ptr<Sequence>> inbox_;
  std::unordered_set<uint64_t> cancels_;
  uint64_t next_id_ = 1;
  bool stopping_ = false, quit_ = false, busy_ = false;
  EngineStats stats_;
  std::thread thread_;
};

}  // namespace dseek
