// Pipeline features beyond what DeepSeek-V3 uses, on small in-memory tokenizer.json files:
// Split behaviors and invert, ByteLevel options, added-token flags, post-processors, the
// Oniguruma -> PCRE2 regex rewriting and invalid UTF-8 input.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <thread>

#include "dseek/core/error.h"
#include "dseek/tokenizer/regex.h"
#include "tokenizer/tiny_tokenizer.h"
#include "tokenizer/tokenizer_test_util.h"

namespace dseek {
namespace {

using nlohmann::json;
using Pieces = std::vector<std::string>;
using Ids = std::vector<int32_t>;

Tokenizer with_pre_tokenizer(const json& pre, const std::string& tag) {
  json j = test::tiny_tokenizer_json();
  j["pre_tokenizer"] = pre;
  return test::load_tokenizer_json(j, tag);
}

json split_string(const std::string& s, const std::string& behavior, bool invert = false) {
  return {{"type", "Split"}, {"pattern", {{"String", s}}}, {"behavior", behavior}, {"invert", invert}};
}

// The examples of HF's SplitDelimiterBehavior documentation.
TEST(TokenizerFeatures, SplitBehaviors) {
  const std::string text = "the-final--countdown";
  EXPECT_EQ(with_pre_tokenizer(split_string("-", "Removed"), "rm").pre_tokenize(text),
            (Pieces{"the", "final", "countdown"}));
  EXPECT_EQ(with_pre_tokenizer(split_string("-", "Isolated"), "iso").pre_tokenize(text),
            (Pieces{"the", "-", "final", "-", "-", "countdown"}));
  EXPECT_EQ(with_pre_tokenizer(split_string("-", "MergedWithPrevious"), "mwp").pre_tokenize(text),
            (Pieces{"the-", "final-", "-", "countdown"}));
  EXPECT_EQ(with_pre_tokenizer(split_string("-", "MergedWithNext"), "mwn").pre_tokenize(text),
            (Pieces{"the", "-final", "-", "-countdown"}));
  EXPECT_EQ(with_pre_tokenizer(split_string("-", "Contiguous"), "contig").pre_tokenize(text),
            (Pieces{"the", "-", "final", "--", "countdown"}));
}

TEST(TokenizerFeatures, SplitInvertAndRegexMetacharactersInString) {
  json pre = {{"type", "Split"}, {"pattern", {{"Regex", "\\d+"}}}, {"behavior", "Removed"}, {"invert", true}};
  EXPECT_EQ(with_pre_tokenizer(pre, "inv").pre_tokenize("ab12cd3"), (Pieces{"12", "3"}));
  // A String pattern is literal: "." matches only a dot.
  EXPECT_EQ(with_pre_tokenizer(split_string(".", "Removed"), "lit").pre_tokenize("a.b,c"), (Pieces{"a", "b,c"}));
}

TEST(TokenizerFeatures, ByteLevelPrefixSpaceAndGpt2Regex) {
  json pre = {{"type", "ByteLevel"}, {"add_prefix_space", true}, {"use_regex", true}};
  Tokenizer tok = with_pre_tokenizer(pre, "bl");
  EXPECT_EQ(tok.pre_tokenize("Hello world's 42!!  x"), (Pieces{" Hello", " world", "'s", " 42", "!!", " ", " x"}));
  EXPECT_EQ(tok.pre_tokenize(" a"), (Pieces{" a"}));  // already starts with a space
  // " abc": "a b" (rank 0) and "ab c" (rank 1) win over "Ġ a" (rank 2): Ġ + abc.
  EXPECT_EQ(tok.encode("abc", false), (Ids{32, 257}));
  EXPECT_EQ(tok.encode("ab", false), (Ids{32, 256}));
  EXPECT_EQ(tok.encode("a", false), (Ids{258}));  // " a" -> Ġa
}

TEST(TokenizerFeatures, ByteLevelMustBeLast) {
  json pre = {{"type", "Sequence"},
              {"pretokenizers", json::array({{{"type", "ByteLevel"}, {"add_prefix_space", false}},
                                              split_string("-", "Isolated")})}};
  json j = test::tiny_tokenizer_json();
  j["pre_tokenizer"] = pre;
  EXPECT_THROW(test::load_tokenizer_json(j, "bllast"), Error);
}

TEST(TokenizerFeatures, MergesInArrayFormAndIgnoreMerges) {
  json j = test::tiny_tokenizer_json();
  json merges = json::array();
  for (const auto& m : j["model"]["merges"]) {
    const std::string s = m.get<std::string>();
    merges.push_back(json::array({s.substr(0, s.find(' ')), s.substr(s.find(' ') + 1)}));
  }
  j["model"]["merges"] = merges;
  Tokenizer tok = test::load_tokenizer_json(j, "arr");
  EXPECT_EQ(tok.encode("abc xx", false), (Ids{257, 32, 260}));
  // ignore_merges: a piece that is itself in the vocabulary is one token even without a merge path.
  j["model"]["vocab"]["qq"] = 262;
  j["model"]["ignore_merges"] = true;
  Tokenizer ign = test::load_tokenizer_json(j, "ign");
  EXPECT_EQ(ign.encode("qq", false), (Ids{262}));
}

TEST(TokenizerFeatures, AddedTokenFlags) {
  auto with_token = [](json flags, const std::string& tag) {
    json j = test::tiny_tokenizer_json();
    json t = {{"id", 310}, {"content", "<mask>"}, {"special", true}, {"normalized", false}};
    t.update(flags);
    j["added_tokens"].push_back(t);
    return test::load_tokenizer_json(j, tag);
  };
  EXPECT_EQ(with_token(json::object(), "plain").encode("a <mask> b", false), (Ids{'a', 32, 310, 32, 'b'}));
  EXPECT_EQ(with_token({{"lstrip", true}}, "lstrip").encode("a <mask> b", false), (Ids{'a', 310, 32, 'b'}));
  EXPECT_EQ(with_token({{"rstrip", true}}, "rstrip").encode("a <mask>  b", false), (Ids{'a', 32, 310, 'b'}));
  Tokenizer sw = with_token({{"single_word", true}}, "sw");
  EXPECT_EQ(sw.encode("x<mask>", false).back(), int32_t('>'));  // inside a word: ordinary text
  EXPECT_EQ(sw.encode("x <mask> y", false), (Ids{'x', 32, 310, 32, 'y'}));
  // Leftmost-longest: "<tool>" vs a longer added token sharing its prefix.
  json j = test::tiny_tokenizer_json();
  j["added_tokens"].push_back({{"id", 311}, {"content", "<tool>x"}, {"special", false}, {"normalized", false}});
  Tokenizer ll = test::load_tokenizer_json(j, "ll");
  EXPECT_EQ(ll.encode("<tool>x<tool>", false), (Ids{311, 301}));
}

TEST(TokenizerFeatures, SkipSpecialTokensOnlyDropsSpecial) {
  Tokenizer tok = test::load_tokenizer_json(test::tiny_tokenizer_json(), "skip");
  const Ids ids = tok.encode("<s>ab<tool>", false);
  EXPECT_EQ(ids, (Ids{300, 256, 301}));
  EXPECT_EQ(tok.decode(ids, false), "<s>ab<tool>");
  EXPECT_EQ(tok.decode(ids, true), "ab<tool>");
  EXPECT_EQ(tok.decode(Ids{-5, 99999, 'a'}, false), "a");  // unknown ids are dropped
}

TEST(TokenizerFeatures, TemplateProcessingPostProcessor) {
  json j = test::tiny_tokenizer_json();
  j["post_processor"] = {
      {"type", "TemplateProcessing"},
      {"single", json::array({{{"SpecialToken", {{"id", "<s>"}, {"type_id", 0}}}},
                              {{"Sequence", {{"id", "A"}, {"type_id", 0}}}},
                              {{"SpecialToken", {{"id", "<tool>"}, {"type_id", 0}}}}})},
      {"pair", json::array()},
      {"special_tokens",
       {{"<s>", {{"id", "<s>"}, {"ids", {300}}, {"tokens", {"<s>"}}}},
        {"<tool>", {{"id", "<tool>"}, {"ids", {301}}, {"tokens", {"<tool>"}}}}}}};
  Tokenizer tok = test::load_tokenizer_json(j, "tp");
  EXPECT_EQ(tok.encode("x", true), (Ids{300, 'x', 301}));
  EXPECT_EQ(tok.encode("x", false), (Ids{'x'}));
}

TEST(TokenizerFeatures, DeepSeekBos) {
  const Tokenizer& tok = test::deepseek_v3_tokenizer();
  Ids want = tok.encode("Hello", false);
  want.insert(want.begin(), 0);
  EXPECT_EQ(tok.encode("Hello", true), want);
  EXPECT_EQ(tok.encode("", true), (Ids{0}));
  EXPECT_EQ(tok.encode("", false), (Ids{}));
}

// Oniguruma semantics that PCRE2 10.42 does not have natively.
TEST(TokenizerFeatures, RegexRewriting) {
  RegexMatcher m;
  auto full_match = [&](const std::string& pattern, const std::string& subject) {
    Regex re("^(?:" + pattern + ")$", false, "test");
    size_t s, e;
    return m.search(re, subject, 0, s, e);
  };
  EXPECT_TRUE(full_match("\\s", " "));
  EXPECT_TRUE(full_match("\\s", "\xC2\x85"));        // U+0085 is White_Space
  EXPECT_FALSE(full_match("\\s", "\xE1\xA0\x8E"));   // U+180E is not (PCRE2's \s says it is)
  EXPECT_TRUE(full_match("\\S", "\xE1\xA0\x8E"));
  EXPECT_TRUE(full_match("[^\\S]", "\xE3\x80\x80"));  // U+3000
  EXPECT_TRUE(full_match("\\p{L}", "\xF0\x90\xB5\x90"));    // U+10D50 GARAY letter (Unicode 16.0)
  EXPECT_FALSE(full_match("\\P{L}", "\xF0\x90\xB5\x90"));
  EXPECT_FALSE(full_match("[^\\p{L}]", "\xF0\x90\xB5\x90"));
  EXPECT_TRUE(full_match("\\p{N}", "\xF0\x90\xB5\x80"));    // U+10D40 GARAY DIGIT ZERO
  EXPECT_TRUE(full_match("\\d", "\xF0\x90\xB5\x80"));
  EXPECT_TRUE(full_match("\\h+", "0fA9"));  // Oniguruma's \h is a hex digit
  EXPECT_FALSE(full_match("\\h", " "));
  EXPECT_THROW(Regex("[^\\P{L}]", false, "test"), Error);
  EXPECT_THROW(Regex("\\p{Mn}", false, "test"), Error);  // a code point left Mn in 16.0
}

TEST(TokenizerFeatures, InvalidUtf8IsReplacedBeforeTokenizing) {
  const Tokenizer& tok = test::deepseek_v3_tokenizer();
  EXPECT_EQ(tok.encode("a\xE4\xBD" "b", false), tok.encode("a\xEF\xBF\xBD" "b", false));
  EXPECT_EQ(tok.encode("\xED\xA0\x80", false), tok.encode("\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD", false));
  EXPECT_EQ(tok.decode(tok.encode("x\xFFy\xC0\x80", false), false), "x\xEF\xBF\xBDy\xEF\xBF\xBD\xEF\xBF\xBD");
  EXPECT_EQ(tok.pre_tokenize("\xF4\x90\x80\x80").size(), 1u);
}

TEST(TokenizerFeatures, ConcurrentEncodeMatchesSerial) {
  const Tokenizer& tok = test::deepseek_v3_tokenizer();
  const auto rows = test::read_jsonl(test::tokenizer_golden_dir() + "/encode.jsonl");
  std::vector<std::string> texts;
  std::vector<Ids> want;
  for (size_t i = 0; i < rows.size(); i += 5) {
    texts.push_back(rows[i]["text"].get<std::string>());
    want.push_back(tok.encode(texts.back(), false));
  }
  std::vector<size_t> mismatches(4, 0);
  std::vector<std::thread> threads;
  for (size_t t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int rep = 0; rep < 3; ++rep) {
        for (size_t i = t; i < texts.size() + t; ++i) {
          const size_t k = i % texts.size();
          if (tok.encode(texts[k], false) != want[k]) ++mismatches[t];
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  for (size_t t = 0; t < 4; ++t) EXPECT_EQ(mismatches[t], 0u) << "thread " << t;
}

}  // namespace
}  // namespace dseek
