#include "dseek/model/workspace.h"

#include <algorithm>

#include "dseek/model/router.h"

namespace dseek {

Workspace::Workspace(const ModelConfig& c, int64_t T, int64_t ctx, ThreadPool* pool_, bool naive_attention)
    : max_tokens(T), max_context(ctx), pool(pool_) {
  auto sz = [](int64_t n) { return size_t(std::max<int64_t>(n, 0)); };
  const int64_t D = c.hidden_size, H = c.num_attention_heads;
  // Two passes over the same sizes: the first adds up the arena's bytes (each array on its own
  // cache lines), the second maps the arena and points the spans into it.
  size_t used = 0;
  uint8_t* base = nullptr;
  auto take = [&]<class V>(std::span<V>& out, size_t n) {
    used = (used + 63) / 64 * 64;
    if (base) out = std::span<V>(reinterpret_cast<V*>(base + used), n);
    used += n * sizeof(V);
  };
  for (int pass = 0; pass < 2; ++pass) {
    if (pass == 1) {
      arena_ = HugeBuffer(std::max<size_t>(used, 1), "forward workspace");
      base = arena_.data();
      used = 0;
    }
    tokens.resize(sz(T));
    tok_pos.resize(sz(T));
    tok_seq.resize(sz(T));
    seq_first.resize(sz(T + 1));
    seq_cache.resize(sz(T));
    seq_rows.resize(sz(T));
    tok_allowed.resize(sz(T));
    take(x, sz(T * D));
    take(h, sz(T * D));
    take(block_out, sz(T * D));
    take(q_a, sz(T * c.q_lora_rank));
    take(q, sz(T * H * c.qk_head_dim()));
    take(kv_a, sz(T * c.kv_latent_dim()));
    take(q_lat, sz(T * H * c.kv_lora_rank));
    take(o_lat, sz(T * H * c.kv_lora_rank));
    n_threads = pool ? pool->size() : 1;
    thread_stride = T * std::max(c.qk_nope_head_dim, c.kv_lora_rank) + T * std::max(c.kv_lora_rank, c.v_head_dim);
    thread_stride = (thread_stride + 15) / 16 * 16;  // keep each thread's slice on its own cache lines
    take(attn_scratch, sz(n_threads * thread_stride));
    take(attn, sz(T * H * c.v_head_dim));
    if (T > 1) {
      take(prefill_kv, sz(ctx * c.kv_latent_dim()));
      constexpr int64_t kScoreBudget = (int64_t(32) << 20) / int64_t(sizeof(float));
      prefill_tile = std::clamp<int64_t>(kScoreBudget / std::max<int64_t>(ctx, 1), 64, 256);
      take(prefill_scores, sz(prefill_tile * ctx));
    }
    decode_capacity = std::max<int64_t>(n_threads, 8);
    take(decode_state, sz(decode_capacity * (H * c.kv_lora_rank + 2 * H)));
    decode_groups.reserve(sz(2 * T));
    take(scores, sz(ctx));
    take(rope_cs, sz(std::max(c.qk_rope_head_dim, c.index_head_dim)));
    if (naive_attention) {
      take(ctx_ckv, sz(ctx * c.kv_lora_rank));
      take(ctx_kv, sz(ctx * H * (c.qk_nope_head_dim + c.v_head_dim)));
    }
    const int64_t E = c.n_routed_experts, k = c.num_experts_per_tok;
    const int64_t moe_inter = c.moe_intermediate_size * (k + std::max<int64_t>(1, c.n_shared_experts));
    const int64_t inter = std::max(c.intermediate_size, moe_inter);
    take(ffn_gate, sz(T * inter));
    take(ffn_up, sz(T * inter));
    moe_tasks.reserve(sz(2 * (E + 1)));
    take(router_logits, sz(T * E));
    RouterParams rp = RouterParams::from_config(c, nullptr);
    take(router_scratch, sz(route_scratch_size(rp)));
    take(topk_ids, sz(T * k));
    take(topk_weights, sz(T * k));
    take(expert_rows, sz(T * k));
    take(expert_count, sz(E + 1));
    take(expert_cursor, sz(E));
    take(token_rows, sz(T * k));
    take(token_fill, sz(T));
    take(expert_x, sz(T * k * D));
    take(expert_y, sz(T * (k + 1) * D));
    if (c.has_indexer()) {
      take(idx_q, sz(T * c.index_n_heads * c.index_head_dim));
      take(idx_w, sz(T * c.index_n_heads));
      take(idx_k, sz(T * c.index_head_dim));
      take(idx_top, sz(c.index_topk));
      take(idx_allowed, sz(T * ctx));
    }
    take(mtp_cat, sz(T * 2 * D));
  }
}

}  // namespace dseek
