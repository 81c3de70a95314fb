// AVX-512 matmul kernels (F/BW/VL for the float formats, VNNI for Q8_0/Q4_0, BF16 for bf16_dot).
//
// Compiled with AVX-512 flags (CMakeLists.txt) and only called after cpu_features() said yes, so
// this file includes nothing but intrinsics and matmul_kernels.h and keeps all helpers in an
// anonymous namespace (see matmul_kernels.h for why).
//
// Shape of every kernel: a tile of R weight rows x T tokens keeps R*T 16-lane float accumulators
// and walks K once; each weight vector is loaded and decoded once per tile and reused for the T
// tokens, each activation vector is reused for the R rows. drive() visits tiles so that a row
// block's weights stay in L1/L2 while tokens are swept in blocks of 64 (prefill reads the weights
// from memory once).
#include "dseek/kernels/matmul_kernels.h"

// Elsewhere than x86 the file defines an empty kernel set (cpu_features() reports nothing there,
// so matmul never asks for it) and the scalar path builds alone (STYLE.md).
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>

#include <algorithm>
#include <type_traits>

#include "dseek/kernels/masks_avx512.h"
#include "dseek/kernels/transpose_avx512.h"

namespace dseek::mm {
namespace {

constexpr int64_t kTokenBlock = 64;
// Software prefetch distance along each weight row. Short rows (2 KiB of Q8_0/FP8 at K = 2048) end
// before the hardware stream prefetcher has ramped up; fetching ahead keeps enough misses in flight
// for decode to run at DRAM bandwidth. Past a row's end it touches the next rows, read next anyway.
constexpr int64_t kPrefetchBytes = 1024;
inline void prefetch(const uint8_t* p) { _mm_prefetch(reinterpret_cast<const char*>(p) + kPrefetchBytes, _MM_HINT_T0); }

// Decode (B <= 8: one sequence, or a server's batch) walks the weights one row at a time with
// several accumulators per token. Rows lie back to back, so a task's rows [n0, n1) are one
// sequential stream, and the prefetch runs
// kStreamPrefetchBytes ahead along it, across row and 4 KiB page ends (where the hardware
// prefetchers stop). The R x T tiles below instead read R rows at once: R short streams, each
// restarting the prefetchers at every row, which left decode at ~60 % of the bandwidth.
// 2 KiB into L1 measured best here (lm_head BF16 at B = 1: 14.5 -> 10.6 ms, Q8_0 11.3 -> 6.9 ms;
// 1 and 4 KiB, or into L2 only, were slower).
constexpr int64_t kStreamPrefetchBytes = 2048;
inline void prefetch_stream(const void* p) {
  _mm_prefetch(static_cast<const char*>(p) + kStreamPrefetchBytes, _MM_HINT_T0);
}

// Sum of the U accumulators of each token: the row's 16 partial sums (lanes) per token.
template <int T, int U>
inline void sum_unrolled(__m512 (&out)[T], __m512 (&acc)[T][U]) {
  for (int t = 0; t < T; ++t) {
    out[t] = acc[t][0];
    for (int u = 1; u < U; ++u) out[t] = _mm512_add_ps(out[t], acc[t][u]);
  }
}

// Rows [n0, n1) one at a time (F::row gives each token's 16 partial sums), reduced 16 rows at once.
// A Stream with kStepRows = S > 1 reads S consecutive rows in lockstep instead (rows()): S streams of
// loads in flight rather than one, which a single core needs to keep enough misses outstanding
// (Intel Xeon, BF16 at 1-4 tokens, 2 threads: 22-25 -> 27-30 GB/s of a 30 GB/s probe, docs/kernels.md).
template <class F, int T>
void stream_rows(const Job& j, int64_t n0, int64_t n1) {
  using St = typename F::template Stream<T>;
  St st(j);
  // Spread (F::Stream::kSpread): the S rows of a lockstep step are q apart, one from each quarter
  // of [n0, n1), so the task reads S long sequential streams instead of S rows side by side whose
  // streams each end after one row (4 KiB of BF16) and restart cold at the next step's rows. The
  // hardware prefetchers follow long streams: BF16 at one token on Zen 5, matmul_bench 2, 3
  // alternated rounds, 36-45 -> 66-78 GB/s on every decode shape (the one-stream read probe of
  // then: 65-76; the probe reads 4 streams since), v2lite-5l BF16 tg128 30.8-32.1 -> 35.9-36.5
  // tokens/s (docs/kernels.md).
  if constexpr (requires { St::kSpread; }) {
    constexpr int S = St::kStepRows;
    const int64_t q = (n1 - n0) / S / 16 * 16;
    if (St::kSpread && q >= 16 && !j.bf16_row_prefetch) {
      for (int64_t i0 = 0; i0 < q; i0 += 16) {
        __m512 part[S][T][16];
        for (int i = 0; i < 16; ++i) {
          __m512 out[S][T];
          st.rows(j, n0 + i0 + i, out, q);
          for (int s = 0; s < S; ++s)
            for (int t = 0; t < T; ++t) part[s][t][i] = out[s][t];
        }
        for (int s = 0; s < S; ++s)
          for (int t = 0; t < T; ++t) _mm512_storeu_ps(j.y + t * j.N + n0 + s * q + i0, reduce16(part[s][t]));
      }
      n0 += S * q;
    }
  }
  for (int64_t r0 = n0; r0 < n1; r0 += 16) {
    const int nr = int(min64(16, n1 - r0));
    __m512 part[T][16];
    int i = 0;
    if constexpr (requires { St::kStepRows; }) {
      constexpr int S = St::kStepRows;
      if constexpr (S > 1)
        for (; i + S <= nr; i += S) {
          __m512 out[S][T];
          st.rows(j, r0 + i, out);
          for (int s = 0; s < S; ++s)
            for (int t = 0; t < T; ++t) part[t][i + s] = out[s][t];
        }
    }
    for (; i < 16; ++i) {
      __m512 out[T];
      if (i < nr) {
        st.row(j, r0 + i, out);
      } else {
        for (int t = 0; t < T; ++t) out[t] = _mm512_setzero_ps();
      }
      for (int t = 0; t < T; ++t) part[t][i] = out[t];
    }
    for (int t = 0; t < T; ++t) _mm512_mask_storeu_ps(j.y + t * j.N + r0, mask16(nr), reduce16(part[t]));
  }
}

template <int R, int T>
inline void store_tile(const Job& j, int64_t r0, int64_t b0, __m512 (&acc)[R][T]) {
  for (int t = 0; t < T; ++t)
    for (int i = 0; i < R; ++i) j.y[(b0 + t) * j.N + r0 + i] = _mm512_reduce_add_ps(acc[i][t]);
}

template <int R, int T>
inline void zero_tile(__m512 (&acc)[R][T]) {
  for (int i = 0; i < R; ++i)
    for (int t = 0; t < T; ++t) acc[i][t] = _mm512_setzero_ps();
}

// ---- float32 activations: F16, BF16 weights, 16 columns per step ----

struct LoadF16 {
  static __m512 load(const uint8_t* row, int64_t k, __mmask16 m) {
    return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, reinterpret_cast<const uint16_t*>(row) + k));
  }
};
struct LoadBF16 {  // bf16 -> f32 is exact: the bits move to the high half
  static __m512 load(const uint8_t* row, int64_t k, __mmask16 m) {
    const __m256i h = _mm256_maskz_loadu_epi16(m, reinterpret_cast<const uint16_t*>(row) + k);
    return widen_bf16(h);
  }
};

template <class L>
struct FloatAct {
  static constexpr int kRows = 4, kTokens = 4;
  template <int R, int T>
  static void tile(const Job& j, int64_t r0, int64_t b0) {
    __m512 acc[R][T];
    zero_tile(acc);
    const uint8_t* w[R];
    for (int i = 0; i < R; ++i) w[i] = row_of(j, r0 + i);
    const float* x[T];
    for (int t = 0; t < T; ++t) x[t] = j.x + (b0 + t) * j.K;
    for (int64_t k = 0; k < j.K; k += 16) {
      const __mmask16 m = mask16(j.K - k);
      __m512 wv[R];
      for (int i = 0; i < R; ++i) wv[i] = L::load(w[i], k, m);
      for (int t = 0; t < T; ++t) {
        const __m512 xv = _mm512_maskz_loadu_ps(m, x[t] + k);
        for (int i = 0; i < R; ++i) acc[i][t] = _mm512_fmadd_ps(wv[i], xv, acc[i][t]);
      }
    }
    store_tile(j, r0, b0, acc);
  }
};

// ---- F32 weights, bit-exact with matmul_ref ----
//
// The V3.2 golden test amplifies float noise in the indexer (E4M3 rounding of q) into flipped top-k
// choices, so F32 weights keep matmul_ref's exact arithmetic: per output, products rounded to float
// and added in column order (no FMA). Lanes are 16 output rows instead of 16 columns: a 16 x 16
// block of weights is transposed in registers (64 shuffles) so that vector k holds column k of the
// 16 rows. F32 weights are the golden/test format (checkpoints ship BF16/FP8), and even so this stays
// memory-bound on one core at decode.

template <int T>
void exact_f32_tile(const Job& j, int64_t r0, int nr, int64_t b0) {
  __m512 acc[T];
  for (int t = 0; t < T; ++t) acc[t] = _mm512_setzero_ps();
  const float* x[T];
  for (int t = 0; t < T; ++t) x[t] = j.x + (b0 + t) * j.K;
  for (int64_t k = 0; k < j.K; k += 16) {
    const int kr = int(min64(16, j.K - k));
    const __mmask16 m = mask16(kr);
    __m512 v[16];
    for (int i = 0; i < 16; ++i)
      v[i] = i < nr ? _mm512_maskz_loadu_ps(m, reinterpret_cast<const float*>(row_of(j, r0 + i)) + k)
                    : _mm512_setzero_ps();
    transpose16(v);
    for (int c = 0; c < kr; ++c)
      for (int t = 0; t < T; ++t) acc[t] = _mm512_add_ps(acc[t], _mm512_mul_ps(v[c], _mm512_set1_ps(x[t][k + c])));
  }
  for (int t = 0; t < T; ++t) _mm512_mask_storeu_ps(j.y + (b0 + t) * j.N + r0, mask16(nr), acc[t]);
}

void exact_f32(const Job& j, int64_t n0, int64_t n1) {
  for (int64_t bb = 0; bb < j.B; bb += kTokenBlock) {
    const int64_t be = min64(j.B, bb + kTokenBlock);
    for (int64_t r = n0; r < n1; r += 16) {
      const int nr = int(min64(16, n1 - r));
      int64_t b = bb;
      for (; b + 4 <= be; b += 4) exact_f32_tile<4>(j, r, nr, b);
      switch (be - b) {
        case 3: exact_f32_tile<3>(j, r, nr, b); break;
        case 2: exact_f32_tile<2>(j, r, nr, b); break;
        case 1: exact_f32_tile<1>(j, r, nr, b); break;
        default: break;
      }
    }
  }
}

// ---- BF16 weights x bf16-rounded activations: vdpbf16ps, 32 columns per step ----

struct Bf16Dot {
  static constexpr int kRows = 4, kTokens = 4;
  // Row streams up to 16 tokens (one weight load feeds up to 16 vdpbf16ps): against the packed GEMM,
  // whose panels would serve 1-2 token tiles, +50-70 % at 9 tokens and level at 16 (matmul_bench).
  static constexpr bool kStreamTokens16 = true;
  template <int R, int T>
  static void tile(const Job& j, int64_t r0, int64_t b0) {
    __m512 acc[R][T];
    zero_tile(acc);
    const uint16_t* w[R];
    for (int i = 0; i < R; ++i) w[i] = reinterpret_cast<const uint16_t*>(row_of(j, r0 + i));
    const uint16_t* x[T];  // zero-padded to a multiple of 32, so only the weights need a mask
    for (int t = 0; t < T; ++t) x[t] = reinterpret_cast<const uint16_t*>(j.act + (b0 + t) * j.act_stride);
    for (int64_t k = 0; k < j.K; k += 32) {
      const __mmask32 m = mask32(j.K - k);
      __m512bh wv[R];
      for (int i = 0; i < R; ++i) {
        prefetch(reinterpret_cast<const uint8_t*>(w[i] + k));
        wv[i] = (__m512bh)_mm512_maskz_loadu_epi16(m, w[i] + k);
      }
      for (int t = 0; t < T; ++t) {
        const __m512bh xv = (__m512bh)_mm512_load_si512(x[t] + k);
        for (int i = 0; i < R; ++i) acc[i][t] = _mm512_dpbf16_ps(acc[i][t], wv[i], xv);
      }
    }
    store_tile(j, r0, b0, acc);
  }
  template <int T>
  struct Stream {
    static constexpr int U = T >= 4 ? 1 : 4 / T;  // independent accumulators per token
    const uint16_t* x[T];
    int64_t k_full;
    // rows() reads by 64-byte line: where every row starts `lead` elements past a line (whole-line
    // rows), from that line on, against activations shifted by `lead` (xl, zeros around them), the
    // first and last line masked to the row. Files written by HF's safetensors start tensors 8-byte
    // aligned only: loads that straddle two lines cost decode ~15-25 % (v2lite-5l BF16 tg128 on
    // Zen 5). Rows that are not whole lines are read as they lie (lead 0, xl = x).
    int64_t lead = 0, lines = 0;
    const uint16_t* xl[T] = {};
    explicit Stream(const Job& j) : k_full(j.K / (32 * U) * (32 * U)) {
      for (int t = 0; t < T; ++t) xl[t] = x[t] = reinterpret_cast<const uint16_t*>(j.act + t * j.act_stride);
      lines = (j.K + 31) / 32;  // x is zero-padded to whole 32-column steps
      const uintptr_t at = reinterpret_cast<uintptr_t>(j.w) & 63;
      if (j.w_row_bytes % 64 != 0 || at % 2 != 0 || at == 0) return;
      lead = int64_t(at / 2);
      lines = (lead + j.K + 31) / 32;
      thread_local PanelScratch scratch;
      auto* buf = static_cast<uint16_t*>(scratch.get(size_t(T * lines * 32) * sizeof(uint16_t)));
      for (int t = 0; t < T; ++t) {
        uint16_t* o = buf + t * lines * 32;
        for (int64_t i = 0; i < 32; ++i) o[i] = i < lead || i - lead >= j.K ? 0 : x[t][i - lead];
        for (int64_t c = 1; c < lines; ++c) {  // line c: x[32 c - lead, ...), zeros past K
          const int64_t k0 = 32 * c - lead;
          _mm512_store_si512(o + 32 * c, _mm512_maskz_loadu_epi16(mask32(j.K - k0), x[t] + k0));
        }
        xl[t] = o;
      }
    }
    // 1-4 tokens: 4 rows in lockstep, each prefetching the same columns of the row 4 below (read by
    // the next step) where Job::bf16_row_prefetch says so. From 5 tokens the dot products bound the
    // stream and lockstep gained nothing.
    static constexpr int kStepRows = T <= 4 ? 4 : 1;
    // One token: the step's rows spread over the task (stream_rows) where the hardware prefetchers
    // lead (not Job::bf16_row_prefetch). At 2-4 tokens spread rows measured mixed (+5-10 % lm_head,
    // -5-15 % experts, with or without the software prefetch): they keep the rows side by side.
    static constexpr bool kSpread = T == 1;
    // Rows r, r + stride, ..., r + (S - 1) * stride (stride 1: side by side), by line (above): line c
    // of row s holds its elements [32 c - lead, 32 c + 32 - lead), times xl's line c.
    void rows(const Job& j, int64_t r, __m512 (&out)[kStepRows][T], int64_t stride = 1) const {
      constexpr int S = kStepRows, V = T >= 2 ? 1 : 2;  // V accumulators per row and token
      const uint16_t* w[S];
      for (int s = 0; s < S; ++s) w[s] = reinterpret_cast<const uint16_t*>(row_of(j, r + s * stride)) - lead;
      const int64_t ahead = S * j.w_row_bytes / 2;  // bf16 elements
      __m512 acc[S][T][V];
      for (int s = 0; s < S; ++s)
        for (int t = 0; t < T; ++t)
          for (int v = 0; v < V; ++v) acc[s][t][v] = _mm512_setzero_ps();
      const auto line = [&](int64_t c, int v, __mmask32 m, bool masked) {
        for (int s = 0; s < S; ++s) {
          if (j.bf16_row_prefetch) {
            _mm_prefetch(reinterpret_cast<const char*>(w[s] + 32 * c + ahead), _MM_HINT_T0);
          } else if constexpr (T >= 2) {
            // 2 KiB ahead along the row and on into the next step's rows (lockstep_ahead): at
            // 2-4 tokens on Zen 5 the hardware prefetchers alone left each step's rows to start
            // cold (docs/kernels.md); at one token this measured level to slower.
            const int64_t at = lockstep_ahead(64 * c + kStreamPrefetchBytes, j.w_row_bytes, S);
            _mm_prefetch(reinterpret_cast<const char*>(w[s]) + at, _MM_HINT_T0);
          }
          const __m512bh wv = masked ? (__m512bh)_mm512_maskz_loadu_epi16(m, w[s] + 32 * c)
                                     : (__m512bh)_mm512_loadu_si512(w[s] + 32 * c);
          for (int t = 0; t < T; ++t)
            acc[s][t][v] = _mm512_dpbf16_ps(acc[s][t][v], wv, (__m512bh)_mm512_load_si512(xl[t] + 32 * c));
        }
      };
      // The first line from element `lead` on, the last up to the row's end; the rest whole.
      const int64_t last = lines - 1, tail = lead + j.K - 32 * last;
      const __mmask32 first_mask = __mmask32(~0u << lead) & (last == 0 ? mask32(tail) : ~__mmask32(0));
      line(0, 0, first_mask, true);
      int64_t c = 1;
      for (; c + V <= last; c += V)
        for (int v = 0; v < V; ++v) line(c + v, v, 0, false);
      for (; c < last; ++c) line(c, 0, 0, false);
      if (last > 0) line(last, V - 1, mask32(tail), tail < 32);
      for (int s = 0; s < S; ++s) sum_unrolled(out[s], acc[s]);
    }
    void row(const Job& j, int64_t r, __m512 (&out)[T]) const {
      const uint16_t* w = reinterpret_cast<const uint16_t*>(row_of(j, r));
      __m512 acc[T][U];
      for (int t = 0; t < T; ++t)
        for (int u = 0; u < U; ++u) acc[t][u] = _mm512_setzero_ps();
      int64_t k = 0;
      for (; k < k_full; k += 32 * U)
        for (int u = 0; u < U; ++u) {
          prefetch_stream(w + k + 32 * u);
          const __m512bh wv = (__m512bh)_mm512_loadu_si512(w + k + 32 * u);
          for (int t = 0; t < T; ++t)
            acc[t][u] = _mm512_dpbf16_ps(acc[t][u], wv, (__m512bh)_mm512_load_si512(x[t] + k + 32 * u));
        }
      for (; k < j.K; k += 32) {
        prefetch_stream(w + k);
        const __m512bh wv = (__m512bh)_mm512_maskz_loadu_epi16(mask32(j.K - k), w + k);
        for (int t = 0; t < T; ++t)
          acc[t][0] = _mm512_dpbf16_ps(acc[t][0], wv, (__m512bh)_mm512_load_si512(x[t] + k));
      }
      sum_unrolled(out, acc);
    }
  };
};

// ---- FP8-E4M3 with float32 block scales ----
//
// E4M3 -> f16 bits: sign to bit 15, exponent and mantissa to bits 13..7 (bit 14 = 0). As f16 that is
// the E4M3 value times 2^-8 (bias 15 instead of 7), subnormals included, and F16C widens it exactly.
// Multiplying by scale * 256 then gives exactly the float32 product decode(q) * scale of
// matmul_ref (all factors exact, one rounding). 0x7f/0xff (NaN) would decode as 480: they are
// detected on the bytes and turn the output into NaN, as in the reference.
struct Fp8 {
  static constexpr int kRows = 4, kTokens = 4;
  template <int R, int T>
  static void tile(const Job& j, int64_t r0, int64_t b0) {
    __m512 acc[R][T];
    zero_tile(acc);
    const uint8_t* w[R];
    const float* srow[R];
    for (int i = 0; i < R; ++i) {
      w[i] = row_of(j, r0 + i);
      srow[i] = j.scale_inv + ((j.row_offset + r0 + i) / j.block) * j.scale_cols;
    }
    const float* x[T];
    for (int t = 0; t < T; ++t) x[t] = j.x + (b0 + t) * j.K;
    const __m256i k7f = _mm256_set1_epi8(0x7f);
    __mmask32 nan[R] = {};
    for (int64_t kb = 0, sb = 0; kb < j.K; kb += j.block, ++sb) {
      const int64_t ke = min64(j.K, kb + j.block);
      __m512 s[R];
      for (int i = 0; i < R; ++i) s[i] = _mm512_set1_ps(srow[i][sb] * 256.f);
      for (int64_t k = kb; k < ke; k += 32) {
        const __mmask32 m = mask32(ke - k);
        __m512 w0[R], w1[R];
        for (int i = 0; i < R; ++i) {
          if ((k & 63) == 0) prefetch(w[i] + k);
          const __m256i q = _mm256_maskz_loadu_epi8(m, w[i] + k);
          nan[i] |= _mm256_cmpeq_epi8_mask(_mm256_and_si256(q, k7f), k7f);
          const __m512i h = e4m3_as_f16(q);
          w0[i] = _mm512_mul_ps(_mm512_cvtph_ps(_mm512_castsi512_si256(h)), s[i]);
          w1[i] = _mm512_mul_ps(_mm512_cvtph_ps(_mm512_extracti64x4_epi64(h, 1)), s[i]);
        }
        for (int t = 0; t < T; ++t) {
          const __m512 x0 = _mm512_maskz_loadu_ps(__mmask16(m), x[t] + k);
          const __m512 x1 = _mm512_maskz_loadu_ps(__mmask16(m >> 16), x[t] + k + 16);
          for (int i = 0; i < R; ++i) {
            acc[i][t] = _mm512_fmadd_ps(w0[i], x0, acc[i][t]);
            acc[i][t] = _mm512_fmadd_ps(w1[i], x1, acc[i][t]);
          }
        }
      }
    }
    for (int i = 0; i < R; ++i)
      if (nan[i])
        for (int t = 0; t < T; ++t) acc[i][t] = _mm512_set1_ps(__builtin_nanf(""));
    store_tile(j, r0, b0, acc);
  }
  // Decode: the scales are folded into the activations instead of the weights. Rows of one
  // 128-row block share a row of scales, so x'[k] = x[k] * scale[k / block] * 256 is made once per
  // block of rows (K multiplies) and each weight, decoded to its exact value * 2^-8, needs no
  // multiply of its own (4 fewer instructions per 64 weights). The products differ from
  // decode(q) * scale * x by one float rounding of x', well inside the float32 tolerance.
  template <int T>
  struct Stream {
    static constexpr int U = 2;  // accumulators per token: columns 0-15 and 16-31 of each step
    const float* x[T];
    float* xs = nullptr;  // T x kp: x' of row block `block_row`, zeros past K
    int64_t kp = 0, block_row = -1;
    explicit Stream(const Job& j) {
      for (int t = 0; t < T; ++t) x[t] = j.x + t * j.K;
      thread_local PanelScratch scratch;
      kp = (j.K + 63) / 64 * 64;
      xs = static_cast<float*>(scratch.get(size_t(T * kp) * sizeof(float)));
    }
    void scale_x(const Job& j, int64_t br) {
      const float* srow = j.scale_inv + br * j.scale_cols;
      for (int t = 0; t < T; ++t) {
        float* o = xs + t * kp;
        for (int64_t kb = 0, sb = 0; kb < j.K; kb += j.block, ++sb) {
          const int64_t ke = min64(j.K, kb + j.block);
          const __m512 sv = _mm512_set1_ps(srow[sb] * 256.f);
          for (int64_t k = kb; k < ke; k += 16) {
            const __mmask16 m = mask16(ke - k);
            _mm512_mask_storeu_ps(o + k, m, _mm512_mul_ps(_mm512_maskz_loadu_ps(m, x[t] + k), sv));
          }
        }
        for (int64_t k = j.K; k < kp; ++k) o[k] = 0.f;
      }
      block_row = br;
    }
    void row(const Job& j, int64_t r, __m512 (&out)[T]) {
      if (const int64_t br = (j.row_offset + r) / j.block; br != block_row) scale_x(j, br);
      const uint8_t* w = row_of(j, r);
      const __m512i k7f = _mm512_set1_epi8(0x7f);
      __m512 acc[T][U];
      for (int t = 0; t < T; ++t)
        for (int u = 0; u < U; ++u) acc[t][u] = _mm512_setzero_ps();
      __mmask64 nan = 0;
      for (int64_t k = 0; k < j.K; k += 64) {
        prefetch_stream(w + k);
        const __m512i q = _mm512_maskz_loadu_epi8(mask64(j.K - k), w + k);  // zeros decode to 0
        nan |= _mm512_cmpeq_epi8_mask(_mm512_and_si512(q, k7f), k7f);
        const __m512i h0 = e4m3_as_f16(_mm512_castsi512_si256(q));
        const __m512i h1 = e4m3_as_f16(_mm512_extracti64x4_epi64(q, 1));
        const __m512 w0 = _mm512_cvtph_ps(_mm512_castsi512_si256(h0));
        const __m512 w1 = _mm512_cvtph_ps(_mm512_extracti64x4_epi64(h0, 1));
        const __m512 w2 = _mm512_cvtph_ps(_mm512_castsi512_si256(h1));
        const __m512 w3 = _mm512_cvtph_ps(_mm512_extracti64x4_epi64(h1, 1));
        for (int t = 0; t < T; ++t) {
          const float* xt = xs + t * kp + k;
          acc[t][0] = _mm512_fmadd_ps(w0, _mm512_loadu_ps(xt), acc[t][0]);
          acc[t][1] = _mm512_fmadd_ps(w1, _mm512_loadu_ps(xt + 16), acc[t][1]);
          acc[t][0] = _mm512_fmadd_ps(w2, _mm512_loadu_ps(xt + 32), acc[t][0]);
          acc[t][1] = _mm512_fmadd_ps(w3, _mm512_loadu_ps(xt + 48), acc[t][1]);
        }
      }
      sum_unrolled(out, acc);
      if (nan)
        for (int t = 0; t < T; ++t) out[t] = _mm512_set1_ps(__builtin_nanf(""));
    }
  };
};

// ---- Q8_0 / Q4_0 with VNNI ----
//
// vpdpbusd multiplies unsigned by signed bytes. The weight codes are made unsigned (Q8_0: q ^ 0x80
// = q + 128; Q4_0 nibbles are already value + 8) and the activation codes stay signed; the offset
// times the sum of each lane's activation codes is precomputed per call (quantize_activations) and
// used as the accumulator's starting value, so every int32 lane is an exact partial dot product.
// Lane l of a 64-byte chunk belongs to one block; it is scaled by d_w(block) * dx(block) in float.
// A chunk's 2 or 4 block scales are widened (vcvtph2ps) and spread over their lanes with vpermps.
//
// The Q8_0 row streams (decode, 1-8 tokens) save loads: per 16 blocks they multiply the row's
// scales by each token's dx once (d_w * dx per block) and subtract the offset term as sum of
// d_w * cx (the per-block arrays of QActLayout), so a 64-byte chunk costs per token one activation
// load, vpdpbusd from zero, vpermps, vcvtdq2ps and vfmadd (in L2, B = 2: 2x, B = 8: 1.4x the lane
// version; B = 1 level). The int32 lanes stay exact; only the float rounding of the offset term
// differs.

inline const uint16_t* scales_of(const Job& j, const uint8_t* row) {
  return reinterpret_cast<const uint16_t*>(row + j.w_scales_offset);
}

// A row's scales sit after its codes, where the stream prefetch reaches only as the row starts:
// the first scale load of every row then waited on memory (half of Q8_0 decode's samples on
// vcvtph2ps). Rows ahead get their scale lines fetched explicitly.
constexpr int64_t kScaleRowsAhead = 2;
inline void prefetch_scales(const Job& j, int64_t r) {
  const int64_t ahead = r + kScaleRowsAhead;  // past the last row: a prefetch never faults
  const char* s = reinterpret_cast<const char*>(scales_of(j, row_of(j, ahead)));
  const int64_t n = j.K / 16;  // bytes: 2 per block of 32
  for (int64_t o = 0; o < n; o += 64) _mm_prefetch(s + o, _MM_HINT_T0);
  _mm_prefetch(s + n - 1, _MM_HINT_T0);
}

struct Q8 {
  static constexpr int kRows = 4, kTokens = 4;
  template <int R, int T>
  static void tile(const Job& j, int64_t r0, int64_t b0) {
    __m512 acc[R][T];
    zero_tile(acc);
    const int64_t nb = j.K / 32;
    const uint8_t* w[R];
    const uint16_t* d[R];
    for (int i = 0; i < R; ++i) {
      w[i] = row_of(j, r0 + i);
      d[i] = scales_of(j, w[i]);
    }
    const uint8_t* a[T];
    for (int t = 0; t < T; ++t) a[t] = j.act + (b0 + t) * j.act_stride;
    const __m512i flip = _mm512_set1_epi8(int8_t(0x80));
    // Lanes 0..7 take the chunk's first block scale, lanes 8..15 the second.
    const __m512i idx = _mm512_set_epi32(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0);
    for (int64_t c = 0; 2 * c < nb; ++c) {
      const int64_t left = nb - 2 * c;  // blocks from this chunk on
      const __mmask64 m = mask64(32 * left);
      __m512i wu[R];
      __m512 dw[R];
      for (int i = 0; i < R; ++i) {
        prefetch(w[i] + 64 * c);
        wu[i] = _mm512_xor_si512(_mm512_maskz_loadu_epi8(m, w[i] + 64 * c), flip);
        const __m512 s = _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(left >= 2 ? 3 : 1, d[i] + 2 * c));
        dw[i] = _mm512_permutexvar_ps(idx, s);
      }
      for (int t = 0; t < T; ++t) {
        const __m512i xq = _mm512_load_si512(a[t] + 64 * c);
        const __m512i corr = _mm512_load_si512(a[t] + j.act_corr_offset + 64 * c);
        const __m512 dx = _mm512_load_ps(reinterpret_cast<const float*>(a[t] + j.act_scale_offset + 64 * c));
        for (int i = 0; i < R; ++i) {
          const __m512i v = _mm512_dpbusd_epi32(corr, wu[i], xq);
          acc[i][t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(v), _mm512_mul_ps(dw[i], dx), acc[i][t]);
        }
      }
    }
    store_tile(j, r0, b0, acc);
  }
  template <int T>
  struct Stream {
    static constexpr int U = T >= 4 ? 1 : 4 / T;
    int64_t nb;  // blocks; a chunk holds 2, a group of 8 chunks 16
    const uint8_t* a[T];
    explicit Stream(const Job& j) : nb(j.K / 32) {
      for (int t = 0; t < T; ++t) a[t] = j.act + t * j.act_stride;
    }
    void row(const Job& j, int64_t r, __m512 (&out)[T]) const {
      const __m512i flip = _mm512_set1_epi8(int8_t(0x80));
      const __m512i idx = _mm512_set_epi32(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0);
      const uint8_t* w = row_of(j, r);
      const uint16_t* d = scales_of(j, w);
      prefetch_scales(j, r);
      __m512 acc[T][U];
      for (int t = 0; t < T; ++t)
        for (int u = 0; u < U; ++u) acc[t][u] = _mm512_setzero_ps();
      __m512 p[T];  // d_w * dx of the group's 16 blocks, per token
      // Chunk c + g of the group starting at chunk c: lanes 0-7 block 2g, lanes 8-15 block 2g + 1.
      auto chunk = [&](int64_t c, int g, __m512i wu) {
        const __m512i lanes = _mm512_add_epi32(idx, _mm512_set1_epi32(2 * g));
        for (int t = 0; t < T; ++t) {
          const __m512i v = _mm512_dpbusd_epi32(_mm512_setzero_si512(), wu, _mm512_load_si512(a[t] + 64 * (c + g)));
          acc[t][g % U] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(v), _mm512_permutexvar_ps(lanes, p[t]), acc[t][g % U]);
        }
      };
      for (int64_t c = 0; 2 * c < nb; c += 8) {
        const int64_t left = nb - 2 * c;  // blocks from this group on
        const __m512 s16 =
            left >= 16 ? _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(d + 2 * c)))
                       : _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(mask16(left), d + 2 * c));
        for (int t = 0; t < T; ++t) {
          const float* dx = reinterpret_cast<const float*>(a[t] + j.act_block_scale_offset) + 2 * c;
          const float* cx = reinterpret_cast<const float*>(a[t] + j.act_block_corr_offset) + 2 * c;
          p[t] = _mm512_mul_ps(s16, _mm512_load_ps(dx));
          acc[t][0] = _mm512_fnmadd_ps(s16, _mm512_load_ps(cx), acc[t][0]);
        }
        if (left >= 16) {
          for (int g = 0; g < 8; ++g) {
            prefetch_stream(w + 64 * (c + g));
            chunk(c, g, _mm512_xor_si512(_mm512_loadu_si512(w + 64 * (c + g)), flip));
          }
        } else {
          for (int g = 0; 2 * g < left; ++g) {
            prefetch_stream(w + 64 * (c + g));
            // Past the row the masked bytes become 128 but meet zero activation codes.
            chunk(c, g, _mm512_xor_si512(_mm512_maskz_loadu_epi8(mask64(32 * (left - 2 * g)), w + 64 * (c + g)), flip));
          }
        }
      }
      sum_unrolled(out, acc);
    }
  };
};

// Q8_0 at 4-8 tokens (a server's batch) with 16 weight rows as the lanes. The row streams above
// spend per 64-byte chunk and token a vpdpbusd, a vpermps, a conversion and an FMA (the block scales
// are per lane there, 2 blocks per vector), and at 8 tokens they run out of registers. Here a
// 16-row x 64-byte tile is transposed in registers once (dword q of the 16 rows in vector q), then
// each token runs 8 vpdpbusd per block with its 4 activation bytes broadcast, and one conversion and
// two FMAs scale 16 rows' block dots at once. One thread, weights in L2 (N = 256, K = 2048):
// B = 8 1.4x, B = 4 1.1x the row stream, B = 3 level (so it keeps the stream).
template <int T>
void q8_lanes(const Job& j, int64_t n0, int64_t n1) {
  const int64_t nb = j.K / 32, st = j.act_stride;
  const __m512i flip = _mm512_set1_epi8(int8_t(0x80));
  for (int64_t r0 = n0; r0 < n1; r0 += 16) {
    const int nr = int(min64(16, n1 - r0));
    const uint8_t* w[16];
    for (int i = 0; i < 16; ++i) w[i] = row_of(j, r0 + std::min(i, nr - 1));  // past nr: a repeat, not stored
    const int64_t next = int64_t(row_of(j, r0 + 16) - w[0]);  // the next tile, prefetched as this one goes
    __m512 acc[T];
    for (int t = 0; t < T; ++t) acc[t] = _mm512_setzero_ps();
    for (int64_t b0 = 0; b0 < nb; b0 += 16) {
      // d_w of blocks b0 .. b0 + 15 with the rows as lanes: sc[q] = block b0 + q (in L1, not in
      // registers: the tile and the accumulators need them).
      const __mmask16 bm = mask16(nb - b0);
      alignas(64) float sc[16][16];
      {
        __m512 v[16];
        for (int i = 0; i < 16; ++i) v[i] = _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(bm, scales_of(j, w[i]) + b0));
        transpose16(v);
        for (int q = 0; q < 16; ++q) _mm512_store_ps(sc[q], v[q]);
      }
      for (int64_t b = b0; b < std::min(nb, b0 + 16); b += 2) {
        const __mmask64 m = mask64(32 * (nb - b));
        __m512 v[16];  // integer codes in float registers, for transpose16
        for (int i = 0; i < 16; ++i) {
          _mm_prefetch(reinterpret_cast<const char*>(w[i] + next + 32 * b), _MM_HINT_T0);
          v[i] = _mm512_castsi512_ps(_mm512_xor_si512(_mm512_maskz_loadu_epi8(m, w[i] + 32 * b), flip));
        }
        transpose16(v);  // v[q]: bytes 4q .. 4q + 3 of the 16 rows' chunk
        for (int h = 0; h < 2 && b + h < nb; ++h) {
          const __m512 dw = _mm512_load_ps(sc[b + h - b0]);
          for (int t = 0; t < T; ++t) {
            const uint8_t* at = j.act + t * st;
            const int32_t* xa = reinterpret_cast<const int32_t*>(at + 32 * (b + h));
            __m512i d0 = _mm512_setzero_si512(), d1 = _mm512_setzero_si512();
            for (int q = 0; q < 8; q += 2) {
              d0 = _mm512_dpbusd_epi32(d0, _mm512_castps_si512(v[8 * h + q]), _mm512_set1_epi32(xa[q]));
              d1 = _mm512_dpbusd_epi32(d1, _mm512_castps_si512(v[8 * h + q + 1]), _mm512_set1_epi32(xa[q + 1]));
            }
            // d_w * (dot_u * dx - cx): the unsigned codes' offset 128 * sum(q) * dx comes off per block.
            const float dx = reinterpret_cast<const float*>(at + j.act_block_scale_offset)[b + h];
            const float cx = reinterpret_cast<const float*>(at + j.act_block_corr_offset)[b + h];
            const __m512 e = _mm512_fmsub_ps(_mm512_cvtepi32_ps(_mm512_add_epi32(d0, d1)), _mm512_set1_ps(dx),
                                             _mm512_set1_ps(cx));
            acc[t] = _mm512_fmadd_ps(e, dw, acc[t]);
          }
        }
      }
    }
    for (int t = 0; t < T; ++t) _mm512_mask_storeu_ps(j.y + t * j.N + r0, mask16(nr), acc[t]);
  }
}

struct Q4 {
  static constexpr int kRows = 4, kTokens = 3;
  template <int R, int T>
  static void tile(const Job& j, int64_t r0, int64_t b0) {
    __m512 acc[R][T];
    zero_tile(acc);
    const int64_t nb = j.K / 32;
    const uint8_t* w[R];
    const uint16_t* d[R];
    for (int i = 0; i < R; ++i) {
      w[i] = row_of(j, r0 + i);
      d[i] = scales_of(j, w[i]);
    }
    const uint8_t* a[T];
    for (int t = 0; t < T; ++t) a[t] = j.act + (b0 + t) * j.act_stride;
    const __m512i low4 = _mm512_set1_epi8(0x0f);
    // Lanes 4m .. 4m + 3 take the scale of the chunk's block m.
    const __m512i idx = _mm512_set_epi32(3, 3, 3, 3, 2, 2, 2, 2, 1, 1, 1, 1, 0, 0, 0, 0);
    for (int64_t c = 0; 4 * c < nb; ++c) {
      const int64_t left = nb - 4 * c;
      const __mmask64 m = mask64(16 * left);
      __m512i lo[R], hi[R];
      __m512 dw[R];
      for (int i = 0; i < R; ++i) {
        prefetch(w[i] + 64 * c);
        const __m512i v = _mm512_maskz_loadu_epi8(m, w[i] + 64 * c);
        lo[i] = _mm512_and_si512(v, low4);
        hi[i] = _mm512_and_si512(_mm512_srli_epi16(v, 4), low4);
        const __m512 s = _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(mask16(left), d[i] + 4 * c));
        dw[i] = _mm512_permutexvar_ps(idx, s);
      }
      for (int t = 0; t < T; ++t) {
        const __m512i xlo = _mm512_load_si512(a[t] + 128 * c);
        const __m512i xhi = _mm512_load_si512(a[t] + 128 * c + 64);
        const __m512i corr = _mm512_load_si512(a[t] + j.act_corr_offset + 64 * c);
        const __m512 dx = _mm512_load_ps(reinterpret_cast<const float*>(a[t] + j.act_scale_offset + 64 * c));
        for (int i = 0; i < R; ++i) {
          const __m512i v = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(corr, lo[i], xlo), hi[i], xhi);
          acc[i][t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(v), _mm512_mul_ps(dw[i], dx), acc[i][t]);
        }
      }
    }
    store_tile(j, r0, b0, acc);
  }
  template <int T>
  struct Stream {
    static constexpr int U = T >= 3 ? 1 : 2;
    int64_t nb, n_full;  // chunks of 4 blocks; n_full: those in whole groups of 4 chunks (16 blocks)
    const uint8_t* a[T];
    explicit Stream(const Job& j) : nb(j.K / 32), n_full(nb / 16 * 4) {
      for (int t = 0; t < T; ++t) a[t] = j.act + t * j.act_stride;
    }
    void row(const Job& j, int64_t r, __m512 (&out)[T]) const {
      const __m512i low4 = _mm512_set1_epi8(0x0f);
      const __m512i idx = _mm512_set_epi32(3, 3, 3, 3, 2, 2, 2, 2, 1, 1, 1, 1, 0, 0, 0, 0);
      const uint8_t* w = row_of(j, r);
      const uint16_t* d = scales_of(j, w);
      prefetch_scales(j, r);
      __m512 acc[T][U];
      for (int t = 0; t < T; ++t)
        for (int u = 0; u < U; ++u) acc[t][u] = _mm512_setzero_ps();
      auto chunk = [&](int64_t c, int u, __m512i v, __m512 dw) {
        const __m512i lo = _mm512_and_si512(v, low4), hi = _mm512_and_si512(_mm512_srli_epi16(v, 4), low4);
        for (int t = 0; t < T; ++t) {
          const __m512i corr = _mm512_load_si512(a[t] + j.act_corr_offset + 64 * c);
          const __m512i p = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(corr, lo, _mm512_load_si512(a[t] + 128 * c)), hi,
                                                _mm512_load_si512(a[t] + 128 * c + 64));
          const __m512 dx = _mm512_load_ps(reinterpret_cast<const float*>(a[t] + j.act_scale_offset + 64 * c));
          acc[t][u] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p), _mm512_mul_ps(dw, dx), acc[t][u]);
        }
      };
      int64_t c = 0;
      // Groups of 4 chunks: their 16 block scales are widened once and spread per chunk.
      for (; c < n_full; c += 4) {
        const __m512 s16 = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(d + 4 * c)));
        for (int g = 0; g < 4; ++g) {
          prefetch_stream(w + 64 * (c + g));
          const __m512 dw = _mm512_permutexvar_ps(_mm512_add_epi32(idx, _mm512_set1_epi32(4 * g)), s16);
          chunk(c + g, g % U, _mm512_loadu_si512(w + 64 * (c + g)), dw);
        }
      }
      for (; 4 * c < nb; ++c) {
        const int64_t left = nb - 4 * c;
        prefetch_stream(w + 64 * c);
        const __m512 dw = _mm512_permutexvar_ps(idx, _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(mask16(left), d + 4 * c)));
        chunk(c, 0, _mm512_maskz_loadu_epi8(mask64(16 * left), w + 64 * c), dw);
      }
      sum_unrolled(out, acc);
    }
  };
};

// ---- activation conversions (the scalar versions: matmul.cpp, quantize_activations) ----

void prep_bf16(uint8_t* out, const float* x, int64_t K, int64_t stride) {
  auto* o = reinterpret_cast<uint16_t*>(out);
  int64_t k = 0;
  for (; k < K; k += 32) {  // round to nearest even, like f32_to_bf16 (vcvtne2ps2bf16)
    const __mmask32 m = mask32(K - k);
    const __m512 lo = _mm512_maskz_loadu_ps(__mmask16(m), x + k);
    const __m512 hi = _mm512_maskz_loadu_ps(__mmask16(m >> 16), x + k + 16);
    _mm512_store_si512(o + k, (__m512i)_mm512_cvtne2ps_pbh(hi, lo));
  }
  for (int64_t b = k * 2; b < stride; b += 64) _mm512_store_si512(out + b, _mm512_setzero_si512());
}

// One block of 32: int8 codes round(x * 127 / amax) (16 + 16 bytes) and dx = amax / 127, exactly as
// quantize_act_block (same float operations, round to nearest even).
inline void quant_block(const float* x, __m128i* q0, __m128i* q1, float* dx) {
  const __m512 v0 = _mm512_loadu_ps(x), v1 = _mm512_loadu_ps(x + 16);
  const __m512 a0 = _mm512_abs_ps(v0), a1 = _mm512_abs_ps(v1);
  const __m512 inf = _mm512_set1_ps(__builtin_inff());
  // not (|x| < inf): NaN or infinity somewhere in the block
  if (_mm512_cmp_ps_mask(a0, inf, _CMP_NLT_UQ) | _mm512_cmp_ps_mask(a1, inf, _CMP_NLT_UQ)) {
    *q0 = *q1 = _mm_setzero_si128();
    *dx = __builtin_nanf("");
    return;
  }
  const float amax = _mm512_reduce_max_ps(_mm512_max_ps(a0, a1));
  *dx = amax / 127.f;
  const __m512 id = _mm512_set1_ps(amax != 0.f ? 127.f / amax : 0.f);
  const __m512i lim = _mm512_set1_epi32(127), nlim = _mm512_set1_epi32(-127);
  const __m512i i0 = _mm512_cvtps_epi32(_mm512_mul_ps(v0, id)), i1 = _mm512_cvtps_epi32(_mm512_mul_ps(v1, id));
  *q0 = _mm512_cvtsepi32_epi8(_mm512_max_epi32(_mm512_min_epi32(i0, lim), nlim));
  *q1 = _mm512_cvtsepi32_epi8(_mm512_max_epi32(_mm512_min_epi32(i1, lim), nlim));
}

// Sum of each int32 lane's four signed bytes.
inline __m512i lane_sums(__m512i codes) { return _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_set1_epi8(1), codes); }

// Q8_0 block b's dx and its offset correction dx * (128 * sum of its codes) into the per-block arrays.
inline void store_block_terms(uint8_t* out, const Job& j, int64_t b, float dx, __m128i q0, __m128i q1) {
  const __m512i s = lane_sums(_mm512_inserti32x4(_mm512_zextsi128_si512(q0), q1, 1));
  reinterpret_cast<float*>(out + j.act_block_scale_offset)[b] = dx;
  reinterpret_cast<float*>(out + j.act_block_corr_offset)[b] = dx * float(128 * _mm512_reduce_add_epi32(s));
}

void prep_q8_0(uint8_t* out, const float* x, const Job& j) {
  for (int64_t b = 0; b < j.act_stride; b += 64) _mm512_store_si512(out + b, _mm512_setzero_si512());
  const int64_t nb = j.K / 32;
  for (int64_t c = 0; 2 * c < nb; ++c) {
    float dx[2] = {0.f, 0.f};
    for (int i = 0; i < 2 && 2 * c + i < nb; ++i) {
      __m128i q0, q1;
      quant_block(x + 32 * (2 * c + i), &q0, &q1, &dx[i]);
      _mm_store_si128(reinterpret_cast<__m128i*>(out + 64 * c + 32 * i), q0);
      _mm_store_si128(reinterpret_cast<__m128i*>(out + 64 * c + 32 * i + 16), q1);
      store_block_terms(out, j, 2 * c + i, dx[i], q0, q1);
    }
    const __m512i s = lane_sums(_mm512_load_si512(out + 64 * c));
    _mm512_store_si512(out + j.act_corr_offset + 64 * c, _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_slli_epi32(s, 7)));
    _mm512_store_ps(reinterpret_cast<float*>(out + j.act_scale_offset + 64 * c),
                    _mm512_mask_blend_ps(0xff00, _mm512_set1_ps(dx[0]), _mm512_set1_ps(dx[1])));
  }
}

void prep_q4_0(uint8_t* out, const float* x, const Job& j) {
  for (int64_t b = 0; b < j.act_stride; b += 64) _mm512_store_si512(out + b, _mm512_setzero_si512());
  const int64_t nb = j.K / 32;
  const __m512i idx = _mm512_set_epi32(3, 3, 3, 3, 2, 2, 2, 2, 1, 1, 1, 1, 0, 0, 0, 0);
  for (int64_t c = 0; 4 * c < nb; ++c) {
    alignas(16) float dx[4] = {0.f, 0.f, 0.f, 0.f};
    for (int i = 0; i < 4 && 4 * c + i < nb; ++i) {
      __m128i q0, q1;
      quant_block(x + 32 * (4 * c + i), &q0, &q1, &dx[i]);
      _mm_store_si128(reinterpret_cast<__m128i*>(out + 128 * c + 16 * i), q0);       // meets low nibbles
      _mm_store_si128(reinterpret_cast<__m128i*>(out + 128 * c + 64 + 16 * i), q1);  // high nibbles
    }
    const __m512i s = _mm512_add_epi32(lane_sums(_mm512_load_si512(out + 128 * c)),
                                       lane_sums(_mm512_load_si512(out + 128 * c + 64)));
    _mm512_store_si512(out + j.act_corr_offset + 64 * c, _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_slli_epi32(s, 3)));
    _mm512_store_ps(reinterpret_cast<float*>(out + j.act_scale_offset + 64 * c),
                    _mm512_permutexvar_ps(idx, _mm512_castps128_ps512(_mm_load_ps(dx))));
  }
}

// ---- dequantization (dequantize_row_range's fast path, e.g. absorbed MLA's W_UK at decode) ----

void dequant_bf16(float* out, const uint16_t* p, int64_t n) {
  for (int64_t k = 0; k < n; k += 16) {
    const __mmask16 m = mask16(n - k);
    const __m256i h = _mm256_maskz_loadu_epi16(m, p + k);
    _mm512_mask_storeu_ps(out + k, m, widen_bf16(h));
  }
}

inline __m512 block_scale(const uint8_t* scales, int64_t b) {
  uint16_t h;
  __builtin_memcpy(&h, scales + 2 * b, 2);
  return _mm512_set1_ps(_mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(h))));
}

void dequant_q8_0(float* out, const uint8_t* codes, const uint8_t* scales, int64_t nb) {
  for (int64_t b = 0; b < nb; ++b) {
    const __m512 d = block_scale(scales, b);
    for (int h = 0; h < 2; ++h) {
      const __m128i q = _mm_loadu_si128(reinterpret_cast<const __m128i*>(codes + 32 * b + 16 * h));
      _mm512_storeu_ps(out + 32 * b + 16 * h, _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(q)), d));
    }
  }
}

void dequant_q4_0(float* out, const uint8_t* codes, const uint8_t* scales, int64_t nb) {
  const __m128i low4 = _mm_set1_epi8(0x0f);
  const __m512i eight = _mm512_set1_epi32(8);
  for (int64_t b = 0; b < nb; ++b) {
    const __m512 d = block_scale(scales, b);
    const __m128i p = _mm_loadu_si128(reinterpret_cast<const __m128i*>(codes + 16 * b));
    const __m128i lo = _mm_and_si128(p, low4), hi = _mm_and_si128(_mm_srli_epi16(p, 4), low4);
    _mm512_storeu_ps(out + 32 * b, _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(_mm512_cvtepu8_epi32(lo), eight)), d));
    _mm512_storeu_ps(out + 32 * b + 16,
                     _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(_mm512_cvtepu8_epi32(hi), eight)), d));
  }
}

// ---- transposed products y = x · W, one token (matmul_transposed: absorbed MLA's W_UK) ----
//
// y[k] = sum_n x[n] W[n, k]. A column tile of 256 stays in 16 accumulators while every row streams
// past, and each row's block scales are multiplied by x[n] once, so a weight costs a widening load,
// a convert and an FMA (dequantizing into a buffer and then axpy stored and reloaded every value:
// ~2.5x the instructions; it was ~2.5 % of Q8_0 decode).
template <class W>
void rows_t(float* y, const float* x, const uint8_t* w, int64_t row_bytes, int64_t N, int64_t K) {
  constexpr int64_t kRowsAhead = 8;
  for (int64_t k0 = 0; k0 < K; k0 += 256) {
    const int nv = int(min64(16, (K - k0) / 16));  // K is a multiple of 32: whole vectors
    __m512 acc[16];
    for (int i = 0; i < 16; ++i) acc[i] = _mm512_setzero_ps();
    for (int64_t n = 0; n < N; ++n) {
      const uint8_t* row = w + n * row_bytes;
      // The same columns of the row kRowsAhead below (rows are read a piece at a time, 2 pieces
      // per row at K = 512, the DeepSeek shapes, which the hardware prefetchers did not follow).
      if (n + kRowsAhead < N) W::prefetch(row + kRowsAhead * row_bytes, K, k0);
      // x[n] times the scale of each of the tile's 8 blocks, broadcast per block in registers.
      const __m512 s = W::scales(row, K, k0, x[n]);
      if (nv == 16) {
        for (int i = 0; i < 16; ++i) acc[i] = _mm512_fmadd_ps(W::load(row, K, k0 + 16 * i), W::lane(s, i / 2), acc[i]);
      } else {
        for (int i = 0; i < nv; ++i) acc[i] = _mm512_fmadd_ps(W::load(row, K, k0 + 16 * i), W::lane(s, i / 2), acc[i]);
      }
    }
    for (int i = 0; i < nv; ++i) _mm512_storeu_ps(y + k0 + 16 * i, acc[i]);
  }
}

// The tile's (up to) 8 f16 block scales times xn, in lanes 0..7; lane(s, b) spreads block b's.
inline __m512 block_scales(const uint8_t* scales, int64_t nb_left, float xn) {
  const __m256 d = _mm256_cvtph_ps(_mm_maskz_loadu_epi16(__mmask8(nb_left >= 8 ? 0xff : (1u << nb_left) - 1), scales));
  return _mm512_castps256_ps512(_mm256_mul_ps(d, _mm256_set1_ps(xn)));
}
inline __m512 block_lane(__m512 s, int b) { return _mm512_permutexvar_ps(_mm512_set1_epi32(b), s); }

// The lines of a row's codes [c0, c0 + n) and of its scales at s.
inline void prefetch_piece(const uint8_t* row, int64_t c0, int64_t n, const uint8_t* s) {
  for (int64_t l = 0; l < n; l += 64) _mm_prefetch(reinterpret_cast<const char*>(row + c0 + l), _MM_HINT_T0);
  if (s) _mm_prefetch(reinterpret_cast<const char*>(s), _MM_HINT_T0);
}

struct RowsQ8 {
  static void prefetch(const uint8_t* row, int64_t K, int64_t k0) {
    prefetch_piece(row, k0, min64(256, K - k0), row + K + 2 * (k0 / 32));
  }
  static __m512 scales(const uint8_t* row, int64_t K, int64_t k0, float xn) {
    return block_scales(row + K + 2 * (k0 / 32), (K - k0) / 32, xn);
  }
  static __m512 lane(__m512 s, int b) { return block_lane(s, b); }
  static __m512 load(const uint8_t* row, int64_t, int64_t k) {
    return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(row + k))));
  }
};

struct RowsQ4 {  // block b: 16 bytes, value 32b + i in the low nibble of byte i, 32b + 16 + i in the high
  static void prefetch(const uint8_t* row, int64_t K, int64_t k0) {
    prefetch_piece(row, k0 / 2, min64(128, (K - k0) / 2), row + K / 2 + 2 * (k0 / 32));
  }
  static __m512 scales(const uint8_t* row, int64_t K, int64_t k0, float xn) {
    return block_scales(row + K / 2 + 2 * (k0 / 32), (K - k0) / 32, xn);
  }
  static __m512 lane(__m512 s, int b) { return block_lane(s, b); }
  static __m512 load(const uint8_t* row, int64_t, int64_t k) {
    // The nibble indexes a table of the 16 values -8 .. 7 (vpermps reads the low 4 bits of each
    // lane): one instruction instead of mask, subtract and convert.
    const __m512i b = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(row + k / 32 * 16)));
    const __m512 values = _mm512_set_ps(7, 6, 5, 4, 3, 2, 1, 0, -1, -2, -3, -4, -5, -6, -7, -8);
    return _mm512_permutexvar_ps((k & 16) ? _mm512_srli_epi32(b, 4) : b, values);
  }
};

struct RowsBF16 {
  static void prefetch(const uint8_t* row, int64_t K, int64_t k0) { prefetch_piece(row, 2 * k0, 2 * min64(256, K - k0), nullptr); }
  static __m512 scales(const uint8_t*, int64_t, int64_t, float xn) { return _mm512_set1_ps(xn); }
  static __m512 lane(__m512 s, int) { return s; }
  static __m512 load(const uint8_t* row, int64_t, int64_t k) {
    const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(row + 2 * k));
    return widen_bf16(h);
  }
};

// FP8 rows (FP8 checkpoints' kv_b_proj, W_UK of absorbed MLA at decode): the same column tiles;
// E4M3 widened exactly as in Fp8 (value * 2^-8, hence the 256), x[n] times the row's block scale
// per 16 columns (blocks are multiples of 32). False when a NaN code was seen: matmul_transposed
// then recomputes on the scalar path, which propagates it as matmul_ref does.
bool rows_t_fp8(float* y, const float* x, const Job& j) {
  const int64_t N = j.N, K = j.K;  // K % 32 == 0
  const __m128i k7f = _mm_set1_epi8(0x7f);
  __mmask16 nan = 0;
  for (int64_t k0 = 0; k0 < K; k0 += 256) {
    const int nv = int(min64(16, (K - k0) / 16));
    __m512 acc[16];
    for (int i = 0; i < 16; ++i) acc[i] = _mm512_setzero_ps();
    for (int64_t n = 0; n < N; ++n) {
      const uint8_t* row = row_of(j, n);
      const float* srow = j.scale_inv + ((j.row_offset + n) / j.block) * j.scale_cols;
      const float xn = x[n] * 256.f;
      for (int i = 0; i < nv; ++i) {
        const int64_t k = k0 + 16 * i;
        const __m128i q = _mm_loadu_si128(reinterpret_cast<const __m128i*>(row + k));
        nan |= _mm_cmpeq_epi8_mask(_mm_and_si128(q, k7f), k7f);
        const __m512 v = _mm512_cvtph_ps(_mm512_castsi512_si256(e4m3_as_f16(_mm256_zextsi128_si256(q))));
        acc[i] = _mm512_fmadd_ps(v, _mm512_set1_ps(xn * srow[k / j.block]), acc[i]);
      }
    }
    for (int i = 0; i < nv; ++i) _mm512_storeu_ps(y + k0 + 16 * i, acc[i]);
  }
  return nan == 0;
}

// ---- BF16 prefill GEMM: packed weight panels x packed activation tiles ----
//
// Prefill multiplies hundreds of tokens by each weight, so it is bound by vdpbf16ps throughput, not
// memory. The 4 x 4 dot-product tiles of Bf16Dot reached ~35 % of it: every step reloads
// activations from L2 and every output ends in a horizontal sum. Here, as in a BLIS GEMM, 32 weight
// rows x 256 columns are repacked so that one vector holds the (k, k + 1) pairs of 16 rows (a 16 KB
// panel, read from L1 by every token tile), activations arrive packed per 12-token tile (Job::act,
// kGemmTokens), and a 12 x 32 register tile keeps 24 accumulators: per pair, 2 panel loads and 12
// broadcast activation pairs feed 24 vdpbf16ps.

constexpr int64_t kGemmRows = 32;            // weight rows per packed panel (two 16-lane vectors)
constexpr int64_t kGemmStreamPairs = 2048;   // k pairs packed at once: 32 rows x 4096 columns, 256 KiB

inline __mmask32 mask32_from(int64_t n) { return n <= 0 ? __mmask32(0) : mask32(n); }

// 16 pairs (32 values) of a stored BF16 row from pair p on; zeros past K.
inline __m512i load_pairs(const Job& j, const uint8_t* row, int64_t p) {
  return _mm512_maskz_loadu_epi16(mask32_from(j.K - 2 * p), row + 4 * p);
}

// The weight rows of the prefill GEMM as bf16 pairs: pairs(j, r, p) = 16 pairs (32 values) of row r
// from pair p on (p % 16 == 0), zeros past K; kPairBytes stored bytes per pair.
struct Bf16Pairs {  // stored BF16: the bits as they are
  static constexpr int64_t kPairBytes = 4;
  static __m512i pairs(const Job& j, int64_t r, int64_t p) { return load_pairs(j, row_of(j, r), p); }
};
// FP8-E4M3 with block scales (block % 32 == 0, so the 32 values share a scale): decode(q) * scale,
// exactly as in Fp8, rounded to bf16 (nearest even), as the AMX panels do; NaN codes stay NaN.
struct Fp8Pairs {
  static constexpr int64_t kPairBytes = 2;
  // pack_w_panel looks each row's scale row up once per panel and the block column once per 16 pairs
  // (two integer divisions per 32 weights otherwise, ~1/3 of the packing's time).
  static __m512i pairs(const uint8_t* row, int64_t K, int64_t p, float scale) {
    __m512 lo, hi;
    e4m3_scaled(row + 2 * p, 2 * p < K ? mask32(K - 2 * p) : __mmask32(0), scale, lo, hi);
    return (__m512i)_mm512_cvtne2ps_pbh(hi, lo);
  }
};

// Panel of rows [r0, r0 + nr) (nr <= kGemmRows, zeros beyond) and pairs [p0, p0 + np) of W:
// dst[(p - p0) * kGemmRows + row] = pair p of that row.
template <class W>
void pack_w_panel(uint32_t* dst, const Job& j, int64_t r0, int64_t nr, int64_t p0, int64_t np) {
  constexpr bool kScaled = requires { W::pairs(nullptr, int64_t(), int64_t(), 0.f); };
  const float* srow[kGemmRows] = {};  // FP8: each row's block-scale row
  if constexpr (kScaled)
    for (int64_t i = 0; i < nr; ++i) srow[i] = j.scale_inv + ((j.row_offset + r0 + i) / j.block) * j.scale_cols;
  for (int h = 0; h < 2; ++h)
    for (int64_t p = p0; p < p0 + np; p += 16) {
      const int64_t kb = kScaled ? 2 * p / j.block : 0;
      __m512 r[16];
      for (int i = 0; i < 16; ++i) {
        const int64_t row = 16 * h + i;
        if (row >= nr) {
          r[i] = _mm512_setzero_ps();
        } else {
          // Each row 8 steps ahead, once per line: the packing's loads waited on memory (~1/3 of
          // its time with FP8 experts at ~48 tokens), the L2 prefetch of the next piece (bf16_gemm)
          // comes too late or too bunched where a panel serves only a few token tiles.
          if (((p * W::kPairBytes) & 63) == 0)
            _mm_prefetch(reinterpret_cast<const char*>(row_of(j, r0 + row) + W::kPairBytes * (p + 8 * 16)), _MM_HINT_T0);
          if constexpr (kScaled) r[i] = _mm512_castsi512_ps(W::pairs(row_of(j, r0 + row), j.K, p, srow[row][kb]));
          else r[i] = _mm512_castsi512_ps(W::pairs(j, r0 + row, p));
        }
      }
      transpose16(r);
      for (int q = 0; q < 16; ++q) _mm512_store_ps(reinterpret_cast<float*>(dst + (p - p0 + q) * kGemmRows + 16 * h), r[q]);
    }
}

// y (rows x cols of a 12 x 32 tile, row stride ldy) (+)= the tile's np pairs ap x the panel wp.
inline void gemm_tile(const uint32_t* ap, const uint32_t* wp, int64_t np, float* y, int64_t ldy, int64_t rows,
                      int64_t cols, bool accumulate) {
  __m512 c0[kGemmTokens], c1[kGemmTokens];
  for (int i = 0; i < kGemmTokens; ++i) c0[i] = c1[i] = _mm512_setzero_ps();
  for (int64_t p = 0; p < np; ++p) {
    const __m512bh w0 = (__m512bh)_mm512_load_si512(wp + p * kGemmRows);
    const __m512bh w1 = (__m512bh)_mm512_load_si512(wp + p * kGemmRows + 16);
    for (int i = 0; i < kGemmTokens; ++i) {
      const __m512bh a = (__m512bh)_mm512_set1_epi32(int(ap[p * kGemmTokens + i]));
      c0[i] = _mm512_dpbf16_ps(c0[i], a, w0);
      c1[i] = _mm512_dpbf16_ps(c1[i], a, w1);
    }
  }
  const __mmask16 m0 = mask16(cols), m1 = cols > 16 ? mask16(cols - 16) : __mmask16(0);
  for (int i = 0; i < kGemmTokens; ++i) {
    if (i >= rows) break;
    float* yi = y + i * ldy;
    if (accumulate) {
      c0[i] = _mm512_add_ps(c0[i], _mm512_maskz_loadu_ps(m0, yi));
      c1[i] = _mm512_add_ps(c1[i], _mm512_maskz_loadu_ps(m1, yi + 16));
    }
    _mm512_mask_storeu_ps(yi, m0, c0[i]);
    _mm512_mask_storeu_ps(yi + 16, m1, c1[i]);
  }
}

// 32 rows x (a piece of up to kGemmStreamPairs pairs of) K packed once, then every token tile runs
// over all of them (the panel stays in L2), as the int8 GEMMs do (gemm_q8_avx512.cpp).
template <class W>
void bf16_gemm(const Job& j, int64_t n0, int64_t n1) {
  constexpr int64_t bpp = W::kPairBytes;
  const int64_t pairs = gemm_pairs(j.K), tiles = (j.B + kGemmTokens - 1) / kGemmTokens;
  // At most 256 KiB per thread.
  thread_local PanelScratch scratch;
  auto* wp = static_cast<uint32_t*>(scratch.get(size_t(kGemmRows * min64(pairs, kGemmStreamPairs)) * 4));
  for (int64_t r0 = n0; r0 < n1; r0 += kGemmRows) {
    const int64_t rows_w = min64(kGemmRows, n1 - r0);
    for (int64_t p0 = 0; p0 < pairs; p0 += kGemmStreamPairs) {
      const int64_t np = min64(kGemmStreamPairs, pairs - p0);
      pack_w_panel<W>(wp, j, r0, rows_w, p0, np);
      // The next piece's weights, fetched into L2 while the tiles compute (spread over them): the
      // packing loads stalled on memory otherwise.
      const bool last = p0 + np >= pairs;
      const int64_t next_r0 = last ? r0 + kGemmRows : r0, next_p0 = last ? 0 : p0 + np;
      const int64_t next_rows = max64(0, min64(kGemmRows, n1 - next_r0));
      const int64_t row_lines = (min64(bpp * kGemmStreamPairs, bpp * ((j.K + 1) / 2 - next_p0)) + 63) / 64;
      const int64_t lines = next_rows * row_lines;
      for (int64_t t = 0; t < tiles; ++t) {
        for (int64_t i = t * lines / tiles; i < (t + 1) * lines / tiles; ++i)
          _mm_prefetch(reinterpret_cast<const char*>(row_of(j, next_r0 + i / row_lines) + bpp * next_p0 + 64 * (i % row_lines)),
                       _MM_HINT_T1);
        const uint32_t* ap = reinterpret_cast<const uint32_t*>(j.act + t * j.act_stride) + p0 * kGemmTokens;
        gemm_tile(ap, wp, np, j.y + t * kGemmTokens * j.N + r0, j.N, min64(kGemmTokens, j.B - t * kGemmTokens), rows_w,
                  p0 > 0);
      }
    }
  }
}

void prep_bf16_tile(uint8_t* out, const float* x, int64_t rows, int64_t K, int64_t width) {
  auto* o = reinterpret_cast<float*>(out);  // pairs moved as 32-bit words
  const __mmask16 keep = __mmask16((1u << width) - 1);
  for (int64_t p = 0; p < gemm_pairs(K); p += 16) {
    const __mmask32 m = mask32_from(K - 2 * p);
    __m512 r[16];
    for (int i = 0; i < 16; ++i) {
      if (i >= rows) {
        r[i] = _mm512_setzero_ps();
        continue;
      }
      const float* xi = x + i * K + 2 * p;  // round to nearest even, as prep_bf16
      const __m512 lo = _mm512_maskz_loadu_ps(__mmask16(m), xi), hi = _mm512_maskz_loadu_ps(__mmask16(m >> 16), xi + 16);
      r[i] = _mm512_castsi512_ps((__m512i)_mm512_cvtne2ps_pbh(hi, lo));
    }
    transpose16(r);
    for (int q = 0; q < 16; ++q) _mm512_mask_storeu_ps(o + (p + q) * width, keep, r[q]);
  }
}

// ---- 17 to 96 tokens: weights broadcast, tokens as lanes ----
//
// A MoE expert's share of a prefill chunk is too few tokens for the packed GEMM: each packed weight
// panel would serve 2-8 token tiles, and packing (a transpose per 16 rows, with loads from memory
// that stall) costs about as much as the products. Here the tokens are the vector lanes instead:
// activations come in groups of 16 tokens (pair p of the 16 tokens in one vector), and each weight
// pair is broadcast from its row, so every row is read once, front to back.
// R rows x T groups of accumulators, R * T = 24 (T = 5: 20), except T = 2: 8 x 2 (12 x 2 read 12
// weight streams and was ~10 % slower at 20-32 tokens on Zen 5). Up to 96 tokens (T = 6) this beat
// the packed GEMM on Zen 5 (65-80 tokens +25-30 %, 96 +10 %); at 128 it lost (docs/kernels.md).
template <int T, class W>
void small_rows(const Job& j, int64_t n0, int64_t n1) {
  constexpr int R = T == 2 ? 8 : 24 / T;
  constexpr int64_t kChunk = 64;  // rows whose outputs are staged before they go to y
  constexpr bool kScaled = requires { W::pairs(nullptr, int64_t(), int64_t(), 0.f); };  // FP8: decoded first
  const int64_t pairs = gemm_pairs(j.K), rb = j.w_row_bytes;
  const float* act = reinterpret_cast<const float*>(j.act);
  const int64_t group = j.act_stride / 4;  // floats per 16-token group
  // Outputs of kChunk rows for every token, written to y a token's row at a time: scattering them
  // straight into y (stride N floats; 8 KB at N = 2048, one L1 set) halved the speed at N = 2048.
  alignas(64) float staged[kSmallGemmMaxTokens * kChunk];
  alignas(64) int32_t wbuf[R][16];  // 16 pairs of each row decoded (FP8) or the last partial ones (BF16)
  for (int64_t c0 = n0; c0 < n1; c0 += kChunk) {
    const int64_t c1 = min64(n1, c0 + kChunk);
    for (int64_t r0 = c0; r0 < c1; r0 += R) {
      const int nr = int(min64(R, c1 - r0));
      const uint8_t* w[R];
      const float* srow[R] = {};  // FP8: each row's block-scale row
      for (int i = 0; i < R; ++i) {
        const int64_t r = r0 + (i < nr ? i : nr - 1);
        w[i] = row_of(j, r);
        if constexpr (kScaled) srow[i] = j.scale_inv + ((j.row_offset + r) / j.block) * j.scale_cols;
      }
      // 2 KiB ahead along each row and on into the next block's rows (lockstep_ahead).
      auto prefetch_ahead = [&](int64_t p) {
        const int64_t at = lockstep_ahead(W::kPairBytes * p + kStreamPrefetchBytes, rb, R);
        for (int i = 0; i < R; ++i) _mm_prefetch(reinterpret_cast<const char*>(w[i] + at), _MM_HINT_T0);
      };
      __m512 acc[R][T];
      for (int i = 0; i < R; ++i)
        for (int t = 0; t < T; ++t) acc[i][t] = _mm512_setzero_ps();
      int32_t wp[R];
      auto step = [&](int64_t p) {
        __m512bh a[T];
        for (int t = 0; t < T; ++t) a[t] = (__m512bh)_mm512_load_ps(act + t * group + p * 16);
        for (int i = 0; i < R; ++i) {
          const __m512bh b = (__m512bh)_mm512_set1_epi32(wp[i]);
          for (int t = 0; t < T; ++t) acc[i][t] = _mm512_dpbf16_ps(acc[i][t], b, a[t]);
        }
      };
      // BF16 pairs are broadcast straight from the row (~15 % faster than through wbuf) as far as
      // whole 16-pair steps lie inside it; the rest goes through wbuf. FP8 rows are decoded there 16
      // pairs at a time (decode(q) * scale rounded to bf16, as the packed panels hold them).
      const int64_t in_place = kScaled ? 0 : j.K / 32 * 16;
      int64_t p0 = 0;
      for (; p0 < in_place; p0 += 16) {
        prefetch_ahead(p0);
        for (int q = 0; q < 16; ++q) {
          for (int i = 0; i < R; ++i) __builtin_memcpy(&wp[i], w[i] + 4 * (p0 + q), 4);
          step(p0 + q);
        }
      }
      for (; p0 < pairs; p0 += 16) {
        prefetch_ahead(p0);
        for (int i = 0; i < R; ++i) {
          if constexpr (kScaled)
            _mm512_store_si512(wbuf[i], W::pairs(w[i], j.K, p0, srow[i][2 * p0 / j.block]));
          else
            _mm512_store_si512(wbuf[i], load_pairs(j, w[i], p0));
        }
        for (int q = 0; q < 16; ++q) {
          for (int i = 0; i < R; ++i) wp[i] = wbuf[i][q];
          step(p0 + q);
        }
      }
      alignas(64) float out[16];
      for (int i = 0; i < nr; ++i)
        for (int t = 0; t < T; ++t) {
          _mm512_store_ps(out, acc[i][t]);
          for (int l = 0; l < 16; ++l) staged[(16 * t + l) * kChunk + (r0 - c0 + i)] = out[l];
        }
    }
    for (int64_t b = 0; b < j.B; ++b)
      for (int64_t r = 0; r < c1 - c0; r += 16)
        _mm512_mask_storeu_ps(j.y + b * j.N + c0 + r, mask16(c1 - c0 - r), _mm512_load_ps(staged + b * kChunk + r));
  }
}

template <class W>
void small_gemm(const Job& j, int64_t n0, int64_t n1) {
  switch ((j.B + 15) / 16) {
    case 1: return small_rows<1, W>(j, n0, n1);
    case 2: return small_rows<2, W>(j, n0, n1);
    case 3: return small_rows<3, W>(j, n0, n1);
    case 4: return small_rows<4, W>(j, n0, n1);
    case 5: return small_rows<5, W>(j, n0, n1);
    default: return small_rows<6, W>(j, n0, n1);
  }
}

// ---- tiling over rows and tokens ----

// Tokens [b, b1) of rows [r0, r0 + R): whole T-token tiles, then one tile of the remainder.
template <class F, int R, int T>
void sweep_tokens(const Job& j, int64_t r0, int64_t b, int64_t b1) {
  if constexpr (T == F::kTokens)
    for (; b + T <= b1; b += T) F::template tile<R, T>(j, r0, b);
  if (b1 - b == T) {
    F::template tile<R, T>(j, r0, b);
  } else if constexpr (T > 1) {
    if (b1 > b) sweep_tokens<F, R, T - 1>(j, r0, b, b1);
  }
}

// Rows [r, n1) with fewer than R left: one tile of the remainder.
template <class F, int R>
void rest_rows(const Job& j, int64_t r, int64_t n1, int64_t bb, int64_t be) {
  if (n1 - r == R) {
    sweep_tokens<F, R, F::kTokens>(j, r, bb, be);
  } else if constexpr (R > 1) {
    if (n1 > r) rest_rows<F, R - 1>(j, r, n1, bb, be);
  }
}

template <class F>
void drive(const Job& j, int64_t n0, int64_t n1) {
  constexpr int R = F::kRows;
  if constexpr (std::is_same_v<F, Q8>) {
    switch (j.B) {
      case 4: return q8_lanes<4>(j, n0, n1);
      case 5: return q8_lanes<5>(j, n0, n1);
      case 6: return q8_lanes<6>(j, n0, n1);
      case 7: return q8_lanes<7>(j, n0, n1);
      case 8: return q8_lanes<8>(j, n0, n1);
      default: break;
    }
  }
  if constexpr (requires { typename F::template Stream<1>; }) {
    switch (j.B) {
      case 1: return stream_rows<F, 1>(j, n0, n1);
      case 2: return stream_rows<F, 2>(j, n0, n1);
      case 3: return stream_rows<F, 3>(j, n0, n1);
      case 4: return stream_rows<F, 4>(j, n0, n1);
      case 5: return stream_rows<F, 5>(j, n0, n1);
      case 6: return stream_rows<F, 6>(j, n0, n1);
      case 7: return stream_rows<F, 7>(j, n0, n1);
      case 8: return stream_rows<F, 8>(j, n0, n1);
      default: break;
    }
  }
  if constexpr (requires { F::kStreamTokens16; }) {  // BF16: up to 16 tokens per row stream
    switch (j.B) {
      case 9: return stream_rows<F, 9>(j, n0, n1);
      case 10: return stream_rows<F, 10>(j, n0, n1);
      case 11: return stream_rows<F, 11>(j, n0, n1);
      case 12: return stream_rows<F, 12>(j, n0, n1);
      case 13: return stream_rows<F, 13>(j, n0, n1);
      case 14: return stream_rows<F, 14>(j, n0, n1);
      case 15: return stream_rows<F, 15>(j, n0, n1);
      case 16: return stream_rows<F, 16>(j, n0, n1);
      default: break;
    }
  }
  for (int64_t bb = 0; bb < j.B; bb += kTokenBlock) {
    const int64_t be = min64(j.B, bb + kTokenBlock);
    int64_t r = n0;
    for (; r + R <= n1; r += R) sweep_tokens<F, R, F::kTokens>(j, r, bb, be);
    rest_rows<F, R - 1>(j, r, n1, bb, be);
  }
}

}  // namespace

KernelSet avx512_kernels() {
  KernelSet k;
  k.f32 = &exact_f32;
  k.f16 = &drive<FloatAct<LoadF16>>;
  k.bf16 = &drive<FloatAct<LoadBF16>>;
  k.bf16_dot = &drive<Bf16Dot>;
  k.fp8 = &drive<Fp8>;
  k.fp8_dot = &fp8_dot_avx512;
  k.q8_0 = &drive<Q8>;
  k.q4_0 = &drive<Q4>;
  k.bf16_gemm = &bf16_gemm<Bf16Pairs>;
  k.fp8_gemm = &bf16_gemm<Fp8Pairs>;
  k.bf16_small = &small_gemm<Bf16Pairs>;
  k.fp8_small = &small_gemm<Fp8Pairs>;
  k.prep_bf16 = &prep_bf16;
  k.prep_bf16_tile = &prep_bf16_tile;
  k.prep_q8_0 = &prep_q8_0;
  k.prep_q4_0 = &prep_q4_0;
  k.dequant_bf16 = &dequant_bf16;
  k.dequant_q8_0 = &dequant_q8_0;
  k.dequant_q4_0 = &dequant_q4_0;
  k.rows_t_bf16 = &rows_t<RowsBF16>;
  k.rows_t_q8_0 = &rows_t<RowsQ8>;
  k.rows_t_q4_0 = &rows_t<RowsQ4>;
  k.rows_t_fp8 = &rows_t_fp8;
  return k;
}

}  // namespace dseek::mm

#else

namespace dseek::mm {
KernelSet avx512_kernels() { return {}; }
}  // namespace dseek::mm

#endif
