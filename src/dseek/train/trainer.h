// The training loop: micro-batches -> gradient accumulation -> clipping -> AdamW with the learning-
// rate schedule -> aux-loss-free bias update, with periodic validation, metrics.jsonl records, the
// live progress line and atomic checkpoints (docs/training.md).
//
// Determinism: batches are a function of (seed, step, micro-batch); everything else the next step
// depends on (weights, AdamW moments and step, bias vectors) is in the checkpoint, and expert-load
// counters are zero at every step boundary. So `resume` continues bit-identically.
#pragma once

#include <cstdint>
#include <cstdio>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "dseek/core/thread_pool.h"
#include "dseek/io/checkpoint.h"
#include "dseek/train/checkpoint_io.h"
#include "dseek/train/data.h"
#include "dseek/train/metrics.h"
#include "dseek/train/optimizer.h"
#include "dseek/train/params.h"
#include "dseek/train/train_config.h"

namespace dseek {

// What the loop needs from a model: TrainModel's calls, behind virtuals so tests can drive the loop
// with a small fake model. ModelAdapter wraps a TrainModel.
class TrainableModel {
 public:
  using StepResult = TrainModel::StepResult;
  virtual ~TrainableModel() = default;
  virtual const ModelConfig& config() const = 0;
  virtual std::vector<ParamTensor>& params() = 0;
  virtual std::vector<StateTensor> checkpoint_tensors() const = 0;
  // True when checkpoint_tensors() is the HF tensor set of config() (checked on save).
  virtual bool hf_layout() const { return true; }
  virtual void init_weights(uint64_t seed, float std) = 0;
  virtual void load_from(const Checkpoint& ckpt) = 0;
  virtual StepResult forward_backward(const int32_t* tokens, int64_t B, int64_t T) = 0;  // tokens (B, T+1)
  virtual double forward_loss(const int32_t* tokens, int64_t B, int64_t T) = 0;
  virtual void zero_grad() = 0;
  virtual const std::vector<std::vector<int64_t>>& expert_load() const = 0;  // [moe layer][expert]
  virtual void update_bias(float gamma) = 0;
  virtual void reset_load() = 0;
  virtual std::vector<float*> e_score_correction_bias() = 0;
  virtual std::vector<std::string> moe_layer_names() const = 0;
};

template <class M>
class ModelAdapter final : public TrainableModel {
 public:
  explicit ModelAdapter(M& m) : m_(m) {}
  const ModelConfig& config() const override { return m_.config(); }
  std::vector<ParamTensor>& params() override { return m_.params(); }
  std::vector<StateTensor> checkpoint_tensors() const override { return m_.checkpoint_tensors(); }
  void init_weights(uint64_t seed, float std) override { m_.init_weights(seed, std); }
  void load_from(const Checkpoint& ckpt) override { m_.load_from(ckpt); }
  StepResult forward_backward(const int32_t* tokens, int64_t B, int64_t T) override { return m_.forward_backward(tokens, B, T); }
  double forward_loss(const int32_t* tokens, int64_t B, int64_t T) override { return m_.forward_loss(tokens, B, T); }
  void zero_grad() override { m_.zero_grad(); }
  const std::vector<std::vector<int64_t>>& expert_load() const override { return m_.expert_load(); }
  void update_bias(float gamma) override { m_.update_bias(gamma); }
  void reset_load() override { m_.reset_load(); }
  std::vector<float*> e_score_correction_bias() override { return m_.e_score_correction_bias(); }
  std::vector<std::string> moe_layer_names() const override { return m_.moe_layer_names(); }

 private:
  M& m_;
};

// TrainModel options from the "train" section.
TrainOptions train_options(const TrainConfig& cfg);

struct TrainerOptions {
  FILE* progress = stderr;                       // live line; nullptr: silent
  std::string train_config_text;                 // copied into checkpoints (train_config.json)
  TokenizerSource tokenizer;                     // tokenizer files for checkpoints
};

class Trainer {
 public:
  Trainer(const TrainConfig& cfg, TrainableModel& model, const TrainingData& data, TrainerOptions opts = {});
  ~Trainer();

  // Fresh start: weights from the seed (or train.init_from); an out_dir that already holds a
  // checkpoint is an error (resume it or pick another). resume: restores out_dir's latest checkpoint
  // (an error if there is none).
  void start(bool resume);
  // Steps until train.steps, or until `stop_at_step` (>= 0) steps are done, without a final save
  // unless train.steps is reached (tests use it to simulate a kill).
  void run(int64_t stop_at_step = -1);

  // One optimizer step (no logging / eval / save). Returns the step's mean micro-batch losses.
  TrainableModel::StepResult train_step();
  // Mean main loss over train.eval_batches fixed validation batches; also sets last_val_maxvio().
  double evaluate();
  std::string save();  // checkpoint-<step>; returns its dir

  int64_t step() const { return step_; }
  const std::vector<std::pair<int64_t, double>>& losses() const { return losses_; }  // (step, loss) this process
  const std::vector<MetricsRecord>& records() const { return records_; }
  AdamW& optimizer() { return *opt_; }
  double last_grad_norm() const { return last_grad_norm_; }

 private:
  void log_and_eval(bool eval);

  const TrainConfig& cfg_;
  TrainableModel& model_;
  const TrainingData& data_;
  TrainerOptions opts_;
  std::unique_ptr<ThreadPool> pool_;
  std::unique_ptr<AdamW> opt_;
  std::unique_ptr<MetricsWriter> metrics_;
  ProgressLine progress_;
  std::vector<int32_t> batch_;  // (batch, seq + 1)
  int64_t step_ = 0, tokens_ = 0;
  double last_lr_ = 0, last_grad_norm_ = 0;
  std::optional<double> last_val_loss_, last_val_maxvio_;
  std::vector<std::pair<int64_t, double>> losses_;
  std::vector<MetricsRecord> records_;
  // Since the last record: summed step losses, step count, train seconds, tokens, expert loads.
  TrainableModel::StepResult window_{0, 0, 0, 0};
  int64_t window_steps_ = 0, window_tokens_ = 0;
  double window_seconds_ = 0, run_seconds_ = 0;
  int64_t run_steps_ = 0;
  std::vector<std::vector<int64_t>> window_load_;
  double started_ = 0;
};

}  // namespace dseek
