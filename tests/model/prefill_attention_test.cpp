// Prefill attention's precision (Workspace::attn_precision, mla.cpp): bf16 products stay within a
// stated distance of float32 ones on both prefill paths (per head, and absorbed GEMMs over the
// latent rows), and kAuto picks bf16 exactly where the docs say: the AMX and AVX-512 BF16 kernel
// families and weights other than F32 / F16.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <filesystem>

#include "common/shared_dir.h"
#include "dseek/core/mapped_file.h"
#include "dseek/kernels/gemm.h"
#include "dseek/model/init_checkpoint.h"
#include "dseek/model/model.h"
#include "dseek/runtime/kv_cache.h"

namespace dseek {
namespace {

namespace fs = std::filesystem;

// A random checkpoint with the golden v2lite shapes (no q-LoRA, 4 heads, kv_lora_rank 32) in `dtype`.
std::string make_model(DType dtype) {
  const std::string cfg_path = test::golden_model_dir("v2lite") + "/config.json";
  const fs::path dir = fs::path(::testing::TempDir()) /
                       ("dseek_prefill_attn_" + std::string(dtype_name(dtype)) + "_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  InitOptions o;
  o.seed = 11;
  o.dtype = dtype;
  o.std = 0.15f;  // clear logit margins on a 64-wide model, as init_checkpoint_test
  init_checkpoint(read_text_file(cfg_path), cfg_path, dir.string(), o);
  return dir.string();
}

// A 140-token chunk (>= 128 tokens: attention per head), a 20-token chunk after it (9-127 tokens:
// absorbed GEMMs over the gathered latent rows) and one decode token (the decode kernel: float32
// over this float32 cache, so only its context differs); the last row's logits of each.
// kv: the cache's type; decode_prec (where given) replaces prec for the decode token, whose
// attention over a bf16 cache takes bf16 products where that resolves to bf16 (AMX tiles or
// vdpbf16ps), float32 ones otherwise.
constexpr int64_t kFirst = 140, kSecond = 20, kParts = 3;
std::vector<float> prefill_logits(const Model& m, AttnPrecision prec, MatmulKernel kernel, ThreadPool& pool,
                                  KVDtype kv = KVDtype::kF32, const AttnPrecision* decode_prec = nullptr) {
  const ModelConfig& c = m.config();
  const int64_t V = c.vocab_size, T = kFirst + kSecond + 1;
  std::vector<int32_t> ids(static_cast<size_t>(T));
  for (int64_t i = 0; i < T; ++i) ids[size_t(i)] = int32_t((i * 97 + 13) % V);
  Workspace ws(c, kFirst, T, &pool, /*naive_attention=*/false);
  ws.kernel = kernel;
  ws.attn_precision = prec;
  KVCache cache(c, m.n_cache_layers(), T, kv);
  std::vector<float> out(size_t(kParts * V));
  m.forward(ids.data(), kFirst, 0, cache.view(), AttnImpl::kAbsorb, ws, out.data(), kFirst - 1);
  m.forward(ids.data() + kFirst, kSecond, kFirst, cache.view(), AttnImpl::kAbsorb, ws, out.data() + V, kSecond - 1);
  if (decode_prec) ws.attn_precision = *decode_prec;
  m.forward(ids.data() + T - 1, 1, T - 1, cache.view(), AttnImpl::kAbsorb, ws, out.data() + 2 * V);
  return out;
}

float max_abs(const std::vector<float>& a) {
  float m = 0;
  for (float v : a) m = std::max(m, std::fabs(v));
  return m;
}
float max_abs_diff(const std::vector<float>& a, const std::vector<float>& b) {
  float m = 0;
  for (size_t i = 0; i < a.size(); ++i) m = std::max(m, std::fabs(a[i] - b[i]));
  return m;
}

class PrefillAttention : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    bf16_dir_ = new std::string(make_model(DType::kBF16));
    f32_dir_ = new std::string(make_model(DType::kF32));
  }
  static void TearDownTestSuite() {
    fs::remove_all(*bf16_dir_);
    fs::remove_all(*f32_dir_);
    delete bf16_dir_;
    delete f32_dir_;
  }
  static std::string* bf16_dir_;
  static std::string* f32_dir_;
  ThreadPool pool_{2};
};
std::string* PrefillAttention::bf16_dir_ = nullptr;
std::string* PrefillAttention::f32_dir_ = nullptr;

TEST_F(PrefillAttention, Bf16ProductsStayNearFloat32) {
  if (!gemm_bf16_supported()) GTEST_SKIP() << "no AVX-512 BF16 on this CPU";
  const Model m = Model::load(*bf16_dir_);
  // AMX tiles where the CPU has them, and vdpbf16ps (the family without AMX).
  std::vector<MatmulKernel> kernels = {matmul_best_kernel()};
  if (matmul_best_kernel_without_amx() != kernels[0]) kernels.push_back(matmul_best_kernel_without_amx());
  for (MatmulKernel k : kernels) {
    SCOPED_TRACE(matmul_kernel_family_name(k));
    const std::vector<float> f32 = prefill_logits(m, AttnPrecision::kF32, k, pool_);
    const std::vector<float> bf16 = prefill_logits(m, AttnPrecision::kBf16, k, pool_);
    for (float v : bf16) ASSERT_TRUE(std::isfinite(v));
    const float d = max_abs_diff(f32, bf16), scale = max_abs(f32);
    // The bf16 path is really taken: its roundings move the logits of each chunk, and through the
    // cache rows they wrote, the decode token's.
    const int64_t V = m.config().vocab_size;
    for (int64_t part = 0; part < kParts; ++part) {
      const std::vector<float> a(f32.begin() + part * V, f32.begin() + (part + 1) * V);
      const std::vector<float> b(bf16.begin() + part * V, bf16.begin() + (part + 1) * V);
      EXPECT_GT(max_abs_diff(a, b), 0.f) << "part " << part << ": bf16 attention gave the float32 logits bit for bit";
    }
    // q, k, P and v each rounded to bf16 (relative 2^-8) before float32 sums. The scores of this
    // std-0.15 model are large, so their rounding moves the softmax most: measured 0.9 % of the
    // logits' scale (AMX Xeon, 2026-12-07; the AMX weight products' own bf16 rounding: 0.2 %).
    // DeepSeek's reference rounds the scores themselves to bf16.
    EXPECT_LE(d, 2e-2f * scale) << "max |logit| " << scale;
  }
}

// Decode over a bf16 cache (the third part's token): bf16 products (AMX tiles or vdpbf16ps) against
// float32 ones over the same rows, after the same bf16 prefill. The cache rows are bf16 either way,
// so only q and the probabilities are rounded: the prefill parts are identical, the decode logits
// not bit for bit (the bf16 path is taken) but within the bound of Bf16ProductsStayNearFloat32.
TEST_F(PrefillAttention, Bf16DecodeProductsOverBf16CacheStayNearFloat32) {
  if (!gemm_bf16_supported()) GTEST_SKIP() << "no AVX-512 BF16 on this CPU";
  const Model m = Model::load(*bf16_dir_);
  std::vector<MatmulKernel> kernels = {matmul_best_kernel()};
  if (matmul_best_kernel_without_amx() != kernels[0]) kernels.push_back(matmul_best_kernel_without_amx());
  const int64_t V = m.config().vocab_size;
  for (MatmulKernel k : kernels) {
    SCOPED_TRACE(matmul_kernel_family_name(k));
    const AttnPrecision as_bf16 = AttnPrecision::kBf16, as_f32 = AttnPrecision::kF32;
    const std::vector<float> bf = prefill_logits(m, AttnPrecision::kBf16, k, pool_, KVDtype::kBF16, &as_bf16);
    const std::vector<float> f32 = prefill_logits(m, AttnPrecision::kBf16, k, pool_, KVDtype::kBF16, &as_f32);
    EXPECT_TRUE(std::equal(bf.begin(), bf.begin() + 2 * V, f32.begin())) << "the prefill parts should not differ";
    const std::vector<float> dec_bf(bf.begin() + 2 * V, bf.end()), dec_f32(f32.begin() + 2 * V, f32.end());
    for (float v : dec_bf) ASSERT_TRUE(std::isfinite(v));
    const float d = max_abs_diff(dec_bf, dec_f32);
    EXPECT_GT(d, 0.f) << "bf16 decode products gave the float32 logits bit for bit";
    EXPECT_LE(d, 2e-2f * max_abs(dec_f32)) << "max |logit| " << max_abs(dec_f32);
  }
}

// kAuto: bf16 with the AMX or AVX-512 BF16 families and non-float weights; float32 otherwise (and
// always for F32 weights).
TEST_F(PrefillAttention, AutoFollowsKernelAndWeights) {
  const Model bf = Model::load(*bf16_dir_);
  const Model fp = Model::load(*f32_dir_);
  const MatmulKernel best = matmul_best_kernel();
  const bool bf16_family = (best == MatmulKernel::kAmx || best == MatmulKernel::kAvx512Bf16) && gemm_bf16_supported();

  const std::vector<float> bf_auto = prefill_logits(bf, AttnPrecision::kAuto, best, pool_);
  const std::vector<float> bf_f32 = prefill_logits(bf, AttnPrecision::kF32, best, pool_);
  if (bf16_family) {
    EXPECT_EQ(bf_auto, prefill_logits(bf, AttnPrecision::kBf16, best, pool_)) << "bf16 family, BF16 weights: bf16 expected";
    EXPECT_NE(bf_auto, bf_f32);
  } else {
    EXPECT_EQ(bf_auto, bf_f32) << "no bf16 kernel family: float32 expected";
  }
  if (matmul_kernel_supported(MatmulKernel::kAvx512)) {
    EXPECT_EQ(prefill_logits(bf, AttnPrecision::kAuto, MatmulKernel::kAvx512, pool_),
              prefill_logits(bf, AttnPrecision::kF32, MatmulKernel::kAvx512, pool_))
        << "the AVX-512 family without BF16 keeps float32 attention";
  }
  EXPECT_EQ(prefill_logits(fp, AttnPrecision::kAuto, best, pool_), prefill_logits(fp, AttnPrecision::kF32, best, pool_))
      << "F32 weights keep float32 attention";
}

}  // namespace
}  // namespace dseek
