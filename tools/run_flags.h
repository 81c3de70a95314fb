// Flags shared by the subcommands that run a model on text (generate, chat, and later serve).
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>

#include "args.h"
#include "dseek/core/thread_pool.h"
#include "dseek/model/model.h"
#include "dseek/runtime/generator.h"
#include "dseek/runtime/sampler.h"
#include "dseek/tokenizer/tokenizer.h"

namespace dseek::cli {

// --temperature --top-k --top-p --min-p --repeat-penalty --repeat-last-n --frequency-penalty
// --presence-penalty --seed
extern const std::set<std::string> kSamplingFlags;
// --model --ctx --threads --kv-type --attn-precision
extern const std::set<std::string> kModelFlags;
// -n -> --n-predict, -t -> --threads, -c -> --ctx, -s -> --seed, -m -> --model
extern const std::map<std::string, std::string> kShortFlags;

SamplingParams sampling_from_args(const Args& a);
std::set<std::string> merge(std::initializer_list<std::set<std::string>> sets);

// A model, its tokenizer and a thread pool, loaded with progress on stderr.
struct LoadedModel {
  Model model;
  Tokenizer tokenizer;
  std::unique_ptr<ThreadPool> pool;
  int64_t ctx = 0;
  KVDtype kv_dtype = KVDtype::kF32;  // --kv-type auto|f32|bf16, resolved
  AttnPrecision attn_precision = AttnPrecision::kAuto;  // --attn-precision auto|f32|bf16
};

// --kv-type: "auto" (default; nullopt), "f32" or "bf16"; anything else is an error naming the flag.
std::optional<KVDtype> kv_dtype_from_args(const Args& a);
// What --kv-type auto means for this model: bf16 where decode attention's products are bf16 under
// `kernel` and `attn` (mla.h: non-float weights on CPUs with AMX or AVX-512 BF16), where the cache
// takes half the memory and long contexts decode faster; float32 elsewhere.
KVDtype resolve_kv_dtype(std::optional<KVDtype> flag, const Model& model, MatmulKernel kernel, AttnPrecision attn);
// --attn-precision: "auto" (default), "f32" or "bf16" (an error where the CPU lacks AVX-512 BF16).
AttnPrecision attn_precision_from_args(const Args& a);
LoadedModel load_model_for_text(const Args& a, const LoadOptions& lo = {});

// Prompt and generation speed of one generate() call, on stderr.
void print_speed(const GenerateResult& r);

}  // namespace dseek::cli
