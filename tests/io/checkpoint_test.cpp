#include "dseek/io/checkpoint.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

#include "common/shared_dir.h"
#include "dseek/core/error.h"
#include "dseek/io/safetensors.h"
#include "common/test_util.h"

namespace dseek {
namespace {

using test::make_temp_dir;
using test::write_text;
using test::expect_error;

// Test tensors whose contents identify them: element i of tensor k is k * 1000 + i.
struct Fixture {
  std::vector<std::vector<float>> data;
  TensorToWrite add(const std::string& name, Shape shape) {
    std::vector<float> v(size_t(shape_numel(shape)));
    for (size_t i = 0; i < v.size(); ++i) v[i] = float(data.size() * 1000 + i);
    data.push_back(std::move(v));
    return {name, DType::kF32, shape, data.back().data()};
  }
};

class CheckpointTest : public ::testing::Test {
 protected:
  void SetUp() override { dir_ = make_temp_dir(); }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  // Two shards plus an index, as HF writes large models.
  void write_sharded() {
    fx_.data.reserve(8);
    write_safetensors(dir_ + "/model-00001-of-00002.safetensors",
                      {fx_.add("model.embed_tokens.weight", {8, 4}), fx_.add("model.norm.weight", {4})});
    write_safetensors(dir_ + "/model-00002-of-00002.safetensors", {fx_.add("lm_head.weight", {8, 4})});
    write_text(dir_ + "/model.safetensors.index.json", R"({
      "metadata": {"total_size": 288},
      "weight_map": {
        "model.embed_tokens.weight": "model-00001-of-00002.safetensors",
        "model.norm.weight": "model-00001-of-00002.safetensors",
        "lm_head.weight": "model-00002-of-00002.safetensors"
      }})");
  }
  std::string dir_;
  Fixture fx_;
};

TEST_F(CheckpointTest, SingleFile) {
  fx_.data.reserve(4);
  write_safetensors(dir_ + "/model.safetensors",
                    {fx_.add("model.layers.3.self_attn.kv_b_proj.weight", {6, 4}), fx_.add("b", {3})});
  write_safetensors(dir_ + "/golden.safetensors", {fx_.add("not_a_weight", {1})});  // ignored: model.safetensors wins
  const Checkpoint c = Checkpoint::open(dir_ + "/");
  EXPECT_EQ(c.dir(), dir_);
  EXPECT_TRUE(c.has("b"));
  EXPECT_FALSE(c.has("not_a_weight"));
  EXPECT_EQ(c.names(), (std::vector<std::string>{"b", "model.layers.3.self_attn.kv_b_proj.weight"}));
  const TensorView v = c.get("b");
  EXPECT_EQ(v.dtype, DType::kF32);
  EXPECT_EQ(v.shape, Shape({3}));
  EXPECT_EQ(static_cast<const float*>(v.data)[2], 1002.0f);
  EXPECT_EQ(c.file_of("b"), dir_ + "/model.safetensors");
  EXPECT_EQ(c.total_bytes(), std::filesystem::file_size(dir_ + "/model.safetensors"));

  const std::string kv = "model.layers.3.self_attn.kv_b_proj.weight";
  EXPECT_EQ(c.expect(kv, {6, 4}, {DType::kBF16, DType::kF32}).data, c.get(kv).data);
  expect_error([&] { c.expect(kv, {6, 4}, {DType::kF8E4M3}); },
               {dir_ + "/model.safetensors: \"" + kv + "\": expected F8_E4M3 [6, 4], got F32 [6, 4]"});
  expect_error([&] { c.expect(kv, {6, 5}, {DType::kF32, DType::kBF16, DType::kF16}); },
               {"\"" + kv + "\": expected F32|BF16|F16 [6, 5], got F32 [6, 4]"});
  expect_error([&] { c.get("nope"); }, {dir_ + ": missing tensor nope"});
  expect_error([&] { c.file_of("nope"); }, {dir_ + ": missing tensor nope"});
  expect_error([&] { c.expect("nope", {1}, {DType::kF32}); }, {dir_ + ": missing tensor nope"});
}

TEST_F(CheckpointTest, ShardedWithIndexAndMove) {
  write_sharded();
  Checkpoint a = Checkpoint::open(dir_);
  EXPECT_EQ(a.names(), (std::vector<std::string>{"lm_head.weight", "model.embed_tokens.weight", "model.norm.weight"}));
  EXPECT_EQ(a.file_of("lm_head.weight"), dir_ + "/model-00002-of-00002.safetensors");
  EXPECT_EQ(a.file_of("model.norm.weight"), dir_ + "/model-00001-of-00002.safetensors");
  const TensorView head = a.get("lm_head.weight");
  EXPECT_EQ(std::memcmp(head.data, fx_.data[2].data(), 8 * 4 * 4), 0);
  EXPECT_EQ(a.total_bytes(), std::filesystem::file_size(dir_ + "/model-00001-of-00002.safetensors") +
                                 std::filesystem::file_size(dir_ + "/model-00002-of-00002.safetensors"));
  // Moving keeps the mappings: views taken before the move stay valid.
  Checkpoint b = std::move(a);
  EXPECT_EQ(b.get("lm_head.weight").data, head.data);
  EXPECT_EQ(static_cast<const float*>(head.data)[5], 2005.0f);
}

TEST_F(CheckpointTest, GlobsShardsWithoutIndex) {
  fx_.data.reserve(4);
  write_safetensors(dir_ + "/a.safetensors", {fx_.add("x", {2})});
  write_safetensors(dir_ + "/b.safetensors", {fx_.add("y", {2})});
  write_text(dir_ + "/config.json", "{}");
  const Checkpoint c = Checkpoint::open(dir_);
  EXPECT_EQ(c.names(), (std::vector<std::string>{"x", "y"}));
  EXPECT_EQ(c.file_of("y"), dir_ + "/b.safetensors");
}

TEST_F(CheckpointTest, SameTensorInTwoShards) {
  fx_.data.reserve(4);
  write_safetensors(dir_ + "/a.safetensors", {fx_.add("x", {2})});
  write_safetensors(dir_ + "/b.safetensors", {fx_.add("x", {2})});
  expect_error([&] { Checkpoint::open(dir_); },
               {dir_, "tensor \"x\" is in two shards", "a.safetensors", "b.safetensors"});
  // The same with an index that lists only one of them.
  write_text(dir_ + "/model.safetensors.index.json",
             R"({"weight_map": {"x": "a.safetensors", "y": "b.safetensors"}})");
  write_safetensors(dir_ + "/b.safetensors", {fx_.add("x", {2}), fx_.add("y", {2})});
  expect_error([&] { Checkpoint::open(dir_); }, {"tensor \"x\" is in two shards"});
}

TEST_F(CheckpointTest, EmptyOrMissingDirectory) {
  expect_error([&] { Checkpoint::open(dir_); }, {dir_ + ": no model.safetensors"});
  expect_error([&] { Checkpoint::open(dir_ + "/absent"); }, {dir_ + "/absent: not a directory"});
}

TEST_F(CheckpointTest, BadShardIsReportedWithItsPath) {
  write_text(dir_ + "/model.safetensors", "garbage");
  expect_error([&] { Checkpoint::open(dir_); }, {dir_ + "/model.safetensors: "});
}

TEST_F(CheckpointTest, IndexErrors) {
  write_sharded();
  const std::string index = dir_ + "/model.safetensors.index.json";
  const std::string s1 = "model-00001-of-00002.safetensors";
  const std::string s2 = "model-00002-of-00002.safetensors";

  write_text(index, R"({"weight_map": {)");
  expect_error([&] { Checkpoint::open(dir_); }, {index + ": not valid JSON"});
  write_text(index, "[]");
  expect_error([&] { Checkpoint::open(dir_); }, {index + ": not a JSON object"});
  write_text(index, R"({"metadata": {}})");
  expect_error([&] { Checkpoint::open(dir_); }, {index + ": missing \"weight_map\""});
  write_text(index, R"({"weight_map": ["a"]})");
  expect_error([&] { Checkpoint::open(dir_); }, {index + ": \"weight_map\" is not an object"});
  write_text(index, R"({"weight_map": {"lm_head.weight": 2}})");
  expect_error([&] { Checkpoint::open(dir_); }, {index, "\"lm_head.weight\"", "not a string"});
  write_text(index, R"({"weight_map": {"lm_head.weight": "model-00003-of-00002.safetensors"}})");
  expect_error([&] { Checkpoint::open(dir_); },
               {index, "shard \"model-00003-of-00002.safetensors\"", "\"lm_head.weight\"", "does not exist"});
  write_text(index, R"({"weight_map": {"lm_head.weight": "../x.safetensors"}})");
  expect_error([&] { Checkpoint::open(dir_); }, {index, "not inside the checkpoint directory"});
  write_text(index, R"({"weight_map": {"lm_head.weight": "/etc/passwd"}})");
  expect_error([&] { Checkpoint::open(dir_); }, {index, "not inside the checkpoint directory"});
  // Listed in the index, but its shard does not have it (here: it is in the other shard).
  write_text(index, R"({"weight_map": {"lm_head.weight": ")" + s1 + R"(", "model.norm.weight": ")" + s1 + R"("}})");
  expect_error([&] { Checkpoint::open(dir_); },
               {index, "tensor \"lm_head.weight\" is listed in weight_map but absent from its shard", s1});
  write_text(index, R"({"weight_map": {"ghost": ")" + s2 + R"("}})");
  expect_error([&] { Checkpoint::open(dir_); }, {index, "tensor \"ghost\"", "absent from its shard", s2});
  write_text(index, R"({"weight_map": {"lm_head.weight": ")" + s2 + R"(", "lm_head.weight": ")" + s1 + R"("}})");
  expect_error([&] { Checkpoint::open(dir_); }, {index, "duplicate key \"lm_head.weight\""});
}

TEST(CheckpointGolden, OpensEveryModel) {
  for (const char* c : {"v2lite", "v2", "v3", "v32", "v3-fp8"}) {
    const std::string dir = test::golden_model_dir(c);
    SCOPED_TRACE(dir);
    const Checkpoint ck = Checkpoint::open(dir);
    EXPECT_EQ(ck.file_of("model.norm.weight"), dir + "/model.safetensors");
    EXPECT_EQ(ck.total_bytes(), std::filesystem::file_size(dir + "/model.safetensors"));
    EXPECT_EQ(ck.expect("model.norm.weight", {64}, {DType::kF32}).shape, Shape({64}));
    EXPECT_FALSE(ck.has("golden.logits"));  // golden.safetensors sits beside it but is not a shard
  }
  const Checkpoint fp8 = Checkpoint::open(test::golden_model_dir("v3-fp8"));
  const std::string w = "model.layers.0.self_attn.kv_a_proj_with_mqa.weight";
  EXPECT_EQ(fp8.get(w).dtype, DType::kF8E4M3);
  expect_error([&] { fp8.expect(w, fp8.get(w).shape, {DType::kF32, DType::kBF16, DType::kF16}); },
               {"model.safetensors: \"" + w + "\": expected F32|BF16|F16", "got F8_E4M3"});
}

}  // namespace
}  // namespace dseek
