// Training checkpoints: round trip of weights + optimizer state, atomicity under a kill, `latest`,
// pruning, and the byte-level tokenizer.json.
#include "dseek/train/checkpoint_io.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "dseek/core/error.h"
#include "dseek/core/mapped_file.h"
#include "dseek/tokenizer/tokenizer.h"
#include "train/fake_model.h"
#include "common/test_util.h"

namespace dseek {
namespace {

using test::make_temp_dir;

namespace fs = std::filesystem;

CheckpointContents contents(test::FakeModel& m, const AdamW& opt, int64_t step) {
  CheckpointContents c;
  c.model_config_json = "{\"model_type\": \"deepseek_v3\"}";
  c.tensors = m.checkpoint_tensors();
  c.params = m.params();
  c.optimizer = &opt;
  for (float* b : m.e_score_correction_bias()) c.biases.push_back(b);
  c.n_experts = test::FakeModel::kExperts;
  c.state.step = step;
  c.state.seed = 42;
  c.state.tokens = step * 100;
  c.state.loss = 1.5;
  return c;
}

class TrainCheckpointTest : public ::testing::Test {
 protected:
  void SetUp() override { dir_ = make_temp_dir(); }
  void TearDown() override { fs::remove_all(dir_); }
  std::string dir_;
};

TEST_F(TrainCheckpointTest, RoundTripsWeightsMomentsBiasAndState) {
  const ModelConfig cfg = test::fake_config(16);
  test::FakeModel a(cfg);
  a.init_weights(1, 0.3f);
  AdamW opt(a.params(), AdamWConfig{});
  for (int s = 0; s < 3; ++s) {
    for (size_t i = 0; i < a.gw_.size(); ++i) a.gw_[i] = float(i) * 0.01f - float(s);
    a.gb_[0] = 0.5f;
    opt.step(a.params(), 1e-2);
  }
  a.bias_ = {0.1f, -0.2f, 0.3f, -0.4f};
  const std::string saved = save_checkpoint(dir_, contents(a, opt, 3));
  EXPECT_EQ(saved, dir_ + "/checkpoint-3");
  EXPECT_EQ(read_text_file(dir_ + "/latest"), "checkpoint-3\n");
  for (const char* f : {"config.json", "model.safetensors", "optimizer.safetensors", "trainer_state.json", "tokenizer.json",
                        "tokenizer_config.json"})
    EXPECT_TRUE(fs::exists(saved + "/" + f)) << f;

  test::FakeModel b(cfg);
  b.init_weights(99, 1.0f);
  AdamW opt_b(b.params(), AdamWConfig{});
  const TrainerState st = load_checkpoint(*find_latest_checkpoint(dir_), b.params(), opt_b, b.e_score_correction_bias(), 4);
  EXPECT_EQ(st.step, 3);
  EXPECT_EQ(st.seed, 42u);
  EXPECT_EQ(st.tokens, 300);
  EXPECT_EQ(opt_b.steps(), 3);
  EXPECT_EQ(b.w_, a.w_);
  EXPECT_EQ(b.b_, a.b_);
  EXPECT_EQ(b.bias_, a.bias_);
  for (size_t i = 0; i < 2; ++i) {
    EXPECT_EQ(opt_b.m(i), opt.m(i));
    EXPECT_EQ(opt_b.v(i), opt.v(i));
  }
}

TEST_F(TrainCheckpointTest, LeftoversAndIncompleteDirsAreIgnored) {
  const ModelConfig cfg = test::fake_config(16);
  test::FakeModel m(cfg);
  m.init_weights(1, 0.3f);
  AdamW opt(m.params(), AdamWConfig{});
  save_checkpoint(dir_, contents(m, opt, 3));
  // A writer killed mid-save leaves checkpoint-<n>.tmp-<pid>/ with partial files.
  fs::create_directories(dir_ + "/checkpoint-6.tmp-999999");
  std::ofstream(dir_ + "/checkpoint-6.tmp-999999/model.safetensors") << "partial";
  fs::create_directories(dir_ + "/checkpoint-9");  // no trainer_state.json: not complete
  EXPECT_EQ(*find_latest_checkpoint(dir_), dir_ + "/checkpoint-3");
  fs::remove(dir_ + "/latest");  // lost `latest`: the newest complete dir
  EXPECT_EQ(*find_latest_checkpoint(dir_), dir_ + "/checkpoint-3");
  std::ofstream(dir_ + "/latest") << "checkpoint-12\n";  // names a dir that is gone
  EXPECT_EQ(*find_latest_checkpoint(dir_), dir_ + "/checkpoint-3");
  // The next save cleans the dead writer's temporary dir.
  save_checkpoint(dir_, contents(m, opt, 4));
  EXPECT_FALSE(fs::exists(dir_ + "/checkpoint-6.tmp-999999"));
  EXPECT_EQ(*find_latest_checkpoint(dir_), dir_ + "/checkpoint-4");
  EXPECT_FALSE(find_latest_checkpoint(dir_ + "/nonexistent").has_value());
}

// A child process saves checkpoints in a loop and is SIGKILLed at an arbitrary moment: `latest`
// must name a complete checkpoint whose contents match its step.
TEST_F(TrainCheckpointTest, KillAtAnyMomentLeavesAGoodCheckpoint) {
  const ModelConfig cfg = test::fake_config(1 << 18);  // 1 MiB of weights: saves take a while
  for (int trial = 0; trial < 3; ++trial) {
    const std::string out = dir_ + "/t" + std::to_string(trial);
    const pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      test::FakeModel m(cfg);
      AdamW opt(m.params(), AdamWConfig{});
      for (int64_t step = 1; step < 100000; ++step) {
        std::fill(m.w_.begin(), m.w_.end(), float(step));
        opt.set_steps(step);
        save_checkpoint(out, contents(m, opt, step), /*keep=*/2);
      }
      ::_exit(0);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(60 + 37 * trial));
    ::kill(pid, SIGKILL);
    int status = 0;
    ::waitpid(pid, &status, 0);
    const auto latest = find_latest_checkpoint(out);
    if (!latest) continue;  // killed before the first save finished: nothing to check
    test::FakeModel m(cfg);
    AdamW opt(m.params(), AdamWConfig{});
    const TrainerState st = load_checkpoint(*latest, m.params(), opt, m.e_score_correction_bias(), 4);
    EXPECT_EQ(m.w_.front(), float(st.step));
    EXPECT_EQ(m.w_.back(), float(st.step));
  }
}

TEST_F(TrainCheckpointTest, KeepsOnlyTheNewest) {
  const ModelConfig cfg = test::fake_config(8);
  test::FakeModel m(cfg);
  AdamW opt(m.params(), AdamWConfig{});
  for (int64_t s = 1; s <= 5; ++s) save_checkpoint(dir_, contents(m, opt, s), 2);
  EXPECT_FALSE(fs::exists(dir_ + "/checkpoint-3"));
  EXPECT_TRUE(fs::exists(dir_ + "/checkpoint-4"));
  EXPECT_TRUE(fs::exists(dir_ + "/checkpoint-5"));
}

TEST_F(TrainCheckpointTest, ByteTokenizerJsonLoadsAsIdentityOnBytes) {
  std::ofstream(dir_ + "/tokenizer.json") << byte_tokenizer_json();
  const Tokenizer tok = Tokenizer::load(dir_);
  EXPECT_EQ(tok.vocab_size(), 256u);
  const std::string text = "Hi \xc3\xa9\n\t\x01 x  y";
  const std::vector<int32_t> ids = tok.encode(text, false);
  ASSERT_EQ(ids.size(), text.size());
  for (size_t i = 0; i < text.size(); ++i) EXPECT_EQ(ids[i], int32_t(uint8_t(text[i]))) << i;
  EXPECT_EQ(tok.decode(ids, false), text);
}

TEST_F(TrainCheckpointTest, HfLayoutCheckNamesTheMissingTensor) {
  ModelConfig cfg = test::fake_config(8);
  cfg.hidden_size = 4;
  test::FakeModel m(test::fake_config(8));
  AdamW opt(m.params(), AdamWConfig{});
  CheckpointContents c = contents(m, opt, 1);
  c.check_specs = &cfg;
  try {
    save_checkpoint(dir_, c);
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("the model provides no tensor"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(find_latest_checkpoint(dir_).has_value());
}

}  // namespace
}  // namespace dseek
