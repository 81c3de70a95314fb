// The pre-norm decoder block (model/model.cpp layer_forward) for training.
#include <cstring>

#include "dseek/train/layers.h"
#include "dseek/train/ops.h"

namespace dseek {

void plan_block_acts(BlockActs& a, FloatArena& arena, IntArena& ints, const BlockDims& d, const BlockTensors& w,
                     int64_t B, int64_t T) {
  const int64_t N = B * T, D = d.mla.D;
  a.x_in = arena.take(N * D);
  a.ln1 = arena.take(N * D);
  a.rstd1 = arena.take(N);
  plan_mla_acts(a.attn, arena, d.mla, B, T);
  a.x_mid = arena.take(N * D);
  a.ln2 = arena.take(N * D);
  a.rstd2 = arena.take(N);
  if (w.is_moe) {
    const int64_t I = w.moe.experts.empty() ? 0 : w.moe.experts[0].inter;
    plan_moe_acts(a.moe, arena, ints, d.moe, N, I, w.moe.shared_experts.inter);
  } else {
    plan_mlp_acts(a.mlp, arena, N, w.mlp.inter);
  }
}

double block_forward(float* x_out, const BlockActs& a, const float* x_in, const BlockTensors& w, const BlockDims& d,
                     int64_t B, int64_t T, int64_t* load, FloatArena& scratch, ThreadPool* pool) {
  const int64_t N = B * T, D = d.mla.D;
  if (x_in != a.x_in) std::memcpy(a.x_in, x_in, size_t(N * D) * sizeof(float));
  rmsnorm_forward(a.ln1, a.rstd1, a.x_in, w.input_layernorm, N, D, d.eps, pool);
  float* y = x_out;  // (N, D) sub-block output, x_out is free until the end
  mla_forward(y, a.attn, a.ln1, w.self_attn, d.mla, B, T, pool);
  add_vectors(a.x_mid, a.x_in, y, N * D, pool);
  rmsnorm_forward(a.ln2, a.rstd2, a.x_mid, w.post_attention_layernorm, N, D, d.eps, pool);
  double balance = 0.0;
  if (w.is_moe)
    balance = moe_forward(y, a.moe, a.ln2, w.moe, d.moe, B, T, load, scratch, pool);
  else
    mlp_forward(y, a.mlp, a.ln2, w.mlp, N, D, pool);
  add_vectors(x_out, a.x_mid, y, N * D, pool);
  return balance;
}

void block_backward(float* dx, const BlockTensors& dw, const BlockActs& a, const BlockTensors& w, const BlockDims& d,
                    int64_t B, int64_t T, float dbalance, FloatArena& scratch, ThreadPool* pool) {
  const int64_t N = B * T, D = d.mla.D;
  const int64_t mark = scratch.mark();
  float* dln = scratch.take(N * D);  // (N, D) gradient of a normed sub-block input, overwritten by each sub-block
  if (w.is_moe)
    moe_backward(dln, dw.moe, dx, a.ln2, a.moe, w.moe, d.moe, B, T, dbalance, scratch, pool, false);
  else
    mlp_backward(dln, dw.mlp, dx, a.ln2, a.mlp, w.mlp, N, D, scratch, pool, false);
  rmsnorm_backward(dx, dw.post_attention_layernorm, dln, a.x_mid, w.post_attention_layernorm, a.rstd2, N, D, pool);
  mla_backward(dln, dw.self_attn, dx, a.ln1, a.attn, w.self_attn, d.mla, B, T, scratch, pool, false);
  rmsnorm_backward(dx, dw.input_layernorm, dln, a.x_in, w.input_layernorm, a.rstd1, N, D, pool);
  scratch.rewind(mark);
}

}  // namespace dseek
