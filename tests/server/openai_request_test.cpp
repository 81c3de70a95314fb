// parse_chat_request / parse_completion_request: defaults, normalisation for the DeepSeek chat
// template, and errors that name the field.
#include "dseek/server/openai_request.h"

#include <gtest/gtest.h>

#include <functional>
#include <string>

#include "common/shared_dir.h"
#include "dseek/tokenizer/chat_template.h"

namespace dseek::server {
namespace {

using Json = nlohmann::ordered_json;

// The ApiError fn throws; fails the test when it throws nothing or something else.
ApiError error_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const ApiError& e) {
    return e;
  } catch (const std::exception& e) {
    ADD_FAILURE() << "threw a non-ApiError: " << e.what();
    return ApiError(0, "", "");
  }
  ADD_FAILURE() << "no ApiError thrown";
  return ApiError(0, "", "");
}

ApiError chat_error(const std::string& body) {
  return error_of([&] { (void)parse_chat_request(body); });
}

ApiError completion_error(const std::string& body) {
  return error_of([&] { (void)parse_completion_request(body); });
}

// A chat body with one user message plus `extra` members (JSON text without braces).
std::string chat_body(const std::string& extra) {
  std::string b = R"({"model": "m", "messages": [{"role": "user", "content": "hi"}])";
  if (!extra.empty()) b += ", " + extra;
  return b + "}";
}

TEST(OpenAIRequest, ChatDefaults) {
  const ChatRequest r = parse_chat_request(chat_body(""));
  EXPECT_EQ(r.model, "m");
  EXPECT_FALSE(r.stream);
  EXPECT_FALSE(r.include_usage);
  EXPECT_EQ(r.sampling.temperature, 1.0f);
  EXPECT_EQ(r.sampling.top_p, 1.0f);
  EXPECT_EQ(r.sampling.top_k, 0);
  EXPECT_EQ(r.sampling.min_p, 0.0f);
  EXPECT_EQ(r.sampling.repetition_penalty, 1.0f);
  EXPECT_EQ(r.sampling.frequency_penalty, 0.0f);
  EXPECT_EQ(r.sampling.presence_penalty, 0.0f);
  EXPECT_FALSE(r.has_seed);
  EXPECT_FALSE(r.max_tokens.has_value());
  EXPECT_TRUE(r.stop.empty());
  EXPECT_FALSE(r.logprobs);
  EXPECT_TRUE(r.tools.is_null());
  EXPECT_EQ(r.tool_choice, "auto");
  EXPECT_TRUE(r.add_generation_prompt);
  EXPECT_EQ(r.messages.dump(), R"([{"role":"user","content":"hi"}])");
}

TEST(OpenAIRequest, ChatFields) {
  const ChatRequest r = parse_chat_request(chat_body(
      R"("stream": true, "stream_options": {"include_usage": true}, "temperature": 0.7, "top_p": 0.9,
         "top_k": 40, "min_p": 0.05, "repetition_penalty": 1.1, "frequency_penalty": -0.5,
         "presence_penalty": 2, "seed": 42, "max_tokens": 100, "stop": ["a", "", "b"],
         "logprobs": true, "top_logprobs": 5, "user": "u1", "unknown_field": {"x": [1]},
         "n": 1, "logit_bias": {}, "parallel_tool_calls": false, "add_generation_prompt": false)"));
  EXPECT_TRUE(r.stream);
  EXPECT_TRUE(r.include_usage);
  EXPECT_FLOAT_EQ(r.sampling.temperature, 0.7f);
  EXPECT_FLOAT_EQ(r.sampling.top_p, 0.9f);
  EXPECT_EQ(r.sampling.top_k, 40);
  EXPECT_FLOAT_EQ(r.sampling.min_p, 0.05f);
  EXPECT_FLOAT_EQ(r.sampling.repetition_penalty, 1.1f);
  EXPECT_FLOAT_EQ(r.sampling.frequency_penalty, -0.5f);
  EXPECT_FLOAT_EQ(r.sampling.presence_penalty, 2.0f);
  EXPECT_TRUE(r.has_seed);
  EXPECT_EQ(r.sampling.seed, 42u);
  EXPECT_EQ(r.max_tokens, 100);
  EXPECT_EQ(r.stop, (std::vector<std::string>{"a", "b"}));
  EXPECT_TRUE(r.logprobs);
  EXPECT_EQ(r.top_logprobs, 5);
  EXPECT_EQ(r.user, "u1");
  EXPECT_FALSE(r.add_generation_prompt);
}

TEST(OpenAIRequest, NullMeansUnset) {
  const ChatRequest r = parse_chat_request(chat_body(
      R"("temperature": null, "top_p": null, "max_tokens": null, "stop": null, "seed": null, "n": null,
         "stream": null, "tools": null, "tool_choice": null, "model": null)"));
  EXPECT_EQ(r.sampling.temperature, 1.0f);
  EXPECT_FALSE(r.max_tokens.has_value());
  EXPECT_FALSE(r.has_seed);
  EXPECT_EQ(r.model, "");
  EXPECT_EQ(r.tool_choice, "auto");
}

TEST(OpenAIRequest, SamplingEdgeCases) {
  // temperature 0 is greedy; top_p 0 is made greedy (Sampler wants top_p in (0, 1]).
  EXPECT_EQ(parse_chat_request(chat_body(R"("temperature": 0)")).sampling.temperature, 0.0f);
  const ChatRequest r = parse_chat_request(chat_body(R"("top_p": 0, "temperature": 1.5)"));
  EXPECT_EQ(r.sampling.temperature, 0.0f);
  EXPECT_EQ(r.sampling.top_p, 1.0f);
  EXPECT_EQ(parse_chat_request(chat_body(R"("top_k": -1)")).sampling.top_k, 0);  // vLLM's "off"
  // max_completion_tokens wins over max_tokens, whatever the order.
  EXPECT_EQ(parse_chat_request(chat_body(R"("max_completion_tokens": 7, "max_tokens": 9)")).max_tokens, 7);
  EXPECT_EQ(parse_chat_request(chat_body(R"("max_tokens": 9, "max_completion_tokens": 7)")).max_tokens, 7);
  EXPECT_EQ(parse_chat_request(chat_body(R"("max_tokens": 16.0)")).max_tokens, 16);
  EXPECT_EQ(parse_chat_request(chat_body(R"("stop": "###")")).stop, std::vector<std::string>{"###"});
  EXPECT_EQ(parse_chat_request(chat_body(R"("seed": 18446744073709551615)")).sampling.seed, UINT64_MAX);
  EXPECT_EQ(parse_chat_request(chat_body(R"("seed": -1)")).sampling.seed, UINT64_MAX);
}

struct BadField {
  std::string extra;    // members added to a valid body
  std::string param;    // expected ApiError::param
  std::string message;  // expected substring of the message
};

TEST(OpenAIRequest, InvalidFieldsNameTheField) {
  const std::vector<BadField> cases = {
      {R"("temperature": 2.5)", "temperature", "'temperature' must be a number between 0 and 2"},
      {R"("temperature": "hot")", "temperature", "'temperature' must be a number between 0 and 2"},
      {R"("temperature": -0.1)", "temperature", "between 0 and 2"},
      {R"("temperature": true)", "temperature", "must be a number"},
      {R"("top_p": 1.5)", "top_p", "'top_p' must be a number between 0 and 1"},
      {R"("frequency_penalty": 3)", "frequency_penalty", "between -2 and 2"},
      {R"("presence_penalty": -2.5)", "presence_penalty", "between -2 and 2"},
      {R"("top_k": 1.5)", "top_k", "'top_k' must be an integer"},
      {R"("top_k": -2)", "top_k", "'top_k' must be an integer between -1"},
      {R"("min_p": 1)", "min_p", "'min_p' must be a number in [0, 1)"},
      {R"("repetition_penalty": 0)", "repetition_penalty", "greater than 0"},
      {R"("seed": "x")", "seed", "'seed' must be an integer"},
      {R"("max_tokens": 0)", "max_tokens", "'max_tokens' must be at least 1"},
      {R"("max_tokens": -5)", "max_tokens", "at least 1"},
      {R"("max_tokens": "10")", "max_tokens", "'max_tokens' must be an integer"},
      {R"("max_completion_tokens": 0)", "max_completion_tokens", "at least 1"},
      {R"("max_tokens": 1e300)", "max_tokens", "must be an integer"},
      {R"("n": 17)", "n", "'n' must be an integer between 1 and 16"},
      {R"("n": 0)", "n", "'n' must be an integer between 1 and 16"},
      {R"("n": "1")", "n", "'n' must be an integer"},
      {R"("stop": ["a", "b", "c", "d", "e"])", "stop", "at most 4"},
      {R"("stop": [1])", "stop[0]", "'stop[0]' must be a string"},
      {R"("stop": 5)", "stop", "'stop' must be a string or an array"},
      {R"("stream": "yes")", "stream", "'stream' must be a boolean"},
      {R"("stream_options": {"include_usage": true})", "stream_options", "only allowed when 'stream' is true"},
      {R"("stream": true, "stream_options": {"include_usage": 1})", "stream_options.include_usage", "must be a boolean"},
      {R"("stream": true, "stream_options": 3)", "stream_options", "must be an object"},
      {R"("logprobs": 1)", "logprobs", "'logprobs' must be a boolean"},
      {R"("logprobs": true, "top_logprobs": 21)", "top_logprobs", "between 0 and 20"},
      {R"("top_logprobs": 2)", "top_logprobs", "needs 'logprobs'"},
      {R"("logprobs": "true")", "logprobs", "'logprobs' must be a boolean"},
      {R"("logprobs": false, "top_logprobs": 3)", "top_logprobs", "needs 'logprobs'"},
      {R"("logprobs": true, "top_logprobs": -1)", "top_logprobs", "between 0 and 20"},
      {R"("logprobs": true, "top_logprobs": 2.5)", "top_logprobs", "'top_logprobs' must be an integer"},
      {R"("logprobs": true, "top_logprobs": "3")", "top_logprobs", "'top_logprobs' must be an integer"},
      {R"("user": 5)", "user", "'user' must be a string"},
      {R"("model": 5)", "model", "'model' must be a string"},
      {R"("logit_bias": {"50256": -100})", "logit_bias", "not supported"},
      {R"("add_generation_prompt": 1)", "add_generation_prompt", "must be a boolean"},
  };
  for (const BadField& c : cases) {
    const ApiError e = chat_error(chat_body(c.extra));
    EXPECT_EQ(e.status, 400) << c.extra;
    EXPECT_EQ(e.type, "invalid_request_error") << c.extra;
    EXPECT_EQ(e.param, c.param) << c.extra;
    EXPECT_NE(e.message.find(c.message), std::string::npos) << c.extra << " -> " << e.message;
  }
}

TEST(OpenAIRequest, MalformedJsonNamesTheByte) {
  ApiError e = chat_error(R"({"messages": [}")");
  EXPECT_EQ(e.status, 400);
  EXPECT_EQ(e.code, "invalid_json");
  EXPECT_NE(e.message.find("at byte offset 14"), std::string::npos) << e.message;
  e = chat_error("");
  EXPECT_NE(e.message.find("at byte offset 0"), std::string::npos) << e.message;
  // A number beyond double's range is nlohmann's out_of_range, not a parse_error (found by fuzzing).
  e = chat_error(R"({"s": "1e999", "temperature": 1e999})");
  EXPECT_EQ(e.code, "invalid_json");
  EXPECT_NE(e.message.find("at byte offset 30"), std::string::npos) << e.message;
  e = completion_error("1110e1110e2");
  EXPECT_EQ(e.code, "invalid_json");
  e = chat_error("[1, 2]");
  EXPECT_NE(e.message.find("must be a JSON object"), std::string::npos) << e.message;
  e = chat_error("{\"messages\": \"\xFF\"}");  // invalid UTF-8 in a string
  EXPECT_EQ(e.code, "invalid_json");
  // Deep nesting is refused before parsing.
  e = chat_error(chat_body("\"x\": " + std::string(100, '[') + std::string(100, ']')));
  EXPECT_NE(e.message.find("nests deeper than 64"), std::string::npos) << e.message;
  // Brackets inside strings do not count.
  EXPECT_NO_THROW(parse_chat_request(chat_body("\"x\": \"" + std::string(100, '[') + "\"")));
}

TEST(OpenAIRequest, MessagesAreNormalised) {
  const ChatRequest r = parse_chat_request(R"({"messages": [
      {"role": "developer", "content": "Be brief."},
      {"role": "user", "content": [{"type": "text", "text": "line 1"}, {"type": "text", "text": "line 2"}], "name": "ann"},
      {"role": "assistant", "content": "", "reasoning_content": "dropped", "tool_calls": [
        {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}},
        {"id": "call_2", "function": {"name": "now", "arguments": "{}"}}]},
      {"role": "tool", "tool_call_id": "call_1", "content": [{"type": "text", "text": "22 C"}]},
      {"role": "tool", "tool_call_id": "call_2", "content": "12:00"},
      {"role": "assistant", "content": null},
      {"role": "assistant", "content": "Done.", "tool_calls": []}]})");
  const Json want = Json::parse(R"([
      {"role": "system", "content": "Be brief."},
      {"role": "user", "content": "line 1\nline 2", "name": "ann"},
      {"role": "assistant", "content": null, "tool_calls": [
        {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}},
        {"id": "call_2", "type": "function", "function": {"name": "now", "arguments": "{}"}}]},
      {"role": "tool", "content": "22 C", "tool_call_id": "call_1"},
      {"role": "tool", "content": "12:00", "tool_call_id": "call_2"},
      {"role": "assistant", "content": ""},
      {"role": "assistant", "content": "Done."}])");
  EXPECT_EQ(r.messages.dump(), want.dump());
}

TEST(OpenAIRequest, InvalidMessages) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {R"({"model": "m"})", "messages"},
      {R"({"messages": []})", "messages"},
      {R"({"messages": {}})", "messages"},
      {R"({"messages": [5]})", "messages[0]"},
      {R"({"messages": [{"content": "x"}]})", "messages[0].role"},
      {R"({"messages": [{"role": "robot", "content": "x"}]})", "messages[0].role"},
      {R"({"messages": [{"role": "user"}]})", "messages[0].content"},
      {R"({"messages": [{"role": "user", "content": 5}]})", "messages[0].content"},
      {R"({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]})",
       "messages[0].content[0].type"},
      {R"({"messages": [{"role": "user", "content": [{"type": "text"}]}]})", "messages[0].content[0].text"},
      {R"({"messages": [{"role": "user", "content": ["x"]}]})", "messages[0].content[0]"},
      {R"({"messages": [{"role": "user", "content": "x", "name": 1}]})", "messages[0].name"},
      {R"({"messages": [{"role": "tool", "content": "x"}]})", "messages[0].tool_call_id"},
      {R"({"messages": [{"role": "assistant", "tool_calls": {}}]})", "messages[0].tool_calls"},
      {R"({"messages": [{"role": "assistant", "tool_calls": [{"type": "function", "function": {"name": "f"}}]}]})",
       "messages[0].tool_calls[0].id"},
      {R"({"messages": [{"role": "assistant", "tool_calls": [{"id": "a", "function": {"arguments": "{}"}}]}]})",
       "messages[0].tool_calls[0].function.name"},
      {R"({"messages": [{"role": "assistant", "tool_calls": [{"id": "a", "function": {"name": "f", "arguments": 5}}]}]})",
       "messages[0].tool_calls[0].function.arguments"},
      {R"({"messages": [{"role": "assistant", "tool_calls": [{"id": "a", "type": "code", "function": {"name": "f"}}]}]})",
       "messages[0].tool_calls[0].type"},
  };
  for (const auto& [body, param] : cases) {
    const ApiError e = chat_error(body);
    EXPECT_EQ(e.status, 400) << body;
    EXPECT_EQ(e.param, param) << body << " -> " << e.message;
    EXPECT_NE(e.message.find(param), std::string::npos) << e.message;
  }
}

const char* kTools = R"("tools": [
    {"type": "function", "function": {"name": "get_weather", "description": "Weather now.", "strict": true,
      "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}},
    {"type": "function", "function": {"name": "now"}}])";

TEST(OpenAIRequest, Tools) {
  ChatRequest r = parse_chat_request(chat_body(kTools));
  ASSERT_TRUE(r.tools.is_array());
  ASSERT_EQ(r.tools.size(), 2u);
  // Key order of the schema is kept (it is shown to the model); unknown keys (strict) are dropped.
  EXPECT_EQ(r.tools[0].dump(),
            R"({"type":"function","function":{"name":"get_weather","description":"Weather now.",)"
            R"("parameters":{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}}})");
  EXPECT_EQ(r.tools[1].dump(), R"({"type":"function","function":{"name":"now"}})");
  EXPECT_EQ(r.tool_choice, "auto");
  EXPECT_EQ(parse_chat_request(chat_body(std::string(kTools) + R"(, "tool_choice": "required")")).tool_choice,
            "required");
  EXPECT_EQ(parse_chat_request(chat_body(std::string(kTools) + R"(, "tool_choice": "none")")).tool_choice, "none");
  r = parse_chat_request(
      chat_body(std::string(kTools) + R"(, "tool_choice": {"type": "function", "function": {"name": "now"}})"));
  EXPECT_EQ(r.tool_choice, "now");
  EXPECT_TRUE(parse_chat_request(chat_body(R"("tools": [])")).tools.is_null());
  EXPECT_EQ(parse_chat_request(chat_body(R"("tool_choice": "none")")).tool_choice, "none");
}

TEST(OpenAIRequest, InvalidTools) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {R"("tools": {})", "tools"},
      {R"("tools": [1])", "tools[0]"},
      {R"("tools": [{"function": {"name": "f"}}])", "tools[0].type"},
      {R"("tools": [{"type": "retrieval", "function": {"name": "f"}}])", "tools[0].type"},
      {R"("tools": [{"type": "function"}])", "tools[0].function"},
      {R"("tools": [{"type": "function", "function": {}}])", "tools[0].function.name"},
      {R"("tools": [{"type": "function", "function": {"name": "has space"}}])", "tools[0].function.name"},
      {R"("tools": [{"type": "function", "function": {"name": ""}}])", "tools[0].function.name"},
      {R"("tools": [{"type": "function", "function": {"name": "f", "description": 1}}])",
       "tools[0].function.description"},
      {R"("tools": [{"type": "function", "function": {"name": "f", "parameters": "x"}}])",
       "tools[0].function.parameters"},
      {R"("tools": [{"type": "function", "function": {"name": "f"}}, {"type": "function", "function": {"name": "f"}}])",
       "tools[1].function.name"},
      {std::string(kTools) + R"(, "tool_choice": "sometimes")", "tool_choice"},
      {std::string(kTools) + R"(, "tool_choice": 1)", "tool_choice"},
      {std::string(kTools) + R"(, "tool_choice": {"type": "function", "function": {"name": "missing"}})",
       "tool_choice.function.name"},
      {std::string(kTools) + R"(, "tool_choice": {"type": "function"})", "tool_choice.function"},
      {R"("tool_choice": "required")", "tool_choice"},
      {R"("tool_choice": {"type": "function", "function": {"name": "f"}})", "tool_choice"},
      {std::string(kTools) + R"(, "parallel_tool_calls": "yes")", "parallel_tool_calls"},
  };
  for (const auto& [extra, param] : cases) {
    const ApiError e = chat_error(chat_body(extra));
    EXPECT_EQ(e.status, 400) << extra;
    EXPECT_EQ(e.param, param) << extra << " -> " << e.message;
  }
}

// The normalised messages render with DeepSeek-V3's own chat template, tool calls included.
TEST(OpenAIRequest, MessagesRenderWithTheV3Template) {
  const ChatTemplate tmpl = ChatTemplate::load(test::shared_dir() + "/data/tokenizers/deepseek-v3");
  const ChatRequest r = parse_chat_request(R"({"messages": [
      {"role": "developer", "content": "Be brief."},
      {"role": "user", "content": [{"type": "text", "text": "Weather in Paris?"}]},
      {"role": "assistant", "content": "", "tool_calls": [
        {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]},
      {"role": "tool", "tool_call_id": "call_1", "content": "22 C"}]})");
  const std::string prompt = tmpl.render(r.messages, r.add_generation_prompt, nullptr);
  EXPECT_NE(prompt.find("Be brief.<｜User｜>Weather in Paris?"), std::string::npos) << prompt;
  EXPECT_NE(prompt.find("<｜Assistant｜><｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>get_weather\n"
                        "```json\n{\"city\":\"Paris\"}\n```<｜tool▁call▁end｜>"),
            std::string::npos)
      << prompt;
  EXPECT_NE(prompt.find("<｜tool▁outputs▁begin｜><｜tool▁output▁begin｜>22 C<｜tool▁output▁end｜><｜tool▁outputs▁end｜>"),
            std::string::npos)
      << prompt;
}

TEST(OpenAIRequest, CompletionPrompts) {
  CompletionRequest r = parse_completion_request(R"({"model": "m", "prompt": "Once upon", "echo": true})");
  ASSERT_EQ(r.prompts.size(), 1u);
  EXPECT_EQ(r.prompts[0].text, "Once upon");
  EXPECT_TRUE(r.prompts[0].tokens.empty());
  EXPECT_EQ(r.prompts[0].param, "prompt");
  EXPECT_TRUE(r.echo);
  EXPECT_EQ(r.n, 1);
  EXPECT_EQ(r.sampling.temperature, 1.0f);
  EXPECT_FALSE(r.logprobs);
  r = parse_completion_request(R"({"prompt": ["only one"]})");
  ASSERT_EQ(r.prompts.size(), 1u);
  EXPECT_EQ(r.prompts[0].text, "only one");
  EXPECT_EQ(r.prompts[0].param, "prompt[0]");
  EXPECT_EQ(parse_completion_request(R"({"prompt": ""})").prompts[0].text, "");
  r = parse_completion_request(R"({"prompt": [1, 2, 3]})");
  ASSERT_EQ(r.prompts.size(), 1u) << "a flat array of ids is one prompt";
  EXPECT_EQ(r.prompts[0].tokens, (std::vector<int32_t>{1, 2, 3}));
  r = parse_completion_request(R"({"prompt": [[0, 7]], "logprobs": 3, "best_of": 1, "suffix": ""})");
  ASSERT_EQ(r.prompts.size(), 1u);
  EXPECT_EQ(r.prompts[0].tokens, (std::vector<int32_t>{0, 7}));
  EXPECT_TRUE(r.logprobs);
  EXPECT_EQ(r.top_logprobs, 3);
  r = parse_completion_request(R"({"prompt": "x", "logprobs": 0, "echo": false})");
  EXPECT_TRUE(r.logprobs);  // 0: only the chosen token's logprob
  EXPECT_EQ(r.top_logprobs, 0);
  EXPECT_FALSE(parse_completion_request(R"({"prompt": "x", "logprobs": null, "echo": true})").logprobs);
  // echo with logprobs: the prompt's logprobs too; max_tokens 0 (only with echo): the prompt alone.
  r = parse_completion_request(R"({"prompt": "x", "logprobs": 1, "echo": true, "max_tokens": 0})");
  EXPECT_TRUE(r.echo);
  EXPECT_TRUE(r.logprobs);
  EXPECT_EQ(r.top_logprobs, 1);
  EXPECT_EQ(r.max_tokens, 0);
  EXPECT_EQ(parse_completion_request(R"({"prompt": "x", "echo": true, "max_tokens": 0})").max_tokens, 0);
  const ApiError e = completion_error(R"({"prompt": "x", "max_tokens": 0})");
  EXPECT_EQ(e.param, "max_tokens");
  EXPECT_NE(e.message.find("only with 'echo'"), std::string::npos) << e.message;
}

// Several prompts (one choice each, times n) and n.
TEST(OpenAIRequest, CompletionPromptArraysAndN) {
  CompletionRequest r = parse_completion_request(R"({"prompt": ["a", "b c", "d"], "n": 3})");
  ASSERT_EQ(r.prompts.size(), 3u);
  EXPECT_EQ(r.prompts[1].text, "b c");
  EXPECT_EQ(r.prompts[2].param, "prompt[2]");
  EXPECT_EQ(r.n, 3);
  r = parse_completion_request(R"({"prompt": [[1, 2], [3], [4, 5, 6]]})");
  ASSERT_EQ(r.prompts.size(), 3u);
  EXPECT_EQ(r.prompts[0].tokens, (std::vector<int32_t>{1, 2}));
  EXPECT_EQ(r.prompts[1].tokens, (std::vector<int32_t>{3}));
  EXPECT_EQ(r.prompts[2].tokens, (std::vector<int32_t>{4, 5, 6}));
  EXPECT_EQ(r.prompts[2].param, "prompt[2]");
  EXPECT_EQ(parse_completion_request(R"({"prompt": "x", "n": 16})").n, kMaxN);
  EXPECT_EQ(parse_chat_request(chat_body(R"("n": 4)")).n, 4);
  std::string many = R"({"prompt": [)";
  for (int i = 0; i < kMaxPrompts; ++i) many += std::string(i ? "," : "") + "\"p\"";
  EXPECT_EQ(parse_completion_request(many + "]}").prompts.size(), size_t(kMaxPrompts));
  const ApiError e = completion_error(many + R"(, "q"]})");
  EXPECT_EQ(e.param, "prompt");
  EXPECT_NE(e.message.find("at most 64 prompts"), std::string::npos) << e.message;
  // Mixed kinds and empty entries name the element.
  EXPECT_EQ(completion_error(R"({"prompt": ["a", [1]]})").message, "'prompt[1]' must be a string, as 'prompt[0]' is");
  EXPECT_EQ(completion_error(R"({"prompt": [[1], "a"]})").message,
            "'prompt[1]' must be an array of token ids, as 'prompt[0]' is");
  EXPECT_EQ(completion_error(R"({"prompt": ["a", "b", ""]})").message, "'prompt[2]' must not be empty");
  EXPECT_EQ(completion_error(R"({"prompt": [[1], []]})").message, "'prompt[1]' must not be an empty array");
}

TEST(OpenAIRequest, InvalidCompletions) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {R"({"model": "m"})", "prompt"},
      {R"({"prompt": 5})", "prompt"},
      {R"({"prompt": []})", "prompt"},
      {R"({"prompt": ["a", 5]})", "prompt[1]"},
      {R"({"prompt": ["a", null]})", "prompt[1]"},
      {R"({"prompt": [""]})", "prompt[0]"},
      {R"({"prompt": [[1], 2]})", "prompt[1]"},
      {R"({"prompt": [[1], [2, -1]]})", "prompt[1][1]"},
      {R"({"prompt": [[1], [2, "x"]]})", "prompt[1][1]"},
      {R"({"prompt": [[]]})", "prompt[0]"},
      {R"({"prompt": [true]})", "prompt"},
      {R"({"prompt": [1, -2]})", "prompt[1]"},
      {R"({"prompt": [1, 4294967296]})", "prompt[1]"},
      {R"({"prompt": [1, "a"]})", "prompt[1]"},
      {R"({"prompt": [[1, 2.5]]})", "prompt[0][1]"},
      {R"({"prompt": [{}]})", "prompt"},
      {R"({"prompt": "x", "logprobs": 6})", "logprobs"},
      {R"({"prompt": "x", "logprobs": true})", "logprobs"},
      {R"({"prompt": "x", "logprobs": -1})", "logprobs"},
      {R"({"prompt": "x", "logprobs": "2"})", "logprobs"},
      {R"({"prompt": "x", "logprobs": 6, "echo": true})", "logprobs"},
      {R"({"prompt": "x", "max_tokens": -1, "echo": true})", "max_tokens"},
      {R"({"prompt": "x", "max_tokens": 0, "echo": false})", "max_tokens"},
      {R"({"prompt": "x", "best_of": 2})", "best_of"},
      {R"({"prompt": "x", "suffix": "end"})", "suffix"},
      {R"({"prompt": "x", "echo": "no"})", "echo"},
      {R"({"prompt": "x", "n": 17})", "n"},
      {R"({"prompt": "x", "n": 0})", "n"},
      {R"({"prompt": "x", "n": 2.5})", "n"},
      {R"({"prompt": "x", "max_tokens": 0})", "max_tokens"},
  };
  for (const auto& [body, param] : cases) {
    const ApiError e = completion_error(body);
    EXPECT_EQ(e.status, 400) << body;
    EXPECT_EQ(e.param, param) << body << " -> " << e.message;
  }
}

TEST(OpenAIRequest, ErrorBody) {
  const ApiError e = chat_error(chat_body(R"("temperature": 3)"));
  EXPECT_EQ(error_body(e),
            R"({"error":{"message":"'temperature' must be a number between 0 and 2","type":"invalid_request_error",)"
            R"("param":"temperature","code":"invalid_value"}})");
  EXPECT_EQ(error_body(ApiError(404, "not_found_error", "no such model 'x'")),
            R"({"error":{"message":"no such model 'x'","type":"not_found_error","param":null,"code":null}})");
  EXPECT_STREQ(ApiError(500, "server_error", "boom").what(), "boom");
}

}  // namespace
}  // namespace dseek::server
