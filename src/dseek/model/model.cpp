#include "dseek/model/model.h"

#include <algorithm>
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

int64_t Model::plan_batch(std::span<const SeqInput> seqs, int64_t n_cache_layers_needed, Workspace& ws,
                          ForwardTrace* trace) const {
  const int64_t n_seqs = int64_t(seqs.size());
  DSEEK_CHECK(n_seqs > 0 && n_seqs <= ws.max_tokens, "forward: number of sequences outside the workspace");
  DSEEK_CHECK(!trace || n_seqs == 1, "forward: a trace records a single sequence");
  int64_t T = 0;
  for (int64_t s = 0; s < n_seqs; ++s) {
    const SeqInput& in = seqs[size_t(s)];
    const KVCacheView& c = in.cache;
    DSEEK_CHECK(in.n_tokens > 0 && T + in.n_tokens <= ws.max_tokens, "forward: tokens outside the workspace");
    DSEEK_CHECK(in.start_pos >= 0 && in.start_pos + in.n_tokens <= c.capacity &&
                    in.start_pos + in.n_tokens <= ws.max_context, "forward: context exceeds the cache");
    DSEEK_CHECK(c.latent_dim == cfg_.kv_latent_dim() && c.n_layers >= n_cache_layers_needed, "forward: cache shape");
    DSEEK_CHECK(!cfg_.has_indexer() || c.index_keys, "forward: V3.2 needs the indexer key cache");
    DSEEK_CHECK(in.logits_from >= 0 && in.logits_from <= in.n_tokens, "forward: logits_from outside the sequence");
    ws.seq_first[size_t(s)] = T;
    ws.seq_cache[size_t(s)] = c;
    for (int64_t i = 0; i < in.n_tokens; ++i, ++T) {
      ws.tokens[size_t(T)] = in.tokens[i];
      ws.tok_pos[size_t(T)] = in.start_pos + i;
      ws.tok_seq[size_t(T)] = int32_t(s);
    }
  }
  ws.seq_first[size_t(n_seqs)] = T;
  ws.batch = TokenBatch{T, n_seqs, ws.tok_pos.data(), ws.tok_seq.data(), ws.seq_first.data()};
  return T;
}

void Model::layer_forward(const LayerWeights& L, int64_t layer, AttnImpl impl, Workspace& ws, ForwardTrace* trace) const {
  const TokenBatch& b = ws.batch;
  const int64_t D = cfg_.hidden_size, T = b.T;
  const float eps = float(cfg_.rms_norm_eps);
  float* x = ws.x.data();
  float* h = ws.h.data();
  float* o = ws.block_out.data();
  for (int64_t s = 0; s < b.n_seqs; ++s) ws.seq_rows[size_t(s)] = ws.seq_cache[size_t(s)].latent_rows(layer);
  // x = x + attn(attn_norm(x)); x = x + ffn(ffn_norm(x))  (pre-norm residual blocks)
  rmsnorm(h, x, L.input_layernorm.data(), T, D, eps);
  mla_project(h, b, L.self_attn, mla_, ws.seq_rows.data(), ws);
  const uint8_t* const* allowed = nullptr;
  if (L.self_attn.indexer.present()) {
    // DeepSeek Sparse Attention: the indexer picks the keys, MLA attends to those only. The
    // indexer runs per sequence; its masks lie one after another in ws.idx_allowed.
    uint8_t* mask = ws.idx_allowed.data();
    for (int64_t s = 0; s < b.n_seqs; ++s) {
      const int64_t t0 = b.seq_first[s], n = b.seq_first[s + 1] - t0, start_pos = b.pos[t0], end_pos = start_pos + n;
      float* scores = nullptr;
      if (trace) {
        trace->indexer_scores.emplace_back(size_t(n * end_pos));
        scores = trace->indexer_scores.back().data();
      }
      const int64_t qr_dim = cfg_.q_lora_rank;
      indexer_forward(mask, scores, h + t0 * D, ws.q_a.data() + t0 * qr_dim, n, start_pos, L.self_attn.indexer,
                      indexer_, ws.seq_cache[size_t(s)].index_key_rows(layer), ws);
      if (trace) trace->indexer_mask.emplace_back(mask, mask + n * end_pos);
      for (int64_t i = 0; i < n; ++i) ws.tok_allowed[size_t(t0 + i)] = mask + i * end_pos;
      mask += n * end_pos;
    }
    allowed = ws.tok_allowed.data();
  }
  mla_attend(o, b, L.self_attn, mla_, ws.seq_rows.data(), impl, ws, allowed);
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

void Model::head_logits(float* logits, const float* h, std::span<const SeqInput> seqs, const MatView& head,
                        Workspace& ws) const {
  if (!logits) return;
  const int64_t D = cfg_.hidden_size;
  // Gather the selected rows (a suffix of each sequence) so the head's weights are read once.
  float* rows = ws.block_out.data();
  int64_t n = 0;
  for (size_t s = 0; s < seqs.size(); ++s) {
    const int64_t t0 = ws.seq_first[s];
    for (int64_t i = seqs[s].logits_from; i < seqs[s].n_tokens; ++i, ++n)
      std::memcpy(rows + n * D, h + (t0 + i) * D, size_t(D) * sizeof(float));
  }
  if (n > 0) matmul(logits, rows, head, n, ws.pool, ws.kernel);
}

void Model::forward_batch(std::span<const SeqInput> seqs, AttnImpl impl, Workspace& ws, float* logits,
                          float* final_hidden, ForwardTrace* trace) const {
  const int64_t D = cfg_.hidden_size;
  const int64_t T = plan_batch(seqs, cfg_.num_hidden_layers, ws, trace);
  float* x = ws.x.data();
  embed(x, w_.embed_tokens, ws.tokens.data(), T);
  if (trace) trace->embed_out.assign(x, x + T * D);
  for (int64_t l = 0; l < cfg_.num_hidden_layers; ++l) layer_forward(w_.layers[size_t(l)], l, impl, ws, trace);
  float* h = ws.h.data();
  rmsnorm(h, x, w_.norm.data(), T, D, float(cfg_.rms_norm_eps));
  if (trace) trace->final_norm_out.assign(h, h + T * D);
  if (final_hidden) std::memcpy(final_hidden, h, size_t(T * D) * sizeof(float));
  head_logits(logits, h, seqs, w_.lm_head, ws);
}

void Model::forward(const int32_t* tokens, int64_t T, int64_t start_pos, const KVCacheView& cache, AttnImpl impl,
                    Workspace& ws, float* logits, int64_t logits_from, float* final_hidden, ForwardTrace* trace) const {
  const SeqInput in{tokens, T, start_pos, cache, logits ? std::min(logits_from, T) : T};
  forward_batch({&in, 1}, impl, ws, logits, final_hidden, trace);
}

void Model::mtp_forward_batch(const float* hprev, std::span<const SeqInput> seqs, AttnImpl impl, Workspace& ws,
                              float* logits, ForwardTrace* trace) const {
  if (w_.mtp.empty()) throw Error("mtp_forward: the model was loaded without its MTP module (LoadOptions::load_mtp)");
  const MtpWeights& m = w_.mtp[0];
  const int64_t D = cfg_.hidden_size;
  const float eps = float(cfg_.rms_norm_eps);
  const int64_t T = plan_batch(seqs, cfg_.num_hidden_layers + 1, ws, trace);
  // x_i = eh_proj([enorm(emb(t_{i+1})) ; hnorm(h_i)])  (concat order as the checkpoint's eh_proj columns)
  float* cat = ws.mtp_cat.data();  // (T, 2D)
  float* e = ws.h.data();
  embed(e, m.embed_tokens, ws.tokens.data(), T);
  rmsnorm(e, e, m.enorm.data(), T, D, eps);
  float* hn = ws.block_out.data();
  rmsnorm(hn, hprev, m.hnorm.data(), T, D, eps);
  for (int64_t t = 0; t < T; ++t) {
    std::memcpy(cat + t * 2 * D, e + t * D, size_t(D) * sizeof(float));
    std::memcpy(cat + t * 2 * D + D, hn + t * D, size_t(D) * sizeof(float));
  }
  float* x = ws.x.data();
  matmul(x, cat, m.eh_proj, T, ws.pool, ws.kernel);
  const int64_t layer = cfg_.num_hidden_layers;
  int64_t n_cache_only = 0;
  for (const SeqInput& in : seqs) n_cache_only += in.logits_from;
  if (n_cache_only == 0 || trace || m.block.self_attn.indexer.present()) {
    layer_forward(m.block, layer, impl, ws, trace);
    float* h = ws.h.data();
    rmsnorm(h, x, m.shared_head_norm.data(), T, D, eps);
    head_logits(logits, h, seqs, m.shared_head_head, ws);
    return;
  }
  // Rows without logits only need their cache row: with one MTP depth nothing else reads their
  // output, so they skip the queries, attention, the FFN and the head (the prompt's rows, and the
  // first row after an accepted draft, issue 8). Their normed inputs go to h, the other rows move
  // up in x; then each set runs as its own batch. (V3.2 would also need the indexer's key rows.)
  std::vector<SeqInput> cache_only, full;
  float* h = ws.h.data();
  const float* norm = m.block.input_layernorm.data();
  int64_t nc = 0, nf = 0;
  for (size_t s = 0; s < seqs.size(); ++s) {
    const SeqInput& in = seqs[s];
    const int64_t t0 = ws.seq_first[s];
    if (in.logits_from > 0) {
      cache_only.push_back({in.tokens, in.logits_from, in.start_pos, in.cache, in.logits_from});
      for (int64_t i = 0; i < in.logits_from; ++i, ++nc) rmsnorm(h + nc * D, x + (t0 + i) * D, norm, 1, D, eps);
    }
    if (in.logits_from < in.n_tokens) {
      const int64_t n = in.n_tokens - in.logits_from;
      full.push_back({in.tokens + in.logits_from, n, in.start_pos + in.logits_from, in.cache, 0});
      std::memmove(x + nf * D, x + (t0 + in.logits_from) * D, size_t(n * D) * sizeof(float));
      nf += n;
    }
  }
  plan_batch(cache_only, layer + 1, ws, nullptr);
  for (size_t s = 0; s < cache_only.size(); ++s) ws.seq_rows[s] = ws.seq_cache[s].latent_rows(layer);
  mla_write_latent(h, ws.batch, m.block.self_attn, mla_, ws.seq_rows.data(), ws);
  if (full.empty()) return;
  plan_batch(full, layer + 1, ws, nullptr);
  layer_forward(m.block, layer, impl, ws, nullptr);
  rmsnorm(h, x, m.shared_head_norm.data(), nf, D, eps);
  head_logits(logits, h, full, m.shared_head_head, ws);
}

void Model::mtp_forward(const float* hprev, const int32_t* tokens_next, int64_t T, int64_t start_pos,
                        const KVCacheView& cache, AttnImpl impl, Workspace& ws, float* logits, ForwardTrace* trace) const {
  const SeqInput in{tokens_next, T, start_pos, cache, logits ? 0 : T};
  mtp_forward_batch(hprev, {&in, 1}, impl, ws, logits, trace);
}

}  // namespace dseek
