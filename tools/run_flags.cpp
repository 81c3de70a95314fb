#include "run_flags.h"

#include <algorithm>
#include <chrono>
#include <cstdio>

#include "dseek/core/error.h"
#include "dseek/kernels/cpu_features.h"
#include "dseek/kernels/gemm.h"
#include "dseek/kernels/matmul.h"
#include "dseek/model/mla.h"

namespace dseek::cli {

const std::set<std::string> kSamplingFlags = {"temperature",  "top-k", "top-p", "min-p", "repeat-penalty",
                                              "repeat-last-n", "frequency-penalty", "presence-penalty", "seed"};
const std::set<std::string> kModelFlags = {"model", "ctx", "threads", "kv-type", "attn-precision"};
const std::map<std::string, std::string> kShortFlags = {
    {"n", "n-predict"}, {"t", "threads"}, {"c", "ctx"}, {"s", "seed"}, {"m", "model"}};

std::set<std::string> merge(std::initializer_list<std::set<std::string>> sets) {
  std::set<std::string> out;
  for (const auto& s : sets) out.insert(s.begin(), s.end());
  return out;
}

SamplingParams sampling_from_args(const Args& a) {
  SamplingParams p;
  p.temperature = float(a.get_double("temperature", p.temperature));
  p.top_k = int32_t(a.get_int("top-k", p.top_k));
  p.top_p = float(a.get_double("top-p", p.top_p));
  p.min_p = float(a.get_double("min-p", p.min_p));
  p.repetition_penalty = float(a.get_double("repeat-penalty", p.repetition_penalty));
  p.penalty_last_n = int32_t(a.get_int("repeat-last-n", p.penalty_last_n));
  p.frequency_penalty = float(a.get_double("frequency-penalty", p.frequency_penalty));
  p.presence_penalty = float(a.get_double("presence-penalty", p.presence_penalty));
  p.seed = uint64_t(a.get_int("seed", int64_t(p.seed)));
  return p;
}

namespace {
// Reads one byte of every page of the checkpoint so the first tokens do not stall on page faults,
// printing progress for large checkpoints (weights stay memory-mapped: nothing is copied).
void warm_pages(const Checkpoint& ckpt) {
  const double total = double(ckpt.total_bytes());
  const bool show = total > 256e6;
  double done = 0, next_report = 0;
  volatile uint8_t sink = 0;
  for (const std::string& name : ckpt.names()) {
    const TensorView t = ckpt.get(name);
    const size_t n = size_t(t.numel()) * std::max<size_t>(1, dtype_size(t.dtype));
    const auto* p = static_cast<const uint8_t*>(t.data);
    for (size_t i = 0; i < n; i += 4096) sink = uint8_t(sink + p[i]);
    done += double(n);
    if (show && done >= next_report) {
      std::fprintf(stderr, "\rdseek: loading weights %3.0f%% (%.2f / %.2f GB)", 100.0 * done / total, done / 1e9,
                   total / 1e9);
      next_report = done + total / 50;
    }
  }
  if (show) std::fputc('\n', stderr);
}
}  // namespace

std::optional<KVDtype> kv_dtype_from_args(const Args& a) {
  const std::string t = a.get("kv-type").value_or("auto");
  if (t == "auto") return std::nullopt;
  if (t == "f32") return KVDtype::kF32;
  if (t == "bf16") return KVDtype::kBF16;
  throw Error("--kv-type: must be auto, f32 or bf16, not '" + t + "'");
}

KVDtype resolve_kv_dtype(std::optional<KVDtype> flag, const Model& model, MatmulKernel kernel, AttnPrecision attn) {
  if (flag) return *flag;
  const DType kv_b = model.weights().layers.front().self_attn.kv_b_proj.dtype;
  return decode_attn_products(kv_b, kernel, attn) == DecodeProducts::kFloat32 ? KVDtype::kF32 : KVDtype::kBF16;
}

AttnPrecision attn_precision_from_args(const Args& a) {
  const std::string t = a.get("attn-precision").value_or("auto");
  if (t == "auto") return AttnPrecision::kAuto;
  if (t == "f32") return AttnPrecision::kF32;
  if (t == "bf16") {
    if (!gemm_bf16_supported()) throw Error("--attn-precision bf16: this CPU lacks AVX-512 BF16");
    return AttnPrecision::kBf16;
  }
  throw Error("--attn-precision: must be auto, f32 or bf16, not '" + t + "'");
}

LoadedModel load_model_for_text(const Args& a, const LoadOptions& lo) {
  const std::string dir = a.require("model");
  const auto t0 = std::chrono::steady_clock::now();
  const std::optional<KVDtype> kv_flag = kv_dtype_from_args(a);  // before the load: bad flags cost nothing
  const AttnPrecision attn = attn_precision_from_args(a);
  LoadedModel m{Model::load(dir, lo), Tokenizer::load(dir), nullptr, 0, KVDtype::kF32, attn};
  m.kv_dtype = resolve_kv_dtype(kv_flag, m.model, MatmulKernel::kAuto, attn);
  const ModelConfig& c = m.model.config();
  m.pool = std::make_unique<ThreadPool>(int(a.get_int("threads", 0)));
  if (!a.has("no-warm")) warm_pages(m.model.checkpoint());
  m.ctx = a.get_int("ctx", std::min<int64_t>(4096, c.max_position_embeddings));
  if (m.ctx < 2) throw Error("--ctx: must be at least 2");
  const DType wt = m.model.weights().layers.back().self_attn.o_proj.dtype;
  std::fprintf(stderr, "dseek: cpu %s; %s weights use the %s matmul kernel\n",
               cpu_features_str(cpu_features()).c_str(), std::string(dtype_name(wt)).c_str(),
               std::string(matmul_kernel_name(wt)).c_str());
  std::fprintf(stderr, "dseek: %s (%s, %lld layers, %.2f GB mapped) loaded in %.2f s, %d threads, context %lld%s%s\n",
               dir.c_str(), std::string(model_type_name(c.model_type)).c_str(), (long long)c.num_hidden_layers,
               double(m.model.checkpoint().total_bytes()) / 1e9,
               std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), m.pool->size(),
               (long long)m.ctx, m.kv_dtype == KVDtype::kBF16 ? ", bf16 KV cache" : ", f32 KV cache",
               kv_flag ? "" : " (--kv-type auto)");
  return m;
}

void print_speed(const GenerateResult& r) {
  const int64_t computed = r.prompt_tokens - r.cached_prompt_tokens;
  std::fprintf(stderr, "\nprompt: %lld tokens (%lld cached) in %.2f s (%.1f tokens/s); generated: %zu tokens in %.2f s (%.2f tokens/s); finish: %s\n",
               (long long)r.prompt_tokens, (long long)r.cached_prompt_tokens, r.prefill_seconds,
               r.prefill_seconds > 0 ? double(computed) / r.prefill_seconds : 0.0, r.tokens.size(), r.decode_seconds,
               r.decode_seconds > 0 ? double(r.tokens.size()) / r.decode_seconds : 0.0, r.finish_reason.c_str());
}

}  // namespace dseek::cli
