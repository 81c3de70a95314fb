// `dseek init`: a checkpoint in the HF layout with random weights for any config (tests,
// benchmarks, users checking a setup without downloading a model).
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "dseek/core/dtype.h"

namespace dseek {

struct InitOptions {
  uint64_t seed = 0;
  DType dtype = DType::kF32;  // F32, BF16, or F8_E4M3 (linear layers FP8 with 128x128 block scales)
  float std = 0.02f;          // N(0, std) for matrices; norms 1, biases 0
  bool with_mtp = true;       // write the num_nextn_predict_layers MTP modules
  int64_t shard_bytes = int64_t(2) << 30;  // split into model-0000k-of-0000n.safetensors + index
};

// Parses config_text (errors name `config_label`), writes out_dir/config.json (with
// quantization_config for FP8) and the weights. Deterministic: same config, seed and dtype give
// byte-identical files. `progress` receives one line per shard written.
void init_checkpoint(const std::string& config_text, const std::string& config_label, const std::string& out_dir,
                     const InitOptions& opts, const std::function<void(const std::string&)>& progress = {});

}  // namespace dseek
