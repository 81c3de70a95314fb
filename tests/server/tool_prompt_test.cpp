// tool_system_prompt and template_mentions_tools.
#include "dseek/server/tool_prompt.h"

#include <gtest/gtest.h>

#include <fstream>
#include <sstream>
#include <string>

#include "common/shared_dir.h"
#include "dseek/server/openai_request.h"
#include "dseek/server/output_parser.h"

namespace dseek::server {
namespace {

nlohmann::ordered_json tools() {
  return parse_chat_request(R"({"messages": [{"role": "user", "content": "x"}], "tools": [
      {"type": "function", "function": {"name": "get_weather", "description": "Current weather in a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}},
      {"type": "function", "function": {"name": "now"}}]})")
      .tools;
}

TEST(ToolPrompt, ListsEveryFunction) {
  const std::string s = tool_system_prompt(tools(), "auto");
  EXPECT_NE(s.find("### get_weather\nDescription: Current weather in a city.\n"
                   R"(Parameters: {"type":"object","properties":{"city":{"type":"string"}},"required":["city"]})"),
            std::string::npos)
      << s;
  EXPECT_NE(s.find("### now\nParameters: {}"), std::string::npos) << s;
  EXPECT_NE(s.find("<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>NAME\n```json\n"), std::string::npos);
  EXPECT_NE(s.find("only when it helps"), std::string::npos);
}

TEST(ToolPrompt, ToolChoice) {
  EXPECT_NE(tool_system_prompt(tools(), "required").find("must call at least one function"), std::string::npos);
  EXPECT_NE(tool_system_prompt(tools(), "now").find("must call the function now"), std::string::npos);
  EXPECT_NE(tool_system_prompt(tools(), "none").find("Do not call any function"), std::string::npos);
}

// The call format the prompt teaches is the one OutputParser reads back.
TEST(ToolPrompt, ExampleCallParses) {
  const std::string s = tool_system_prompt(tools(), "auto");
  const std::string begin = "<｜tool▁calls▁begin｜>", end = "<｜tool▁calls▁end｜>";
  const size_t b = s.find(begin);
  const size_t e = s.find(end, b);
  ASSERT_NE(b, std::string::npos);
  ASSERT_NE(e, std::string::npos);
  OutputParser p(false, true);
  OutputDelta d = p.push(s.substr(b, e + end.size() - b));
  d.append(p.finish());
  ASSERT_EQ(d.tool_calls.size(), 1u);
  EXPECT_EQ(d.tool_calls[0].name, "NAME");
  EXPECT_EQ(d.tool_calls[0].arguments, R"({"argument": "value"})");
  EXPECT_EQ(d.content, "");
}

TEST(ToolPrompt, TemplateMentionsTools) {
  EXPECT_TRUE(template_mentions_tools("{% if tools %}{{ tools | tojson }}{% endif %}"));
  EXPECT_TRUE(template_mentions_tools("{%- for t in tools -%}{{ t.name }}{% endfor %}"));
  EXPECT_TRUE(template_mentions_tools("{{ 'a' ~ (tools|length) }}"));
  EXPECT_FALSE(template_mentions_tools("tools are listed below: {{ messages[0]['content'] }}"));  // outside tags
  EXPECT_FALSE(template_mentions_tools("{{ message['tools'] }}{{ ns.tools }}{{ \"tools\" }}"));
  EXPECT_FALSE(template_mentions_tools("{# tools #}{% for tool in message['tool_calls'] %}{% endfor %}"));
  EXPECT_FALSE(template_mentions_tools("{{ my_tools }}{{ tools_x }}{% if 'it\\'s tools' %}{% endif %}"));
  EXPECT_TRUE(template_mentions_tools("{{ unterminated tools"));  // no closing }}: still read as a tag
}

TEST(ToolPrompt, DeepSeekV3TemplateIgnoresTools) {
  std::ifstream f(test::shared_dir() + "/data/tokenizers/deepseek-v3/tokenizer_config.json");
  ASSERT_TRUE(f.good());
  std::stringstream ss;
  ss << f.rdbuf();
  const auto cfg = nlohmann::json::parse(ss.str());
  const std::string tmpl = cfg.at("chat_template").get<std::string>();
  EXPECT_NE(tmpl.find("tool_calls"), std::string::npos);
  EXPECT_FALSE(template_mentions_tools(tmpl));
}

}  // namespace
}  // namespace dseek::server
