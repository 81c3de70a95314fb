// OutputParser: reasoning, content and DeepSeek tool calls from generated text, and the streaming
// guarantee: any split of the text gives the same message as one push.
#include "dseek/server/output_parser.h"

#include <gtest/gtest.h>

#include <random>
#include <set>
#include <string>
#include <vector>

#include "common/shared_dir.h"
#include "dseek/tokenizer/tokenizer.h"

namespace dseek::server {
namespace {

const std::string kCallsBegin = "<｜tool▁calls▁begin｜>";
const std::string kCallsEnd = "<｜tool▁calls▁end｜>";
const std::string kCallBegin = "<｜tool▁call▁begin｜>";
const std::string kCallEnd = "<｜tool▁call▁end｜>";
const std::string kSep = "<｜tool▁sep｜>";

// A V3 call exactly as the DeepSeek-V3 chat template renders one.
std::string v3_call(const std::string& name, const std::string& args) {
  return kCallBegin + "function" + kSep + name + "\n```json\n" + args + "\n```" + kCallEnd;
}

struct Sample {
  const char* label;
  bool in_reasoning;
  bool parse_tools;
  std::string text;
};

// Outputs in the shapes DeepSeek models produce.
std::vector<Sample> samples() {
  return {
      {"v3_one_call", false, true,
       kCallsBegin + v3_call("get_weather", R"({"location": "Paris", "unit": "°C"})") + kCallsEnd},
      {"v3_two_calls_after_content", false, true,
       "Let me check both cities.\n\n" + kCallsBegin + v3_call("get_weather", R"({"location":"Paris"})") + "\n" +
           v3_call("get_weather", R"({"location":"東京"})") + kCallsEnd},
      {"v31_call", false, true,
       kCallsBegin + kCallBegin + "search" + kSep + R"({"query": "dseek \"cpu\"", "k": [1, 2]})" + kCallEnd + kCallsEnd},
      {"r1_reasoning", true, false, "The user asks 2+2.\nThat is 4.\n</think>\n\nThe answer is **4**. ✓"},
      {"think_in_output", false, true, " \n<think>\nHmm, 東京 is Tokyo.\n\n</think>\n\nTokyo. 😀"},
      {"reasoning_then_call", true, true,
       "Need the weather first.\n</think>\n\n" + kCallsBegin + v3_call("get_weather", R"({"location": "Oslo"})") +
           kCallsEnd},
      {"lookalikes_in_content", false, true, "Use <｜tool to call; a < b, <think> and </think> stay. <｜tool▁call"},
      {"stray_markers_in_content", false, true, "a" + kCallEnd + "b" + kSep + "c" + kCallsEnd + "d"},
      {"markers_without_tools", false, false,
       kCallsBegin + v3_call("get_weather", R"({"location": "Paris"})") + kCallsEnd},
      {"junk_after_calls", false, true, kCallsBegin + v3_call("f", "{}") + kCallsEnd + "trailing junk"},
      {"truncated_args", false, true, kCallsBegin + kCallBegin + "function" + kSep + "get_weather\n```json\n{\"loc"},
      {"truncated_name", false, true, kCallsBegin + kCallBegin + "function" + kSep + "get_wea"},
      {"bare_call_begin", false, true, "Sure." + v3_call("ping", R"({"host": "a"})")},
      {"unclosed_reasoning", true, false, "still thinking\n\n"},
  };
}

Sample sample(const std::string& label) {
  for (const Sample& s : samples()) {
    if (label == s.label) return s;
  }
  ADD_FAILURE() << "no sample " << label;
  return {};
}

// Runs the text through a fresh parser in the given pieces and checks what every single delta
// must satisfy. Returns the accumulated message.
OutputDelta run_pieces(const Sample& s, const std::vector<std::string>& pieces, bool* saw_tools = nullptr) {
  OutputParser parser(s.in_reasoning, s.parse_tools);
  OutputDelta all;
  std::set<int> started;
  auto check = [&](const OutputDelta& d) {
    int last_index = -1;
    for (const ToolCallDelta& t : d.tool_calls) {
      EXPECT_GT(t.index, last_index) << s.label << ": tool call deltas out of order";
      last_index = t.index;
      if (started.insert(t.index).second) {
        EXPECT_FALSE(t.id.empty()) << s.label << ": first delta of call " << t.index << " lacks the id";
        EXPECT_FALSE(t.name.empty()) << s.label << ": first delta of call " << t.index << " lacks the name";
      } else {
        EXPECT_TRUE(t.id.empty() && t.name.empty()) << s.label << ": id/name repeated in a later delta";
        EXPECT_FALSE(t.arguments.empty()) << s.label << ": a later delta without arguments is not minimal";
      }
    }
    if (s.parse_tools) {
      for (const std::string& m : {kCallsBegin, kCallBegin, kCallEnd, kCallsEnd, kSep}) {
        EXPECT_EQ(d.content.find(m), std::string::npos) << s.label << ": marker leaked into content";
      }
    }
    all.append(d);
  };
  for (const std::string& p : pieces) check(parser.push(p));
  check(parser.finish());
  if (saw_tools != nullptr) *saw_tools = parser.saw_tool_calls();
  return all;
}

OutputDelta run_once(const Sample& s, bool* saw_tools = nullptr) { return run_pieces(s, {s.text}, saw_tools); }

// Ids are random per parser: check their form and distinctness, then blank them for comparisons.
OutputDelta without_ids(OutputDelta d) {
  std::set<std::string> ids;
  for (ToolCallDelta& t : d.tool_calls) {
    EXPECT_EQ(t.id.size(), 5u + 24u) << t.id;
    EXPECT_EQ(t.id.rfind("call_", 0), 0u) << t.id;
    EXPECT_EQ(t.id.find_first_not_of("0123456789abcdef", 5), std::string::npos) << t.id;
    EXPECT_TRUE(ids.insert(t.id).second) << "duplicate id " << t.id;
    t.id.clear();
  }
  return d;
}

void expect_same(const OutputDelta& want, const OutputDelta& got, const std::string& what) {
  EXPECT_EQ(want.content, got.content) << what;
  EXPECT_EQ(want.reasoning, got.reasoning) << what;
  ASSERT_EQ(want.tool_calls.size(), got.tool_calls.size()) << what;
  for (size_t i = 0; i < want.tool_calls.size(); ++i) {
    EXPECT_EQ(want.tool_calls[i].index, got.tool_calls[i].index) << what;
    EXPECT_EQ(want.tool_calls[i].id, got.tool_calls[i].id) << what;
    EXPECT_EQ(want.tool_calls[i].name, got.tool_calls[i].name) << what;
    EXPECT_EQ(want.tool_calls[i].arguments, got.tool_calls[i].arguments) << what;
  }
}

std::vector<std::string> bytes_of(const std::string& text) {
  std::vector<std::string> out;
  for (const char c : text) out.emplace_back(1, c);
  return out;
}

TEST(OutputParser, V3SingleCall) {
  bool saw = false;
  const OutputDelta d = run_once(sample("v3_one_call"), &saw);
  EXPECT_TRUE(saw);
  EXPECT_EQ(d.content, "");
  EXPECT_EQ(d.reasoning, "");
  ASSERT_EQ(d.tool_calls.size(), 1u);
  EXPECT_EQ(d.tool_calls[0].index, 0);
  EXPECT_EQ(d.tool_calls[0].name, "get_weather");
  EXPECT_EQ(d.tool_calls[0].arguments, R"({"location": "Paris", "unit": "°C"})");
}

TEST(OutputParser, V3TwoCallsAfterContent) {
  const OutputDelta d = without_ids(run_once(sample("v3_two_calls_after_content")));
  EXPECT_EQ(d.content, "Let me check both cities.\n\n");
  ASSERT_EQ(d.tool_calls.size(), 2u);
  EXPECT_EQ(d.tool_calls[0].index, 0);
  EXPECT_EQ(d.tool_calls[0].name, "get_weather");
  EXPECT_EQ(d.tool_calls[0].arguments, R"({"location":"Paris"})");
  EXPECT_EQ(d.tool_calls[1].index, 1);
  EXPECT_EQ(d.tool_calls[1].name, "get_weather");
  EXPECT_EQ(d.tool_calls[1].arguments, R"({"location":"東京"})");
}

TEST(OutputParser, V31Call) {
  const OutputDelta d = run_once(sample("v31_call"));
  ASSERT_EQ(d.tool_calls.size(), 1u);
  EXPECT_EQ(d.tool_calls[0].name, "search");
  EXPECT_EQ(d.tool_calls[0].arguments, R"({"query": "dseek \"cpu\"", "k": [1, 2]})");
  EXPECT_EQ(d.content, "");
}

TEST(OutputParser, V31FunctionNamedFunction) {
  // "function<sep>{" is V3.1 with a function named "function", not V3's type prefix.
  const Sample s{"fn", false, true, kCallBegin + "function" + kSep + R"({"a": 1})" + kCallEnd};
  const OutputDelta d = run_once(s);
  ASSERT_EQ(d.tool_calls.size(), 1u);
  EXPECT_EQ(d.tool_calls[0].name, "function");
  EXPECT_EQ(d.tool_calls[0].arguments, R"({"a": 1})");
}

TEST(OutputParser, Reasoning) {
  OutputDelta d = run_once(sample("r1_reasoning"));
  EXPECT_EQ(d.reasoning, "The user asks 2+2.\nThat is 4.");
  EXPECT_EQ(d.content, "The answer is **4**. ✓");
  d = run_once(sample("think_in_output"));
  EXPECT_EQ(d.reasoning, "Hmm, 東京 is Tokyo.");
  EXPECT_EQ(d.content, "Tokyo. 😀");
  d = run_once(sample("unclosed_reasoning"));
  EXPECT_EQ(d.reasoning, "still thinking");
  EXPECT_EQ(d.content, "");
}

TEST(OutputParser, ReasoningThenToolCall) {
  bool saw = false;
  const OutputDelta d = run_once(sample("reasoning_then_call"), &saw);
  EXPECT_TRUE(saw);
  EXPECT_EQ(d.reasoning, "Need the weather first.");
  EXPECT_EQ(d.content, "");
  ASSERT_EQ(d.tool_calls.size(), 1u);
  EXPECT_EQ(d.tool_calls[0].arguments, R"({"location": "Oslo"})");
}

TEST(OutputParser, ThinkOnlyCountsAtTheStart) {
  OutputDelta d = run_once({"late_think", false, false, "Hello <think>x</think> y"});
  EXPECT_EQ(d.content, "Hello <think>x</think> y");
  EXPECT_EQ(d.reasoning, "");
  d = run_once({"ws", false, false, "  hi"});
  EXPECT_EQ(d.content, "  hi");
  d = run_once({"only_ws", false, false, " \n "});
  EXPECT_EQ(d.content, " \n ");
  // With the prompt's <think> already open, a closing tag ends reasoning and content is plain.
  d = run_once({"no_close", true, false, "a</think>b</think>c"});
  EXPECT_EQ(d.reasoning, "a");
  EXPECT_EQ(d.content, "b</think>c");
}

TEST(OutputParser, LookalikesStayContent) {
  bool saw = true;
  const Sample s = sample("lookalikes_in_content");
  const OutputDelta d = run_once(s, &saw);
  EXPECT_FALSE(saw);
  EXPECT_EQ(d.content, s.text);  // the trailing "<｜tool▁call" never completed a marker
  EXPECT_TRUE(d.tool_calls.empty());
}

TEST(OutputParser, StrayMarkersAreDroppedFromContent) {
  const Sample s = sample("stray_markers_in_content");
  EXPECT_EQ(run_once(s).content, "abcd");
}

TEST(OutputParser, MarkersArePlainContentWithoutTools) {
  bool saw = true;
  const Sample s = sample("markers_without_tools");
  const OutputDelta d = run_once(s, &saw);
  EXPECT_FALSE(saw);
  EXPECT_EQ(d.content, s.text);
}

TEST(OutputParser, TextAfterCallsEndIsDropped) {
  const OutputDelta d = run_once(sample("junk_after_calls"));
  EXPECT_EQ(d.content, "");
  ASSERT_EQ(d.tool_calls.size(), 1u);
  EXPECT_EQ(d.tool_calls[0].name, "f");
  EXPECT_EQ(d.tool_calls[0].arguments, "{}");
}

TEST(OutputParser, TruncatedCalls) {
  bool saw = false;
  OutputDelta d = run_once(sample("truncated_args"), &saw);
  EXPECT_TRUE(saw);
  ASSERT_EQ(d.tool_calls.size(), 1u);
  EXPECT_EQ(d.tool_calls[0].name, "get_weather");
  EXPECT_EQ(d.tool_calls[0].arguments, "{\"loc");
  // A name cut off may be incomplete: no call is reported.
  d = run_once(sample("truncated_name"), &saw);
  EXPECT_FALSE(saw);
  EXPECT_TRUE(d.empty());
}

TEST(OutputParser, BareCallBegin) {
  const OutputDelta d = run_once(sample("bare_call_begin"));
  EXPECT_EQ(d.content, "Sure.");
  ASSERT_EQ(d.tool_calls.size(), 1u);
  EXPECT_EQ(d.tool_calls[0].name, "ping");
  EXPECT_EQ(d.tool_calls[0].arguments, R"({"host": "a"})");
}

TEST(OutputParser, MalformedCallsNeverThrow) {
  const std::vector<std::string> texts = {
      kCallsBegin + kCallBegin + kSep + kSep + kCallEnd + kCallsEnd,
      kCallsBegin + kCallBegin + "function" + kSep + "\n```json\n{}" + kCallEnd,
      kCallsBegin + kCallBegin + "function" + kSep + "f```" + kCallBegin + "g" + kSep + "{}" + kCallsBegin + kCallEnd,
      kCallBegin + "name_only" + kCallEnd + kCallBegin + "function" + kCallEnd,
      kCallBegin + "function" + kSep + "f\n``x" + kCallEnd,
      "<think>" + kCallBegin + "</think>" + kCallBegin,
  };
  for (const std::string& t : texts) {
    for (const bool r : {false, true}) {
      EXPECT_NO_THROW(run_pieces({"malformed", r, true, t}, bytes_of(t)));
    }
  }
  // A V3.1 call without arguments, closed properly, is reported with empty arguments.
  const OutputDelta d = run_once({"no_args", false, true, texts[3]});
  ASSERT_EQ(d.tool_calls.size(), 1u);
  EXPECT_EQ(d.tool_calls[0].name, "name_only");
  EXPECT_EQ(d.tool_calls[0].arguments, "");
}

// The streaming guarantee on every sample: every 2-way split and 1-byte pieces.
TEST(OutputParser, AnySplitGivesTheOneShotResult) {
  for (const Sample& s : samples()) {
    const OutputDelta want = without_ids(run_once(s));
    for (size_t cut = 0; cut <= s.text.size(); ++cut) {
      const OutputDelta got = without_ids(run_pieces(s, {s.text.substr(0, cut), s.text.substr(cut)}));
      expect_same(want, got, std::string(s.label) + " split at " + std::to_string(cut));
      if (HasFailure()) return;
    }
    expect_same(want, without_ids(run_pieces(s, bytes_of(s.text))), std::string(s.label) + " in bytes");
  }
}

// Random texts from marker fragments and random chunkings (seeded; the seed is printed on failure).
TEST(OutputParser, RandomTextsAndChunkings) {
  const std::vector<std::string> atoms = {
      "<think>", "</think>", kCallsBegin, kCallsEnd, kCallBegin, kCallEnd, kSep, "function", "get", "\n", " ",
      "```", "```json\n", "`", "{\"a\": 1}", "[", "{", "x", "é", "東", "😀", "<", "<｜", "<｜tool", "</th"};
  const uint32_t seed = 20240611;
  std::mt19937 rng(seed);
  for (int iter = 0; iter < 3000; ++iter) {
    std::string text;
    const int n = int(rng() % 14);
    for (int i = 0; i < n; ++i) text += atoms[rng() % atoms.size()];
    const Sample s{"random", rng() % 2 == 0, rng() % 4 != 0, text};
    std::vector<std::string> pieces;
    for (size_t at = 0; at < text.size();) {
      const size_t len = 1 + rng() % 7;
      pieces.push_back(text.substr(at, len));
      at += len;
    }
    expect_same(without_ids(run_once(s)), without_ids(run_pieces(s, pieces)),
                "seed " + std::to_string(seed) + " iter " + std::to_string(iter) + " text: " + text);
    if (HasFailure()) return;
  }
}

TEST(OutputParser, HoldsBackOnlyWhatIsUndecided) {
  OutputParser p(false, true);
  EXPECT_EQ(p.push("Hello <").content, "Hello ");  // "<" may start a marker
  EXPECT_EQ(p.push("b").content, "<b");
  EXPECT_EQ(p.push(" <｜tool").content, " ");
  OutputDelta d = p.push("▁calls▁begin｜>" + kCallBegin + "function" + kSep + "get_");
  EXPECT_TRUE(d.empty());  // the name is not complete yet
  d = p.push("weather\n```json\n{\"location\": \"Pa");
  ASSERT_EQ(d.tool_calls.size(), 1u);
  EXPECT_EQ(d.tool_calls[0].name, "get_weather");
  EXPECT_FALSE(d.tool_calls[0].id.empty());
  EXPECT_EQ(d.tool_calls[0].arguments, "{\"location\": \"Pa");  // arguments stream before the call ends
  d = p.push("ris\"}\n``");
  ASSERT_EQ(d.tool_calls.size(), 1u);
  EXPECT_EQ(d.tool_calls[0].id, "");
  EXPECT_EQ(d.tool_calls[0].name, "");
  EXPECT_EQ(d.tool_calls[0].arguments, "ris\"}");  // the closing fence is held, then dropped
  EXPECT_TRUE(p.push("`" + kCallEnd + kCallsEnd).empty());
  EXPECT_TRUE(p.finish().empty());
  EXPECT_TRUE(p.saw_tool_calls());
  EXPECT_TRUE(p.push("more").empty());  // after finish() input is ignored
}

TEST(OutputParser, HoldsBackSplitUtf8) {
  OutputParser p(false, false);
  const std::string e = "é";  // 2 bytes
  EXPECT_EQ(p.push(e.substr(0, 1)).content, "");
  EXPECT_EQ(p.push(e.substr(1) + "x").content, "éx");
  // A cut-off sequence is flushed at finish (the JSON writer replaces it).
  EXPECT_EQ(p.push("\xE6\x9D").content, "");
  EXPECT_EQ(p.finish().content, "\xE6\x9D");
}

TEST(OutputParser, ReasoningNewlinesAreTrimmedWhileStreaming) {
  OutputParser p(true, false);
  EXPECT_EQ(p.push("\nStep 1.\n").reasoning, "Step 1.");
  EXPECT_EQ(p.push("\nStep 2.").reasoning, "\n\nStep 2.");
  OutputDelta d = p.push("\n</think>\n\n");
  EXPECT_TRUE(d.empty());
  d = p.push("Answer");
  EXPECT_EQ(d.content, "Answer");
  EXPECT_EQ(d.reasoning, "");
}

TEST(OutputParser, AppendMergesToolCallsByIndex) {
  OutputDelta acc;
  OutputDelta a;
  a.content = "x";
  a.tool_calls.push_back({0, "call_1", "f", "{\"a\""});
  OutputDelta b;
  b.reasoning = "r";
  b.tool_calls.push_back({0, "", "", ": 1}"});
  b.tool_calls.push_back({1, "call_2", "g", ""});
  acc.append(a);
  acc.append(b);
  EXPECT_EQ(acc.content, "x");
  EXPECT_EQ(acc.reasoning, "r");
  ASSERT_EQ(acc.tool_calls.size(), 2u);
  EXPECT_EQ(acc.tool_calls[0].id, "call_1");
  EXPECT_EQ(acc.tool_calls[0].name, "f");
  EXPECT_EQ(acc.tool_calls[0].arguments, "{\"a\": 1}");
  EXPECT_EQ(acc.tool_calls[1].name, "g");
}

// Real tokens: the sample outputs encoded with DeepSeek-V3's tokenizer and decoded one token at a
// time with special tokens kept, as the server feeds the parser.
TEST(OutputParser, V3TokenByToken) {
  const Tokenizer tok = Tokenizer::load(test::shared_dir() + "/data/tokenizers/deepseek-v3");
  ASSERT_TRUE(tok.token_to_id(kCallsBegin).has_value());  // the markers are single tokens
  ASSERT_TRUE(tok.token_to_id(kSep).has_value());
  for (const Sample& s : samples()) {
    const std::vector<int32_t> ids = tok.encode(s.text, /*add_special_tokens=*/false);
    IncrementalDecoder dec(tok, /*skip_special_tokens=*/false);
    std::vector<std::string> pieces;
    for (const int32_t id : ids) pieces.push_back(dec.feed(id));
    pieces.push_back(dec.flush());
    expect_same(without_ids(run_once(s)), without_ids(run_pieces(s, pieces)), std::string(s.label) + " by token");
  }
}

}  // namespace
}  // namespace dseek::server
