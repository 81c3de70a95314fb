#include "dseek/train/train_model.h"

#include <cmath>
#include <cstring>

#include "dseek/core/error.h"
#include "dseek/kernels/matmul.h"
#include "dseek/kernels/rope.h"
#include "dseek/kernels/vec.h"
#include "dseek/model/mla.h"
#include "dseek/model/tensor_specs.h"
#include "dseek/train/ops.h"

namespace dseek {

namespace {

bool ends_with(const std::string& s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// Checkpoint tensors that are not trained by gradient: the MTP modules' copies of the embedding and
// output head (tied to the main model's in training) and the balancing bias.
enum class Kind { kParam, kMtpEmbed, kMtpHead, kBias };

Kind kind_of(const ModelConfig& c, const std::string& name) {
  if (ends_with(name, ".e_score_correction_bias")) return Kind::kBias;
  for (int64_t d = 0; d < c.num_nextn_predict_layers; ++d) {
    const std::string p = "model.layers." + std::to_string(c.num_hidden_layers + d) + ".";
    if (name == p + "embed_tokens.weight") return Kind::kMtpEmbed;
    if (name == p + "shared_head.head.weight") return Kind::kMtpHead;
  }
  return Kind::kParam;
}

// splitmix64 → Box-Muller: a seedable normal stream that is the same on every platform.
struct Normal {
  uint64_t s;
  uint64_t next() {
    uint64_t z = (s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  double uniform() { return (double(next() >> 11) + 0.5) * (1.0 / 9007199254740992.0); }
  double operator()() { return std::sqrt(-2.0 * std::log(uniform())) * std::cos(2.0 * M_PI * uniform()); }
};

}  // namespace

TrainModel::TrainModel(const ModelConfig& cfg, const TrainOptions& opts) : impl_(std::make_unique<Impl>()) {
  Impl& m = *impl_;
  m.cfg = cfg;
  m.opts = opts;
  if (cfg.has_indexer())
    throw Error("training: deepseek_v32 (lightning indexer) is not supported; use a deepseek_v3 config");
  if (cfg.qk_rope_head_dim % 2 != 0) throw Error("training: qk_rope_head_dim must be even");
  if (opts.matmul == GemmPrecision::kBf16 && !gemm_bf16_supported())
    throw Error("training: matmul \"bf16\" needs a CPU with AVX-512 BF16 (vdpbf16ps); this one lacks it, use \"f32\"");
  if (opts.batch < 1 || opts.seq < 1) throw Error("training: batch and seq must be >= 1");
  if (cfg.num_nextn_predict_layers > 0 && opts.seq <= cfg.num_nextn_predict_layers)
    throw Error("training: seq must exceed num_nextn_predict_layers (each MTP depth drops one position)");
  m.pool = std::make_unique<ThreadPool>(opts.threads);
  const int64_t D = cfg.hidden_size, V = cfg.vocab_size, E = cfg.n_routed_experts;
  const int64_t L = cfg.num_hidden_layers, Dm = cfg.num_nextn_predict_layers;

  // ---- parameters: one allocation in checkpoint order ----
  int64_t total = 0;
  const std::vector<TensorSpec> specs = dseek::checkpoint_tensors(cfg, true);
  for (const TensorSpec& s : specs) {
    if (kind_of(cfg, s.name) != Kind::kParam) continue;
    m.offset[s.name] = total;
    total += shape_numel(s.shape);
  }
  m.params = HugeArray<float>(size_t(total), "training parameters");
  m.grads = HugeArray<float>(size_t(total), "training gradients");
  for (const TensorSpec& s : specs) {
    if (kind_of(cfg, s.name) != Kind::kParam) continue;
    const int64_t off = m.offset[s.name];
    m.param_list.push_back(ParamTensor{s.name, s.shape, m.params.data() + off, m.grads.data() + off, s.shape.size() == 2});
  }
  for (int64_t l = 0; l < L + Dm; ++l)
    if (cfg.is_moe_layer(l)) m.moe_layers.push_back(l);
  m.biases.assign(m.moe_layers.size() * size_t(E), 0.f);
  m.load.assign(m.moe_layers.size(), std::vector<int64_t>(size_t(E), 0));

  auto bind = [&](float* base) {
    auto at = [&](const std::string& name) -> float* {
      auto it = m.offset.find(name);
      DSEEK_CHECK(it != m.offset.end(), "training parameter table lacks " + name);
      return base + it->second;
    };
    auto mlp = [&](const std::string& p, int64_t inter) {
      return MlpTensors{at(p + "gate_proj.weight"), at(p + "up_proj.weight"), at(p + "down_proj.weight"), inter,
                        opts.matmul};
    };
    auto block = [&](int64_t index) {
      const std::string p = "model.layers." + std::to_string(index) + ".";
      BlockTensors b;
      b.input_layernorm = at(p + "input_layernorm.weight");
      b.post_attention_layernorm = at(p + "post_attention_layernorm.weight");
      const std::string a = p + "self_attn.";
      if (cfg.q_lora_rank == 0) {
        b.self_attn.q_proj = at(a + "q_proj.weight");
      } else {
        b.self_attn.q_a_proj = at(a + "q_a_proj.weight");
        b.self_attn.q_a_layernorm = at(a + "q_a_layernorm.weight");
        b.self_attn.q_b_proj = at(a + "q_b_proj.weight");
      }
      b.self_attn.kv_a_proj_with_mqa = at(a + "kv_a_proj_with_mqa.weight");
      b.self_attn.kv_a_layernorm = at(a + "kv_a_layernorm.weight");
      b.self_attn.kv_b_proj = at(a + "kv_b_proj.weight");
      b.self_attn.o_proj = at(a + "o_proj.weight");
      b.is_moe = cfg.is_moe_layer(index);
      if (!b.is_moe) {
        b.mlp = mlp(p + "mlp.", cfg.intermediate_size);
      } else {
        b.moe.gate = at(p + "mlp.gate.weight");
        for (int64_t e = 0; e < E; ++e)
          b.moe.experts.push_back(mlp(p + "mlp.experts." + std::to_string(e) + ".", cfg.moe_intermediate_size));
        if (cfg.n_shared_experts > 0)
          b.moe.shared_experts = mlp(p + "mlp.shared_experts.", cfg.n_shared_experts * cfg.moe_intermediate_size);
      }
      return b;
    };
    ModelTensors t;
    t.embed_tokens = at("model.embed_tokens.weight");
    for (int64_t l = 0; l < L; ++l) t.layers.push_back(block(l));
    t.norm = at("model.norm.weight");
    t.lm_head = cfg.tie_word_embeddings ? t.embed_tokens : at("lm_head.weight");
    for (int64_t d = 0; d < Dm; ++d) {
      const std::string p = "model.layers." + std::to_string(L + d) + ".";
      MtpTensors mt;
      mt.enorm = at(p + "enorm.weight");
      mt.hnorm = at(p + "hnorm.weight");
      mt.eh_proj = at(p + "eh_proj.weight");
      mt.block = block(L + d);
      mt.shared_head_norm = at(p + "shared_head.norm.weight");
      t.mtp.push_back(mt);
    }
    return t;
  };
  m.w = bind(m.params.data());
  m.dw = bind(m.grads.data());

  // ---- constants: RoPE table, softmax scale (model/mla.cpp MlaParams), routers ----
  const MlaParams mp = MlaParams::from_config(cfg);
  const int64_t half = cfg.qk_rope_head_dim / 2;
  m.rope_cos.resize(size_t(opts.seq * half));
  m.rope_sin.resize(size_t(opts.seq * half));
  rope_table(m.rope_cos.data(), m.rope_sin.data(), opts.seq, mp.inv_freq.data(), half, mp.rope_attn_factor);
  MlaDims md;
  md.D = D;
  md.H = cfg.num_attention_heads;
  md.q_lora_rank = cfg.q_lora_rank;
  md.kv_lora_rank = cfg.kv_lora_rank;
  md.nope = cfg.qk_nope_head_dim;
  md.rope = cfg.qk_rope_head_dim;
  md.vd = cfg.v_head_dim;
  md.eps = float(cfg.rms_norm_eps);
  md.softmax_scale = mp.softmax_scale;
  md.cos = m.rope_cos.data();
  md.sin = m.rope_sin.data();
  md.matmul = opts.matmul;
  for (int64_t l = 0; l < L + Dm; ++l) {
    BlockDims bd;
    bd.mla = md;
    bd.eps = md.eps;
    bd.moe.D = D;
    const float* bias = nullptr;
    for (size_t i = 0; i < m.moe_layers.size(); ++i)
      if (m.moe_layers[i] == l) bias = m.biases.data() + i * size_t(E);
    const bool use_bias = opts.aux_loss_free && cfg.topk_method == TopKMethod::kNoauxTc;
    bd.moe.router = RouterParams::from_config(cfg, use_bias ? bias : nullptr);
    bd.moe.balance_alpha = opts.balance_alpha;
    m.dims.push_back(bd);
  }

  // ---- activations: plan (count), allocate once, plan again (bind) ----
  const int64_t B = opts.batch, T = opts.seq, N = B * T;
  auto plan = [&](FloatArena& f, IntArena& ints) {
    ModelActs& a = m.acts;
    a.inputs = ints.take(N);
    a.targets = ints.take(N);
    a.layers.assign(size_t(L), BlockActs{});
    for (int64_t l = 0; l < L; ++l) plan_block_acts(a.layers[size_t(l)], f, ints, m.dims[size_t(l)], m.w.layers[size_t(l)], B, T);
    a.x_final = f.take(N * D);
    a.hf = f.take(N * D);
    a.hf_rstd = f.take(N);
    a.logits = f.take(N * V);
    a.losses = f.take(N);
    a.dhf = f.take(N * D);
    a.dresid = f.take(N * D);
    a.mtp.assign(size_t(Dm), MtpActs{});
    for (int64_t d = 0; d < Dm; ++d) {
      MtpActs& t = a.mtp[size_t(d)];
      t.tokens = ints.take(N);
      t.targets = ints.take(N);
      t.emb = f.take(N * D);
      t.emb_rstd = f.take(N);
      t.h_prev = f.take(N * D);
      t.h_rstd = f.take(N);
      t.cat = f.take(N * 2 * D);
      plan_block_acts(t.block, f, ints, m.dims[size_t(L + d)], m.w.mtp[size_t(d)].block, B, T);
      t.out = f.take(N * D);
      t.hs = f.take(N * D);
      t.hs_rstd = f.take(N);
      t.dhs = f.take(N * D);
      t.dout = f.take(N * D);
    }
  };
  FloatArena fc;
  IntArena ic;
  plan(fc, ic);
  m.act_buf = HugeArray<float>(size_t(fc.used), "training activations");
  m.act_ints.assign(size_t(ic.used), 0);
  FloatArena fa{m.act_buf.data(), fc.used};
  IntArena ia{m.act_ints.data(), ic.used};
  plan(fa, ia);

  // Backward temporaries: a bound on the deepest stack of block_backward / moe_forward / MTP backward.
  const int64_t H = md.H, qkd = md.qk_head_dim(), kvd = md.nope + md.vd, R = md.kv_lora_rank;
  const int64_t k = cfg.num_experts_per_tok, Q = cfg.q_lora_rank;
  const int64_t I_dense = cfg.intermediate_size, I = cfg.moe_intermediate_size, Is = cfg.n_shared_experts * I;
  const int64_t mla_bwd = N * (H * md.vd + H * qkd + H * kvd + (R + md.rope) + R + 1 + 2 * Q);
  const int64_t moe_bwd = N * (k + 3 * k * D + E + 2 * k * I + 2 * Is) + 64;
  const int64_t dense_bwd = 2 * N * I_dense;
  const int64_t moe_fwd = N * k * D + 2 * N * D + route_scratch_size(m.dims[0].moe.router) * m.pool->size() + 64;
  const int64_t mtp_bwd = 4 * N * D;
  const int64_t bound = N * D + mla_bwd + std::max({moe_bwd, dense_bwd, moe_fwd}) + mtp_bwd + 256;
  m.scratch_buf = HugeArray<float>(size_t(bound), "training scratch");
  m.scratch = FloatArena{m.scratch_buf.data(), bound};
}

TrainModel::~TrainModel() = default;

const ModelConfig& TrainModel::config() const { return impl_->cfg; }
const TrainOptions& TrainModel::options() const { return impl_->opts; }
std::vector<ParamTensor>& TrainModel::params() { return impl_->param_list; }
int64_t TrainModel::num_parameters() const { return int64_t(impl_->params.size()); }
float* TrainModel::param_data() { return impl_->params.data(); }
float* TrainModel::grad_data() { return impl_->grads.data(); }
void TrainModel::zero_grad() { std::memset(impl_->grads.data(), 0, impl_->grads.size() * sizeof(float)); }
const std::vector<std::vector<int64_t>>& TrainModel::expert_load() const { return impl_->load; }

void TrainModel::reset_load() {
  for (auto& l : impl_->load) std::fill(l.begin(), l.end(), 0);
}

void TrainModel::update_bias(float gamma) {
  Impl& m = *impl_;
  const int64_t E = m.cfg.n_routed_experts;
  for (size_t i = 0; i < m.load.size(); ++i) {
    double mean = 0;
    for (int64_t c : m.load[i]) mean += double(c);
    mean /= double(E);
    float* b = m.biases.data() + i * size_t(E);
    for (int64_t e = 0; e < E; ++e) {
      const double diff = mean - double(m.load[i][size_t(e)]);
      b[e] += gamma * float((diff > 0) - (diff < 0));
    }
  }
  reset_load();
}

std::vector<float*> TrainModel::e_score_correction_bias() {
  std::vector<float*> out;
  for (size_t i = 0; i < impl_->moe_layers.size(); ++i)
    out.push_back(impl_->biases.data() + i * size_t(impl_->cfg.n_routed_experts));
  return out;
}

std::vector<std::string> TrainModel::moe_layer_names() const {
  std::vector<std::string> out;
  for (int64_t l : impl_->moe_layers) out.push_back("model.layers." + std::to_string(l) + ".");
  return out;
}

std::vector<StateTensor> TrainModel::checkpoint_tensors() const {
  const Impl& m = *impl_;
  std::vector<StateTensor> out;
  for (const TensorSpec& s : dseek::checkpoint_tensors(m.cfg, true)) {
    switch (kind_of(m.cfg, s.name)) {
      case Kind::kParam:
        out.push_back({s.name, s.shape, m.params.data() + m.offset.at(s.name), true});
        break;
      case Kind::kMtpEmbed:
        out.push_back({s.name, s.shape, m.w.embed_tokens, false});
        break;
      case Kind::kMtpHead:
        out.push_back({s.name, s.shape, m.w.lm_head, false});
        break;
      case Kind::kBias: {
        const std::string layer = s.name.substr(0, s.name.size() - std::string("mlp.gate.e_score_correction_bias").size());
        for (size_t i = 0; i < m.moe_layers.size(); ++i)
          if ("model.layers." + std::to_string(m.moe_layers[i]) + "." == layer)
            out.push_back({s.name, s.shape, m.biases.data() + i * size_t(m.cfg.n_routed_experts), false});
        break;
      }
    }
  }
  return out;
}

void TrainModel::init_weights(uint64_t seed, float std) {
  Impl& m = *impl_;
  const float out_std = std / std::sqrt(2.0f * float(m.cfg.num_hidden_layers + m.cfg.num_nextn_predict_layers));
  for (ParamTensor& p : m.param_list) {
    // One stream per tensor, seeded by the name: adding a tensor does not reshuffle the others.
    uint64_t h = seed ^ 0xcbf29ce484222325ull;
    for (char c : p.name) h = (h ^ uint8_t(c)) * 0x100000001b3ull;
    Normal rng{h};
    const int64_t n = p.numel();
    if (p.shape.size() == 1) {
      const bool bias = ends_with(p.name, ".bias");
      for (int64_t i = 0; i < n; ++i) p.data[i] = bias ? 0.f : 1.f;
      continue;
    }
    const bool out_proj = ends_with(p.name, "o_proj.weight") || ends_with(p.name, "down_proj.weight");
    const float s = out_proj ? out_std : std;
    for (int64_t i = 0; i < n; ++i) p.data[i] = float(rng()) * s;
  }
  std::fill(m.biases.begin(), m.biases.end(), 0.f);
}

void TrainModel::load_from(const Checkpoint& ckpt) {
  Impl& m = *impl_;
  // Any float dtype (FP8 with its block scales) through the inference dequantizer.
  auto read = [&](const std::string& name, const Shape& shape, float* dst) {
    const TensorView t = ckpt.get(name);
    const int64_t rows = shape.size() == 2 ? shape[0] : 1, cols = shape.back();
    if (t.shape != shape)
      throw Error(ckpt.file_of(name) + ": \"" + name + "\": expected shape " + shape_str(shape) + ", got " +
                  shape_str(t.shape));
    MatView v;
    v.data = t.data;
    v.dtype = t.dtype;
    v.rows = rows;
    v.cols = cols;
    if (t.dtype == DType::kF8E4M3) {
      const std::string sname = name + "_scale_inv";
      if (!ckpt.has(sname)) throw Error(ckpt.file_of(name) + ": \"" + name + "\" is F8_E4M3 without \"" + sname + "\"");
      v.scale_inv = static_cast<const float*>(ckpt.get(sname).data);
      v.block = m.cfg.quantization.weight_block_rows;
    } else if (t.dtype != DType::kF32 && t.dtype != DType::kBF16 && t.dtype != DType::kF16) {
      throw Error(ckpt.file_of(name) + ": \"" + name + "\": training loads F32, BF16, F16 or F8_E4M3, got " +
                  std::string(dtype_name(t.dtype)));
    }
    for (int64_t r = 0; r < rows; ++r) dequantize_row(dst + r * cols, v, r);
  };
  const std::string first_mtp = "model.layers." + std::to_string(m.cfg.num_hidden_layers) + ".";
  for (ParamTensor& p : m.param_list) {
    const bool mtp = m.cfg.num_nextn_predict_layers > 0 && p.name.rfind("model.layers.", 0) == 0 &&
                     std::stoll(p.name.substr(13)) >= m.cfg.num_hidden_layers;
    if (mtp && !ckpt.has(p.name)) continue;  // a checkpoint without its MTP modules
    read(p.name, p.shape, p.data);
  }
  for (size_t i = 0; i < m.moe_layers.size(); ++i) {
    const std::string name = "model.layers." + std::to_string(m.moe_layers[i]) + ".mlp.gate.e_score_correction_bias";
    if (ckpt.has(name)) read(name, {m.cfg.n_routed_experts}, m.biases.data() + i * size_t(m.cfg.n_routed_experts));
  }
  (void)first_mtp;
}

TrainModel::StepResult TrainModel::Impl::run(const int32_t* tokens, int64_t B, int64_t T, bool backward) {
  const int64_t D = cfg.hidden_size, V = cfg.vocab_size, L = cfg.num_hidden_layers, Dm = cfg.num_nextn_predict_layers;
  if (B < 1 || B > opts.batch || T < 1 || T > opts.seq)
    throw Error("TrainModel: (B, T) = (" + std::to_string(B) + ", " + std::to_string(T) + ") outside the planned (" +
                std::to_string(opts.batch) + ", " + std::to_string(opts.seq) + ")");
  if (Dm > 0 && T <= Dm) throw Error("TrainModel: T must exceed num_nextn_predict_layers");
  const int64_t N = B * T;
  ThreadPool* tp = pool.get();
  ModelActs& a = acts;
  scratch.rewind(0);
  StepResult r{0, 0, 0, 0};
  auto load_of = [&](int64_t layer) -> int64_t* {
    for (size_t i = 0; i < moe_layers.size(); ++i)
      if (moe_layers[i] == layer) return load[i].data();
    return nullptr;
  };

  // ---- main model ----
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = 0; t < T; ++t) {
      a.inputs[b * T + t] = tokens[b * (T + 1) + t];
      a.targets[b * T + t] = tokens[b * (T + 1) + t + 1];
    }
  embedding_forward(a.layers[0].x_in, a.inputs, w.embed_tokens, N, V, D);
  for (int64_t l = 0; l < L; ++l) {
    float* x_out = l + 1 < L ? a.layers[size_t(l + 1)].x_in : a.x_final;
    r.balance_loss += block_forward(x_out, a.layers[size_t(l)], a.layers[size_t(l)].x_in, w.layers[size_t(l)],
                                    dims[size_t(l)], B, T, load_of(l), scratch, tp);
  }
  rmsnorm_forward(a.hf, a.hf_rstd, a.x_final, w.norm, N, D, float(cfg.rms_norm_eps), tp);
  linear_forward(a.logits, a.hf, w.lm_head, N, D, V, tp, opts.matmul);
  r.main_loss = softmax_cross_entropy_forward(a.logits, a.losses, a.logits, a.targets, N, V, tp) / double(N);
  if (backward) {
    // The loss is known once the logits are: turn them into dlogits now and free the buffer for MTP.
    softmax_cross_entropy_backward(a.logits, a.logits, a.targets, 1.f / float(N), N, V, tp);
    linear_backward(a.dhf, dw.lm_head, a.logits, a.hf, w.lm_head, N, D, V, tp, opts.matmul, false);
  }

  // ---- MTP depths: depth d (1-based) at position i < T - d reads emb(t_{i+d}) and the previous
  // depth's hidden state at i (depth 1: the main model's final-norm output, as model.cpp
  // mtp_forward; depth d > 1: the previous MTP block's output), and predicts t_{i+d+1}. ----
  const float eps = float(cfg.rms_norm_eps);
  for (int64_t d = 1; d <= Dm; ++d) {
    MtpActs& m = a.mtp[size_t(d - 1)];
    const MtpTensors& mw = w.mtp[size_t(d - 1)];
    const int64_t Td = T - d, Nd = B * Td, Tp = T - d + 1;  // Tp: rows per sequence of the previous depth
    const float* prev = d == 1 ? a.hf : a.mtp[size_t(d - 2)].out;
    for (int64_t b = 0; b < B; ++b)
      for (int64_t i = 0; i < Td; ++i) {
        m.tokens[b * Td + i] = tokens[b * (T + 1) + i + d];
        m.targets[b * Td + i] = tokens[b * (T + 1) + i + d + 1];
      }
    parallel_rows(tp, Nd, D, [&](int64_t n0, int64_t n1) {
      for (int64_t n = n0; n < n1; ++n)
        std::memcpy(m.h_prev + n * D, prev + ((n / Td) * Tp + n % Td) * D, size_t(D) * sizeof(float));
    });
    embedding_forward(m.emb, m.tokens, w.embed_tokens, Nd, V, D);
    float* en = m.block.ln1;  // (Nd, D) temporaries, overwritten by block_forward below
    float* hn = m.block.ln2;
    rmsnorm_forward(en, m.emb_rstd, m.emb, mw.enorm, Nd, D, eps, tp);
    rmsnorm_forward(hn, m.h_rstd, m.h_prev, mw.hnorm, Nd, D, eps, tp);
    parallel_rows(tp, Nd, 2 * D, [&](int64_t n0, int64_t n1) {
      for (int64_t n = n0; n < n1; ++n) {  // concat order as the checkpoint's eh_proj columns
        std::memcpy(m.cat + n * 2 * D, en + n * D, size_t(D) * sizeof(float));
        std::memcpy(m.cat + n * 2 * D + D, hn + n * D, size_t(D) * sizeof(float));
      }
    });
    linear_forward(m.block.x_in, m.cat, mw.eh_proj, Nd, 2 * D, D, tp, opts.matmul);
    r.balance_loss += block_forward(m.out, m.block, m.block.x_in, mw.block, dims[size_t(L + d - 1)], B, Td,
                                    load_of(L + d - 1), scratch, tp);
    rmsnorm_forward(m.hs, m.hs_rstd, m.out, mw.shared_head_norm, Nd, D, eps, tp);
    linear_forward(a.logits, m.hs, w.lm_head, Nd, D, V, tp, opts.matmul);
    const double ce = softmax_cross_entropy_forward(a.logits, a.losses, a.logits, m.targets, Nd, V, tp) / double(Nd);
    r.mtp_loss += double(opts.mtp_lambda) / double(Dm) * ce;
    if (backward) {
      softmax_cross_entropy_backward(a.logits, a.logits, m.targets, opts.mtp_lambda / float(Dm) / float(Nd), Nd, V, tp);
      linear_backward(m.dhs, dw.lm_head, a.logits, m.hs, w.lm_head, Nd, D, V, tp, opts.matmul, false);
    }
  }
  r.loss = r.main_loss + r.mtp_loss + r.balance_loss;
  if (!backward) return r;

  // ---- backward: MTP depths last to first, then the main model ----
  for (int64_t d = 1; d <= Dm; ++d) std::memset(a.mtp[size_t(d - 1)].dout, 0, size_t(N * D) * sizeof(float));
  for (int64_t d = Dm; d >= 1; --d) {
    MtpActs& m = a.mtp[size_t(d - 1)];
    const MtpTensors& mw = w.mtp[size_t(d - 1)];
    const MtpTensors& mdw = dw.mtp[size_t(d - 1)];
    const int64_t Td = T - d, Nd = B * Td, Tp = T - d + 1;
    rmsnorm_backward(m.dout, mdw.shared_head_norm, m.dhs, m.out, mw.shared_head_norm, m.hs_rstd, Nd, D, tp);
    block_backward(m.dout, mdw.block, m.block, mw.block, dims[size_t(L + d - 1)], B, Td, 1.f, scratch, tp);
    const int64_t mark = scratch.mark();
    float* dcat = scratch.take(Nd * 2 * D);  // (Nd, 2D)
    float* de = scratch.take(Nd * D);        // (Nd, D)
    float* dh = scratch.take(Nd * D);        // (Nd, D)
    std::memset(de, 0, size_t(Nd * D) * sizeof(float));
    std::memset(dh, 0, size_t(Nd * D) * sizeof(float));
    linear_backward(dcat, mdw.eh_proj, m.dout, m.cat, mw.eh_proj, Nd, 2 * D, D, tp, opts.matmul, false);
    rmsnorm_backward(de, mdw.enorm, dcat, m.emb, mw.enorm, m.emb_rstd, Nd, D, tp, D, 2 * D);
    rmsnorm_backward(dh, mdw.hnorm, dcat + D, m.h_prev, mw.hnorm, m.h_rstd, Nd, D, tp, D, 2 * D);
    embedding_backward(dw.embed_tokens, de, m.tokens, Nd, D);
    float* dprev = d == 1 ? a.dhf : a.mtp[size_t(d - 2)].dout;
    for (int64_t b = 0; b < B; ++b)
      for (int64_t i = 0; i < Td; ++i) {
        vec_axpy(dprev + (b * Tp + i) * D, 1.f, dh + (b * Td + i) * D, D);  // exact adds
      }
    scratch.rewind(mark);
  }
  std::memset(a.dresid, 0, size_t(N * D) * sizeof(float));
  rmsnorm_backward(a.dresid, dw.norm, a.dhf, a.x_final, w.norm, a.hf_rstd, N, D, tp);
  for (int64_t l = L - 1; l >= 0; --l)
    block_backward(a.dresid, dw.layers[size_t(l)], a.layers[size_t(l)], w.layers[size_t(l)], dims[size_t(l)], B, T, 1.f,
                   scratch, tp);
  embedding_backward(dw.embed_tokens, a.dresid, a.inputs, N, D);
  return r;
}

TrainModel::StepResult TrainModel::forward_backward(const int32_t* tokens, int64_t B, int64_t T) {
  return impl_->run(tokens, B, T, true);
}

TrainModel::StepResult TrainModel::forward_losses(const int32_t* tokens, int64_t B, int64_t T) {
  return impl_->run(tokens, B, T, false);
}

double TrainModel::forward_loss(const int32_t* tokens, int64_t B, int64_t T) {
  return impl_->run(tokens, B, T, false).main_loss;
}

}  // namespace dseek
