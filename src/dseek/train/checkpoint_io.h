// Training checkpoints: out_dir/checkpoint-<step>/ in the HF layout (config.json, model.safetensors
// F32 with exactly the tensors the inference loader expects, tokenizer files) plus the training
// state (optimizer.safetensors: AdamW moments and e_score_correction_bias vectors;
// trainer_state.json: step, seed, data position, last losses), and out_dir/latest naming the newest.
//
// Atomic: everything is written into checkpoint-<step>.tmp-<pid>/ (files fsynced), the directory is
// renamed to checkpoint-<step>, and only then is `latest` replaced (tmp file + rename). A kill at any
// moment leaves the previous checkpoint and `latest` intact; leftover .tmp-* dirs are ignored (and
// removed by a later save once their process is gone).
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "dseek/train/optimizer.h"
#include "dseek/train/params.h"

namespace dseek {

struct TrainerState {
  int64_t step = 0;    // optimizer steps done; the next batch is drawn for this step (data position)
  uint64_t seed = 0;
  int64_t tokens = 0;  // training tokens seen
  double lr = 0;       // of the last step
  double loss = 0;     // last logged training loss
  std::optional<double> val_loss;
};

struct TokenizerSource {
  bool byte = true;  // write a 256-entry byte-level tokenizer.json
  std::string dir;   // else copy dir/tokenizer.json and dir/tokenizer_config.json
};

struct CheckpointContents {
  std::string model_config_json;             // written as config.json
  std::vector<StateTensor> tensors;          // model.safetensors, in order (TrainModel::checkpoint_tensors)
  // When set, the tensor names must equal model/tensor_specs.cpp's list for this config (with MTP).
  const ModelConfig* check_specs = nullptr;
  std::span<const ParamTensor> params;       // AdamW state is keyed by these names
  const AdamW* optimizer = nullptr;
  std::vector<const float*> biases;          // e_score_correction_bias per MoE layer (n_experts each)
  int64_t n_experts = 0;
  TrainerState state;
  TokenizerSource tokenizer;
  std::string train_config_text;             // copied as train_config.json (may be empty)
};

// Writes out_dir/checkpoint-<state.step>/ atomically and points `latest` at it; keeps only the
// newest `keep` checkpoint dirs when keep > 0. Returns the directory.
std::string save_checkpoint(const std::string& out_dir, const CheckpointContents& c, int64_t keep = 0);

// The checkpoint `latest` names, or (if `latest` is missing or names a dir that is gone) the complete
// checkpoint-<N> with the largest N; nullopt when there is none.
std::optional<std::string> find_latest_checkpoint(const std::string& out_dir);

// Restores a checkpoint written by save_checkpoint: parameter values (from model.safetensors, by
// name, F32, shapes checked), AdamW moments and step, and the bias vectors. Errors name the file and
// tensor. Returns trainer_state.json.
TrainerState load_checkpoint(const std::string& dir, std::span<const ParamTensor> params, AdamW& optimizer,
                             const std::vector<float*>& biases, int64_t n_experts);

// The tokenizer.json (HF `tokenizers` format) of the byte-level vocabulary: BPE with the 256
// ByteLevel-alphabet symbols as ids 0..255 (id = byte value) and no merges, ByteLevel pre-tokenizer
// (no regex split, no prefix space) and decoder.
std::string byte_tokenizer_json();

}  // namespace dseek
