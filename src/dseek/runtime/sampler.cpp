#include "dseek/runtime/sampler.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <string>

#include "dseek/core/error.h"
#include "dseek/kernels/softmax.h"

namespace dseek {

namespace {

constexpr float kPosInf = std::numeric_limits<float>::infinity();
constexpr float kNegInf = -kPosInf;
// Top-p without a sorted list: candidates fall into buckets of their logit (monotone: a lower bucket
// never holds a smaller logit), the masses of the buckets find the one the cut falls in, and only
// that bucket is sorted.
constexpr int64_t kTopPBuckets = 4096;
// Top-k up to this k keeps a heap of the best k in one pass over the logits (clients' usual 20-100);
// larger k partition the whole candidate list (nth_element).
constexpr int64_t kHeapTopK = 1024;

uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t splitmix64(uint64_t& x) {
  uint64_t z = (x += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

[[noreturn]] void bad_param(const char* field, const std::string& rule, double got) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", got);  // %g: 1e-45 and nan stay readable
  throw Error(std::string("SamplingParams.") + field + ": must be " + rule + ", got " + buf);
}

}  // namespace

void Xoshiro256::reseed(uint64_t seed) {
  // splitmix64 expands the seed, as the xoshiro authors recommend. Its output is a bijection of
  // distinct counters, so at most one word is zero and the state is never all zeros.
  for (uint64_t& w : s) w = splitmix64(seed);
}

uint64_t Xoshiro256::next() {
  const uint64_t result = rotl(s[1] * 5, 7) * 9;
  const uint64_t t = s[1] << 17;
  s[2] ^= s[0];
  s[3] ^= s[1];
  s[1] ^= s[2];
  s[0] ^= s[3];
  s[2] ^= t;
  s[3] = rotl(s[3], 45);
  return result;
}

Sampler::Sampler(const SamplingParams& p, int64_t vocab_size)
    : params_(p), vocab_size_(vocab_size), rng_(p.seed) {
  if (!(std::isfinite(p.temperature) && p.temperature >= 0.0f))
    bad_param("temperature", ">= 0 and finite", p.temperature);
  if (p.top_k < 0) bad_param("top_k", ">= 0 (0 = off)", p.top_k);
  if (!(p.top_p > 0.0f && p.top_p <= 1.0f)) bad_param("top_p", "in (0, 1] (1 = off)", p.top_p);
  if (!(p.min_p >= 0.0f && p.min_p < 1.0f)) bad_param("min_p", "in [0, 1) (0 = off)", p.min_p);
  if (!(std::isfinite(p.repetition_penalty) && p.repetition_penalty > 0.0f))
    bad_param("repetition_penalty", "> 0 and finite (1 = off)", p.repetition_penalty);
  if (!std::isfinite(p.frequency_penalty))
    bad_param("frequency_penalty", "finite (0 = off)", p.frequency_penalty);
  if (!std::isfinite(p.presence_penalty))
    bad_param("presence_penalty", "finite (0 = off)", p.presence_penalty);
  if (p.penalty_last_n < 0)
    bad_param("penalty_last_n", ">= 0 (0 = whole history)", p.penalty_last_n);
  if (vocab_size <= 0 || vocab_size > std::numeric_limits<int32_t>::max())
    throw Error("Sampler: vocab_size must be in [1, 2^31), got " + std::to_string(vocab_size));

  counts_.assign(size_t(vocab_size), 0);
  seen_.reserve(size_t(vocab_size));
  in_seen_.assign(size_t(vocab_size), 0);
  ring_.assign(size_t(p.penalty_last_n), 0);
  scratch_.resize(size_t(vocab_size));
  edge_.resize(size_t(vocab_size));
  weights_.resize(size_t(vocab_size));
  bucket_mass_.resize(size_t(kTopPBuckets));
}

void Sampler::check_token(int32_t token, const char* what) const {
  if (token < 0 || token >= vocab_size_)
    throw Error(std::string("Sampler::") + what + ": token " + std::to_string(token) +
                " outside the vocabulary [0, " + std::to_string(vocab_size_) + ")");
}

void Sampler::push_history(int32_t token) {
  if (params_.penalty_last_n > 0) {
    if (ring_len_ == params_.penalty_last_n)
      --counts_[size_t(ring_[size_t(ring_pos_)])];
    else
      ++ring_len_;
    ring_[size_t(ring_pos_)] = token;
    ring_pos_ = (ring_pos_ + 1) % params_.penalty_last_n;
  }
  // A token that left the window stays in seen_ with count 0, so seen_ never exceeds V entries.
  if (counts_[size_t(token)]++ == 0 && !in_seen_[size_t(token)]) {
    in_seen_[size_t(token)] = 1;
    seen_.push_back(token);
  }
}

void Sampler::reset(std::span<const int32_t> prompt) {
  for (int32_t t : prompt) check_token(t, "reset");
  for (int32_t t : seen_) {
    counts_[size_t(t)] = 0;
    in_seen_[size_t(t)] = 0;
  }
  seen_.clear();
  ring_pos_ = 0;
  ring_len_ = 0;
  rng_.reseed(params_.seed);
  for (int32_t t : prompt) push_history(t);
}

void Sampler::accept(int32_t token) {
  check_token(token, "accept");
  push_history(token);
}

void Sampler::apply_penalties(std::span<float> logits) const {
  if (int64_t(logits.size()) != vocab_size_)
    throw Error("Sampler: logits have " + std::to_string(logits.size()) +
                " entries, vocab_size is " + std::to_string(vocab_size_));
  const float rep = params_.repetition_penalty;
  const float freq = params_.frequency_penalty;
  const float pres = params_.presence_penalty;
  if (rep == 1.0f && freq == 0.0f && pres == 0.0f) return;
  for (int32_t t : seen_) {
    const int32_t count = counts_[size_t(t)];
    if (count == 0) continue;
    float& l = logits[size_t(t)];
    // CTRL (Keskar et al. 2019) as HF applies it: dividing a negative logit would raise it.
    if (rep != 1.0f) l = l > 0.0f ? l / rep : l * rep;
    // OpenAI's formula, after the repetition penalty as in llama.cpp's penalties sampler.
    l -= float(count) * freq + pres;
  }
}

int32_t Sampler::check_logits(std::span<const float> logits) const {
  const int64_t V = vocab_size_;
  if (int64_t(logits.size()) != V)
    throw Error("Sampler: logits have " + std::to_string(logits.size()) +
                " entries, vocab_size is " + std::to_string(V));
  int64_t best = 0;
  bool bad = false;
  for (int64_t i = 0; i < V; ++i) {
    const float l = logits[size_t(i)];
    bad |= std::isnan(l) || l == kPosInf;
    if (l > logits[size_t(best)]) best = i;  // strict: ties keep the lowest id
  }
  if (bad) {
    // NaN or +inf means a broken forward pass; sampling around it would emit fluent garbage.
    for (int64_t i = 0; i < V; ++i)
      if (std::isnan(logits[size_t(i)]) || logits[size_t(i)] == kPosInf)
        throw Error("Sampler: logit " + std::to_string(i) + " is " +
                    std::to_string(logits[size_t(i)]));
  }
  if (logits[size_t(best)] == kNegInf)
    throw Error("Sampler: every logit is -inf, nothing can be sampled");
  return int32_t(best);
}

bool Sampler::ranks_before(const Candidate& a, const Candidate& b) {
  return a.logit > b.logit || (a.logit == b.logit && a.id < b.id);
}

int64_t Sampler::top_p_cut(Candidate* c, int64_t n, double target) const {
  const auto before = [](const Candidate& a, const Candidate& b) { return ranks_before(a, b); };
  float hi = c[0].logit, lo = c[0].logit;
  for (int64_t j = 1; j < n; ++j) {
    hi = std::max(hi, c[j].logit);
    lo = std::min(lo, c[j].logit);
  }
  // bucket(l) = floor((hi - l) * scale): never smaller for a smaller logit, equal for equal ones.
  const double scale = hi > lo ? double(kTopPBuckets) / (double(hi) - double(lo)) : 0.0;
  const auto bucket = [&](float l) { return std::min(kTopPBuckets - 1, int64_t((double(hi) - double(l)) * scale)); };
  double* mass = bucket_mass_.data();
  std::fill(mass, mass + kTopPBuckets, 0.0);
  for (int64_t j = 0; j < n; ++j) mass[bucket(c[j].logit)] += c[j].w;
  double cum = 0.0;
  int64_t cut_bucket = 0;
  while (cut_bucket < kTopPBuckets && cum + mass[cut_bucket] < target) cum += mass[cut_bucket++];
  if (cut_bucket == kTopPBuckets) return n;
  Candidate* e = edge_.data();
  int64_t m = 0;
  for (int64_t j = 0; j < n; ++j)
    if (bucket(c[j].logit) == cut_bucket) e[m++] = c[j];
  std::sort(e, e + m, before);  // a strict total order: the result does not depend on the library
  int64_t cut = m - 1;
  for (int64_t i = 0; i < m; ++i) {
    cum += e[i].w;
    if (cum >= target) {
      cut = i;
      break;
    }
  }
  const Candidate last = e[cut];
  int64_t kept = 0;
  for (int64_t j = 0; j < n; ++j)
    if (!before(last, c[j])) c[kept++] = c[j];  // ranked at or before the cut
  return kept;
}

Sampler::Kept Sampler::select(std::span<const float> logits, int32_t best) const {
  const auto before = [](const Candidate& a, const Candidate& b) { return ranks_before(a, b); };
  const int64_t V = vocab_size_;
  const float max_logit = logits[size_t(best)];
  // w = exp((l - max) / T), 1 for the argmax (also when a denormal T makes 1 / T infinite).
  const float inv_t = 1.0f / params_.temperature;
  const float min_w = params_.min_p;  // p >= min_p * p_max  <=>  w >= min_p, as w_max = 1
  Candidate* c = scratch_.data();
  float* w = weights_.data();
  int64_t n = 0;
  double z = 0.0;  // softmax mass of the top-k set, the reference for top-p
  bool sorted = false;

  if (params_.top_k > 0 && params_.top_k <= kHeapTopK) {
    // A heap of the k best so far (its top the worst of them), one pass in id order: a later
    // candidate beats it only with a strictly larger logit (on a tie its larger id ranks after).
    const int64_t k = params_.top_k;
    for (int64_t i = 0; i < V; ++i) {
      const float l = logits[size_t(i)];
      if (l == kNegInf) continue;
      if (n < k) {
        c[n++] = {l, int32_t(i), 0.0f};
        std::push_heap(c, c + n, before);
      } else if (l > c[0].logit) {
        std::pop_heap(c, c + n, before);
        c[n - 1] = {l, int32_t(i), 0.0f};
        std::push_heap(c, c + n, before);
      }
    }
    std::sort(c, c + n, before);
    sorted = true;
    for (int64_t j = 0; j < n; ++j) w[j] = c[j].logit;
    exp_shifted(w, w, n, max_logit, inv_t);
    for (int64_t j = 0; j < n; ++j) z += c[j].w = w[j];
  } else if (params_.top_k > 0 && params_.top_k < V) {
    for (int64_t i = 0; i < V; ++i)
      if (logits[size_t(i)] != kNegInf) c[n++] = {logits[size_t(i)], int32_t(i), 0.0f};
    if (params_.top_k < n) {
      // The k-th candidate under a strict total order is unique, so the kept set does not depend
      // on how nth_element arranges the rest; sorting the k then fixes their order too.
      const int64_t k = params_.top_k;
      std::nth_element(c, c + k - 1, c + n, before);
      std::sort(c, c + k, before);
      n = k;
      sorted = true;
    }
    for (int64_t j = 0; j < n; ++j) w[j] = c[j].logit;
    exp_shifted(w, w, n, max_logit, inv_t);
    for (int64_t j = 0; j < n; ++j) z += c[j].w = w[j];
  } else {
    exp_shifted(w, logits.data(), V, max_logit, inv_t);  // -inf logits get 0 and are left out
    for (int64_t i = 0; i < V; ++i)
      if (logits[size_t(i)] != kNegInf) {
        c[n++] = {logits[size_t(i)], int32_t(i), w[i]};
        z += w[i];
      }
  }

  // min-p keeps a prefix of the sorted order and is scale-free, so filtering before top-p keeps
  // the same set as the documented order (top-p, then min-p on the renormalised top-p
  // distribution) while leaving top-p fewer candidates to sort. Without a sort, filtering keeps
  // id order.
  if (params_.min_p > 0.0f) {
    if (sorted) {
      while (c[n - 1].w < min_w) --n;  // c[0] is the argmax, w = 1 >= min_w
    } else {
      int64_t m = 0;
      for (int64_t j = 0; j < n; ++j)
        if (c[j].w >= min_w) c[m++] = c[j];
      n = m;
    }
  }

  if (params_.top_p < 1.0f) {
    // Smallest prefix of the ranking whose mass reaches top_p of the top-k mass.
    const double target = double(params_.top_p) * z;
    if (sorted) {
      double cum = 0.0;
      for (int64_t j = 0; j < n; ++j) {
        cum += c[j].w;
        if (cum >= target) {
          n = j + 1;
          break;
        }
      }
    } else {
      n = top_p_cut(c, n, target);
    }
    // If rounding left the mass just short of the target, every candidate stays.
  }

  double kept_z = 0.0;
  for (int64_t j = 0; j < n; ++j) kept_z += c[j].w;
  return {n, kept_z};
}

int32_t Sampler::sample(std::span<float> logits) {
  apply_penalties(logits);
  const int32_t best = check_logits(logits);
  int32_t token = best;
  if (params_.temperature != 0.0f) {
    const Kept kept = select(logits, best);
    const double target = rng_.uniform() * kept.z;
    double cum = 0.0;
    for (int64_t j = 0; j < kept.n; ++j) {
      const Candidate& x = scratch_[size_t(j)];
      if (x.w == 0.0f) continue;  // underflowed: probability 0, never drawn
      cum += x.w;
      token = x.id;  // stays the last positive candidate if u * z rounded up to z
      if (cum > target) break;
    }
  }
  push_history(token);
  return token;
}

void Sampler::distribution(std::span<const float> logits, std::span<float> probs) const {
  const int32_t best = check_logits(logits);
  if (int64_t(probs.size()) != vocab_size_)
    throw Error("Sampler::distribution: probs_out has " + std::to_string(probs.size()) +
                " entries, vocab_size is " + std::to_string(vocab_size_));
  std::fill(probs.begin(), probs.end(), 0.0f);
  if (params_.temperature == 0.0f) {
    probs[size_t(best)] = 1.0f;
    return;
  }
  const Kept kept = select(logits, best);
  for (int64_t j = 0; j < kept.n; ++j)
    probs[size_t(scratch_[size_t(j)].id)] = float(double(scratch_[size_t(j)].w) / kept.z);
}

TokenLogprobs token_logprobs(std::span<const float> logits, int32_t token, int top_n) {
  const int64_t V = int64_t(logits.size());
  if (token < 0 || token >= V)
    throw Error("token_logprobs: token " + std::to_string(token) + " outside the vocabulary [0, " +
                std::to_string(V) + ")");
  if (top_n < 0 || top_n > kMaxTopLogprobs)
    throw Error("token_logprobs: top_n must be in [0, " + std::to_string(kMaxTopLogprobs) + "], got " +
                std::to_string(top_n));
  TokenLogprobs out;
  out.token = token;
  // The top list stays sorted (logit descending, then id ascending) by insertion: top_n <= 20, and
  // after the first few hundred ids almost every logit fails the comparison with the last entry.
  const auto better = [](float a, int32_t ia, const TopLogprob& b) {
    return a > b.logprob || (a == b.logprob && ia < b.token);
  };
  float max_logit = kNegInf;
  for (int64_t i = 0; i < V; ++i) {
    const float l = logits[size_t(i)];
    if (std::isnan(l) || l == kPosInf)
      throw Error("token_logprobs: logit " + std::to_string(i) + " is " + std::to_string(l));
    max_logit = std::max(max_logit, l);
    if (top_n == 0 || l == kNegInf) continue;
    int32_t n = out.n_top;
    if (n == top_n && !better(l, int32_t(i), out.top[size_t(n - 1)])) continue;
    if (n < top_n) ++out.n_top;
    else --n;  // the last entry drops out
    while (n > 0 && better(l, int32_t(i), out.top[size_t(n - 1)])) {
      out.top[size_t(n)] = out.top[size_t(n - 1)];
      --n;
    }
    out.top[size_t(n)] = {int32_t(i), l};  // the raw logit for now
  }
  if (max_logit == kNegInf) throw Error("token_logprobs: every logit is -inf");
  double sum = 0.0;
  for (int64_t i = 0; i < V; ++i) sum += std::exp(double(logits[size_t(i)]) - double(max_logit));
  const double lse = double(max_logit) + std::log(sum);  // sum >= 1: the maximum contributes exp(0)
  out.logprob = float(double(logits[size_t(token)]) - lse);
  for (int32_t j = 0; j < out.n_top; ++j)
    out.top[size_t(j)].logprob = float(double(out.top[size_t(j)].logprob) - lse);
  return out;
}

}  // namespace dseek
