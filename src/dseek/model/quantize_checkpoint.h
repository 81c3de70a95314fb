// `dseek quantize`: rewrites a checkpoint with its matrices in dseek's block-quantized formats
// (Q8_0 / Q4_0 and their 16-row interleaved forms, docs/kernels.md). Norms, router gates and biases stay in full precision.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "dseek/core/dtype.h"

namespace dseek {

struct QuantizeOptions {
  // kQ8_0, kQ4_0, kQ8_0R16 or kQ4_0R16 (the _R16 forms interleave the matrices the model multiplies
  // whole; the embedding, kv_b_proj and matrices whose rows are not a multiple of 16 keep rows).
  DType type = DType::kQ8_0;
  int64_t shard_bytes = int64_t(2) << 30;
};

// Reads in_dir (any supported weight dtype, FP8 included: dequantized block by block), writes
// out_dir: config.json (quantization_config removed, "dseek_quantization" added), the quantized
// safetensors shards, and copies of the tokenizer files.
void quantize_checkpoint(const std::string& in_dir, const std::string& out_dir, const QuantizeOptions& opts,
                         const std::function<void(const std::string&)>& progress = {});

}  // namespace dseek
