// Measurements for `dseek bench`: the machine's read bandwidth and the bytes a decode step reads,
// so decode speed can be stated as a fraction of the memory-bandwidth roofline.
#pragma once

#include <cstdint>

#include "dseek/core/thread_pool.h"
#include "dseek/model/model.h"

namespace dseek {

// GB/s of a streaming read (sum of floats) over `bytes`, split across the pool; best of `reps`
// and median are returned through the out-parameters.
void measure_read_bandwidth(ThreadPool& pool, int64_t bytes, int reps, double* median_gbs, double* best_gbs);

// Bytes one decode step reads at context length `ctx`: every dense weight, the router gates, the
// num_experts_per_tok routed experts and the shared experts of each MoE layer, the lm_head, one
// embedding row, and the latent cache rows (ctx x (kv_lora_rank + qk_rope_head_dim) floats per layer).
int64_t decode_bytes_per_token(const Model& model, int64_t ctx);

}  // namespace dseek
