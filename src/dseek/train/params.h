// Training-side model: every parameter of a DeepSeek model (V2 / V2-Lite / V3 shapes, with the MTP
// modules) in one float32 allocation, its gradient in a second one of the same layout, and the
// forward/backward pass over a batch of token sequences (docs/training.md, "Model forward/backward").
//
// B = batch (sequences), T = sequence length (inputs), D = hidden_size, V = vocab_size.
//
// Parameter names are the HF checkpoint names of model/tensor_specs.cpp. Two departures, both because
// training ties or freezes tensors the checkpoint stores separately:
//   * the MTP modules' `model.layers.<L+d>.embed_tokens.weight` and `.shared_head.head.weight` are
//     not parameters: in training the MTP modules share the main model's embedding and output head
//     (DeepSeek-V3 report, section 2.2). checkpoint_tensors() lists them as copies of
//     model.embed_tokens.weight / lm_head.weight for the checkpoint writer.
//   * `mlp.gate.e_score_correction_bias` is not trained by gradient: the auxiliary-loss-free
//     balancing rule updates it (update_bias). It lives in a third allocation.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "dseek/core/tensor.h"
#include "dseek/io/checkpoint.h"
#include "dseek/io/config.h"
#include "dseek/kernels/gemm.h"

namespace dseek {

// One trainable tensor: a named slice of the parameter and gradient allocations.
struct ParamTensor {
  std::string name;  // HF name, e.g. "model.layers.1.self_attn.kv_b_proj.weight"
  Shape shape;
  float* data;       // (numel) inside the one parameter allocation
  float* grad;       // (numel) same offset inside the gradient allocation
  bool decay;        // AdamW weight decay applies: matrices yes; norms, biases no
  int64_t numel() const { return shape_numel(shape); }
};

// A tensor of the HF checkpoint and where its float32 values live (for writing checkpoints).
struct StateTensor {
  std::string name;
  Shape shape;
  const float* data;
  bool trainable;  // false: a copy of a tied parameter (MTP embed/head) or e_score_correction_bias
};

struct TrainOptions {
  int64_t batch = 8;          // B: sequences per forward_backward call (at most)
  int64_t seq = 256;          // T: input tokens per sequence (at most); tokens are (B, T + 1)
  float mtp_lambda = 0.3f;    // weight of the MTP loss (V3 report eq. 25): lambda / D * sum_d CE_d
  float balance_alpha = 0.0f; // complementary sequence-wise balance loss weight (V3 report eq. 17-20); 0: off
  bool aux_loss_free = true;  // e_score_correction_bias used for expert selection (noaux_tc configs)
  int threads = 0;            // ThreadPool size (0: hardware_concurrency)
  // Linear layers' products (attention projections, experts, dense MLP, output head, MTP eh_proj):
  // kBf16 rounds their operands to bf16 with float32 sums (mixed precision; parameters, gradients
  // and optimizer state stay float32). Routers and attention scores stay float32.
  GemmPrecision matmul = GemmPrecision::kF32;
};

class TrainModel {
 public:
  // Allocates params + grads + activation buffers for (opts.batch, opts.seq). Throws dseek::Error
  // for configs training does not support (V3.2 indexer).
  TrainModel(const ModelConfig& cfg, const TrainOptions& opts);
  ~TrainModel();
  TrainModel(const TrainModel&) = delete;
  TrainModel& operator=(const TrainModel&) = delete;

  const ModelConfig& config() const;
  const TrainOptions& options() const;
  // Every trainable tensor, in checkpoint order. params()[i].data/grad point into the two
  // allocations below, so a flat optimizer may also use num_parameters()/param_data()/grad_data().
  std::vector<ParamTensor>& params();
  int64_t num_parameters() const;
  float* param_data();  // (num_parameters)
  float* grad_data();   // (num_parameters)
  // Every tensor of the HF checkpoint for this config (MTP modules included), with its values:
  // what a checkpoint writer saves so that `dseek run` / load_from read it back.
  std::vector<StateTensor> checkpoint_tensors() const;

  // N(0, std) matrices, norms 1, biases 0 (e_score_correction_bias too); output projections
  // (o_proj, down_proj) get std / sqrt(2 * n_layers) as in GPT-2.
  void init_weights(uint64_t seed, float std = 0.02f);
  // Copies weights from an HF-layout checkpoint (F32 / BF16 / F16 / FP8 with block scales). MTP
  // tensors are read when present (their embed/head copies are ignored: tied to the main ones);
  // missing MTP modules keep their current values.
  void load_from(const Checkpoint& ckpt);

  // Forward + backward over tokens (B, T+1) int32 (inputs = [:, :T], targets = [:, 1:]), B <= batch,
  // T <= seq; accumulates grads (+=). loss = main_loss + mtp_loss + balance_loss.
  struct StepResult {
    double loss;
    double main_loss;     // mean cross-entropy over B*T next-token predictions
    double mtp_loss;      // mtp_lambda / D * sum over depths d of the mean CE predicting token i+1+d
    double balance_loss;  // balance_alpha * sum over MoE layers of the sequence-wise balance loss
  };
  StepResult forward_backward(const int32_t* tokens, int64_t B, int64_t T);
  // Forward only (validation): the main next-token cross-entropy, mean over B*T.
  double forward_loss(const int32_t* tokens, int64_t B, int64_t T);
  // Forward only, every loss piece.
  StepResult forward_losses(const int32_t* tokens, int64_t B, int64_t T);
  void zero_grad();

  // Auxiliary-loss-free balancing (Wang et al. 2024). One entry per MoE layer, main layers first,
  // then the MTP modules' blocks. Loads are token->expert assignment counts since reset_load().
  const std::vector<std::vector<int64_t>>& expert_load() const;  // [moe layer][expert]
  // b_i += gamma * sign(mean_load - load_i), then reset_load().
  void update_bias(float gamma);
  void reset_load();
  // Per MoE layer (n_routed_experts). Every MoE layer has one; it steers selection only when
  // aux_loss_free and topk_method == noaux_tc (and is saved only for noaux_tc configs).
  std::vector<float*> e_score_correction_bias();
  std::vector<std::string> moe_layer_names() const;  // "model.layers.<l>." per MoE layer

  struct Impl;
  Impl& impl() { return *impl_; }  // internals (train_model.h), for tests

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace dseek
