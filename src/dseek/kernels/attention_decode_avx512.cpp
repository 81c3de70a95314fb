// AVX-512 kernel of attention_decode.h. Compiled with AVX-512 F/BW/VL and FMA (CMakeLists.txt);
// decode_attend_rows calls it only when cpu_features() reports them.
//
// Rows come in chunks of kChunk, gathered across the runs (a paged cache's 16-row blocks). Per
// chunk and group of up to 16 heads: the scores of each row as 16 dot products over [c_kv | k_pe]
// with one load of each row vector (HN accumulators, then the transposing reduction: lane h = head
// h), the online-softmax update with the heads as lanes, and o_h += p_hj c_kv_j with HN accumulators
// per 16 columns while the chunk's rows (in L2) stream past.
#include "dseek/kernels/attention_decode.h"

#if defined(__AVX512F__) && defined(__FMA__)

#include <immintrin.h>

#include <algorithm>
#include <limits>
#include <vector>

#include "dseek/kernels/exp_avx512.h"
#include "dseek/kernels/masks_avx512.h"
#include "dseek/kernels/transpose_avx512.h"

namespace dseek {

namespace {

using mm::mask16;

constexpr int64_t kChunk = 64;  // rows per online-softmax step: 64 x 2.3 KB of V2/V3 rows stay in L2
// The score pass prefetches the row this many ahead (across run ends).
constexpr int64_t kRowsAhead = 4;

// The next rows of a list of runs, kChunk (+ kRowsAhead to prefetch) at a time across run ends.
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
  int64_t peek(const float** rows, bool* in, int64_t want, int64_t stride) const {
    int64_t got = 0;
    for (const LatentRun* r = run; r < end && got < want; ++r)
      for (int64_t i = r == run ? j : 0; i < r->n && got < want; ++i, ++got) {
        rows[got] = r->rows + i * stride;
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

// One chunk of rows, rp[0 .. jn) (rp[jn .. got) only to prefetch), for heads [0, hn) (hn <= HN) of
// the state; qbuf holds their queries as HN rows of L = R + rope floats [q_lat | q_pe], zero past hn.
template <int HN>
void attend_chunk(float* o, float* m, float* l, int64_t hn, const float* qbuf, int64_t R, int64_t L, float scale,
                  const float* const* rp, const bool* in, int64_t jn, int64_t got) {
  const float neg_inf = -std::numeric_limits<float>::infinity();
  const __mmask16 hm = mask16(hn);
  alignas(64) float S[kChunk][16];
  // Scores: lane h of S[jj] = head h's score of row jj of the chunk.
  for (int64_t jj = 0; jj < jn; ++jj) {
    const float* c = rp[jj];
    __m512 acc[16];
    for (int h = 0; h < 16; ++h) acc[h] = _mm512_setzero_ps();
    int64_t k = 0;
    const char* ahead = reinterpret_cast<const char*>(rp[std::min(jj + kRowsAhead, got - 1)]);
    for (; k + 16 <= L; k += 16) {
      _mm_prefetch(ahead + 4 * k, _MM_HINT_T0);  // a row's first touch waited on memory (~40 % of samples)
      const __m512 cv = _mm512_loadu_ps(c + k);
      for (int h = 0; h < HN; ++h) acc[h] = _mm512_fmadd_ps(_mm512_loadu_ps(qbuf + h * L + k), cv, acc[h]);
    }
    if (k < L) {
      const __mmask16 km = mask16(L - k);
      const __m512 cv = _mm512_maskz_loadu_ps(km, c + k);
      for (int h = 0; h < HN; ++h) acc[h] = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(km, qbuf + h * L + k), cv, acc[h]);
    }
    __m512 s = _mm512_mul_ps(reduce16(acc), _mm512_set1_ps(scale));
    if (!in[jj]) s = _mm512_set1_ps(neg_inf);
    _mm512_store_ps(S[jj], s);
  }
  // Online softmax with the heads as lanes.
  __m512 cm = _mm512_set1_ps(neg_inf);
  for (int64_t jj = 0; jj < jn; ++jj) cm = _mm512_max_ps(cm, _mm512_load_ps(S[jj]));
  const __m512 m_old = _mm512_mask_loadu_ps(_mm512_set1_ps(neg_inf), hm, m);
  const __m512 mx = _mm512_max_ps(m_old, cm);
  const __mmask16 live = _mm512_cmp_ps_mask(mx, _mm512_set1_ps(neg_inf), _CMP_NEQ_OQ);  // some row counted
  const __m512 alpha = _mm512_mask_blend_ps(live, _mm512_set1_ps(1.f),
                                            _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(m_old, _mm512_set1_ps(neg_inf), _CMP_NEQ_OQ),
                                                                exp512(_mm512_sub_ps(m_old, mx))));
  __m512 sum = _mm512_setzero_ps();
  for (int64_t jj = 0; jj < jn; ++jj) {
    const __m512 s = _mm512_load_ps(S[jj]);
    const __mmask16 counted = _mm512_cmp_ps_mask(s, _mm512_set1_ps(neg_inf), _CMP_NEQ_OQ);  // masked rows: 0
    const __m512 p = _mm512_maskz_mov_ps(counted, exp512(_mm512_sub_ps(s, mx)));
    _mm512_store_ps(S[jj], p);
    sum = _mm512_add_ps(sum, p);
  }
  const __m512 l_old = _mm512_maskz_loadu_ps(hm, l);
  _mm512_mask_storeu_ps(l, hm, _mm512_fmadd_ps(l_old, alpha, sum));
  _mm512_mask_storeu_ps(m, hm, mx);
  alignas(64) float a[16];
  _mm512_store_ps(a, alpha);
  const bool rescale = _mm512_mask_cmp_ps_mask(hm, alpha, _mm512_set1_ps(1.f), _CMP_NEQ_UQ) != 0;
  // o_h = alpha_h o_h + sum over the chunk's rows of p_hj c_kv_j, 16 columns at a time.
  for (int64_t k = 0; k < R; k += 16) {
    const __mmask16 km = mask16(R - k);
    __m512 acc[HN];
    for (int h = 0; h < HN; ++h) {
      acc[h] = h < hn ? _mm512_maskz_loadu_ps(km, o + h * R + k) : _mm512_setzero_ps();
      if (rescale) acc[h] = _mm512_mul_ps(acc[h], _mm512_set1_ps(a[h]));
    }
    for (int64_t jj = 0; jj < jn; ++jj) {
      const __m512 cv = _mm512_maskz_loadu_ps(km, rp[jj] + k);
      for (int h = 0; h < HN; ++h) acc[h] = _mm512_fmadd_ps(_mm512_set1_ps(S[jj][h]), cv, acc[h]);
    }
    for (int h = 0; h < HN; ++h)
      if (h < hn) _mm512_mask_storeu_ps(o + h * R + k, km, acc[h]);
  }
}

}  // namespace

void decode_attend_rows_avx512(float* o, float* m, float* l, const DecodeQuery& q, const LatentRun* runs,
                               int64_t n_runs, int64_t stride) {
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
  const float* rp[kChunk + kRowsAhead];
  bool in[kChunk + kRowsAhead];
  for (RowCursor cur(runs, n_runs);;) {
    const int64_t got = cur.peek(rp, in, kChunk + kRowsAhead, stride);
    if (got == 0) break;
    const int64_t jn = std::min(kChunk, got);
    for (int64_t g = 0; g < groups; ++g) {
      const int64_t g0 = g * 16, hn = std::min<int64_t>(16, q.H - g0);
      const float* qg = qbuf + g0 * L;
      float* og = o + g0 * R;
      if (hn <= 4) attend_chunk<4>(og, m + g0, l + g0, hn, qg, R, L, q.scale, rp, in, jn, got);
      else if (hn <= 8) attend_chunk<8>(og, m + g0, l + g0, hn, qg, R, L, q.scale, rp, in, jn, got);
      else attend_chunk<16>(og, m + g0, l + g0, hn, qg, R, L, q.scale, rp, in, jn, got);
    }
    cur.advance(jn);
  }
}

}  // namespace dseek

#else  // built without AVX-512 flags (non-x86 hosts): decode_attend_rows never selects this kernel

#include "dseek/core/error.h"

namespace dseek {
void decode_attend_rows_avx512(float*, float*, float*, const DecodeQuery&, const LatentRun*, int64_t, int64_t) {
  throw Error("attention_decode: AVX-512 kernel not compiled in");
}
}  // namespace dseek

#endif
