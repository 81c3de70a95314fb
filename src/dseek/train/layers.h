// Layer forward/backward pairs of the DeepSeek architecture for training: SwiGLU MLP, MLA, DeepSeekMoE
// and the pre-norm decoder block that composes them (STYLE.md: train/ composes primitive ops into
// layer pairs). Each _forward fills an activation struct that its _backward reads.
//
// B = batch, T = sequence length, N = B * T rows, D = hidden_size, H = num_attention_heads,
// I = intermediate width of an MLP, E = n_routed_experts, k = num_experts_per_tok.
// Parameter structs hold pointers into the parameter allocation; the same struct bound to the gradient
// allocation holds the gradients (TrainModel binds both from one name -> offset table).
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include "dseek/core/error.h"
#include "dseek/core/thread_pool.h"
#include "dseek/kernels/gemm.h"
#include "dseek/model/router.h"

namespace dseek {

// A bump allocator over one float buffer. With base == nullptr it only counts (the planning pass);
// rewind() pops back to a mark (backward temporaries are a stack).
template <typename Tp>
struct Arena {
  Tp* base = nullptr;
  int64_t capacity = 0;  // elements at base (unused while counting)
  int64_t used = 0;
  int64_t high = 0;  // high-water mark
  Tp* take(int64_t n) {
    Tp* p = base ? base + used : nullptr;
    used += n;
    high = std::max(high, used);
    DSEEK_CHECK(!base || used <= capacity, "train arena overflow (a buffer bound in TrainModel is too small)");
    return p;
  }
  int64_t mark() const { return used; }
  void rewind(int64_t m) { used = m; }
};
using FloatArena = Arena<float>;
using IntArena = Arena<int32_t>;

// ---- SwiGLU MLP: out = down_proj(silu(gate_proj(x)) * up_proj(x)) ----

struct MlpTensors {
  float* gate_proj = nullptr;  // (I, D)
  float* up_proj = nullptr;    // (I, D)
  float* down_proj = nullptr;  // (D, I)
  int64_t inter = 0;           // I
  GemmPrecision matmul = GemmPrecision::kF32;  // of the three products (TrainOptions::matmul)
};

struct MlpActs {
  float* gate = nullptr;  // (N, I) gate_proj(x)
  float* up = nullptr;    // (N, I) up_proj(x)
  float* act = nullptr;   // (N, I) silu(gate) * up
};
void plan_mlp_acts(MlpActs& a, FloatArena& arena, int64_t N, int64_t I);

// out (N, D) overwritten.
void mlp_forward(float* out, const MlpActs& a, const float* x, const MlpTensors& w, int64_t N, int64_t D,
                 ThreadPool* pool);
// dx (N, D) += (null: skipped; accumulate_dx false: overwritten), dw += ; scratch: 2 * N * I floats.
void mlp_backward(float* dx, const MlpTensors& dw, const float* dout, const float* x, const MlpActs& a,
                  const MlpTensors& w, int64_t N, int64_t D, FloatArena& scratch, ThreadPool* pool,
                  bool accumulate_dx = true);

// ---- Multi-head Latent Attention (DeepSeek-V2 §2.1), the "naive" (decompressed) form ----

struct MlaTensors {
  float* q_proj = nullptr;              // (H * qk_head_dim, D) when q_lora_rank == 0
  float* q_a_proj = nullptr;            // (q_lora_rank, D)
  float* q_a_layernorm = nullptr;       // (q_lora_rank)
  float* q_b_proj = nullptr;            // (H * qk_head_dim, q_lora_rank)
  float* kv_a_proj_with_mqa = nullptr;  // (kv_lora_rank + qk_rope_head_dim, D)
  float* kv_a_layernorm = nullptr;      // (kv_lora_rank)
  float* kv_b_proj = nullptr;           // (H * (qk_nope_head_dim + v_head_dim), kv_lora_rank)
  float* o_proj = nullptr;              // (D, H * v_head_dim)
};

struct MlaDims {
  int64_t D = 0, H = 0, q_lora_rank = 0, kv_lora_rank = 0, nope = 0, rope = 0, vd = 0;
  float eps = 1e-6f;
  float softmax_scale = 0.f;     // as model/mla.cpp MlaParams (YaRN mscale² included)
  const float* cos = nullptr;    // (max T, rope / 2) scaled by the YaRN attention factor
  const float* sin = nullptr;    // (max T, rope / 2)
  GemmPrecision matmul = GemmPrecision::kF32;  // of the projections and the attention products
  int64_t qk_head_dim() const { return nope + rope; }
};

struct MlaActs {
  float* q_a = nullptr;     // (N, q_lora_rank) q_a_proj(x), before q_a_layernorm
  float* q_a_rstd = nullptr;  // (N)
  float* q_an = nullptr;    // (N, q_lora_rank) normed
  float* q = nullptr;       // (N, H, nope + rope): [q_nope | q_pe], q_pe rotated
  float* kv_a = nullptr;    // (N, kv_lora_rank + rope) kv_a_proj_with_mqa(x)
  float* kv_rstd = nullptr; // (N)
  float* c_kv = nullptr;    // (N, kv_lora_rank) normed latent
  float* k_pe = nullptr;    // (N, rope) rotated, shared by the heads
  float* kv = nullptr;      // (N, H, nope + vd) kv_b_proj(c_kv): [k_nope | v] per head
  float* probs = nullptr;   // (B, H, T, T) causal softmax; above the diagonal zero to the end of each
                            // 64-row causal block, unset (never read) beyond
  float* o = nullptr;       // (N, H, vd) attention output before o_proj
};
void plan_mla_acts(MlaActs& a, FloatArena& arena, const MlaDims& d, int64_t B, int64_t T);

// out (N, D) overwritten; x (N, D) is the input_layernorm output; rows are (B, T), position = t.
void mla_forward(float* out, const MlaActs& a, const float* x, const MlaTensors& w, const MlaDims& d, int64_t B,
                 int64_t T, ThreadPool* pool);
// dx (N, D) += (accumulate_dx false: overwritten), dw += .
void mla_backward(float* dx, const MlaTensors& dw, const float* dout, const float* x, const MlaActs& a,
                  const MlaTensors& w, const MlaDims& d, int64_t B, int64_t T, FloatArena& scratch, ThreadPool* pool,
                  bool accumulate_dx = true);

// ---- DeepSeekMoE: router, routed experts (only for their tokens), shared experts ----

struct MoeTensors {
  float* gate = nullptr;  // (E, D) router
  std::vector<MlpTensors> experts;  // E, each I = moe_intermediate_size
  MlpTensors shared_experts;        // I = n_shared_experts * moe_intermediate_size; inter 0: none
};

struct MoeDims {
  int64_t D = 0;
  RouterParams router;         // selection (e_score_correction_bias pointer set when used)
  float balance_alpha = 0.f;   // complementary sequence-wise balance loss (V3 report eq. 17-20)
};

struct MoeActs {
  float* logits = nullptr;       // (N, E) router logits
  float* scores = nullptr;       // (N, E) sigmoid / softmax of the logits (no bias)
  int32_t* ids = nullptr;        // (N, k) selected experts
  float* weights = nullptr;      // (N, k) combine weights (normalised, × routed_scaling_factor)
  int32_t* expert_start = nullptr;  // (E + 1) offsets into rows
  int32_t* rows = nullptr;       // (N * k) flat t * k + slot, grouped by expert
  int32_t* pos = nullptr;        // (N * k) inverse of rows: rows[pos[t * k + slot]] = t * k + slot
  float* xg = nullptr;           // (N * k, D) expert inputs in grouped order (kept: backward reads them)
  MlpActs expert;                // (N * k, I) rows in grouped order
  float* expert_y = nullptr;     // (N * k, D) expert outputs in grouped order
  MlpActs shared;                // (N, I_shared)
};
void plan_moe_acts(MoeActs& a, FloatArena& arena, IntArena& ints, const MoeDims& d, int64_t N, int64_t I,
                   int64_t I_shared);

// out (N, D) overwritten. load (E) += assignments. Returns the balance loss (0 when alpha == 0),
// averaged over the B sequences. scratch: N * D floats + route scratch.
double moe_forward(float* out, const MoeActs& a, const float* x, const MoeTensors& w, const MoeDims& d, int64_t B,
                   int64_t T, int64_t* load, FloatArena& scratch, ThreadPool* pool);
// dbalance: the weight of this layer's balance loss in the total loss (1 in training, 0 to skip).
// dx (N, D) += (accumulate_dx false: overwritten), dw += .
void moe_backward(float* dx, const MoeTensors& dw, const float* dout, const float* x, const MoeActs& a,
                  const MoeTensors& w, const MoeDims& d, int64_t B, int64_t T, float dbalance, FloatArena& scratch,
                  ThreadPool* pool, bool accumulate_dx = true);

// ---- Pre-norm decoder block: x += mla(input_layernorm(x)); x += ffn(post_attention_layernorm(x)) ----

struct BlockTensors {
  float* input_layernorm = nullptr;           // (D)
  float* post_attention_layernorm = nullptr;  // (D)
  MlaTensors self_attn;
  bool is_moe = false;
  MlpTensors mlp;  // dense layers
  MoeTensors moe;  // MoE layers
};

struct BlockActs {
  float* x_in = nullptr;   // (N, D) block input (kept: rmsnorm backward reads it)
  float* ln1 = nullptr;    // (N, D) input_layernorm(x_in)
  float* rstd1 = nullptr;  // (N)
  MlaActs attn;
  float* x_mid = nullptr;  // (N, D) x_in + attention
  float* ln2 = nullptr;    // (N, D)
  float* rstd2 = nullptr;  // (N)
  MlpActs mlp;
  MoeActs moe;
};

struct BlockDims {
  MlaDims mla;
  MoeDims moe;
  float eps = 1e-6f;
};

void plan_block_acts(BlockActs& a, FloatArena& arena, IntArena& ints, const BlockDims& d, const BlockTensors& w,
                     int64_t B, int64_t T);
// x_out (N, D) overwritten (may not alias x_in). Returns the balance loss of a MoE block.
double block_forward(float* x_out, const BlockActs& a, const float* x_in, const BlockTensors& w, const BlockDims& d,
                     int64_t B, int64_t T, int64_t* load, FloatArena& scratch, ThreadPool* pool);
// dx (N, D): on entry dL/dx_out, on return dL/dx_in (the residual gradient flows through in place).
void block_backward(float* dx, const BlockTensors& dw, const BlockActs& a, const BlockTensors& w, const BlockDims& d,
                    int64_t B, int64_t T, float dbalance, FloatArena& scratch, ThreadPool* pool);

}  // namespace dseek
