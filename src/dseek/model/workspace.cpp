#include "dseek/model/workspace.h"

#include <algorithm>

#include "dseek/model/router.h"

namespace dseek {

Workspace::Workspace(const ModelConfig& c, int64_t T, int64_t ctx, ThreadPool* pool_, bool naive_attention)
    : max_tokens(T), max_context(ctx), pool(pool_) {
  auto sz = [](int64_t n) { return size_t(std::max<int64_t>(n, 0)); };
  const int64_t D = c.hidden_size, H = c.num_attention_heads;
  tokens.resize(sz(T));
  tok_pos.resize(sz(T));
  tok_seq.resize(sz(T));
  seq_first.resize(sz(T + 1));
  seq_cache.resize(sz(T));
  seq_rows.resize(sz(T));
  tok_allowed.resize(sz(T));
  x.resize(sz(T * D));
  h.resize(sz(T * D));
  block_out.resize(sz(T * D));
  q_a.resize(sz(T * c.q_lora_rank));
  q.resize(sz(T * H * c.qk_head_dim()));
  kv_a.resize(sz(T * c.kv_latent_dim()));
  q_lat.resize(sz(T * H * c.kv_lora_rank));
  o_lat.resize(sz(T * H * c.kv_lora_rank));
  n_threads = pool ? pool->size() : 1;
  thread_stride = T * std::max(c.qk_nope_head_dim, c.kv_lora_rank) + T * std::max(c.kv_lora_rank, c.v_head_dim);
  thread_stride = (thread_stride + 15) / 16 * 16;  // keep each thread's slice on its own cache lines
  attn_scratch.resize(sz(n_threads * thread_stride));
  attn.resize(sz(T * H * c.v_head_dim));
  if (T > 1) {
    prefill_kv.resize(sz(ctx * c.kv_latent_dim()));
    constexpr int64_t kScoreBudget = (int64_t(32) << 20) / int64_t(sizeof(float));
    prefill_tile = std::clamp<int64_t>(kScoreBudget / std::max<int64_t>(ctx, 1), 64, 256);
    prefill_scores.resize(sz(prefill_tile * ctx));
  }
  decode_capacity = std::max<int64_t>(n_threads, 8);
  decode_state.resize(sz(decode_capacity * (H * c.kv_lora_rank + 2 * H)));
  decode_groups.reserve(sz(2 * T));
  scores.resize(sz(ctx));
  rope_cs.resize(sz(std::max(c.qk_rope_head_dim, c.index_head_dim)));
  if (naive_attention) {
    ctx_ckv.resize(sz(ctx * c.kv_lora_rank));
    ctx_kv.resize(sz(ctx * H * (c.qk_nope_head_dim + c.v_head_dim)));
  }
  const int64_t E = c.n_routed_experts, k = c.num_experts_per_tok;
  const int64_t moe_inter = c.moe_intermediate_size * (k + std::max<int64_t>(1, c.n_shared_experts));
  const int64_t inter = std::max(c.intermediate_size, moe_inter);
  ffn_gate.resize(sz(T * inter));
  ffn_up.resize(sz(T * inter));
  moe_tasks.reserve(sz(2 * (E + 1)));
  router_logits.resize(sz(T * E));
  RouterParams rp = RouterParams::from_config(c, nullptr);
  router_scratch.resize(sz(route_scratch_size(rp)));
  topk_ids.resize(sz(T * k));
  topk_weights.resize(sz(T * k));
  expert_rows.resize(sz(T * k));
  expert_count.resize(sz(E + 1));
  expert_cursor.resize(sz(E));
  expert_x.resize(sz(T * k * D));
  expert_y.resize(sz(T * (k + 1) * D));
  if (c.has_indexer()) {
    idx_q.resize(sz(T * c.index_n_heads * c.index_head_dim));
    idx_w.resize(sz(T * c.index_n_heads));
    idx_k.resize(sz(T * c.index_head_dim));
    idx_top.resize(sz(c.index_topk));
    idx_allowed.resize(sz(T * ctx));
  }
  mtp_cat.resize(sz(T * 2 * D));
}

}  // namespace dseek
