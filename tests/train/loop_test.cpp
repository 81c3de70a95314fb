// The training loop end to end: config parsing, kill + resume bit-identical to an uninterrupted run,
// and (with the real TrainModel) a short run whose loss falls and whose expert load evens out.
#include "dseek/train/trainer.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "dseek/core/error.h"
#include "dseek/core/mapped_file.h"
#include "dseek/model/model.h"
#include "dseek/train/params.h"
#include "dseek/train/plot.h"
#include "dseek/train/train_config.h"
#include "train/fake_model.h"
#include "common/test_util.h"

namespace dseek {
namespace {

using test::make_temp_dir;
using test::error_of;
using test::write_text;

namespace fs = std::filesystem;

// Six small documents of English-like text (a learnable byte stream).
void write_corpus(const std::string& dir) {
  const char* words[] = {"the", "cat", "sat", "on", "a", "mat", "and", "dog", "ran", "to", "his", "red", "ball", "in", "park"};
  uint64_t s = 1;
  for (int d = 0; d < 6; ++d) {
    std::string text;
    for (int w = 0; w < 400; ++w) {
      s = s * 6364136223846793005ull + 1442695040888963407ull;
      text += words[(s >> 33) % 15];
      text += (w % 9 == 8) ? ". " : " ";
    }
    write_text(dir + "/doc" + std::to_string(d) + ".txt", text);
  }
}

std::string fake_model_json() {
  return R"({"model_type": "deepseek_v3", "vocab_size": 256, "hidden_size": 1, "num_hidden_layers": 1,
             "num_attention_heads": 1, "intermediate_size": 1, "n_routed_experts": 4, "num_experts_per_tok": 1, "n_group": 1, "topk_group": 1,
             "moe_intermediate_size": 1, "kv_lora_rank": 1, "qk_nope_head_dim": 1, "qk_rope_head_dim": 2,
             "v_head_dim": 1, "max_position_embeddings": 64})";
}

std::string loop_config(const std::string& dir, const std::string& model_json, const std::string& train_extra) {
  return R"({"model": )" + model_json + R"(,
    "data": {"train": [")" + dir + R"(/doc*.txt"], "val_fraction": 0.2, "tokenizer": "byte"},
    "optimizer": {"lr": 0.05, "weight_decay": 0.1, "grad_clip": 1.0},
    "schedule": {"type": "cosine", "warmup_steps": 2, "min_lr_ratio": 0.1},
    "train": {"out_dir": ")" + dir + R"(/out", )" + train_extra + "}}";
}

class LoopTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = make_temp_dir();
    write_corpus(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string dir_;
};

TEST_F(LoopTest, ConfigErrorsNameTheField) {
  const std::string m = fake_model_json();
  auto err = [&](const std::string& text) { return error_of([&] { parse_train_config(text, "run.json", "/base"); }); };
  EXPECT_NE(err(R"({"model": )" + m + R"(, "data": {"train": ["x"]}, "optimizer": {"lr": "fast"}})").find("\"optimizer.lr\": expected a number"),
            std::string::npos);
  EXPECT_NE(err(R"({"model": )" + m + R"(, "data": {"train": ["x"]}, "optimizer": {"lr": 1e-3}, "train": {"stepz": 5}})")
                .find("\"train.stepz\": unknown field"),
            std::string::npos);
  EXPECT_NE(err(R"({"model": )" + m + R"(, "data": {"train": ["x"]}, "optimizer": {"lr": 1e-3}, "schedule": {"type": "linear"}})")
                .find("\"schedule.type\""),
            std::string::npos);
  EXPECT_NE(err(R"({"model": )" + m + R"(, "data": {}, "optimizer": {"lr": 1e-3}})").find("\"data.train\": missing"), std::string::npos);
  EXPECT_NE(err(R"({"model": )" + m + R"(, "data": {"train": ["x"], "format": "csv"}, "optimizer": {"lr": 1e-3}})").find("\"data.format\""),
            std::string::npos);
  EXPECT_NE(err(R"({"data": {"train": ["x"]}, "optimizer": {"lr": 1e-3}})").find("\"model\": missing"), std::string::npos);
  EXPECT_NE(err(R"({"model": )" + m + R"(, "data": {"train": ["x"]}, "optimizer": {"lr": 1e-3}, "train": {"matmul": "fp16"}})")
                .find("\"train.matmul\": must be \"f32\" or \"bf16\""),
            std::string::npos);
  EXPECT_NE(err(R"({"model": {"model_type": "deepseek_v3", "vocab_size": -1}, "data": {"train": ["x"]}, "optimizer": {"lr": 1e-3}})")
                .find("vocab_size"),
            std::string::npos);
  const TrainConfig c = parse_train_config(
      R"({"model": )" + m + R"(, "data": {"train": ["d/*.txt", "/abs/x.txt"]}, "optimizer": {"lr": 1e-3},
          "schedule": {"type": "multistep", "warmup_steps": 5}, "train": {"steps": 7, "grad_accum": 2}})",
      "run.json", "/base");
  EXPECT_EQ(c.data.train, (std::vector<std::string>{"/base/d/*.txt", "/abs/x.txt"}));
  EXPECT_EQ(c.data.val_fraction, 0.05);
  EXPECT_EQ(c.schedule.type, ScheduleType::kMultistep);
  EXPECT_EQ(c.train.steps, 7);
  EXPECT_EQ(c.train.grad_accum, 2);
  EXPECT_EQ(c.model.n_routed_experts, 4);
  EXPECT_EQ(c.train.matmul, "f32");
  const TrainConfig b = parse_train_config(
      R"({"model": )" + m + R"(, "data": {"train": ["x"]}, "optimizer": {"lr": 1e-3}, "train": {"matmul": "bf16"}})", "run.json",
      "/base");
  EXPECT_EQ(b.train.matmul, "bf16");
}

TrainerOptions quiet() {
  TrainerOptions o;
  o.progress = nullptr;
  return o;
}

struct RunResult {
  std::vector<std::pair<int64_t, double>> losses;
  std::vector<float> w;
  std::vector<float> bias;
};

// Runs the fake model through the Trainer until `stop_at` (-1: the end), resuming when asked.
RunResult run_fake(const TrainConfig& cfg, bool resume, int64_t stop_at) {
  const TrainingData data = prepare_data(cfg.data, TextEncoder::byte_level(), cfg.train.out_dir + "/data-cache", cfg.train.seed);
  test::FakeModel m(cfg.model);
  m.init_weights(12345, 0.5f);  // overwritten by start(): fresh from the seed, or from the checkpoint
  Trainer t(cfg, m, data, quiet());
  t.start(resume);
  t.run(stop_at);
  return {t.losses(), m.w_, m.bias_};
}

TEST_F(LoopTest, KillAndResumeIsBitIdentical) {
  const std::string extra = R"("steps": 6, "batch": 2, "seq": 16, "grad_accum": 2, "seed": 9, "eval_every": 2, "eval_batches": 2,
                               "log_every": 1, "save_every": 3, "bias_gamma": 0.01)";
  TrainConfig straight = parse_train_config(loop_config(dir_, fake_model_json(), extra), "run.json", "");
  straight.train.out_dir = dir_ + "/straight";
  const RunResult a = run_fake(straight, false, -1);
  ASSERT_EQ(a.losses.size(), 6u);

  TrainConfig killed = straight;
  killed.train.out_dir = dir_ + "/killed";
  const RunResult b1 = run_fake(killed, false, 5);  // saves at 3, "dies" after step 5 without saving
  ASSERT_EQ(b1.losses.size(), 5u);
  EXPECT_EQ(read_text_file(killed.train.out_dir + "/latest"), "checkpoint-3\n");
  const RunResult b2 = run_fake(killed, true, -1);  // a new process state: resumes at 3
  ASSERT_EQ(b2.losses.size(), 3u);
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(b2.losses[i].first, a.losses[i + 3].first);
    EXPECT_EQ(b2.losses[i].second, a.losses[i + 3].second) << "step " << b2.losses[i].first;  // bit-identical
  }
  EXPECT_EQ(b2.w, a.w);
  EXPECT_EQ(b2.bias, a.bias);
  // metrics.jsonl: the steps the killed run logged after its checkpoint were dropped on resume.
  const std::vector<MetricsRecord> rec = read_metrics(killed.train.out_dir + "/metrics.jsonl");
  ASSERT_EQ(rec.size(), 6u);
  for (size_t i = 0; i < rec.size(); ++i) EXPECT_EQ(rec[i].step, int64_t(i + 1));
  EXPECT_TRUE(rec[1].val_loss.has_value());
  // The charts: well-formed SVG documents with a polyline per series / a rect per heatmap cell.
  const std::vector<std::string> svgs = write_plots(rec, killed.train.out_dir + "/plots");
  ASSERT_EQ(svgs.size(), 3u);
  for (const std::string& p : svgs) {
    const std::string svg = read_text_file(p);
    EXPECT_EQ(svg.rfind("<svg xmlns=\"http://www.w3.org/2000/svg\"", 0), 0u) << p;
    EXPECT_NE(svg.find("</svg>"), std::string::npos) << p;
    EXPECT_EQ(svg.find("nan"), std::string::npos) << p;
  }
  EXPECT_NE(read_text_file(svgs[0]).find("validation loss"), std::string::npos);
  EXPECT_NE(read_text_file(svgs[2]).find("layer 0"), std::string::npos);
  EXPECT_FALSE(rec[2].val_loss.has_value());
  ASSERT_EQ(rec[0].load.size(), 1u);
  EXPECT_EQ(rec[0].load[0].size(), 4u);
  int64_t routed = 0;
  for (int64_t x : rec[0].load[0]) routed += x;
  EXPECT_EQ(routed, 2 * 2 * 16);  // grad_accum * batch * seq tokens, each to one expert

  // A fresh start in a dir with checkpoints is refused; resume without one too.
  EXPECT_NE(error_of([&] { run_fake(killed, false, -1); }).find("--resume"), std::string::npos);
  TrainConfig empty = straight;
  empty.train.out_dir = dir_ + "/empty";
  EXPECT_NE(error_of([&] { run_fake(empty, true, -1); }).find("no checkpoint"), std::string::npos);
}

// ---- The real TrainModel on a tiny DeepSeek-V3 config (1 dense + 1 MoE layer, MTP depth 1). ----

std::string tiny_model_json() {
  return R"({"model_type": "deepseek_v3", "vocab_size": 256, "hidden_size": 32, "intermediate_size": 64,
             "moe_intermediate_size": 16, "num_hidden_layers": 2, "first_k_dense_replace": 1,
             "num_nextn_predict_layers": 1, "num_attention_heads": 4, "num_key_value_heads": 4,
             "n_routed_experts": 8, "num_experts_per_tok": 2, "n_shared_experts": 1, "n_group": 1, "topk_group": 1,
             "topk_method": "noaux_tc", "scoring_func": "sigmoid", "norm_topk_prob": true, "routed_scaling_factor": 2.5,
             "q_lora_rank": 16, "kv_lora_rank": 16, "qk_nope_head_dim": 8, "qk_rope_head_dim": 8, "v_head_dim": 8,
             "max_position_embeddings": 256})";
}

RunResult run_real(const TrainConfig& cfg, bool resume, int64_t stop_at, std::vector<MetricsRecord>* records = nullptr) {
  const TrainingData data = prepare_data(cfg.data, TextEncoder::byte_level(), cfg.train.out_dir + "/data-cache", cfg.train.seed);
  TrainModel model(cfg.model, train_options(cfg));
  ModelAdapter<TrainModel> m(model);
  Trainer t(cfg, m, data, quiet());
  t.start(resume);
  t.run(stop_at);
  if (records) *records = t.records();
  RunResult r{t.losses(), {}, {}};
  r.w.assign(model.param_data(), model.param_data() + model.num_parameters());
  for (float* b : model.e_score_correction_bias()) r.bias.insert(r.bias.end(), b, b + cfg.model.n_routed_experts);
  return r;
}

TEST_F(LoopTest, RealModelKillAndResumeIsBitIdentical) {
  const std::string extra = R"("steps": 6, "batch": 2, "seq": 16, "grad_accum": 2, "seed": 5, "eval_every": 3, "eval_batches": 1,
                               "log_every": 1, "save_every": 3, "threads": 2, "balance_alpha": 0.0001, "bias_gamma": 0.01)";
  TrainConfig straight = parse_train_config(loop_config(dir_, tiny_model_json(), extra), "run.json", "");
  straight.optimizer.lr = 3e-3;
  straight.train.out_dir = dir_ + "/straight";
  const RunResult a = run_real(straight, false, -1);
  TrainConfig killed = straight;
  killed.train.out_dir = dir_ + "/killed";
  run_real(killed, false, 4);  // checkpoint at 3, killed after step 4
  const RunResult b = run_real(killed, true, -1);
  ASSERT_EQ(a.losses.size(), 6u);
  ASSERT_EQ(b.losses.size(), 3u);
  for (size_t i = 0; i < 3; ++i) EXPECT_EQ(b.losses[i].second, a.losses[i + 3].second) << "step " << b.losses[i].first;
  EXPECT_EQ(b.w, a.w);
  EXPECT_EQ(b.bias, a.bias);
  // The checkpoint is what the inference loader expects (save checks the names against
  // tensor_specs.cpp; here the engine binds every tensor, MTP included).
  const Model inf = Model::load(killed.train.out_dir + "/checkpoint-6", LoadOptions{.load_mtp = true});
  EXPECT_EQ(inf.config().hidden_size, 32);
  EXPECT_EQ(inf.n_cache_layers(), 3);
}

double mean_maxvio(const MetricsRecord& r) {
  double s = 0;
  for (double m : r.maxvio) s += m;
  return r.maxvio.empty() ? 0 : s / double(r.maxvio.size());
}

// 60 steps of 512 tokens: the loss falls; routing collapses early (MaxVio near its ceiling
// E/k - 1 = 3), and the aux-loss-free bias (gamma 0.01) brings it back down, while without the
// bias it stays collapsed. (Measured, seeds 1-3: last-20 mean MaxVio 0.7-0.9 with the bias,
// 1.9-3.0 without; peak with the bias ~3.)
TEST_F(LoopTest, RealModelLossFallsAndBiasBalancesLoad) {
  const std::string extra = R"("steps": 60, "batch": 8, "seq": 64, "seed": 1, "eval_every": 30, "eval_batches": 2,
                               "log_every": 1, "save_every": 0, "threads": 2, "bias_gamma": 0.01)";
  TrainConfig cfg = parse_train_config(loop_config(dir_, tiny_model_json(), extra), "run.json", "");
  cfg.optimizer.lr = 3e-3;
  cfg.train.out_dir = dir_ + "/bias";
  std::vector<MetricsRecord> rec, plain;
  const RunResult r = run_real(cfg, false, -1, &rec);
  TrainConfig no_bias = cfg;
  no_bias.train.aux_loss_free = false;
  no_bias.train.out_dir = dir_ + "/nobias";
  run_real(no_bias, false, -1, &plain);
  ASSERT_EQ(rec.size(), 60u);
  ASSERT_EQ(plain.size(), 60u);
  EXPECT_LT(rec.back().main_loss, 0.8 * rec.front().main_loss) << rec.front().main_loss << " -> " << rec.back().main_loss;
  ASSERT_TRUE(rec[29].val_loss && rec[59].val_loss);
  EXPECT_LT(*rec[59].val_loss, *rec[29].val_loss);
  // Every MoE layer reports its load, top-k = 2 experts per token: B * T tokens in the main layer,
  // B * (T - 1) in the MTP module (its last position has no target two tokens ahead).
  ASSERT_EQ(rec[0].load.size(), 2u);
  const int64_t expected[2] = {8 * 64 * 2, 8 * 63 * 2};
  for (size_t l = 0; l < 2; ++l) {
    int64_t routed = 0;
    for (int64_t x : rec[0].load[l]) routed += x;
    EXPECT_EQ(routed, expected[l]) << "moe layer " << l;
  }
  double peak = 0, tail = 0, tail_plain = 0;
  for (size_t i = 0; i < 60; ++i) {
    peak = std::max(peak, mean_maxvio(rec[i]));
    if (i >= 40) tail += mean_maxvio(rec[i]) / 20, tail_plain += mean_maxvio(plain[i]) / 20;
  }
  std::printf("MaxVio (mean over MoE layers): peak %.2f, last 20 steps %.2f with the bias, %.2f without\n", peak, tail, tail_plain);
  EXPECT_LT(tail, 0.6 * peak) << "MaxVio with the bias: peak " << peak << ", last 20 steps " << tail;
  EXPECT_LT(tail, 0.5 * tail_plain) << "MaxVio over the last 20 steps: " << tail << " with the bias, " << tail_plain << " without";
  double moved = 0;
  for (float b : r.bias) moved += std::fabs(b);
  EXPECT_GT(moved, 0.0);
}

}  // namespace
}  // namespace dseek
