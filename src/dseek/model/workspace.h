// Scratch memory for one forward call, sized once for at most `max_tokens` tokens per call and
// `max_context` cached positions, so forward allocates nothing (STYLE.md: plan, allocate, run).
// The numeric arrays are spans of one zeroed mapping on huge pages (core/huge_buffer.h): a
// V2-Lite-shaped workspace for 512-token chunks is ~150 MB, most of it never touched at decode, and
// zeroing it as vectors took ~0.5 s of every start (4 KiB page faults).
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "dseek/core/huge_buffer.h"
#include "dseek/core/thread_pool.h"
#include "dseek/io/config.h"
#include "dseek/kernels/matmul.h"
#include "dseek/model/kv_view.h"

namespace dseek {

// Precision of attention's products: float32, or operands rounded to bf16 with float32 sums (gemm.h,
// GemmPrecision::kBf16), as DeepSeek's reference computes attention in bf16.
enum class AttnPrecision : uint8_t { kAuto, kF32, kBf16 };

struct Workspace {
  // naive_attention: also size the buffers of AttnImpl::kNaive (decompressed K/V of the whole
  // context: max_context x H x (qk_nope_head_dim + v_head_dim) floats).
  Workspace(const ModelConfig& c, int64_t max_tokens, int64_t max_context, ThreadPool* pool = nullptr,
            bool naive_attention = true);

  int64_t max_tokens = 0;
  int64_t max_context = 0;
  ThreadPool* pool = nullptr;  // not owned; null runs single-threaded
  // Kernel family of every product (matmul.h). kAuto is the fastest; the float32 conformance tests
  // pin one without AMX, whose prefill rounds FP8 products to bf16.
  MatmulKernel kernel = MatmulKernel::kAuto;
  // Products of prefill attention (scores and P · V of a multi-token chunk, mla.cpp). kAuto: bf16
  // where the chunk's weight products are bf16 already (kernel resolves to kAmx or kAvx512Bf16,
  // weights other than F32 / F16), else float32. Where this resolves to bf16, decode attention
  // over a bf16 KV cache takes bf16 products too (AMX tiles or vdpbf16ps, DecodeProducts in
  // attention_decode.h); otherwise decode is float32.
  AttnPrecision attn_precision = AttnPrecision::kAuto;

  // The current call's batch (Model::plan_batch): at most max_tokens tokens and sequences.
  TokenBatch batch;
  std::vector<int32_t> tokens;        // (T) the call's tokens, sequence after sequence
  std::vector<int64_t> tok_pos;       // (T)
  std::vector<int32_t> tok_seq;       // (T)
  std::vector<int64_t> seq_first;     // (n_seqs + 1)
  std::vector<KVCacheView> seq_cache; // (n_seqs)
  std::vector<LayerRows> seq_rows;    // (n_seqs) the current layer's latent rows
  std::vector<const uint8_t*> tok_allowed;  // (T) V3.2: each token's key mask row

  // Residual stream and norms.
  std::span<float> x;            // (T, hidden) residual stream
  std::span<float> h;            // (T, hidden) normed input of a sub-block
  std::span<float> block_out;    // (T, hidden) attention or FFN output
  // MLA.
  std::span<float> q_a;          // (T, q_lora_rank)
  std::span<float> q;            // (T, H * qk_head_dim): [q_nope | q_pe] per head
  std::span<float> kv_a;         // (T, kv_lora_rank + qk_rope_head_dim)
  std::span<float> q_lat;        // (T, H, kv_lora_rank) absorbed queries q_nope · W_UK
  std::span<float> o_lat;        // (T, H, kv_lora_rank) attention output in latent space
  // Per-thread scratch of attention, thread_stride floats each (ThreadPool::parallel_for_tid):
  // a head's gathered inputs (T, max(nope, R)) and its outputs (T, max(R, v_head_dim)).
  std::span<float> attn_scratch;
  int64_t thread_stride = 0;
  int n_threads = 1;
  float* thread_scratch(int tid) { return attn_scratch.data() + tid * thread_stride; }
  std::span<float> attn;         // (T, H * v_head_dim)
  // Prefill attention as GEMMs (mla_attend): one sequence's cache rows gathered contiguous
  // (max_context, latent_dim) and the scores of a tile of query rows (prefill_tile, max_context).
  // Every tile packs the gathered rows into GEMM panels again, so tiles are as tall as a 32 MB score
  // buffer allows, 64 to 256 query rows (16 tokens x 16 heads at V2-Lite shape): with 64 at 4096
  // positions, prefill spent most of its time repacking.
  int64_t prefill_tile = 64;
  std::span<float> prefill_kv;
  std::span<float> prefill_scores;
  // Prefill chunks of many tokens attend per head (mla.cpp, attend_prefill_heads): the chunk's
  // context latents c_kv (rows, kv_lora_rank) and their expansion through kv_b_proj (rows, H *
  // (qk_nope_head_dim + v_head_dim)). Grown on first use, never past kPrefillHeadsBytes in all.
  std::vector<float> prefill_ckv;
  std::vector<float> prefill_kvb;
  // Decode attention (kernels/attention_decode.h): decode_capacity online-softmax states of
  // H * kv_lora_rank + 2 H floats (a token, or a token's part of the context per thread).
  std::span<float> decode_state;
  int64_t decode_capacity = 0;
  std::vector<int64_t> decode_groups;  // (2 max_tokens) (first token, count) of the call's decode groups
  std::span<float> scores;       // (max_context) indexer scores of one query
  std::span<float> rope_cs;      // (qk_rope_head_dim): cos | sin
  std::span<float> ctx_ckv;      // naive path: (max_context, kv_lora_rank) gathered c_kv
  std::span<float> ctx_kv;       // naive path: (max_context, H * (qk_nope_head_dim + v_head_dim))
  // FFN / MoE.
  std::span<float> ffn_gate;     // (T, max intermediate); MoE: every routed row's and the shared experts'
  std::span<float> ffn_up;       // (T, max intermediate)
  std::span<float> router_logits;    // (T, n_routed_experts)
  std::span<float> router_scratch;
  std::span<int32_t> topk_ids;       // (T, num_experts_per_tok)
  std::span<float> topk_weights;     // (T, num_experts_per_tok)
  std::span<int32_t> expert_rows;    // (T * num_experts_per_tok) token-slot lists grouped by expert
  std::span<int32_t> expert_count;   // (n_routed_experts + 1) prefix sums
  std::span<int32_t> expert_cursor;    // (n_routed_experts)
  std::span<int32_t> token_rows;     // (T * num_experts_per_tok) each token's rows of expert_y, in expert order
  std::span<int32_t> token_fill;     // (T)
  std::span<float> expert_x;         // (T * num_experts_per_tok, hidden) routed rows grouped by expert
  std::span<float> expert_y;         // (T * (num_experts_per_tok + 1), hidden): their outputs, then the shared experts'
  std::vector<MatmulTask> moe_tasks; // the expert products of one MoE layer (one pool dispatch)
  // V3.2 lightning indexer.
  std::span<float> idx_q;          // (T, index_n_heads * index_head_dim)
  std::span<float> idx_w;          // (T, index_n_heads)
  std::span<float> idx_k;          // (T, index_head_dim)
  std::span<int32_t> idx_top;      // (index_topk)
  std::span<uint8_t> idx_allowed;    // (T, max_context) keys each query attends
  // MTP.
  std::span<float> mtp_cat;          // (T, 2 * hidden)

 private:
  HugeBuffer arena_;  // what the spans above point into
};

}  // namespace dseek
