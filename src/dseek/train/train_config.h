// The one JSON file that describes a training run (`dseek train --config FILE.json`); the schema,
// with an example, is in docs/training.md ("Training config"). Every error names the file and the
// field ("run.json: field "optimizer.lr": expected a number, got "fast"").
//
// Relative input paths (model config path, data files and globs, tokenizer dir, data.cache_dir) are
// resolved against the directory of the config file; train.out_dir is relative to the working
// directory. A leading "~/" is replaced by $HOME in every path.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "dseek/io/config.h"

namespace dseek {

struct DataConfig {
  std::vector<std::string> train;  // files or glob patterns (absolute after parsing)
  std::vector<std::string> val;    // held-out files; empty: split `train` by document
  double val_fraction = 0.05;      // fraction of documents held out when `val` is empty
  std::string tokenizer = "byte";  // "byte" (vocab 256, id = UTF-8 byte) or a dir with tokenizer.json
  std::string format = "text";     // "text": one document per file; "jsonl": one per line
  std::string jsonl_field = "text";
  std::string cache_dir;           // tokenized shards; default <out_dir>/data-cache
};

struct OptimizerConfig {
  double lr = 3e-4;
  double beta1 = 0.9;
  double beta2 = 0.95;
  double eps = 1e-8;
  double weight_decay = 0.1;
  double grad_clip = 1.0;  // global L2 norm; 0 disables clipping
};

enum class ScheduleType : uint8_t { kCosine, kMultistep, kConstant, kSentinel };

struct ScheduleConfig {
  ScheduleType type = ScheduleType::kCosine;
  int64_t warmup_steps = 0;  // linear warm-up: lr * (step + 1) / warmup_steps
  double min_lr_ratio = 0.1; // cosine: decays to lr * min_lr_ratio at the last step
  // multistep (DeepSeek LLM, section 2.3): lr * factors[i] from milestones[i] * steps on.
  std::vector<double> milestones{0.8, 0.9};
  std::vector<double> factors{0.316, 0.1};
};

struct LoopConfig {
  int64_t steps = 100;        // optimizer steps
  int64_t batch = 8;          // sequences per micro-batch
  int64_t seq = 256;          // tokens per sequence (each sample is seq + 1 tokens)
  int64_t grad_accum = 1;     // micro-batches per step (grads summed, then divided)
  uint64_t seed = 0;          // weights, data split, batches
  int64_t eval_every = 50;    // 0: only at the end
  int64_t eval_batches = 4;   // validation micro-batches per evaluation (fixed across evaluations)
  int64_t log_every = 10;     // metrics.jsonl record + progress line
  int64_t save_every = 0;     // 0: only at the end
  int64_t keep_checkpoints = 0;  // keep the newest N checkpoint-<step> dirs; 0: keep all
  std::string out_dir = "runs/train";
  int threads = 0;            // 0: hardware_concurrency
  double mtp_lambda = 0.3;
  double balance_alpha = 0.0;
  bool aux_loss_free = true;
  double bias_gamma = 0.001;  // V3 report: 0.001 for most of training
  double init_std = 0.02;
  std::string init_from;      // optional HF checkpoint dir to start from instead of random weights
  std::string matmul = "f32"; // "f32" or "bf16": precision of the linear layers' products (TrainOptions::matmul)
};

struct TrainConfig {
  std::string label;       // the config file path (error messages)
  std::string model_json;  // the "model" object as written to checkpoints' config.json
  ModelConfig model;
  DataConfig data;
  OptimizerConfig optimizer;
  ScheduleConfig schedule;
  LoopConfig train;
};

// `base_dir` resolves relative input paths (the config file's directory).
TrainConfig parse_train_config(std::string_view text, const std::string& label, const std::string& base_dir);
TrainConfig load_train_config(const std::string& path);

// "~/x" -> "$HOME/x"; relative paths joined to base_dir (when base_dir is not empty).
std::string resolve_path(const std::string& path, const std::string& base_dir);

std::string_view schedule_type_name(ScheduleType t);

}  // namespace dseek
