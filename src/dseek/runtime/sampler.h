// Token sampler for `dseek generate`, `dseek chat` and the server (issue 6).
//
// One Sampler per sequence. It owns the penalty history (prompt + generated tokens), a seeded
// PRNG and scratch buffers sized to the vocabulary in the constructor, so sample() does not
// allocate. Transform order and the reproducibility rule are in docs/sampling.md:
//   penalties -> (greedy if temperature == 0) -> temperature -> top-k -> softmax -> top-p
//   -> min-p -> renormalise -> draw.
// V = vocab_size throughout.
#pragma once

#include <array>
#include <cstdint>
#include <span>
#include <vector>

namespace dseek {

struct SamplingParams {
  float temperature = 0.0f;  // 0 = greedy (argmax; ties -> lowest id)
  int32_t top_k = 0;         // 0 = off
  float top_p = 1.0f;        // 1 = off
  float min_p = 0.0f;        // 0 = off (keep tokens with p >= min_p * p_max)
  float repetition_penalty =
      1.0f;                        // HF/CTRL: logit > 0 ? logit / pen : logit * pen, per seen token
  float frequency_penalty = 0.0f;  // OpenAI: logit -= count * frequency_penalty
  float presence_penalty = 0.0f;   // OpenAI: logit -= (count > 0) * presence_penalty
  int32_t penalty_last_n = 0;      // 0 = whole history, else only the last n tokens count
  uint64_t seed = 0;
};

// xoshiro256** (Blackman and Vigna), seeded through splitmix64. Specified bit for bit, unlike
// std::mt19937_64 + std::uniform_real_distribution, whose doubles differ between standard
// libraries; exposed so tests can pin it to the published algorithm.
class Xoshiro256 {
 public:
  explicit Xoshiro256(uint64_t seed) { reseed(seed); }
  void reseed(uint64_t seed);
  uint64_t next();
  // Uniform in [0, 1): the top 53 bits of next() times 2^-53 (exact, no rounding up to 1).
  double uniform() { return double(next() >> 11) * 0x1.0p-53; }

  uint64_t s[4];  // state; public so a test can set the reference state {1, 2, 3, 4}
};

class Sampler {
 public:
  // Throws dseek::Error naming the field for: temperature < 0 or non-finite; top_k < 0;
  // top_p not in (0, 1]; min_p not in [0, 1); repetition_penalty <= 0 or non-finite;
  // frequency/presence penalty non-finite; penalty_last_n < 0; vocab_size <= 0.
  Sampler(const SamplingParams& p, int64_t vocab_size);

  // Starts a sequence: the penalty history becomes `prompt` (its last penalty_last_n tokens when
  // that is set) and the PRNG is reseeded with params.seed, so the tokens drawn after reset()
  // depend only on (params, prompt, the logits passed in). Throws on a token outside [0, V).
  void reset(std::span<const int32_t> prompt);

  // logits (V). Applies the penalties to `logits` in place (and nothing else: temperature and
  // truncation work on scratch), so afterwards distribution(logits, probs) is exactly the
  // distribution the token was drawn from. Records the chosen token in the history.
  // Throws on a size mismatch, a NaN or +inf logit, or when every logit is -inf.
  int32_t sample(std::span<float> logits);

  // Adds an externally chosen token (e.g. an accepted speculative draft) to the history.
  void accept(int32_t token);

  // logits (V): applies the penalties of the current history in place (what sample() does first).
  void apply_penalties(std::span<float> logits) const;

  // logits_after_penalties (V), probs_out (V): the final distribution after temperature, top-k,
  // top-p, min-p and renormalisation; excluded tokens get exactly 0 and the rest sum to 1.
  // With temperature 0 it is one-hot at the argmax (lowest id among ties). Uses the sampler's
  // scratch, so a Sampler must not be shared between threads (it is per sequence anyway).
  void distribution(std::span<const float> logits_after_penalties,
                    std::span<float> probs_out) const;

  const SamplingParams& params() const { return params_; }
  int64_t vocab_size() const { return vocab_size_; }

 private:
  struct Candidate {
    float logit;
    int32_t id;
    float w;  // exp((logit - max_logit) / temperature), so the argmax has weight 1
  };
  // The kept tokens are scratch_[0, n) with unnormalised weights summing to z. Their order is
  // fixed by the params and logits alone (id order, or logit descending then id ascending after
  // top-k), never by how a std algorithm arranged them, so draws do not depend on the standard library.
  struct Kept {
    int64_t n;
    double z;
  };

  void check_token(int32_t token, const char* what) const;
  void push_history(int32_t token);
  // Validates logits (V) and returns the argmax (lowest id among ties).
  int32_t check_logits(std::span<const float> logits) const;
  Kept select(std::span<const float> logits, int32_t best) const;
  // Top-p on candidates c[0, n) in id order (not sorted): keeps, in id order at the front of c,
  // those ranked (logit descending, then id) up to the one where the cumulative weight first
  // reaches target; returns how many (all of them if rounding leaves the mass short).
  int64_t top_p_cut(Candidate* c, int64_t n, double target) const;
  // The ranking of top-k and top-p: logit descending, then id ascending (a strict total order).
  static bool ranks_before(const Candidate& a, const Candidate& b);

  SamplingParams params_;
  int64_t vocab_size_;
  Xoshiro256 rng_;

  std::vector<int32_t> counts_;   // (V) occurrences of each token in the penalty window
  std::vector<int32_t> seen_;     // (<= V) tokens whose count was ever > 0 since reset()
  std::vector<uint8_t> in_seen_;  // (V) 1 if the token is in seen_
  std::vector<int32_t> ring_;     // (penalty_last_n) the window, when penalty_last_n > 0
  int64_t ring_pos_ = 0;          // next slot to write
  int64_t ring_len_ = 0;          // tokens in the window

  mutable std::vector<Candidate> scratch_;  // (V) candidates of select()
  mutable std::vector<Candidate> edge_;     // (V) top-p: the candidates of the bucket the cut falls in
  mutable std::vector<float> weights_;      // (V) exp((logit - max) / temperature)
  mutable std::vector<double> bucket_mass_;  // top-p: mass per logit bucket
};

// Log-probabilities of generated tokens, as the OpenAI API reports them (`logprobs`,
// `top_logprobs`). They are taken from the raw model distribution, log_softmax(logits) before
// penalties, temperature and truncation (vLLM's default, "raw_logprobs"): it is defined for greedy
// decoding too, and it is the same whichever sampler settings chose the token.

// OpenAI's limit on top_logprobs (chat: 0..20; the legacy completions' 0..5 fits under it).
inline constexpr int kMaxTopLogprobs = 20;

struct TopLogprob {
  int32_t token = -1;
  float logprob = 0.0f;
};

struct TokenLogprobs {
  int32_t token = -1;    // the generated token
  float logprob = 0.0f;  // log_softmax(logits)[token]; -inf when its logit is -inf
  int32_t n_top = 0;     // top[0, n_top) are the most likely tokens, most likely first, ties lowest id first
  std::array<TopLogprob, kMaxTopLogprobs> top{};
};

// logits (V), unmodified model output. Returns log_softmax(logits)[token] and the top_n most
// likely tokens (top_n in [0, kMaxTopLogprobs]; -inf logits never count, so fewer when fewer than
// top_n are finite). The log-sum-exp is summed in double. Throws dseek::Error on a NaN or +inf
// logit, every logit -inf, a token outside [0, V) or top_n out of range. Does not allocate.
TokenLogprobs token_logprobs(std::span<const float> logits, int32_t token, int top_n);

}  // namespace dseek
