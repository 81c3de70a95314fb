#include "dseek/model/model.h"

#include <cstring>

#include "dseek/core/error.h"
#include "dseek/kernels/matmul.h"
#include "dseek/kernels/rmsnorm.h"
#include "dseek/model/moe.h"

namespace dseek {

Model Model::load(const std::string& dir, const LoadOptions& opts) {
  Model m;
  m.cfg_ = load_config(dir);
  m.ckpt_ = Checkpoint::open(dir);
  m.w_ = bind_weights(m.ckpt_, m.cfg_, opts.load_mtp);
  m.mla_ = MlaParams::from_config(m.cfg_);
  if (m.cfg_.has_indexer()) {
    m.indexer_ = IndexerParams::from_config(m.cfg_, m.mla_.inv_freq.data(), m.mla_.rope_attn_factor);
    m.indexer_.fp8 = opts.indexer_fp8;
  }
  for (int64_t l = 0; l < m.n_cache_layers(); ++l) {
    const LayerWeights& L = l < m.cfg_.num_hidden_layers ? m.w_.layers[size_t(l)]
                                                          : m.w_.mtp[size_t(l - m.cfg_.num_hidden_layers)].block;
    const float* bias = L.moe.e_score_correction_bias.empty() ? nullptr : L.moe.e_score_correction_bias.data();
    m.router_.push_back(RouterParams::from_config(m.cfg_, bias));
  }
  return m;
}

void Model::embed(float* out, const MatView& table, const int32_t* tokens, int64_t T) const {
  for (int64_t t = 0; t < T; ++t) {
    if (tokens[t] < 0 || tokens[t] >= cfg_.vocab_size)
      throw Error("token id " + std::to_string(tokens[t]) + " at position " + std::to_string(t) +
                  " is outside the vocabulary [0, " + std::to_string(cfg_.vocab_size) + ")");
    dequantize_row(out + t * cfg_.hidden_size, table, tokens[t]);
  }
}

void Model::layer_forward(const LayerWeights& L, int64_t layer, int64_t T, int64_t start_pos, const KVCacheView& cache,
                          AttnImpl impl, Workspace& ws, ForwardTrace* trace) const {
  const int64_t D = cfg_.hidden_size;
  const float eps = float(cfg_.rms_norm_eps);
  float* x = ws.x.data();
  float* h = ws.h.data();
  float* o = ws.block_out.data();
  // x = x + attn(attn_norm(x)); x = x + ffn(ffn_norm(x))  (pre-norm residual blocks)
  rmsnorm(h, x, L.input_layernorm.data(), T, D, eps);
  float* latent = cache.layer_latent(layer);
  mla_project(h, T, start_pos, L.self_attn, mla_, latent, ws);
  const uint8_t* allowed = nullptr;
  if (L.self_attn.indexer.present()) {
    // DeepSeek Sparse Attention: the indexer picks the keys, MLA attends to those only.
    const int64_t end_pos = start_pos + T;
    float* scores = nullptr;
    if (trace) {
      trace->indexer_scores.emplace_back(size_t(T * end_pos));
      scores = trace->indexer_scores.back().data();
    }
    indexer_forward(ws.idx_allowed.data(), scores, h, ws.q_a.data(), T, start_pos, L.self_attn.indexer, indexer_,
                    cache.layer_index_keys(layer), ws);
    allowed = ws.idx_allowed.data();
    if (trace) trace->indexer_mask.emplace_back(allowed, allowed + T * end_pos);
  }
  mla_attend(o, T, start_pos, L.self_attn, mla_, latent, impl, ws, allowed);
  for (int64_t i = 0; i < T * D; ++i) x[i] += o[i];
  rmsnorm(h, x, L.post_attention_layernorm.data(), T, D, eps);
  if (L.is_moe) {
    moe_forward(o, h, T, L.moe, router_[size_t(layer)], ws);
  } else {
    mlp_forward(o, h, T, L.mlp, ws);
  }
  for (int64_t i = 0; i < T * D; ++i) x[i] += o[i];
  if (trace) {
    trace->hidden_after_layer.emplace_back(x, x + T * D);
    const int64_t k = cfg_.num_experts_per_tok;
    if (L.is_moe) {
      trace->topk_ids.emplace_back(ws.topk_ids.begin(), ws.topk_ids.begin() + T * k);
      trace->topk_weights.emplace_back(ws.topk_weights.begin(), ws.topk_weights.begin() + T * k);
    } else {
      trace->topk_ids.emplace_back();
      trace->topk_weights.emplace_back();
    }
  }
}

void Model::forward(const int32_t* tokens, int64_t T, int64_t start_pos, const KVCacheView& cache, AttnImpl impl,
                    Workspace& ws, float* logits, int64_t logits_from, float* final_hidden, ForwardTrace* trace) const {
  const int64_t D = cfg_.hidden_size;
  DSEEK_CHECK(T > 0 && T <= ws.max_tokens, "forward: T outside the workspace");
  DSEEK_CHECK(start_pos + T <= cache.capacity && start_pos + T <= ws.max_context, "forward: context exceeds the cache");
  DSEEK_CHECK(cache.latent_dim == cfg_.kv_latent_dim() && cache.n_layers >= cfg_.num_hidden_layers, "forward: cache shape");
  DSEEK_CHECK(!cfg_.has_indexer() || cache.index_keys, "forward: V3.2 needs the indexer key cache");
  float* x = ws.x.data();
  embed(x, w_.embed_tokens, tokens, T);
  if (trace) trace->embed_out.assign(x, x + T * D);
  for (int64_t l = 0; l < cfg_.num_hidden_layers; ++l)
    layer_forward(w_.layers[size_t(l)], l, T, start_pos, cache, impl, ws, trace);
  float* h = ws.h.data();
  rmsnorm(h, x, w_.norm.data(), T, D, float(cfg_.rms_norm_eps));
  if (trace) trace->final_norm_out.assign(h, h + T * D);
  if (final_hidden) std::memcpy(final_hidden, h, size_t(T * D) * sizeof(float));
  if (logits && logits_from < T) matmul(logits, h + logits_from * D, w_.lm_head, T - logits_from, ws.pool);
}

void Model::mtp_forward(const float* hprev, const int32_t* tokens_next, int64_t T, int64_t start_pos,
                        const KVCacheView& cache, AttnImpl impl, Workspace& ws, float* logits, ForwardTrace* trace) const {
  if (w_.mtp.empty()) throw Error("mtp_forward: the model was loaded without its MTP module (LoadOptions::load_mtp)");
  const MtpWeights& m = w_.mtp[0];
  const int64_t D = cfg_.hidden_size;
  const float eps = float(cfg_.rms_norm_eps);
  DSEEK_CHECK(cache.n_layers > cfg_.num_hidden_layers, "mtp_forward: cache has no MTP layer");
  // x_i = eh_proj([enorm(emb(t_{i+1})) ; hnorm(h_i)])  (concat order as the checkpoint's eh_proj columns)
  float* cat = ws.mtp_cat.data();  // (T, 2D)
  float* e = ws.h.data();
  embed(e, m.embed_tokens, tokens_next, T);
  rmsnorm(e, e, m.enorm.data(), T, D, eps);
  float* hn = ws.block_out.data();
  rmsnorm(hn, hprev, m.hnorm.data(), T, D, eps);
  for (int64_t t = 0; t < T; ++t) {
    std::memcpy(cat + t * 2 * D, e + t * D, size_t(D) * sizeof(float));
    std::memcpy(cat + t * 2 * D + D, hn + t * D, size_t(D) * sizeof(float));
  }
  float* x = ws.x.data();
  matmul(x, cat, m.eh_proj, T, ws.pool);
  layer_forward(m.block, cfg_.num_hidden_layers, T, start_pos, cache, impl, ws, trace);
  float* h = ws.h.data();
  rmsnorm(h, x, m.shared_head_norm.data(), T, D, eps);
  matmul(logits, h, m.shared_head_head, T, ws.pool);
}

}  // namespace dseek
