// Every tensor a checkpoint must hold for a config: HF name, shape and role. The single list that
// `dseek init` writes from (and that bind_weights must agree with: tests load what init writes).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "dseek/core/tensor.h"
#include "dseek/io/config.h"

namespace dseek {

enum class TensorRole : uint8_t {
  kLinear,     // a projection matrix: may be stored FP8 / quantized
  kTable,      // embedding, lm_head, router gate, eh_proj: kept in float dtypes
  kNormWeight, // RMSNorm / LayerNorm weight: initialised to 1
  kBias,       // e_score_correction_bias, LayerNorm bias: initialised to 0
  kSentinel
};

struct TensorSpec {
  std::string name;
  Shape shape;
  TensorRole role;
};

// Main model tensors, then (with_mtp) the num_nextn_predict_layers MTP modules.
std::vector<TensorSpec> checkpoint_tensors(const ModelConfig& c, bool with_mtp);

}  // namespace dseek
