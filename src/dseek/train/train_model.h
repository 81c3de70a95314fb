// TrainModel's internals (params.h declares the public class): the parameter table, the tensors of
// the main model and the MTP modules bound to the parameter and gradient allocations, and the
// activation buffers for (batch, seq). Exposed for tests; other code uses params.h.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "dseek/core/huge_buffer.h"
#include "dseek/core/thread_pool.h"
#include "dseek/train/layers.h"
#include "dseek/train/params.h"

namespace dseek {

// One MTP module (V3 report §2.2): h' = eh_proj([enorm(emb(t_{i+d})) ; hnorm(h_i)]), a decoder
// block, shared_head.norm; the embedding and output head are the main model's.
struct MtpTensors {
  float* enorm = nullptr;             // (D)
  float* hnorm = nullptr;             // (D)
  float* eh_proj = nullptr;           // (D, 2D)
  BlockTensors block;
  float* shared_head_norm = nullptr;  // (D)
};

struct ModelTensors {
  float* embed_tokens = nullptr;  // (V, D)
  std::vector<BlockTensors> layers;
  float* norm = nullptr;          // (D)
  float* lm_head = nullptr;       // (V, D); the embedding when tie_word_embeddings
  std::vector<MtpTensors> mtp;
};

struct MtpActs {
  int32_t* tokens = nullptr;   // (N) t_{i+d}, rows (B, T - d)
  int32_t* targets = nullptr;  // (N) t_{i+d+1}
  float* emb = nullptr;        // (N, D)
  float* emb_rstd = nullptr;   // (N)
  float* h_prev = nullptr;     // (N, D) previous depth's hidden state, gathered to (B, T - d) rows
  float* h_rstd = nullptr;     // (N)
  float* cat = nullptr;        // (N, 2D) [enorm(emb) ; hnorm(h_prev)]
  BlockActs block;             // block.x_in = eh_proj(cat)
  float* out = nullptr;        // (N, D) block output (the next depth's h_prev)
  float* hs = nullptr;         // (N, D) shared_head.norm(out)
  float* hs_rstd = nullptr;    // (N)
  float* dhs = nullptr;        // (N, D) dL/dhs from the head (filled during forward)
  float* dout = nullptr;       // (N, D) dL/dout
};

struct ModelActs {
  int32_t* inputs = nullptr;   // (N) tokens[:, :T]
  int32_t* targets = nullptr;  // (N) tokens[:, 1:]
  std::vector<BlockActs> layers;
  float* x_final = nullptr;    // (N, D) last block's output
  float* hf = nullptr;         // (N, D) final norm output
  float* hf_rstd = nullptr;    // (N)
  float* logits = nullptr;     // (N, V) logits → probs → dlogits (one head at a time)
  float* losses = nullptr;     // (N)
  float* dhf = nullptr;        // (N, D)
  float* dresid = nullptr;     // (N, D) residual-stream gradient
  std::vector<MtpActs> mtp;
};

struct TrainModel::Impl {
  ModelConfig cfg;
  TrainOptions opts;
  std::unique_ptr<ThreadPool> pool;

  // The large buffers sit on huge pages (core/huge_buffer.h): fewer TLB misses in the GEMMs' strided
  // reads, and ~1 GB of activations faults in in 2 MiB steps instead of 4 KiB ones.
  HugeArray<float> params;  // (num_parameters)
  HugeArray<float> grads;   // (num_parameters)
  std::vector<float> biases;  // (n_moe_layers, E) e_score_correction_bias
  std::vector<ParamTensor> param_list;
  std::map<std::string, int64_t, std::less<>> offset;  // param name -> offset
  std::vector<int64_t> moe_layers;                     // layer index of each MoE layer
  std::vector<std::vector<int64_t>> load;              // (n_moe_layers, E)

  ModelTensors w, dw;
  std::vector<BlockDims> dims;  // per layer (main, then MTP blocks)
  std::vector<float> rope_cos, rope_sin;  // (seq, qk_rope_head_dim / 2)
  HugeArray<float> act_buf;
  std::vector<int32_t> act_ints;
  ModelActs acts;
  HugeArray<float> scratch_buf;
  FloatArena scratch;

  StepResult run(const int32_t* tokens, int64_t B, int64_t T, bool backward);
};

}  // namespace dseek
