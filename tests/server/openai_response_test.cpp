// Response builders: exact JSON layouts of OpenAI's API reference (and DeepSeek's
// reasoning_content), and server-sent event framing.
#include "dseek/server/openai_response.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace dseek::server {
namespace {

const Usage kUsage{12, 5, 8};
const char* kUsageJson =
    R"("usage":{"prompt_tokens":12,"completion_tokens":5,"total_tokens":17,"prompt_tokens_details":{"cached_tokens":8}})";

TEST(OpenAIResponse, ChatCompletionText) {
  OutputDelta m;
  m.content = "Hello!";
  EXPECT_EQ(dump_json(chat_completion("chatcmpl-1", 1700000000, "dsv3", m, "stop", kUsage)),
            std::string(R"({"id":"chatcmpl-1","object":"chat.completion","created":1700000000,"model":"dsv3",)"
                        R"("choices":[{"index":0,"message":{"role":"assistant","content":"Hello!"},)"
                        R"("logprobs":null,"finish_reason":"stop"}],)") +
                kUsageJson + "}");
}

TEST(OpenAIResponse, ChatCompletionReasoningAndToolCalls) {
  OutputDelta m;
  m.reasoning = "Need weather.";
  m.tool_calls.push_back({0, "call_abc", "get_weather", R"({"city":"Paris"})"});
  const auto j = chat_completion("chatcmpl-2", 5, "dsv3", m, "tool_calls", kUsage);
  EXPECT_EQ(dump_json(j["choices"][0]["message"]),
            R"({"role":"assistant","content":null,"reasoning_content":"Need weather.",)"
            R"("tool_calls":[{"id":"call_abc","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Paris\"}"}}]})");
  EXPECT_EQ(j["choices"][0]["finish_reason"], "tool_calls");
}

TEST(OpenAIResponse, ChatChunks) {
  OutputDelta d;
  // First chunk: role and empty content, as OpenAI opens a stream.
  EXPECT_EQ(dump_json(chat_chunk("c", 1, "m", d, std::nullopt, /*first=*/true)),
            R"({"id":"c","object":"chat.completion.chunk","created":1,"model":"m",)"
            R"("choices":[{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}]})");
  d.content = "Hi";
  d.reasoning = "r";
  EXPECT_EQ(dump_json(chat_chunk("c", 1, "m", d, std::nullopt, false)["choices"][0]["delta"]),
            R"({"content":"Hi","reasoning_content":"r"})");
  // Tool-call deltas: index always; id, type and name only in the call's first delta.
  OutputDelta t;
  t.tool_calls.push_back({0, "call_1", "f", ""});
  EXPECT_EQ(dump_json(chat_chunk("c", 1, "m", t, std::nullopt, true)["choices"][0]["delta"]),
            R"({"role":"assistant","content":null,"tool_calls":[{"index":0,"id":"call_1","type":"function","function":{"name":"f","arguments":""}}]})");
  t.tool_calls[0] = {0, "", "", "{\"a\":"};
  EXPECT_EQ(dump_json(chat_chunk("c", 1, "m", t, std::nullopt, false)["choices"][0]["delta"]),
            R"({"tool_calls":[{"index":0,"function":{"arguments":"{\"a\":"}}]})");
  // Last chunk: empty delta with the finish reason; usage null when include_usage is set.
  EXPECT_EQ(dump_json(chat_chunk("c", 1, "m", OutputDelta{}, std::string("length"), false, true)),
            R"({"id":"c","object":"chat.completion.chunk","created":1,"model":"m",)"
            R"("choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"length"}],"usage":null})");
}

TEST(OpenAIResponse, UsageChunks) {
  EXPECT_EQ(dump_json(usage_chunk("c", 1, "m", kUsage)),
            std::string(R"({"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[],)") +
                kUsageJson + "}");
  EXPECT_EQ(usage_chunk("c", 1, "m", kUsage, Endpoint::kCompletion)["object"], "text_completion");
}

TEST(OpenAIResponse, TextCompletion) {
  EXPECT_EQ(dump_json(text_completion("cmpl-1", 2, "m", "Once upon a time", "length", kUsage)),
            std::string(R"({"id":"cmpl-1","object":"text_completion","created":2,"model":"m",)"
                        R"("choices":[{"text":"Once upon a time","index":0,"logprobs":null,"finish_reason":"length"}],)") +
                kUsageJson + "}");
  EXPECT_EQ(dump_json(text_chunk("cmpl-1", 2, "m", " a", std::nullopt)),
            R"({"id":"cmpl-1","object":"text_completion","created":2,"model":"m",)"
            R"("choices":[{"text":" a","index":0,"logprobs":null,"finish_reason":null}]})");
  EXPECT_EQ(text_chunk("cmpl-1", 2, "m", "", std::string("stop"), true)["usage"], nullptr);
}

// n > 1 and prompt arrays: choices in order, each with its index; chunks name theirs.
TEST(OpenAIResponse, SeveralChoices) {
  OutputDelta a, b;
  a.content = "Yes.";
  b.content = "No.";
  const std::vector<ChatChoice> chat = {{a, "stop", nullptr}, {b, "length", nullptr}};
  EXPECT_EQ(dump_json(chat_completion("c", 1, "m", chat, kUsage)),
            std::string(R"({"id":"c","object":"chat.completion","created":1,"model":"m","choices":[)"
                        R"({"index":0,"message":{"role":"assistant","content":"Yes."},"logprobs":null,"finish_reason":"stop"},)"
                        R"({"index":1,"message":{"role":"assistant","content":"No."},"logprobs":null,"finish_reason":"length"}],)") +
                kUsageJson + "}");
  const std::vector<TextChoice> text = {{"x", "stop", nullptr}, {"y", "stop", nullptr}, {"z", "length", nullptr}};
  EXPECT_EQ(dump_json(text_completion("t", 2, "m", text, kUsage)["choices"]),
            R"([{"text":"x","index":0,"logprobs":null,"finish_reason":"stop"},)"
            R"({"text":"y","index":1,"logprobs":null,"finish_reason":"stop"},)"
            R"({"text":"z","index":2,"logprobs":null,"finish_reason":"length"}])");
  EXPECT_EQ(chat_chunk("c", 1, "m", a, std::nullopt, false, false, nullptr, 3)["choices"][0]["index"], 3);
  EXPECT_EQ(text_chunk("t", 2, "m", "x", std::nullopt, false, nullptr, 5)["choices"][0]["index"], 5);
}

TEST(OpenAIResponse, Models) {
  EXPECT_EQ(dump_json(models_list("deepseek-v3", 1700000000)),
            R"({"object":"list","data":[{"id":"deepseek-v3","object":"model","created":1700000000,"owned_by":"dseek"}]})");
  EXPECT_EQ(dump_json(model_object("x", 3)), R"({"id":"x","object":"model","created":3,"owned_by":"dseek"})");
}

TEST(OpenAIResponse, ServerSentEvents) {
  OutputDelta d;
  d.content = "é\n\"";
  const std::string ev = sse_event(chat_chunk("c", 1, "m", d, std::nullopt, false));
  EXPECT_EQ(ev.rfind("data: {", 0), 0u);
  EXPECT_EQ(ev.substr(ev.size() - 3), "}\n\n");
  EXPECT_EQ(ev.find('\n'), ev.size() - 2);  // the JSON itself has no raw newline
  EXPECT_NE(ev.find(R"("content":"é\n\"")"), std::string::npos) << ev;
  EXPECT_EQ(sse_done(), "data: [DONE]\n\n");
  // A generation cut off inside a character must not make the writer throw.
  d.content = "ok\xE6\x9D";
  EXPECT_NE(sse_event(chat_chunk("c", 1, "m", d, std::nullopt, false)).find("ok\xEF\xBF\xBD"), std::string::npos);
}

}  // namespace
}  // namespace dseek::server
