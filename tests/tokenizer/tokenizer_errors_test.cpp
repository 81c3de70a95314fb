// Malformed and unsupported tokenizer.json / tokenizer_config.json files: each must give a
// dseek::Error that names the file and the JSON field.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "dseek/core/error.h"
#include "dseek/tokenizer/tokenizer.h"
#include "tokenizer/tiny_tokenizer.h"

namespace dseek {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

class TokenizerErrors : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("dseek_tok_err_" + std::to_string(::getpid()) + "_" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  void write(const std::string& name, const std::string& text) { std::ofstream(dir_ / name) << text; }

  // Loads dir_ and returns the error message ("" when it loaded).
  std::string load_error() {
    try {
      Tokenizer::load(dir_.string());
    } catch (const Error& e) {
      return e.what();
    }
    return "";
  }

  void expect_error(const json& tokenizer, std::initializer_list<std::string> parts) {
    write("tokenizer.json", tokenizer.dump());
    const std::string msg = load_error();
    ASSERT_FALSE(msg.empty()) << "loaded without error";
    EXPECT_NE(msg.find("tokenizer.json"), std::string::npos) << msg;
    for (const auto& p : parts) EXPECT_NE(msg.find(p), std::string::npos) << "'" << p << "' not in: " << msg;
  }

  fs::path dir_;
};

TEST_F(TokenizerErrors, TinyTokenizerLoads) {
  write("tokenizer.json", test::tiny_tokenizer_json().dump());
  EXPECT_EQ(load_error(), "");
}

TEST_F(TokenizerErrors, MissingFile) {
  const std::string msg = load_error();
  EXPECT_NE(msg.find("tokenizer.json"), std::string::npos) << msg;
}

TEST_F(TokenizerErrors, BadJson) {
  write("tokenizer.json", "{\"model\": {\"type\": \"BPE\",, }");
  const std::string msg = load_error();
  EXPECT_NE(msg.find("tokenizer.json"), std::string::npos) << msg;
  EXPECT_NE(msg.find("invalid JSON at byte"), std::string::npos) << msg;
}

TEST_F(TokenizerErrors, UnknownModelType) {
  json j = test::tiny_tokenizer_json();
  j["model"]["type"] = "WordPiece";
  expect_error(j, {"model.type", "WordPiece"});
}

TEST_F(TokenizerErrors, MissingModel) {
  json j = test::tiny_tokenizer_json();
  j.erase("model");
  expect_error(j, {"model: missing"});
}

TEST_F(TokenizerErrors, MissingVocab) {
  json j = test::tiny_tokenizer_json();
  j["model"].erase("vocab");
  expect_error(j, {"model.vocab: missing"});
}

TEST_F(TokenizerErrors, MissingMerges) {
  json j = test::tiny_tokenizer_json();
  j["model"].erase("merges");
  expect_error(j, {"model.merges: missing"});
}

TEST_F(TokenizerErrors, MergeNamesUnknownToken) {
  json j = test::tiny_tokenizer_json();
  j["model"]["merges"].push_back("zz q");
  expect_error(j, {"model.merges[" + std::to_string(j["model"]["merges"].size() - 1) + "]", "unknown token 'zz'"});
}

TEST_F(TokenizerErrors, MergeResultNotInVocab) {
  json j = test::tiny_tokenizer_json();
  j["model"]["merges"].push_back(json::array({"x", "y"}));
  expect_error(j, {"merged token 'xy'"});
}

TEST_F(TokenizerErrors, MalformedMerge) {
  json j = test::tiny_tokenizer_json();
  j["model"]["merges"].push_back("abc");
  expect_error(j, {"model.merges[", "exactly one space"});
}

// model.vocab and model.merges are taken out of the tree while parsing (tokenizer_load.cpp): the
// same errors as from the tree, and the same meaning.
TEST_F(TokenizerErrors, VocabIdNotAnInteger) {
  json j = test::tiny_tokenizer_json();
  j["model"]["vocab"]["zz"] = "7";
  expect_error(j, {"model.vocab[\"zz\"]", "expected an integer id"});
  j["model"]["vocab"]["zz"] = {{"id", 7}};
  expect_error(j, {"model.vocab[\"zz\"]", "expected an integer id"});
  j["model"]["vocab"]["zz"] = json::array({7});
  expect_error(j, {"model.vocab[\"zz\"]", "expected an integer id"});
  j["model"]["vocab"]["zz"] = -1;
  expect_error(j, {"model.vocab[\"zz\"]", "out of range"});
}

TEST_F(TokenizerErrors, VocabAndMergesOfTheWrongType) {
  json j = test::tiny_tokenizer_json();
  j["model"]["vocab"] = json::array({1, 2});
  expect_error(j, {"model.vocab", "expected an object"});
  j = test::tiny_tokenizer_json();
  j["model"]["merges"] = json::object({{"a", "b"}});
  expect_error(j, {"model.merges", "expected an array"});
  j = test::tiny_tokenizer_json();
  j["model"]["merges"].push_back(json::object({{"a", "b"}}));
  expect_error(j, {"model.merges[" + std::to_string(j["model"]["merges"].size() - 1) + "]", "expected a string"});
}

TEST_F(TokenizerErrors, RepeatedVocabKeyLastOneWins) {
  // JSON objects with a repeated key mean the last value (nlohmann, Python's json, serde_json).
  write("tokenizer.json", test::tiny_tokenizer_json().dump());
  const size_t plain_size = Tokenizer::load(dir_.string()).vocab_size();
  std::string text = test::tiny_tokenizer_json().dump();
  const std::string vocab = "\"vocab\":{";
  const size_t at = text.find(vocab);
  ASSERT_NE(at, std::string::npos);
  text.insert(at + vocab.size(), "\"xx\":0,");
  write("tokenizer.json", text);
  const Tokenizer tok = Tokenizer::load(dir_.string());
  const json j = test::tiny_tokenizer_json();
  EXPECT_EQ(tok.token_to_id("xx"), std::optional<int32_t>(j["model"]["vocab"]["xx"].get<int32_t>()));
  EXPECT_EQ(tok.vocab_size(), plain_size);
}

TEST_F(TokenizerErrors, RepeatedVocabOrMergesKeyReplacesTheList) {
  std::string text = test::tiny_tokenizer_json().dump();
  const std::string model = "\"model\":{";
  const size_t at = text.find(model);
  ASSERT_NE(at, std::string::npos);
  // An earlier vocab and merges, replaced by the real ones that follow.
  text.insert(at + model.size(), "\"vocab\":{\"zz\":\"not an id\"},\"merges\":[\"no such\"],");
  write("tokenizer.json", text);
  EXPECT_EQ(load_error(), "");
  // A later vocab that is not an object replaces the real one: an error, as from the tree.
  json j = test::tiny_tokenizer_json();
  const std::string vocab = j["model"]["vocab"].dump();
  j["model"]["vocab"] = "@vocab@";
  text = j.dump();
  const std::string mark = "\"@vocab@\"";
  text.replace(text.find(mark), mark.size(), vocab + ",\"vocab\":7");
  write("tokenizer.json", text);
  const std::string msg = load_error();
  EXPECT_NE(msg.find("model.vocab: expected an object"), std::string::npos) << msg;
}

TEST_F(TokenizerErrors, OnlyTheModelsListsAreTakenOut) {
  // Keys named vocab / merges outside model (here under unread keys) are left alone: model's own
  // lists are the ones read.
  json j = test::tiny_tokenizer_json();
  j["model"]["merges"] = json::array();
  write("tokenizer.json", j.dump());
  const Tokenizer plain = Tokenizer::load(dir_.string());
  j["extra"] = {{"vocab", {{"q", 1}}}, {"merges", json::array({"q r"})}};
  j["model"]["extra"] = {{"vocab", json::array()}};
  write("tokenizer.json", j.dump());
  const Tokenizer tok = Tokenizer::load(dir_.string());
  EXPECT_EQ(tok.vocab_size(), plain.vocab_size());
  EXPECT_EQ(tok.encode("abc xx", false), plain.encode("abc xx", false));
}

TEST_F(TokenizerErrors, InvalidRegexReportsPcre2MessageAndOffset) {
  json j = test::tiny_tokenizer_json();
  j["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = "ab(c";
  expect_error(j, {"pre_tokenizer.pretokenizers[0].pattern.Regex", "missing closing parenthesis", "at offset 4"});
}

TEST_F(TokenizerErrors, UnknownSplitBehavior) {
  json j = test::tiny_tokenizer_json();
  j["pre_tokenizer"]["pretokenizers"][0]["behavior"] = "Sideways";
  expect_error(j, {"pre_tokenizer.pretokenizers[0].behavior", "Sideways"});
}

TEST_F(TokenizerErrors, UnsupportedPreTokenizer) {
  json j = test::tiny_tokenizer_json();
  j["pre_tokenizer"]["pretokenizers"][0] = {{"type", "Whitespace"}};
  expect_error(j, {"pre_tokenizer.pretokenizers[0].type", "Whitespace"});
}

TEST_F(TokenizerErrors, UnsupportedNormalizer) {
  json j = test::tiny_tokenizer_json();
  j["normalizer"]["normalizers"].push_back({{"type", "NFC"}});
  expect_error(j, {"normalizer.normalizers[0].type", "NFC"});
}

TEST_F(TokenizerErrors, UnsupportedDecoderAndByteFallback) {
  json j = test::tiny_tokenizer_json();
  j["decoder"] = {{"type", "WordPiece"}};
  expect_error(j, {"decoder.type"});
  j = test::tiny_tokenizer_json();
  j["model"]["byte_fallback"] = true;
  expect_error(j, {"model.byte_fallback"});
}

TEST_F(TokenizerErrors, AddedTokenWithoutContent) {
  json j = test::tiny_tokenizer_json();
  j["added_tokens"].push_back({{"id", 999}});
  expect_error(j, {"added_tokens[" + std::to_string(j["added_tokens"].size() - 1) + "].content: missing"});
}

TEST_F(TokenizerErrors, ConfigBosTokenUnknown) {
  write("tokenizer.json", test::tiny_tokenizer_json().dump());
  write("tokenizer_config.json", R"({"add_bos_token": true, "bos_token": {"content": "<nope>"}})");
  const std::string msg = load_error();
  EXPECT_NE(msg.find("tokenizer_config.json"), std::string::npos) << msg;
  EXPECT_NE(msg.find("bos_token"), std::string::npos) << msg;
}

TEST_F(TokenizerErrors, ConfigBadJson) {
  write("tokenizer.json", test::tiny_tokenizer_json().dump());
  write("tokenizer_config.json", "{");
  const std::string msg = load_error();
  EXPECT_NE(msg.find("tokenizer_config.json"), std::string::npos) << msg;
}

}  // namespace
}  // namespace dseek
