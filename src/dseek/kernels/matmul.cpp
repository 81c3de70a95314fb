#include "dseek/kernels/matmul.h"

#include <algorithm>
#include <atomic>
#include <cstring>
#include <new>
#include <string>
#include <vector>

#include "dseek/core/error.h"
#include "dseek/kernels/cpu_features.h"
#include "dseek/kernels/gemm_amx.h"
#include "dseek/kernels/gemm_q8.h"
#include "dseek/kernels/matmul_kernels.h"
#include "dseek/kernels/matmul_quant.h"
#include "dseek/kernels/vec.h"

namespace dseek {

namespace {

const uint8_t* row_ptr(const MatView& w, int64_t r) {
  return static_cast<const uint8_t*>(w.data) + size_t(w.row_offset + r) * size_t(quant_row_bytes(w.dtype, w.cols));
}

float load_f16(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return f16_to_f32(h);
}

// Q8_0 / Q4_0 value k of a stored row (layout in matmul_quant.h).
float q8_0_value(const uint8_t* row, int64_t K, int64_t k) {
  return float(int8_t(row[k])) * load_f16(row + K + 2 * (k / kQuantBlock));
}
float q4_0_value(const uint8_t* row, int64_t K, int64_t k) {
  const int64_t j = k / kQuantBlock, i = k % kQuantBlock;
  const uint8_t byte = row[16 * j + (i & 15)];
  const int code = i < 16 ? byte & 15 : byte >> 4;
  return float(code - 8) * load_f16(row + K / 2 + 2 * j);
}

// Row r of an _R16 view as a row of its row format, in a per-thread buffer (the scalar paths read
// it so).
const uint8_t* unpacked_row(const MatView& w, int64_t r) {
  thread_local std::vector<uint8_t> buf;
  buf.resize(size_t(quant_row_bytes(w.dtype, w.cols)));
  r16_row(w.dtype, buf.data(), static_cast<const uint8_t*>(w.data), w.row_offset + r, w.cols);
  return buf.data();
}

// Dot product of stored row r with x (K), float32 accumulation.
float dot_row(const MatView& w, int64_t r, const float* x) {
  const int64_t K = w.cols;
  float acc = 0.f;
  switch (w.dtype) {
    case DType::kF32: {
      auto* p = reinterpret_cast<const float*>(row_ptr(w, r));
      for (int64_t k = 0; k < K; ++k) acc += p[k] * x[k];
      return acc;
    }
    case DType::kBF16: {
      auto* p = reinterpret_cast<const uint16_t*>(row_ptr(w, r));
      for (int64_t k = 0; k < K; ++k) acc += bf16_to_f32(p[k]) * x[k];
      return acc;
    }
    case DType::kF16: {
      auto* p = reinterpret_cast<const uint16_t*>(row_ptr(w, r));
      for (int64_t k = 0; k < K; ++k) acc += f16_to_f32(p[k]) * x[k];
      return acc;
    }
    case DType::kF8E4M3: {
      DSEEK_CHECK(w.scale_inv != nullptr, "FP8 weight without scale_inv");
      const uint8_t* p = row_ptr(w, r);
      const float* lut = e4m3_table();
      const float* scales = w.scale_inv + ((w.row_offset + r) / w.block) * w.scale_cols();
      // Dequantize exactly as the reference: W = decode(q) * scale (float32 product), then dot.
      for (int64_t k = 0; k < K; ++k) acc += (lut[p[k]] * scales[k / w.block]) * x[k];
      return acc;
    }
    case DType::kQ8_0:
    case DType::kQ8_0R16: {
      const uint8_t* p = w.dtype == DType::kQ8_0 ? row_ptr(w, r) : unpacked_row(w, r);
      for (int64_t k = 0; k < K; ++k) acc += q8_0_value(p, K, k) * x[k];
      return acc;
    }
    case DType::kQ4_0:
    case DType::kQ4_0R16: {
      const uint8_t* p = w.dtype == DType::kQ4_0 ? row_ptr(w, r) : unpacked_row(w, r);
      for (int64_t k = 0; k < K; ++k) acc += q4_0_value(p, K, k) * x[k];
      return acc;
    }
    default:
      DSEEK_CHECK(false, std::string("matmul: unsupported weight dtype ") + std::string(dtype_name(w.dtype)));
  }
  return acc;
}

const mm::KernelSet* fast_kernels();  // the AVX-512 set where the CPU has it, else null

}  // namespace

void dequantize_row_range(float* out, const MatView& w, int64_t r, int64_t k0, int64_t n) {
  if (is_r16(w.dtype)) {
    MatView row = w;
    row.data = unpacked_row(w, r);
    row.dtype = r16_row_type(w.dtype);
    row.rows = 1;
    row.row_offset = 0;
    return dequantize_row_range(out, row, 0, k0, n);
  }
  const uint8_t* base = row_ptr(w, r);
  if (const mm::KernelSet* ks = fast_kernels()) {
    const bool whole_blocks = k0 % kQuantBlock == 0 && n % kQuantBlock == 0;
    if (w.dtype == DType::kBF16 && ks->dequant_bf16)
      return ks->dequant_bf16(out, reinterpret_cast<const uint16_t*>(base) + k0, n);
    if (w.dtype == DType::kQ8_0 && whole_blocks && ks->dequant_q8_0)
      return ks->dequant_q8_0(out, base + k0, base + w.cols + 2 * (k0 / kQuantBlock), n / kQuantBlock);
    if (w.dtype == DType::kQ4_0 && whole_blocks && ks->dequant_q4_0)
      return ks->dequant_q4_0(out, base + k0 / 2, base + w.cols / 2 + 2 * (k0 / kQuantBlock), n / kQuantBlock);
  }
  switch (w.dtype) {
    case DType::kF32: {
      auto* p = reinterpret_cast<const float*>(base) + k0;
      for (int64_t k = 0; k < n; ++k) out[k] = p[k];
      return;
    }
    case DType::kBF16: {
      auto* p = reinterpret_cast<const uint16_t*>(base) + k0;
      for (int64_t k = 0; k < n; ++k) out[k] = bf16_to_f32(p[k]);
      return;
    }
    case DType::kF16: {
      auto* p = reinterpret_cast<const uint16_t*>(base) + k0;
      for (int64_t k = 0; k < n; ++k) out[k] = f16_to_f32(p[k]);
      return;
    }
    case DType::kF8E4M3: {
      DSEEK_CHECK(w.scale_inv != nullptr, "FP8 weight without scale_inv");
      const float* lut = e4m3_table();
      const float* scales = w.scale_inv + ((w.row_offset + r) / w.block) * w.scale_cols();
      for (int64_t k = 0; k < n; ++k) out[k] = lut[base[k0 + k]] * scales[(k0 + k) / w.block];
      return;
    }
    case DType::kQ8_0:
    case DType::kQ4_0: {
      // Block by block: one scale conversion per 32 values (absorbed MLA dequantizes kv_b_proj
      // rows this way at every decode step).
      const bool q8 = w.dtype == DType::kQ8_0;
      const uint8_t* scales = base + (q8 ? w.cols : w.cols / 2);
      for (int64_t k = k0; k < k0 + n;) {
        const int64_t j = k / kQuantBlock, k_end = std::min(k0 + n, (j + 1) * kQuantBlock);
        const float d = load_f16(scales + 2 * j);
        float* o = out + (k - k0);
        if (q8) {
          const int8_t* q = reinterpret_cast<const int8_t*>(base) + k;
          for (int64_t i = 0; i < k_end - k; ++i) o[i] = float(q[i]) * d;
        } else {
          const uint8_t* p = base + 16 * j;
          for (int64_t i = k - j * kQuantBlock; i < k_end - j * kQuantBlock; ++i, ++o)
            *o = float((i < 16 ? p[i] & 15 : p[i - 16] >> 4) - 8) * d;
        }
        k = k_end;
      }
      return;
    }
    default:
      DSEEK_CHECK(false, std::string("dequantize_row: unsupported dtype ") + std::string(dtype_name(w.dtype)));
  }
}

void dequantize_row(float* out, const MatView& w, int64_t r) { dequantize_row_range(out, w, r, 0, w.cols); }

void matmul_ref(float* y, const float* x, const MatView& w, int64_t B) {
  for (int64_t b = 0; b < B; ++b)
    for (int64_t n = 0; n < w.rows; ++n) y[b * w.rows + n] = dot_row(w, n, x + b * w.cols);
}

namespace {

bool has_avx2() {
  const CpuFeatures& f = cpu_features();
  return f.avx2 && f.fma && f.f16c;
}
bool has_avx512() {
  const CpuFeatures& f = cpu_features();
  return has_avx2() && f.avx512f && f.avx512bw && f.avx512vl && f.avx512vnni;
}

MatmulKernel resolve(MatmulKernel k) { return k == MatmulKernel::kAuto ? matmul_best_kernel() : k; }

// Per-thread scratch for the converted activations of one call: 64-byte aligned, grows only.
// matmul's signature has no workspace parameter (model code calls it with a pool only), so this is
// the one place the kernels allocate: the first call of each larger B * K, never in steady-state
// decode. Freed when the thread exits.
class Scratch {
 public:
  ~Scratch() { release(); }
  uint8_t* get(size_t bytes) {
    if (bytes > cap_) {
      release();
      cap_ = std::max(bytes, cap_ * 2);
      p_ = static_cast<uint8_t*>(::operator new(cap_, std::align_val_t(64)));
    }
    return p_;
  }

 private:
  void release() {
    if (p_) ::operator delete(p_, std::align_val_t(64));
    p_ = nullptr;
  }
  uint8_t* p_ = nullptr;
  size_t cap_ = 0;
};
thread_local Scratch t_scratch;

// Rows per task: small enough that 2+ threads balance even when a neighbour steals a core (tasks are
// taken dynamically), large enough that each task streams tens of KiB of contiguous weights.
// The prefill GEMMs pack panels of 32 rows, so their tasks are whole panels. Decode row streams
// (stream_bytes = the bytes of a row, else 0): a task starts cold (the prefetchers ramp up again),
// so large matrices get tasks of up to 512 KiB (v2lite-5l BF16 tg128 on Zen 5, alternated 3x:
// 29.3-31.0 -> 32.2-33.9 tokens/s), and every stream task holds at least 256 KiB where the matrix
// allows (FP8 rows are 2 KB: an expert's 1408 rows went in tasks of 96 rows; v2lite-5l FP8 tg128,
// alternated 3x: 38.2 / 40.9 / 41.9 -> 40.0 / 43.3 / 43.2). The _R16 formats' 1-8 token path (the
// only GEMM path at 8 tokens or fewer; 64 rows per step, 4 streams) starts cold the same way: its
// tasks hold at least 512 KiB too, in whole 64-row steps, up to a thread's share (v2lite-5l
// Q4_0_R16 tg64 on Zen 5, 4 alternated rounds, % of the probe: 70 / 66 / 67 / 59 with 64-row tasks
// -> 76 / 69 / 73 / 71; docs/kernels.md).
int64_t rows_per_task(int64_t N, int threads, bool gemm, int64_t stream_bytes = 0) {
  int64_t r = N / (int64_t(threads) * 8), cap = 64;
  if (gemm && stream_bytes > 0) {
    const auto steps = [](int64_t rows) { return (rows + 63) / 64 * 64; };
    return std::clamp<int64_t>(steps((int64_t(512) << 10) / stream_bytes), 64, std::max<int64_t>(64, steps(N / threads)));
  }
  if (!gemm && stream_bytes > 0) {
    cap = std::max<int64_t>(64, (int64_t(512) << 10) / stream_bytes);
    r = std::max(r, std::min(N / threads, (int64_t(256) << 10) / stream_bytes));
  }
  r = std::clamp<int64_t>(r, 16, cap);
  // F32 kernels: whole 16-row tiles; row streams: whole spread steps (4 rows x 16, stream_rows).
  const int64_t granule = gemm ? 32 : stream_bytes > 0 ? 64 : 16;
  return (r + granule - 1) / granule * granule;
}

// rows_per_task's stream_bytes for B tokens of w: the row bytes at decode sizes (row streams, and
// the _R16 formats' 1-8 token streams), else 0.
int64_t stream_bytes(const MatView& w, int64_t B) { return B <= 8 ? quant_row_bytes(w.dtype, w.cols) : 0; }

// Runs fn(n0, n1) over [0, N) in tasks of `chunk` rows, taken by the pool's threads in turn.
template <class Fn>
void for_row_tasks(ThreadPool* pool, int64_t N, int64_t work, bool gemm, const Fn& fn, int64_t stream_bytes = 0) {
  // Small layers are not worth waking the pool for.
  if (!pool || pool->size() <= 1 || work < (1 << 16)) {
    fn(0, N);
    return;
  }
  struct Shared {
    const Fn* fn;
    int64_t N, chunk, tasks;
    std::atomic<int64_t> next{0};
  } sh;
  sh.fn = &fn;
  sh.N = N;
  sh.chunk = rows_per_task(N, pool->size(), gemm, stream_bytes);
  sh.tasks = (N + sh.chunk - 1) / sh.chunk;
  Shared* p = &sh;  // one pointer: fits std::function's small buffer (no allocation per call)
  pool->parallel_for(
      pool->size(),
      [p](int64_t, int64_t) {
        for (int64_t t; (t = p->next.fetch_add(1, std::memory_order_relaxed)) < p->tasks;)
          (*p->fn)(t * p->chunk, std::min(p->N, (t + 1) * p->chunk));
      },
      1);
}

// Converts activations token by token, across the pool when there are many (prefill).
template <class Fn>
void for_tokens(ThreadPool* pool, int64_t B, int64_t K, const Fn& fn) {
  if (!pool || pool->size() <= 1 || B < 4 || B * K < (1 << 15)) {
    fn(0, B);
    return;
  }
  const Fn* f = &fn;
  pool->parallel_for(B, [f](int64_t b0, int64_t b1) { (*f)(b0, b1); }, 1);
}

const mm::KernelSet& avx2_set() {
  static const mm::KernelSet k = mm::avx2_kernels();
  return k;
}
const mm::KernelSet& avx512_set() {
  static const mm::KernelSet k = mm::avx512_kernels();
  return k;
}

const mm::KernelSet* fast_kernels() { return has_avx512() ? &avx512_set() : nullptr; }

const mm::AmxKernels& amx_set() {
  static const mm::AmxKernels k = mm::amx_kernels();
  return k;
}

// Kernel families that round BF16 activations to bf16 (kAmx is kAvx512Bf16 plus the tiles).
bool bf16_family(MatmulKernel k) { return k == MatmulKernel::kAvx512Bf16 || k == MatmulKernel::kAmx; }

// FP8 decode (1-4 tokens) as bf16 products (fp8_dot_avx512.cpp) on kAvx512Bf16 CPUs with VBMI
// (Zen 4/5). From 5 tokens both are bound by the multiply-adds (h + l doubles them) and the float32
// stream was as fast or faster on Zen 5. Not on kAmx: Intel's vdpbf16ps has half the float32 FMA
// rate, and there the float32 stream was as fast at 1 token and faster from 2 (docs/performance.md).
bool fp8_dot_path(int64_t B, MatmulKernel kernel) {
  return kernel == MatmulKernel::kAvx512Bf16 && B <= 4 && cpu_features().avx512vbmi && avx512_set().fp8_dot;
}

const mm::QGemmKernels& qgemm_set() {
  static const mm::QGemmKernels k = mm::qgemm_avx512_kernels();
  return k;
}

void check_weight(const MatView& w) {
  switch (w.dtype) {
    case DType::kF32:
    case DType::kF16:
    case DType::kBF16:
      return;
    case DType::kF8E4M3:
      if (!w.scale_inv) throw Error("matmul: FP8 weight without scale_inv");
      if (w.block <= 0) throw Error("matmul: FP8 weight with block size " + std::to_string(w.block));
      return;
    case DType::kQ8_0:
    case DType::kQ4_0:
    case DType::kQ8_0R16:
    case DType::kQ4_0R16:
      quant_row_bytes(w.dtype, w.cols);  // throws unless cols % 32 == 0
      return;
    default:
      throw Error("matmul: unsupported weight dtype " + std::string(dtype_name(w.dtype)));
  }
}

}  // namespace

bool matmul_kernel_supported(MatmulKernel k) {
  switch (k) {
    case MatmulKernel::kAuto:
    case MatmulKernel::kScalar: return true;
    case MatmulKernel::kAvx2: return has_avx2();
    case MatmulKernel::kAvx512: return has_avx512();
    case MatmulKernel::kAvx512Bf16: return has_avx512() && cpu_features().avx512bf16;
    case MatmulKernel::kAmx:
      return has_avx512() && cpu_features().avx512bf16 && cpu_features().avx512vbmi && amx_permitted() &&
             amx_set().bf16 != nullptr;
    default: return false;
  }
}

MatmulKernel matmul_best_kernel() {
  if (matmul_kernel_supported(MatmulKernel::kAmx)) return MatmulKernel::kAmx;
  return matmul_best_kernel_without_amx();
}

MatmulKernel matmul_float32_kernel() {
  if (matmul_kernel_supported(MatmulKernel::kAvx512)) return MatmulKernel::kAvx512;
  if (matmul_kernel_supported(MatmulKernel::kAvx2)) return MatmulKernel::kAvx2;
  return MatmulKernel::kScalar;
}

MatmulKernel matmul_best_kernel_without_amx() {
  if (matmul_kernel_supported(MatmulKernel::kAvx512Bf16)) return MatmulKernel::kAvx512Bf16;
  if (matmul_kernel_supported(MatmulKernel::kAvx512)) return MatmulKernel::kAvx512;
  if (matmul_kernel_supported(MatmulKernel::kAvx2)) return MatmulKernel::kAvx2;
  return MatmulKernel::kScalar;
}

std::string_view matmul_kernel_family_name(MatmulKernel k) {
  switch (k) {
    case MatmulKernel::kAuto: return "auto";
    case MatmulKernel::kScalar: return "scalar";
    case MatmulKernel::kAvx2: return "avx2";
    case MatmulKernel::kAvx512: return "avx512";
    case MatmulKernel::kAvx512Bf16: return "avx512bf16";
    case MatmulKernel::kAmx: return "amx";
    default: return "?";
  }
}

MatmulKernel matmul_kernel_from_name(std::string_view name) {
  std::string names;
  for (int v = 0; v < int(MatmulKernel::kSentinel); ++v) {
    const std::string_view n = matmul_kernel_family_name(MatmulKernel(v));
    if (n == name) return MatmulKernel(v);
    names += (v ? ", " : "") + std::string(n);
  }
  throw Error("unknown matmul kernel family '" + std::string(name) + "' (one of: " + names + ")");
}

std::string_view matmul_kernel_name(DType t, MatmulKernel k) {
  k = resolve(k);
  const bool q = t == DType::kQ8_0 || t == DType::kQ4_0;
  const bool known = t == DType::kF32 || t == DType::kF16 || t == DType::kBF16 || t == DType::kF8E4M3 || q ||
                     is_r16(t);
  if (!known) return "unsupported";
  if (is_r16(t))
    return k == MatmulKernel::kAmx ? "avx512 vnni vpdpbusd (16 rows interleaved); prefill: amx tdpbf16ps"
           : k == MatmulKernel::kAvx512 || k == MatmulKernel::kAvx512Bf16 ? "avx512 vnni vpdpbusd (16 rows interleaved)"
                                                                          : "scalar (float32)";
  switch (k) {
    case MatmulKernel::kAmx:
      if (q) return "avx512 vnni vpdpbusd (int8 activations); prefill: amx tdpbf16ps (bf16 panels)";
      if (t == DType::kF32) return "avx512 exact (16 rows per vector, matmul_ref order)";
      if (t == DType::kF8E4M3) return "avx512 fma (e4m3 decoded in registers); prefill: amx tdpbf16ps (bf16 panels)";
      if (t == DType::kBF16) return "avx512 vdpbf16ps (bf16 activations); prefill: amx tdpbf16ps";
      return "avx512 fma (float32 activations)";
    case MatmulKernel::kScalar: return "scalar (float32)";
    case MatmulKernel::kAvx2:
      if (q) return "avx2 vpmaddubsw (int8 activations)";
      if (t == DType::kF32) return "avx2 exact (8 rows per vector, matmul_ref order)";
      if (t == DType::kF8E4M3) return "avx2 fma (e4m3 decoded in registers)";
      return "avx2 fma (float32 activations)";
    case MatmulKernel::kAvx512:
    case MatmulKernel::kAvx512Bf16:
      if (q) return "avx512 vnni vpdpbusd (int8 activations)";
      if (t == DType::kF32) return "avx512 exact (16 rows per vector, matmul_ref order)";
      if (t == DType::kF8E4M3)
        return k != MatmulKernel::kAvx512Bf16 ? "avx512 fma (e4m3 decoded in registers)"
               : fp8_dot_path(1, k) ? "avx512 vdpbf16ps (e4m3 -> bf16 by vpermi2b, activations h + l); prefill: avx512 vdpbf16ps (bf16 panels; 17-96 tokens: rows decoded 16 pairs at a time)"
                                    : "avx512 fma (e4m3 decoded in registers); prefill: avx512 vdpbf16ps (bf16 panels; 17-96 tokens: rows decoded 16 pairs at a time)";
      if (t == DType::kBF16 && k == MatmulKernel::kAvx512Bf16) return "avx512 vdpbf16ps (bf16 activations)";
      return "avx512 fma (float32 activations)";
    default: return "?";
  }
}

void matmul(float* y, const float* x, const MatView& w, int64_t B, ThreadPool* pool) {
  matmul(y, x, w, B, pool, MatmulKernel::kAuto);
}

namespace {

// One product made ready for the SIMD kernels: the job (activations converted into `act`), the
// kernel that computes output rows [n0, n1) of it, and (matmul_many) its rows per task.
struct Prepared {
  mm::Job job;
  mm::KernelFn fn = nullptr;
  bool gemm = false;  // fn is a prefill GEMM kernel (tasks of whole 32-row panels)
  int64_t task_rows = 0;
};

// 17 to kSmallGemmMaxTokens tokens take bf16_small (activations in 16-token groups). With one
// group that kernel does 24 broadcasts per activation load and ran at a third of the packed GEMM's
// speed, so 9-16 tokens stay on the row streams.
bool small_gemm(int64_t B) { return B > mm::kSmallGemmTokens && B <= mm::kSmallGemmMaxTokens; }

// The prefill kernel with bf16 products for B tokens of weights w, or null: decode-sized batches,
// other formats (Q8_0 / Q4_0 prefill: qgemm_path) and CPUs without AVX-512 BF16 use other kernels
// (see matmul.h). FP8 (kFp8GemmMinTokens on) decodes its rows into the same bf16 panels: the
// float32 register tiles reached about half the packed bf16 GEMM's speed at prefill sizes.
mm::KernelFn gemm_kernel(const MatView& w, int64_t B, MatmulKernel kernel) {
  if (!bf16_family(kernel) || B < kMatmulGemmMinTokens) return nullptr;
  if (w.dtype == DType::kF8E4M3) {
    if (B < kFp8GemmMinTokens || w.block % 32 != 0) return nullptr;
    return small_gemm(B) ? avx512_set().fp8_small : avx512_set().fp8_gemm;
  }
  if (w.dtype != DType::kBF16) return nullptr;
  if (B <= mm::kSmallGemmTokens) return nullptr;  // 9-16 tokens: row streams (Bf16Dot), see matmul_avx512.cpp
  return small_gemm(B) ? avx512_set().bf16_small : avx512_set().bf16_gemm;
}
bool gemm_path(const MatView& w, int64_t B, MatmulKernel kernel) { return gemm_kernel(w, B, kernel) != nullptr; }

// Q8_0 / Q4_0 prefill as int8 products (gemm_q8.h): vpdpbusd does twice vdpbf16ps's multiply-adds.
// The _R16 formats take this path at every B (their groups are the GEMM's operand layout), on both
// AVX-512 families, when the view starts at a group.
bool r16_path(const MatView& w, MatmulKernel kernel) {
  return is_r16(w.dtype) && (kernel == MatmulKernel::kAvx512 || bf16_family(kernel)) &&
         w.row_offset % kR16Rows == 0 && qgemm_set().q8_0_r16;
}
bool qgemm_path(const MatView& w, int64_t B, MatmulKernel kernel) {
  if (is_r16(w.dtype)) return r16_path(w, kernel);
  return bf16_family(kernel) && mm::qgemm_tokens(B) &&
         (w.dtype == DType::kQ8_0 || w.dtype == DType::kQ4_0) && qgemm_set().prep_tile;
}

// AMX tiles (kAmx) for B tokens of w: every format but F32 / F16 (those keep float32 arithmetic),
// the _R16 ones where their SIMD path applies.
mm::KernelFn amx_kernel(const MatView& w, int64_t B, MatmulKernel kernel) {
  if (kernel != MatmulKernel::kAmx || B < kAmxMinTokens || w.cols <= 0) return nullptr;
  if (is_block_quantized(w.dtype) && B < kAmxQuantMinTokens) return nullptr;
  const mm::AmxKernels& a = amx_set();
  switch (w.dtype) {
    case DType::kBF16: return a.bf16;
    case DType::kF8E4M3: return w.block % 32 == 0 ? a.fp8 : nullptr;
    case DType::kQ8_0: return a.q8_0;
    case DType::kQ4_0: return a.q4_0;
    case DType::kQ8_0R16: return r16_path(w, kernel) ? a.q8_0_r16 : nullptr;
    case DType::kQ4_0R16: return r16_path(w, kernel) ? a.q4_0_r16 : nullptr;
    default: return nullptr;
  }
}

// Tokens per activation tile of the prefill kernel for B tokens of w, and the bytes of one tile.
int64_t gemm_width(const MatView& w, int64_t B) {
  return (w.dtype == DType::kBF16 || w.dtype == DType::kF8E4M3) && small_gemm(B) ? mm::kSmallGemmTokens
                                                                                 : mm::kGemmTokens;
}
int64_t gemm_tile_bytes(int64_t K, int64_t width) { return mm::gemm_pairs(K) * width * 4; }

// Bytes of converted activations a product of B tokens needs (0 when the kernel reads x directly).
int64_t act_bytes(const MatView& w, int64_t B, MatmulKernel kernel) {
  if (amx_kernel(w, B, kernel)) return mm::amx_act_bytes(w.cols, B);
  if (qgemm_path(w, B, kernel)) return (B + mm::kQGemmTokens - 1) / mm::kQGemmTokens * mm::qgemm_tile_bytes(w.cols);
  if (gemm_path(w, B, kernel)) {
    const int64_t width = gemm_width(w, B);
    return (B + width - 1) / width * gemm_tile_bytes(w.cols, width);
  }
  if (w.dtype == DType::kBF16 && bf16_family(kernel)) return B * ((w.cols + 31) & ~int64_t(31)) * 2;
  if (w.dtype == DType::kQ8_0 || w.dtype == DType::kQ4_0) return B * qact_layout(w.dtype, w.cols).stride;
  return 0;
}

bool simd_path(const MatView& w, MatmulKernel kernel) {
  // The SIMD FP8 kernels step 32 (AVX2: 16) columns inside one scale block; the _R16 formats have
  // only the AVX-512 kernels (elsewhere matmul_ref's arithmetic).
  if (is_r16(w.dtype)) return r16_path(w, kernel) && w.cols > 0;
  return kernel != MatmulKernel::kScalar && (w.dtype != DType::kF8E4M3 || w.block % 32 == 0) && w.cols > 0;
}

MatmulKernel checked_kernel(const MatView& w, MatmulKernel kernel) {
  check_weight(w);
  kernel = resolve(kernel);
  if (!matmul_kernel_supported(kernel))
    throw Error("matmul: kernel " + std::string(matmul_kernel_family_name(kernel)) + " is not supported by this CPU");
  return kernel;
}

// Q8_0 / Q4_0 with int8 activations (decode): quantizes x per block into act.
void prepare_quant_act(mm::Job& job, mm::KernelFn& fn, const mm::KernelSet& ks, const float* x, const MatView& w,
                       int64_t B, uint8_t* act, ThreadPool* pool, bool convert) {
  const int64_t K = w.cols;
  const QActLayout l = qact_layout(w.dtype, K);
  job.act_stride = l.stride;
  job.act_corr_offset = l.corr_offset;
  job.act_scale_offset = l.scale_offset;
  job.act_block_scale_offset = l.block_scale_offset;
  job.act_block_corr_offset = l.block_corr_offset;
  auto prep_fn = w.dtype == DType::kQ8_0 ? ks.prep_q8_0 : ks.prep_q4_0;
  const DType wt = w.dtype;
  if (convert) for_tokens(pool, B, K, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) {
      if (prep_fn)
        prep_fn(act + b * l.stride, x + b * K, job);
      else
        quantize_activations(act + b * l.stride, x + b * K, wt, K);
    }
  });
  job.act = act;
  fn = w.dtype == DType::kQ8_0 ? ks.q8_0 : ks.q4_0;
}

// Fills p for y = x · Wᵀ on the SIMD path, converting x into act (act_bytes(w, B, kernel) bytes,
// 64-byte aligned), across the pool when there are many tokens. convert = false: act holds x
// converted for this kernel already (matmul_many: a MoE expert's gate and up read the same rows).
void prepare(Prepared& p, float* y, const float* x, const MatView& w, int64_t B, MatmulKernel kernel, uint8_t* act,
             ThreadPool* pool, bool convert = true) {
  const int64_t N = w.rows, K = w.cols;
  const mm::KernelSet& ks = kernel == MatmulKernel::kAvx2 ? avx2_set() : avx512_set();
  mm::Job& job = p.job;
  job = mm::Job{};
  job.bf16_row_prefetch = cpu_features().amx_bf16;
  job.y = y;
  job.N = N;
  job.B = B;
  job.K = K;
  job.x = x;
  job.w = row_ptr(w, 0);
  job.w_row_bytes = quant_row_bytes(w.dtype, K);
  job.scale_inv = w.scale_inv;
  job.scale_cols = w.scale_cols();
  job.block = w.block;
  job.row_offset = w.row_offset;
  job.e4m3_lut = e4m3_table();
  // Q8_0 / Q4_0 rows: the f16 scales follow the row's K (Q8_0) or K / 2 (Q4_0) code bytes.
  if (w.dtype == DType::kQ8_0 || w.dtype == DType::kQ4_0) job.w_scales_offset = w.dtype == DType::kQ8_0 ? K : K / 2;
  mm::KernelFn fn = nullptr;
  if (mm::KernelFn amx = amx_kernel(w, B, kernel)) {
    // Activations rounded to bf16 per token (prep_bf16), zero tokens up to whole 16-token tiles.
    job.act_stride = mm::amx_act_stride(K);
    const int64_t stride = job.act_stride, padded = mm::amx_act_bytes(K, B) / stride;
    if (convert) for_tokens(pool, padded, K, [&](int64_t b0, int64_t b1) {
      for (int64_t b = b0; b < b1; ++b) {
        if (b < B)
          ks.prep_bf16(act + b * stride, x + b * K, K, stride);
        else
          std::memset(act + b * stride, 0, size_t(stride));
      }
    });
    job.act = act;
    p.fn = amx;
    p.gemm = true;
    return;
  }
  switch (w.dtype) {
    case DType::kF32: fn = ks.f32; break;
    case DType::kF16: fn = ks.f16; break;
    case DType::kF8E4M3:
    case DType::kBF16:
    case DType::kQ8_0:
    case DType::kQ4_0:
    case DType::kQ8_0R16:
    case DType::kQ4_0R16:
      if (qgemm_path(w, B, kernel)) {
        // Activations quantized per block of 32, in tiles of kQGemmTokens tokens.
        const int64_t tiles = (B + mm::kQGemmTokens - 1) / mm::kQGemmTokens;
        job.act_stride = mm::qgemm_tile_bytes(K);
        const int64_t stride = job.act_stride;
        const mm::QGemmKernels& qk = qgemm_set();
        if (convert) for_tokens(pool, tiles, K * mm::kQGemmTokens, [&](int64_t t0, int64_t t1) {
          for (int64_t t = t0; t < t1; ++t)
            qk.prep_tile(act + t * stride, x + t * mm::kQGemmTokens * K, std::min(mm::kQGemmTokens, B - t * mm::kQGemmTokens), K);
        });
        job.act = act;
        fn = w.dtype == DType::kQ8_0     ? qk.q8_0
             : w.dtype == DType::kQ4_0   ? qk.q4_0
             : w.dtype == DType::kQ8_0R16 ? qk.q8_0_r16
                                         : qk.q4_0_r16;
        p.gemm = true;
      } else if (gemm_path(w, B, kernel)) {
        // Activations rounded to bf16 as below, packed in tiles of gemm_width tokens.
        const int64_t width = gemm_width(w, B), tiles = (B + width - 1) / width;
        job.act_stride = gemm_tile_bytes(K, width);
        const int64_t stride = job.act_stride;
        if (convert) for_tokens(pool, tiles, K * width, [&](int64_t t0, int64_t t1) {
          for (int64_t t = t0; t < t1; ++t)
            ks.prep_bf16_tile(act + t * stride, x + t * width * K, std::min(width, B - t * width), K, width);
        });
        job.act = act;
        fn = gemm_kernel(w, B, kernel);
        p.gemm = true;
      } else if (w.dtype == DType::kF8E4M3) {
        // float32 activations: register tiles, row streams up to 8 tokens (fp8_dot_path: bf16
        // products of the codes and the activations split in h + l, for 1-4 tokens)
        fn = fp8_dot_path(B, kernel) ? ks.fp8_dot : ks.fp8;
      } else if (w.dtype != DType::kBF16) {
        prepare_quant_act(job, fn, ks, x, w, B, act, pool, convert);
      } else if (bf16_family(kernel)) {
        // Activations rounded to bf16 (nearest even), zero-padded to whole 32-column steps.
        const int64_t Kp = (K + 31) & ~int64_t(31);
        job.act_stride = Kp * 2;
        const int64_t stride = job.act_stride;
        if (convert) for_tokens(pool, B, K, [&](int64_t b0, int64_t b1) {
          for (int64_t b = b0; b < b1; ++b) {
            if (ks.prep_bf16) {
              ks.prep_bf16(act + b * stride, x + b * K, K, stride);
              continue;
            }
            auto* xb = reinterpret_cast<uint16_t*>(act + b * stride);
            for (int64_t k = 0; k < K; ++k) xb[k] = f32_to_bf16(x[b * K + k]);
            for (int64_t k = K; k < Kp; ++k) xb[k] = 0;
          }
        });
        job.act = act;
        fn = ks.bf16_dot;
      } else {
        fn = ks.bf16;
      }
      break;
    default: break;
  }
  DSEEK_CHECK(fn != nullptr, "matmul: no kernel for " + std::string(dtype_name(w.dtype)));
  p.fn = fn;
}

void matmul_scalar(float* y, const float* x, const MatView& w, int64_t B, ThreadPool* pool) {
  const int64_t N = w.rows, K = w.cols;
  auto run = [&](int64_t n0, int64_t n1) {
    for (int64_t n = n0; n < n1; ++n)
      for (int64_t b = 0; b < B; ++b) y[b * N + n] = dot_row(w, n, x + b * K);
  };
  for_row_tasks(pool, N, N * K * B, false, run);
}

constexpr size_t align64(int64_t n) { return size_t((n + 63) & ~int64_t(63)); }

}  // namespace

void matmul(float* y, const float* x, const MatView& w, int64_t B, ThreadPool* pool, MatmulKernel kernel) {
  const int64_t N = w.rows, K = w.cols;
  if (N <= 0 || B <= 0) return;
  kernel = checked_kernel(w, kernel);
  if (!simd_path(w, kernel)) return matmul_scalar(y, x, w, B, pool);
  Prepared p;
  prepare(p, y, x, w, B, kernel, t_scratch.get(align64(act_bytes(w, B, kernel))), pool);
  const Prepared* pp = &p;
  auto run = [pp](int64_t n0, int64_t n1) { pp->fn(pp->job, n0, n1); };
  for_row_tasks(pool, N, N * K * B, p.gemm, run, stream_bytes(w, B));
}

void matmul_many(std::span<const MatmulTask> tasks, ThreadPool* pool, MatmulKernel kernel_family) {
  thread_local std::vector<Prepared> prepared;  // grow only: decode allocates nothing
  thread_local std::vector<int64_t> first_chunk;
  prepared.clear();
  first_chunk.clear();
  const MatmulKernel kernel = resolve(kernel_family);
  size_t scratch = 0;
  bool simd = true;
  for (const MatmulTask& t : tasks) {
    if (t.w.rows <= 0 || t.B <= 0) continue;
    checked_kernel(t.w, kernel);
    simd = simd && simd_path(t.w, kernel);
    scratch += align64(act_bytes(t.w, t.B, kernel));
  }
  if (!simd) {  // the scalar kernel (FP8 with odd blocks, no SIMD): one product after another
    for (const MatmulTask& t : tasks) matmul(t.y, t.x, t.w, t.B, pool, kernel);
    return;
  }
  uint8_t* act = t_scratch.get(scratch);
  int64_t chunks = 0, work = 0;
  const int threads = pool ? pool->size() : 1;
  const MatmulTask* last = nullptr;  // the previous product, whose converted activations may serve again
  uint8_t* last_act = nullptr;
  for (const MatmulTask& t : tasks) {
    if (t.w.rows <= 0 || t.B <= 0) continue;
    prepared.emplace_back();
    // The same rows for weights of the same type and width (a MoE expert's gate and up): converted
    // once (the conversions run on the calling thread while the pool waits).
    const bool same = last && t.x == last->x && t.B == last->B && t.w.cols == last->w.cols && t.w.dtype == last->w.dtype;
    prepare(prepared.back(), t.y, t.x, t.w, t.B, kernel, same ? last_act : act, nullptr, !same);
    if (!same) {
      last_act = act;
      act += align64(act_bytes(t.w, t.B, kernel));
    }
    last = &t;
    const int64_t rows = rows_per_task(t.w.rows, threads, prepared.back().gemm, stream_bytes(t.w, t.B));
    prepared.back().task_rows = rows;
    first_chunk.push_back(chunks);
    chunks += (t.w.rows + rows - 1) / rows;
    work += t.w.rows * t.w.cols * t.B;
  }
  first_chunk.push_back(chunks);
  const Prepared* p = prepared.data();
  const int64_t* fc = first_chunk.data();
  const int64_t n_jobs = int64_t(prepared.size());
  // Chunk c of the concatenated row tasks: job i with fc[i] <= c < fc[i + 1].
  auto run = [p, fc, n_jobs](int64_t c0, int64_t c1) {
    int64_t i = 0;
    for (int64_t c = c0; c < c1; ++c) {
      while (i + 1 < n_jobs && fc[i + 1] <= c) ++i;
      const int64_t n0 = (c - fc[i]) * p[i].task_rows;
      p[i].fn(p[i].job, n0, std::min(p[i].job.N, n0 + p[i].task_rows));
    }
  };
  if (!pool || threads <= 1 || work < (1 << 16)) return run(0, chunks);
  // One dispatch; chunks are taken one at a time from a shared counter (balance under noise).
  std::atomic<int64_t> next{0};
  std::atomic<int64_t>* np = &next;
  pool->parallel_for(
      threads,
      [np, chunks, &run](int64_t, int64_t) {
        for (int64_t c; (c = np->fetch_add(1, std::memory_order_relaxed)) < chunks;) run(c, c + 1);
      },
      1);
}

void matmul_transposed(float* y, const float* x, const MatView& w, int64_t B) {
  // y[b] = sum_n x[b, n] * W[n, :]: SIMD row updates (vec_axpy). Batch rows go in tiles so the
  // tile's outputs stay in cache while every weight row is decoded once per tile.
  const int64_t N = w.rows, K = w.cols;
  if (const mm::KernelSet* ks = fast_kernels(); ks && N > 0 && K % kQuantBlock == 0) {
    const mm::KernelSet::RowsTFn f = w.dtype == DType::kBF16   ? ks->rows_t_bf16
                                     : w.dtype == DType::kQ8_0 ? ks->rows_t_q8_0
                                     : w.dtype == DType::kQ4_0 ? ks->rows_t_q4_0
                                                               : nullptr;
    if (f) {
      for (int64_t b = 0; b < B; ++b) f(y + b * K, x + b * N, row_ptr(w, 0), quant_row_bytes(w.dtype, K), N, K);
      return;
    }
    if (w.dtype == DType::kF8E4M3 && w.scale_inv && w.block % kQuantBlock == 0 && ks->rows_t_fp8) {
      mm::Job j;
      j.N = N;
      j.K = K;
      j.w = row_ptr(w, 0);
      j.w_row_bytes = K;
      j.scale_inv = w.scale_inv;
      j.scale_cols = w.scale_cols();
      j.block = w.block;
      j.row_offset = w.row_offset;
      bool finite = true;
      for (int64_t b = 0; b < B && finite; ++b) finite = ks->rows_t_fp8(y + b * K, x + b * N, j);
      if (finite) return;
    }
  }
  for (int64_t i = 0; i < B * K; ++i) y[i] = 0.f;
  constexpr int64_t kChunk = 256;  // decode a row piecewise into a fixed stack buffer
  constexpr int64_t kTile = 16;
  alignas(64) float buf[kChunk];
  const bool f32 = w.dtype == DType::kF32;  // read in place (the copy was ~5 % of the demo's decode)
  for (int64_t b0 = 0; b0 < B; b0 += kTile) {
    const int64_t b1 = std::min(B, b0 + kTile);
    for (int64_t n = 0; n < N; ++n)
      for (int64_t k0 = 0; k0 < K; k0 += kChunk) {
        const int64_t kn = std::min(kChunk, K - k0);
        const float* row = buf;
        if (f32) row = reinterpret_cast<const float*>(row_ptr(w, n)) + k0;
        else dequantize_row_range(buf, w, n, k0, kn);
        for (int64_t b = b0; b < b1; ++b) vec_axpy(y + b * K + k0, x[b * N + n], row, kn);
      }
  }
}

const uint8_t* mat_row_ptr(const MatView& w, int64_t r) { return row_ptr(w, r); }

int64_t mat_bytes(const MatView& w) {
  int64_t b = w.rows * quant_row_bytes(w.dtype, w.cols);
  if (w.scale_inv) b += ((w.rows + w.block - 1) / w.block) * w.scale_cols() * 4;
  return b;
}

}  // namespace dseek
