// The embedded demo model (models/brown-demo, the README's main job) loads with its MTP module
// and tokenizer and generates English-looking bytes: a guard against a corrupted checkpoint or a
// loader/tokenizer change that breaks what `scripts/run.sh` shows users.
#include <gtest/gtest.h>

#include <cctype>
#include <nlohmann/json.hpp>

#include "dseek/core/mapped_file.h"
#include "dseek/runtime/generator.h"

namespace dseek {
namespace {

const std::string kDemo = std::string(DSEEK_SOURCE_DIR) + "/models/brown-demo";

TEST(DemoModel, LoadsAndGeneratesPrintableText) {
  Model model = Model::load(kDemo, {.load_mtp = true});
  EXPECT_EQ(model.config().model_type, ModelType::kDeepseekV3);
  EXPECT_EQ(model.weights().mtp.size(), 1u);
  Tokenizer tok = Tokenizer::load(kDemo);
  ThreadPool pool(2);
  Generator gen(model, tok, 512, &pool);
  Sampler greedy({}, model.config().vocab_size);
  GenerateOptions o;
  o.max_new_tokens = 80;
  GenerateResult r = gen.generate(tok.encode("The jury said", false), greedy, o);
  ASSERT_GE(r.text.size(), 40u) << r.text;
  int64_t letters = 0;
  for (unsigned char ch : r.text) {
    EXPECT_TRUE(std::isprint(ch) || ch == '\n') << "byte " << int(ch) << " in: " << r.text;
    letters += std::isalpha(ch) != 0;
  }
  EXPECT_GT(letters, int64_t(r.text.size()) / 2) << r.text;
}

TEST(DemoModel, TrainerStateRecordsItsValidationLoss) {
  nlohmann::json st = nlohmann::json::parse(read_text_file(kDemo + "/trainer_state.json"));
  EXPECT_EQ(st["step"].get<int64_t>(), 3000);
  // README / docs/training.md quote this number.
  EXPECT_NEAR(st["val_loss"].get<double>(), 1.4616, 1e-3);
}

}  // namespace
}  // namespace dseek
