#include "dseek/train/trainer.h"

#include <chrono>
#include <cmath>
#include <filesystem>

#include "dseek/core/error.h"
#include "dseek/train/schedule.h"

namespace dseek {

namespace fs = std::filesystem;

namespace {

constexpr uint64_t kValSalt = 0x76616c6964617465ull;  // "validate": validation batches differ from training ones

double now_s() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

}  // namespace

TrainOptions train_options(const TrainConfig& cfg) {
  TrainOptions o;
  o.batch = cfg.train.batch;
  o.seq = cfg.train.seq;
  o.mtp_lambda = float(cfg.train.mtp_lambda);
  o.balance_alpha = float(cfg.train.balance_alpha);
  o.aux_loss_free = cfg.train.aux_loss_free;
  o.threads = cfg.train.threads;
  o.matmul = cfg.train.matmul == "bf16" ? GemmPrecision::kBf16 : GemmPrecision::kF32;
  return o;
}

Trainer::Trainer(const TrainConfig& cfg, TrainableModel& model, const TrainingData& data, TrainerOptions opts)
    : cfg_(cfg), model_(model), data_(data), opts_(std::move(opts)), progress_(opts_.progress) {
  if (data.vocab_size > uint32_t(cfg.model.vocab_size))
    throw Error(cfg.label + ": field \"model.vocab_size\": " + std::to_string(cfg.model.vocab_size) +
                " is smaller than the tokenizer's vocabulary (" + std::to_string(data.vocab_size) + ")");
  pool_ = std::make_unique<ThreadPool>(cfg.train.threads);
  AdamWConfig oc;
  oc.beta1 = cfg.optimizer.beta1;
  oc.beta2 = cfg.optimizer.beta2;
  oc.eps = cfg.optimizer.eps;
  oc.weight_decay = cfg.optimizer.weight_decay;
  opt_ = std::make_unique<AdamW>(model_.params(), oc);
  batch_.resize(size_t(cfg.train.batch * (cfg.train.seq + 1)));
  started_ = now_s();
}

Trainer::~Trainer() { progress_.finish(); }

void Trainer::start(bool resume) {
  const std::string& out = cfg_.train.out_dir;
  fs::create_directories(out);
  const std::string metrics_path = (fs::path(out) / "metrics.jsonl").string();
  const std::optional<std::string> latest = find_latest_checkpoint(out);
  if (resume) {
    if (!latest) throw Error(out + ": --resume: no checkpoint to resume from (no complete checkpoint-<step>/)");
    const TrainerState s = load_checkpoint(*latest, model_.params(), *opt_, model_.e_score_correction_bias(), cfg_.model.n_routed_experts);
    if (s.seed != cfg_.train.seed)
      throw Error(*latest + ": trained with seed " + std::to_string(s.seed) + ", the config says " + std::to_string(cfg_.train.seed) +
                  " (resuming with another seed would draw other batches)");
    step_ = s.step;
    tokens_ = s.tokens;
    last_lr_ = s.lr;
    last_val_loss_ = s.val_loss;
    truncate_metrics(metrics_path, step_);
    progress_.message("resumed from " + *latest + " at step " + std::to_string(step_));
  } else {
    if (latest)
      throw Error(out + ": already holds " + *latest + "; resume it (--resume) or choose another out_dir");
    if (!cfg_.train.init_from.empty()) {
      model_.init_weights(cfg_.train.seed, float(cfg_.train.init_std));  // tensors the checkpoint lacks
      model_.load_from(Checkpoint::open(cfg_.train.init_from));
    } else {
      model_.init_weights(cfg_.train.seed, float(cfg_.train.init_std));
    }
    std::error_code ec;
    fs::remove(metrics_path, ec);
  }
  model_.reset_load();
  metrics_ = std::make_unique<MetricsWriter>(metrics_path);
}

TrainableModel::StepResult Trainer::train_step() {
  const LoopConfig& t = cfg_.train;
  const double t0 = now_s();
  const double lr = lr_at(cfg_.schedule, cfg_.optimizer.lr, step_, t.steps);
  std::vector<ParamTensor>& params = model_.params();
  model_.zero_grad();
  TrainableModel::StepResult sum{0, 0, 0, 0};
  for (int64_t micro = 0; micro < t.grad_accum; ++micro) {
    sample_batch(data_.split.train, t.batch, t.seq, t.seed, uint64_t(step_), uint64_t(micro), batch_.data(), "data.train");
    const TrainableModel::StepResult r = model_.forward_backward(batch_.data(), t.batch, t.seq);
    sum.loss += r.loss;
    sum.main_loss += r.main_loss;
    sum.mtp_loss += r.mtp_loss;
    sum.balance_loss += r.balance_loss;
  }
  const double inv = 1.0 / double(t.grad_accum);
  sum.loss *= inv;
  sum.main_loss *= inv;
  sum.mtp_loss *= inv;
  sum.balance_loss *= inv;
  // Gradients were summed over micro-batches of mean losses: divide to get the mean over all of them.
  if (t.grad_accum > 1) scale_grads(params, float(inv), pool_.get());
  // Clipping is fused into the update (AdamW::step's grad_scale): one pass over the gradients fewer.
  last_grad_norm_ = grad_global_norm(params, pool_.get());
  opt_->step(params, lr, pool_.get(), clip_scale(last_grad_norm_, cfg_.optimizer.grad_clip));

  const auto& load = model_.expert_load();
  if (window_load_.size() != load.size()) {
    window_load_.assign(load.size(), {});
    for (size_t l = 0; l < load.size(); ++l) window_load_[l].assign(load[l].size(), 0);
  }
  for (size_t l = 0; l < load.size(); ++l)
    for (size_t e = 0; e < load[l].size() && e < window_load_[l].size(); ++e) window_load_[l][e] += load[l][e];
  if (t.aux_loss_free)
    model_.update_bias(float(t.bias_gamma));  // resets the counts
  else
    model_.reset_load();

  ++step_;
  const int64_t tokens = t.grad_accum * t.batch * t.seq;
  tokens_ += tokens;
  last_lr_ = lr;
  losses_.emplace_back(step_, sum.loss);
  window_.loss += sum.loss;
  window_.main_loss += sum.main_loss;
  window_.mtp_loss += sum.mtp_loss;
  window_.balance_loss += sum.balance_loss;
  ++window_steps_;
  window_tokens_ += tokens;
  const double dt = now_s() - t0;
  window_seconds_ += dt;
  run_seconds_ += dt;
  ++run_steps_;
  return sum;
}

double Trainer::evaluate() {
  const LoopConfig& t = cfg_.train;
  if (t.eval_batches == 0 || data_.split.val.empty()) return std::nan("");
  model_.reset_load();
  double total = 0;
  for (int64_t i = 0; i < t.eval_batches; ++i) {
    // The same batches at every evaluation, so val_loss values are comparable.
    sample_batch(data_.split.val, t.batch, t.seq, t.seed ^ kValSalt, uint64_t(i), 0, batch_.data(), "validation data");
    total += model_.forward_loss(batch_.data(), t.batch, t.seq);
  }
  const auto& load = model_.expert_load();
  last_val_maxvio_.reset();
  // Mean over the layers that routed anything (validation may run the main model only, not MTP).
  double mv = 0;
  int64_t layers = 0;
  for (const auto& l : load) {
    int64_t routed = 0;
    for (int64_t x : l) routed += x;
    if (routed == 0) continue;
    mv += max_violation(l);
    ++layers;
  }
  if (layers > 0) last_val_maxvio_ = mv / double(layers);
  model_.reset_load();  // evaluation must not feed the bias update
  last_val_loss_ = total / double(t.eval_batches);
  return *last_val_loss_;
}

void Trainer::log_and_eval(bool eval) {
  MetricsRecord r;
  r.step = step_;
  r.lr = last_lr_;
  const double n = double(std::max<int64_t>(1, window_steps_));
  r.loss = window_.loss / n;
  r.main_loss = window_.main_loss / n;
  r.mtp_loss = window_.mtp_loss / n;
  r.balance_loss = window_.balance_loss / n;
  r.grad_norm = last_grad_norm_;
  r.tokens_per_s = window_seconds_ > 0 ? double(window_tokens_) / window_seconds_ : 0;
  r.tokens = tokens_;
  r.moe_layers = model_.moe_layer_names();
  r.load = window_load_;
  for (const auto& l : window_load_) r.maxvio.push_back(max_violation(l));
  if (eval) {
    r.val_loss = evaluate();
    if (std::isnan(*r.val_loss)) r.val_loss.reset();
    r.val_maxvio = last_val_maxvio_;
  }
  r.elapsed_s = now_s() - started_;
  metrics_->write(r);
  const double eta = run_steps_ > 0 ? run_seconds_ / double(run_steps_) * double(cfg_.train.steps - step_) : -1;
  progress_.update(progress_text(r, cfg_.train.steps, eta));
  records_.push_back(std::move(r));
  window_ = {0, 0, 0, 0};
  window_steps_ = window_tokens_ = 0;
  window_seconds_ = 0;
  for (auto& l : window_load_) std::fill(l.begin(), l.end(), 0);
}

std::string Trainer::save() {
  CheckpointContents c;
  c.model_config_json = cfg_.model_json;
  c.tensors = model_.checkpoint_tensors();
  if (model_.hf_layout()) c.check_specs = &cfg_.model;
  c.params = model_.params();
  c.optimizer = opt_.get();
  for (float* b : model_.e_score_correction_bias()) c.biases.push_back(b);
  c.n_experts = cfg_.model.n_routed_experts;
  c.state.step = step_;
  c.state.seed = cfg_.train.seed;
  c.state.tokens = tokens_;
  c.state.lr = last_lr_;
  c.state.loss = losses_.empty() ? std::nan("") : losses_.back().second;
  c.state.val_loss = last_val_loss_;
  c.tokenizer = opts_.tokenizer;
  c.train_config_text = opts_.train_config_text;
  return save_checkpoint(cfg_.train.out_dir, c, cfg_.train.keep_checkpoints);
}

void Trainer::run(int64_t stop_at_step) {
  DSEEK_CHECK(metrics_ != nullptr, "Trainer::run before start()");
  const LoopConfig& t = cfg_.train;
  const int64_t end = stop_at_step >= 0 ? std::min(stop_at_step, t.steps) : t.steps;
  while (step_ < end) {
    const TrainableModel::StepResult r = train_step();
    if (!std::isfinite(r.loss)) {
      progress_.finish();
      throw Error("step " + std::to_string(step_) + ": loss is " + std::to_string(r.loss) +
                  " (diverged; lower optimizer.lr or raise schedule.warmup_steps)");
    }
    const bool last = step_ == t.steps;
    const bool eval = last || (t.eval_every > 0 && step_ % t.eval_every == 0);
    const bool log = eval || step_ == 1 || step_ % t.log_every == 0;
    if (log) log_and_eval(eval);
    if (last || (t.save_every > 0 && step_ % t.save_every == 0)) {
      const std::string dir = save();
      progress_.message("saved " + dir);
    }
  }
  progress_.finish();
}

}  // namespace dseek
