// `dseek quantize`: rewrites a checkpoint with its matrices in dseek's block-quantized formats
// (Q8_0 / Q4_0, docs/quantization.md). Norms, router gates and biases stay in full precision.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "dseek/core/dtype.h"

namespace dseek {

struct QuantizeOptions {
  DType type = DType::kQ8_0;  // kQ8_0 or kQ4_0
  int64_t shard_bytes = int64_t(2) << 30;
};

// Reads in_dir (any supported weight dtype, FP8 included: dequantized block by block), writes
// out_dir: config.json (quantization_config removed, "dseek_quantization" added), the quantized
// safetensors shards, and copies of the tokenizer files.
void quantize_checkpoint(const std::string& in_dir, const std::string& out_dir, const QuantizeOptions& opts,
                         const std::function<void(const std::string&)>& progress = {});

}  // namespace dseek
