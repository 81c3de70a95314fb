// AVX-512 kernel of attention_decode.h. Compiled with AVX-512 F/BW/VL and FMA (CMakeLists.txt);
// decode_attend_rows calls it only when cpu_features() reports them.
//
// Rows come in chunks of kChunk, gathered across the runs (a paged cache's 16-row blocks). Per
// chunk and group of up to 16 heads: the scores of each row as dot products over [c_kv | k_pe]
// (then the transposing reduction: lane h = head h), the online-softmax update with the heads as
// lanes, and o_h += p_hj c_kv_j while the chunk's rows (in L2) stream past. Both products run in
// register blocks of 3 rows (or 3 column blocks) x 8 heads, so that loads do not bound them, and the
// weighted sum prefetches the next chunk's rows into L2 (it reads none from memory itself); the
// "#pragma GCC unroll" lines keep the blocks in registers (without them, half the speed).
#include "dseek/kernels/attention_decode.h"

#if defined(__AVX512F__) && defined(__FMA__)

#include <immintrin.h>

#include <algorithm>
#include <limits>
#include <vector>

#include "dseek/kernels/attention_decode_amx.h"
#include "dseek/kernels/attention_decode_bf16.h"
#include "dseek/kernels/exp_avx512.h"
#include "dseek/kernels/masks_avx512.h"
#include "dseek/kernels/transpose_avx512.h"

namespace dseek {

namespace {

using mm::mask16;
using mm::widen_bf16;

constexpr int64_t kChunk = 64;  // rows per online-softmax step: 64 x 2.3 KB of V2/V3 rows stay in L2
// The score pass prefetches the row this many ahead (across run ends).
constexpr int64_t kRowsAhead = 4;
constexpr int64_t kL2Bytes = int64_t(1) << 20;  // per core: Zen 4/5 and recent Xeons have 1-2 MiB

// The next rows of a list of runs, a chunk (and the next one, to prefetch) at a time across run ends.
// E: the rows' element type, float or uint16_t (bf16 bits).
template <class E>
struct RowCursor {
  const LatentRun* run;
  const LatentRun* end;
  int64_t j = 0;  // row within *run
  RowCursor(const LatentRun* runs, int64_t n_runs) : run(runs), end(runs + n_runs) { skip_empty(); }
  void skip_empty() {
    while (run < end && j >= run->n) {
      ++run;
      j = 0;
    }
  }
  // Up to `want` rows from here without moving: their addresses and whether each is counted.
  int64_t peek(const E** rows, bool* in, int64_t want, int64_t stride) const {
    int64_t got = 0;
    for (const LatentRun* r = run; r < end && got < want; ++r)
      for (int64_t i = r == run ? j : 0; i < r->n && got < want; ++i, ++got) {
        rows[got] = static_cast<const E*>(r->rows) + i * stride;
        in[got] = !r->allowed || r->allowed[i];
      }
    return got;
  }
  void advance(int64_t n) {
    while (n > 0 && run < end) {
      const int64_t step = std::min(n, run->n - j);
      j += step;
      n -= step;
      skip_empty();
    }
  }
};

// 16 row values from p as float32: float rows as they are, bf16 rows widened (exact: the bits move
// to the high half); masked: zeros past the mask.
inline __m512 load_row(const float* p) { return _mm512_loadu_ps(p); }
inline __m512 load_row(const float* p, __mmask16 m) { return _mm512_maskz_loadu_ps(m, p); }
inline __m512 load_row(const uint16_t* p) { return widen_bf16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p))); }
inline __m512 load_row(const uint16_t* p, __mmask16 m) { return widen_bf16(_mm256_maskz_loadu_epi16(m, p)); }

// Register blocks: the loads (a cache row vector, a query vector, a broadcast probability) bound
// a one-row, one-column-block loop at ~1 multiply-add per load; blocks of B rows (scores) or B column
// blocks (weighted sum) by G heads do B x G multiply-adds per B + G loads.
template <int G>
struct Block {
  static constexpr int B = G >= 8 ? 3 : 5;  // B x G accumulators: 24 or 20 of the 32 registers
};

// Scores of rows rp[jj .. jj + NR) for heads [g0, g0 + G): acc[r][h] summed over the row's L floats.
template <int G, int NR, class E>
inline void score_block(__m512 (&acc)[NR][G], const float* qg, int64_t L, const E* const* rp, int64_t jj,
                        const char* const* ahead) {
#pragma GCC unroll 16
  for (int r = 0; r < NR; ++r)
#pragma GCC unroll 16
    for (int h = 0; h < G; ++h) acc[r][h] = _mm512_setzero_ps();
  const E* c[NR];
#pragma GCC unroll 16
  for (int r = 0; r < NR; ++r) c[r] = rp[jj + r];
  int64_t k = 0;
  for (; k + 16 <= L; k += 16) {
    if (ahead)  // a row's first touch waited on memory (~40 % of samples)
#pragma GCC unroll 16
      for (int r = 0; r < NR; ++r) _mm_prefetch(ahead[r] + sizeof(E) * k, _MM_HINT_T0);
    __m512 cv[NR];
#pragma GCC unroll 16
    for (int r = 0; r < NR; ++r) cv[r] = load_row(c[r] + k);
#pragma GCC unroll 16
    for (int h = 0; h < G; ++h) {
      __m512 qv = _mm512_loadu_ps(qg + h * L + k);
      __asm__("" : "+v"(qv));  // one load for the NR rows: GCC would fold it into each multiply-add
#pragma GCC unroll 16
      for (int r = 0; r < NR; ++r) acc[r][h] = _mm512_fmadd_ps(qv, cv[r], acc[r][h]);
    }
  }
  if (k < L) {
    const __mmask16 km = mask16(L - k);
    __m512 cv[NR];
#pragma GCC unroll 16
    for (int r = 0; r < NR; ++r) cv[r] = load_row(c[r] + k, km);
#pragma GCC unroll 16
    for (int h = 0; h < G; ++h) {
      __m512 qv = _mm512_maskz_loadu_ps(km, qg + h * L + k);
      __asm__("" : "+v"(qv));
#pragma GCC unroll 16
      for (int r = 0; r < NR; ++r) acc[r][h] = _mm512_fmadd_ps(qv, cv[r], acc[r][h]);
    }
  }
}

// S[jj + r] (lane h = head h) for NR rows from jj: each head group's accumulators go through part[][]
// so that one transposing reduction per row covers all HN heads.
template <int HN, int NR, class E>
inline void score_rows(float (*S)[16], const float* qbuf, int64_t L, float scale, const E* const* rp,
                       const bool* in, int64_t jj, int64_t got) {
  constexpr int G = HN < 8 ? HN : 8;
  __m512 part[NR][16];
#pragma GCC unroll 16
  for (int r = 0; r < NR; ++r)
    for (int h = HN; h < 16; ++h) part[r][h] = _mm512_setzero_ps();
  const char* ahead[NR];
#pragma GCC unroll 16
  for (int r = 0; r < NR; ++r)
    ahead[r] = reinterpret_cast<const char*>(rp[std::min<int64_t>(jj + r + kRowsAhead, got - 1)]);
  for (int g = 0; g < HN; g += G) {
    __m512 acc[NR][G];
    score_block<G, NR, E>(acc, qbuf + g * L, L, rp, jj, g == 0 ? ahead : nullptr);  // later groups: rows in L1
#pragma GCC unroll 16
    for (int r = 0; r < NR; ++r)
#pragma GCC unroll 16
      for (int h = 0; h < G; ++h) part[r][g + h] = acc[r][h];
  }
  const float neg_inf = -std::numeric_limits<float>::infinity();
#pragma GCC unroll 16
  for (int r = 0; r < NR; ++r) {
    __m512 s = _mm512_mul_ps(reduce16(part[r]), _mm512_set1_ps(scale));
    if (!in[jj + r]) s = _mm512_set1_ps(neg_inf);
    _mm512_store_ps(S[jj + r], s);
  }
}

// Brings the next chunk's rows into L2 a few lines per step of the weighted sum, which reads only
// L2: the score pass then finds them there instead of waiting on memory row by row.
template <class E>
struct NextChunk {
  const E* const* rows = nullptr;
  int64_t n = 0, lines = 0;  // rows, 64-byte lines per row
  int64_t r = 0, line = 0;   // the next line to fetch
  int per_step = 0;
  void step() {
    for (int i = 0; i < per_step && r < n; ++i) {
      _mm_prefetch(reinterpret_cast<const char*>(rows[r]) + 64 * line, _MM_HINT_T1);
      if (++line == lines) {
        line = 0;
        ++r;
      }
    }
  }
};

// o_h = alpha_h o_h + sum_jj p_hj c_kv_j for heads [g0, g0 + G) and NC column blocks of 16 from k.
template <int G, int NC, class E>
inline void weigh_block(float* o, int64_t R, int64_t k, int64_t g0, int64_t hn, const float* a, bool rescale,
                        const float (*S)[16], const E* const* rp, int64_t jn, NextChunk<E>& next) {
  __mmask16 km[NC];
#pragma GCC unroll 16
  for (int b = 0; b < NC; ++b) km[b] = mask16(R - (k + 16 * b));
  __m512 acc[NC][G];
#pragma GCC unroll 16
  for (int h = 0; h < G; ++h)
#pragma GCC unroll 16
    for (int b = 0; b < NC; ++b) {
      acc[b][h] = g0 + h < hn ? _mm512_maskz_loadu_ps(km[b], o + (g0 + h) * R + k + 16 * b) : _mm512_setzero_ps();
      if (rescale) acc[b][h] = _mm512_mul_ps(acc[b][h], _mm512_set1_ps(a[g0 + h]));
    }
  for (int64_t jj = 0; jj < jn; ++jj) {
    next.step();
    __m512 cv[NC];
#pragma GCC unroll 16
    for (int b = 0; b < NC; ++b) cv[b] = load_row(rp[jj] + k + 16 * b, km[b]);
#pragma GCC unroll 16
    for (int h = 0; h < G; ++h) {
      const __m512 p = _mm512_set1_ps(S[jj][g0 + h]);
#pragma GCC unroll 16
      for (int b = 0; b < NC; ++b) acc[b][h] = _mm512_fmadd_ps(p, cv[b], acc[b][h]);
    }
  }
#pragma GCC unroll 16
  for (int h = 0; h < G; ++h)
    if (g0 + h < hn)
#pragma GCC unroll 16
      for (int b = 0; b < NC; ++b) _mm512_mask_storeu_ps(o + (g0 + h) * R + k + 16 * b, km[b], acc[b][h]);
}

// One chunk of rows, rp[0 .. jn) (rp[jn .. got) only to prefetch: the next chunk's), for heads
// [0, hn) (hn <= HN) of the state; qbuf holds their queries as HN rows of L = R + rope floats
// [q_lat | q_pe], zero past hn. fetch_next: this call brings the next chunk into L2 (the first group's).
// qpack (bf16 rows with bf16 products only, else null): the same queries packed for `products`, which
// then computes the scores and the weighted sum (attention_decode_amx.h, attention_decode_bf16.h).
template <int HN, class E>
void attend_chunk(float* o, float* m, float* l, int64_t hn, const float* qbuf, int64_t R, int64_t L, float scale,
                  const E* const* rp, const bool* in, int64_t jn, int64_t got, bool fetch_next,
                  const uint32_t* qpack, DecodeProducts products) {
  static_assert(sizeof(E) == 2 || sizeof(E) == 4);
  const auto* rows16 = reinterpret_cast<const uint16_t* const*>(rp);  // read only where E is uint16_t
  constexpr int G = HN < 8 ? HN : 8, B = Block<G>::B;
  const float neg_inf = -std::numeric_limits<float>::infinity();
  const __mmask16 hm = mask16(hn);
  alignas(64) float S[kChunk][16];
  // Scores: lane h of S[jj] = head h's score of row jj of the chunk.
  if (qpack) {
    if (products == DecodeProducts::kAmx) amx_scores(S, qpack, L, rows16, jn);
    else bf16dot_scores(S, qpack, L, rows16, jn, got);
    for (int64_t j = 0; j < jn; ++j)
      _mm512_store_ps(S[j], in[j] ? _mm512_mul_ps(_mm512_load_ps(S[j]), _mm512_set1_ps(scale)) : _mm512_set1_ps(neg_inf));
  } else {
    int64_t jj = 0;
    for (; jj + B <= jn; jj += B) score_rows<HN, B, E>(S, qbuf, L, scale, rp, in, jj, got);
    for (; jj < jn; ++jj) score_rows<HN, 1, E>(S, qbuf, L, scale, rp, in, jj, got);
  }
  // Online softmax with the heads as lanes.
  __m512 cm = _mm512_set1_ps(neg_inf);
  for (int64_t j = 0; j < jn; ++j) cm = _mm512_max_ps(cm, _mm512_load_ps(S[j]));
  const __m512 m_old = _mm512_mask_loadu_ps(_mm512_set1_ps(neg_inf), hm, m);
  const __m512 mx = _mm512_max_ps(m_old, cm);
  const __mmask16 live = _mm512_cmp_ps_mask(mx, _mm512_set1_ps(neg_inf), _CMP_NEQ_OQ);  // some row counted
  const __m512 alpha = _mm512_mask_blend_ps(live, _mm512_set1_ps(1.f),
                                            _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(m_old, _mm512_set1_ps(neg_inf), _CMP_NEQ_OQ),
                                                                exp512(_mm512_sub_ps(m_old, mx))));
  __m512 sum = _mm512_setzero_ps();
  for (int64_t j = 0; j < jn; ++j) {
    const __m512 s = _mm512_load_ps(S[j]);
    const __mmask16 counted = _mm512_cmp_ps_mask(s, _mm512_set1_ps(neg_inf), _CMP_NEQ_OQ);  // masked rows: 0
    const __m512 p = _mm512_maskz_mov_ps(counted, exp512(_mm512_sub_ps(s, mx)));
    _mm512_store_ps(S[j], p);
    sum = _mm512_add_ps(sum, p);
  }
  const __m512 l_old = _mm512_maskz_loadu_ps(hm, l);
  _mm512_mask_storeu_ps(l, hm, _mm512_fmadd_ps(l_old, alpha, sum));
  _mm512_mask_storeu_ps(m, hm, mx);
  alignas(64) float a[16];
  _mm512_store_ps(a, alpha);
  const bool rescale = _mm512_mask_cmp_ps_mask(hm, alpha, _mm512_set1_ps(1.f), _CMP_NEQ_UQ) != 0;
  if (qpack) {  // the weighted sum likewise (the next chunk's L2 prefetch below is the FMA path's)
    if (products == DecodeProducts::kAmx) amx_weigh(o, R, hn, a, rescale, S, rows16, jn);
    else bf16dot_weigh(o, R, hn, a, rescale, S, rows16, jn);
    return;
  }
  // o_h = alpha_h o_h + sum over the chunk's rows of p_hj c_kv_j, B column blocks of 16 at a time
  // while the chunk's rows (in L2) stream past.
  const int64_t nb = (R + 15) / 16, n_groups = (hn + G - 1) / G;
  NextChunk<E> next;
  if (fetch_next && got > jn) {
    next.rows = rp + jn;
    next.n = got - jn;
    next.lines = (L * int64_t(sizeof(E)) + 63) / 64;
    const int64_t steps = n_groups * (nb / B + (nb % B ? 1 : 0)) * jn;
    next.per_step = int((next.n * next.lines + steps - 1) / steps);
  }
  for (int64_t g0 = 0; g0 < hn; g0 += G) {
    int64_t b = 0;
    for (; b + B <= nb; b += B) weigh_block<G, B, E>(o, R, 16 * b, g0, hn, a, rescale, S, rp, jn, next);
    switch (nb - b) {  // the last 1 .. B - 1 blocks in one pass (all of them where R < 16 B)
      case 4: weigh_block<G, 4, E>(o, R, 16 * b, g0, hn, a, rescale, S, rp, jn, next); break;
      case 3: weigh_block<G, 3, E>(o, R, 16 * b, g0, hn, a, rescale, S, rp, jn, next); break;
      case 2: weigh_block<G, 2, E>(o, R, 16 * b, g0, hn, a, rescale, S, rp, jn, next); break;
      case 1: weigh_block<G, 1, E>(o, R, 16 * b, g0, hn, a, rescale, S, rp, jn, next); break;
      default: break;
    }
  }
}

}  // namespace

namespace {

template <class E>
void attend_rows(float* o, float* m, float* l, const DecodeQuery& q, const LatentRun* runs, int64_t n_runs,
                 int64_t stride, DecodeProducts products) {
  const int64_t R = q.R, L = q.R + q.rope, groups = (q.H + 15) / 16;
  // Every group's queries as rows [q_lat | q_pe] like the cache rows, zeros past the last head: the
  // chunk loop is outside the group loop, so a chunk's rows come from memory once for all groups
  // (V3's 128 heads, or the stacked heads of several tokens) and stay in L2 for the others.
  constexpr int64_t kStackFloats = 32 * 640;
  alignas(64) float qbuf_stack[kStackFloats];
  std::vector<float> qbuf_heap;
  float* qbuf = qbuf_stack;
  if (groups * 16 * L > kStackFloats) {
    qbuf_heap.resize(size_t(groups * 16 * L));
    qbuf = qbuf_heap.data();
  }
  for (int64_t h = 0; h < groups * 16; ++h) {
    float* d = qbuf + h * L;
    if (h < q.H) {
      std::copy(q.q_lat + h * R, q.q_lat + h * R + R, d);
      std::copy(q.q_pe + h * q.q_pe_stride, q.q_pe + h * q.q_pe_stride + q.rope, d + R);
    } else {
      std::fill(d, d + L, 0.f);
    }
  }
  // bf16 products: every group's queries packed once per call.
  // (Thread-local scratch, not a std::vector: no library template instantiated with this file's flags.)
  const bool amx = products == DecodeProducts::kAmx, packed = products != DecodeProducts::kFloat32;
  const int64_t words = amx ? amx_scores_pack_words(L) : bf16dot_pack_words(L);  // per group
  thread_local mm::PanelScratch qpack_scratch;
  uint32_t* qpack = nullptr;
  if (packed) {
    qpack = static_cast<uint32_t*>(qpack_scratch.get(size_t(groups * words) * 4));
    for (int64_t g = 0; g < groups; ++g) {
      uint32_t* qp = qpack + g * words;
      if (amx) amx_scores_pack(qp, qbuf + g * 16 * L, L);
      else bf16dot_pack(qp, qbuf + g * 16 * L, L);
    }
    if (amx) amx_scores_begin();
  }
  // This chunk's rows, then the next chunk's (prefetched while this one's weighted sum runs).
  const E* rp[2 * kChunk];
  bool in[2 * kChunk];
  // Prefetch the next chunk only where the rows cannot all be in L2 already (a short context, a
  // small model: the prefetches would cost load slots and bring nothing).
  int64_t total = 0;
  for (int64_t i = 0; i < n_runs; ++i) total += runs[i].n;
  const bool from_memory = total * L * int64_t(sizeof(E)) > kL2Bytes;
  for (RowCursor<E> cur(runs, n_runs);;) {
    const int64_t got = cur.peek(rp, in, 2 * kChunk, stride);
    if (got == 0) break;
    const int64_t jn = std::min(kChunk, got);
    for (int64_t g = 0; g < groups; ++g) {
      const int64_t g0 = g * 16, hn = std::min<int64_t>(16, q.H - g0);
      const float* qg = qbuf + g0 * L;
      float* og = o + g0 * R;
      const uint32_t* qp = packed ? qpack + g * words : nullptr;
      const bool fetch = from_memory && g == 0;
      if (hn <= 4) attend_chunk<4, E>(og, m + g0, l + g0, hn, qg, R, L, q.scale, rp, in, jn, got, fetch, qp, products);
      else if (hn <= 8)
        attend_chunk<8, E>(og, m + g0, l + g0, hn, qg, R, L, q.scale, rp, in, jn, got, fetch, qp, products);
      else attend_chunk<16, E>(og, m + g0, l + g0, hn, qg, R, L, q.scale, rp, in, jn, got, fetch, qp, products);
    }
    cur.advance(jn);
  }
  if (amx) amx_scores_end();
}

}  // namespace

void decode_attend_rows_avx512(float* o, float* m, float* l, const DecodeQuery& q, const LatentRun* runs,
                               int64_t n_runs, int64_t stride, bool bf16, DecodeProducts products) {
  // bf16 products over bf16 rows only: float32 rows would need converting first, which cost what the
  // products save.
  if (bf16) attend_rows<uint16_t>(o, m, l, q, runs, n_runs, stride, products);
  else attend_rows<float>(o, m, l, q, runs, n_runs, stride, DecodeProducts::kFloat32);
}

}  // namespace dseek

#else  // built without AVX-512 flags (non-x86 hosts): decode_attend_rows never selects this kernel

#include "dseek/core/error.h"

namespace dseek {
void decode_attend_rows_avx512(float*, float*, float*, const DecodeQuery&, const LatentRun*, int64_t, int64_t, bool,
                               DecodeProducts) {
  throw Error("attention_decode: AVX-512 kernel not compiled in");
}
}  // namespace dseek

#endif
