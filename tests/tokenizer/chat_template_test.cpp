// ChatTemplate against the DeepSeek-V3 golden conversations (shared/golden/tokenizer/chat_template.jsonl,
// rendered by @huggingface/jinja and cross-checked with Python Jinja2 as transformers configures it):
// every `rendered` string byte for byte, and encode(rendered) == ids with dseek::Tokenizer.
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <functional>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/shared_dir.h"
#include "dseek/core/error.h"
#include "dseek/tokenizer/chat_template.h"
#include "dseek/tokenizer/tokenizer.h"

namespace dseek {
namespace {

std::string v3_dir() { return test::shared_dir() + "/data/tokenizers/deepseek-v3"; }

std::vector<nlohmann::json> golden_cases() {
  const std::string path = test::shared_dir() + "/golden/tokenizer/chat_template.jsonl";
  std::ifstream in(path);
  EXPECT_TRUE(in.good()) << "missing " << path;
  std::vector<nlohmann::json> rows;
  std::string line;
  while (std::getline(in, line)) {
    if (!line.empty()) rows.push_back(nlohmann::json::parse(line));
  }
  return rows;
}

std::string render_case(const ChatTemplate& t, const nlohmann::json& c) {
  const nlohmann::json* tools = c.contains("tools") ? &c["tools"] : nullptr;
  return t.render(c["messages"], c["add_generation_prompt"].get<bool>(), tools);
}

// Index of the first differing byte, for readable failures.
size_t first_diff(const std::string& a, const std::string& b) {
  size_t i = 0;
  while (i < a.size() && i < b.size() && a[i] == b[i]) ++i;
  return i;
}

TEST(ChatTemplateGolden, RenderedMatchesByteForByte) {
  const ChatTemplate t = ChatTemplate::load(v3_dir());
  const auto cases = golden_cases();
  ASSERT_EQ(cases.size(), 42u);
  int passed = 0;
  for (const auto& c : cases) {
    const std::string id = c["id"].get<std::string>();
    const std::string want = c["rendered"].get<std::string>();
    std::string got;
    try {
      got = render_case(t, c);
    } catch (const Error& e) {
      ADD_FAILURE() << id << ": " << e.what();
      continue;
    }
    if (got == want) {
      ++passed;
    } else {
      const size_t d = first_diff(got, want);
      ADD_FAILURE() << id << ": mismatch at byte " << d << "\n  got:  " << got.substr(d, 80)
                    << "\n  want: " << want.substr(d, 80);
    }
  }
  EXPECT_EQ(passed, 42);
}

TEST(ChatTemplateGolden, EncodedRenderMatchesIds) {
  const ChatTemplate t = ChatTemplate::load(v3_dir());
  const Tokenizer tok = Tokenizer::load(v3_dir());
  for (const auto& c : golden_cases()) {
    const std::string id = c["id"].get<std::string>();
    const auto want = c["ids"].get<std::vector<int32_t>>();
    // The golden `rendered` must encode to `ids` (tokenizer check) and so must our render.
    EXPECT_EQ(tok.encode(c["rendered"].get<std::string>(), false), want) << id;
    EXPECT_EQ(tok.encode(render_case(t, c), false), want) << id;
  }
}

TEST(ChatTemplateLoad, ReadsSpecialTokensFromObjects) {
  const ChatTemplate t = ChatTemplate::load(v3_dir());
  ASSERT_TRUE(t.bos_token().has_value());
  EXPECT_EQ(*t.bos_token(), "<｜begin▁of▁sentence｜>");
  EXPECT_EQ(*t.eos_token(), "<｜end▁of▁sentence｜>");
}

class TempDir {
 public:
  TempDir() {
    path_ = std::filesystem::temp_directory_path() /
            ("dseek_chat_template_" + std::to_string(::testing::UnitTest::GetInstance()->random_seed()) + "_" +
             ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::create_directories(path_);
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  std::string str() const { return path_.string(); }
  void write(const std::string& name, const std::string& text) const { std::ofstream(path_ / name) << text; }

 private:
  std::filesystem::path path_;
};

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(ChatTemplateLoad, ListFormPicksDefault) {
  TempDir d;
  d.write("tokenizer_config.json", R"({"bos_token": "<s>", "eos_token": {"content": "</s>"},
    "chat_template": [{"name": "tool_use", "template": "TOOLS"},
                      {"name": "default", "template": "{{ bos_token }}{% for m in messages %}{{ m.content }}{{ eos_token }}{% endfor %}"}]})");
  const ChatTemplate t = ChatTemplate::load(d.str());
  EXPECT_EQ(t.render(nlohmann::json::parse(R"([{"role":"user","content":"hi"}])"), false), "<s>hi</s>");
}

TEST(ChatTemplateLoad, ErrorsNameFileAndField) {
  TempDir d;
  d.write("tokenizer_config.json", R"({"bos_token": "<s>"})");
  std::string msg = error_of([&] { ChatTemplate::load(d.str()); });
  EXPECT_NE(msg.find("tokenizer_config.json"), std::string::npos) << msg;
  EXPECT_NE(msg.find("chat_template"), std::string::npos) << msg;

  d.write("tokenizer_config.json", R"({"chat_template": [{"name": "rag", "template": "x"}]})");
  msg = error_of([&] { ChatTemplate::load(d.str()); });
  EXPECT_NE(msg.find("default"), std::string::npos) << msg;
  EXPECT_NE(msg.find("rag"), std::string::npos) << msg;

  d.write("tokenizer_config.json", R"({"chat_template": "x", "bos_token": 5})");
  msg = error_of([&] { ChatTemplate::load(d.str()); });
  EXPECT_NE(msg.find("bos_token"), std::string::npos) << msg;

  d.write("tokenizer_config.json", "{ not json");
  msg = error_of([&] { ChatTemplate::load(d.str()); });
  EXPECT_NE(msg.find("tokenizer_config.json"), std::string::npos) << msg;

  msg = error_of([&] { ChatTemplate::load(d.str() + "/missing"); });
  EXPECT_NE(msg.find("missing"), std::string::npos) << msg;
}

TEST(ChatTemplateLoad, SyntaxErrorCarriesLabelLineAndColumn) {
  TempDir d;
  d.write("tokenizer_config.json", R"({"chat_template": "line one\n{% if x %}\n{{ 1 + }}\n{% endif %}"})");
  const std::string msg = error_of([&] { ChatTemplate::load(d.str()); });
  EXPECT_NE(msg.find("tokenizer_config.json: chat_template:3:"), std::string::npos) << msg;
}

TEST(ChatTemplateLoad, FallsBackToChatTemplateJinja) {
  TempDir d;
  d.write("tokenizer_config.json", R"({"eos_token": "</s>"})");
  d.write("chat_template.jinja", "{% for m in messages %}[{{ m.role }}]{% endfor %}{{ eos_token }}\n");
  const ChatTemplate t = ChatTemplate::load(d.str());
  EXPECT_EQ(t.render(nlohmann::json::parse(R"([{"role":"user","content":"hi"}])"), false), "[user]</s>");
}

TEST(ChatTemplateRender, VariablesToolsAndExtra) {
  const ChatTemplate t = ChatTemplate::parse(
      "{{ tools is defined }}|{{ add_generation_prompt }}|{{ bos_token is defined }}|{{ flag }}|{{ tools|length if tools is defined }}",
      "test");
  const auto msgs = nlohmann::json::array();
  EXPECT_EQ(t.render(msgs, false), "False|False|False||");
  const auto tools = nlohmann::json::parse(R"([{"type":"function","function":{"name":"f"}}])");
  EXPECT_EQ(t.render(msgs, true, &tools, nlohmann::json{{"flag", "on"}}), "True|True|False|on|1");
}

TEST(ChatTemplateRender, RaiseExceptionBecomesError) {
  const ChatTemplate t = ChatTemplate::parse(
      "{% for m in messages %}\n{% if m.role not in ['user', 'assistant'] %}"
      "{{ raise_exception('Unsupported role: ' + m.role) }}{% endif %}{% endfor %}",
      "test");
  const std::string msg =
      error_of([&] { t.render(nlohmann::json::parse(R"([{"role":"user","content":"a"},{"role":"robot"}])"), false); });
  EXPECT_NE(msg.find("Unsupported role: robot"), std::string::npos) << msg;
  EXPECT_NE(msg.find("test:2:"), std::string::npos) << msg;
}

}  // namespace
}  // namespace dseek
