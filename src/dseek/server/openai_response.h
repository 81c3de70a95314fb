// Response bodies of the OpenAI-compatible API, field for field as in OpenAI's API reference:
// chat.completion, chat.completion.chunk (server-sent events), text_completion, the model list.
// Reasoning goes in `reasoning_content` beside `content`, as DeepSeek's own API returns it.
//
// All builders return nlohmann::ordered_json so the keys come out in the reference's order; the
// text leaves through dump_json() / sse_event(), which turn invalid UTF-8 into U+FFFD rather than
// throw (a generation cut off mid-character at finish may end in a partial sequence).
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>

#include <nlohmann/json.hpp>

#include "dseek/server/output_parser.h"

namespace dseek::server {

struct Usage {
  int64_t prompt_tokens = 0;
  int64_t completion_tokens = 0;
  int64_t cached_prompt_tokens = 0;  // prompt tokens served from the prefix cache
};

// {"prompt_tokens", "completion_tokens", "total_tokens", "prompt_tokens_details": {"cached_tokens"}}
nlohmann::ordered_json usage_json(const Usage& u);

// A whole chat completion. `message` is the accumulation of the parser's deltas
// (OutputDelta::append); content is null when it is empty and there are tool calls.
// finish_reason: "stop", "length", "tool_calls" or "content_filter". logprobs: the choice's
// `logprobs` (chat_logprobs() in logprobs.h), null when not requested.
nlohmann::ordered_json chat_completion(const std::string& id, int64_t created, const std::string& model,
                                       const OutputDelta& message, const std::string& finish_reason,
                                       const Usage& usage, const nlohmann::ordered_json& logprobs = nullptr);

// One choice of a chat completion with several (n > 1); as the arguments above.
struct ChatChoice {
  OutputDelta message;
  std::string finish_reason;
  nlohmann::ordered_json logprobs;  // null when not requested
};
// choices[i] gets "index": i. usage: the whole request's (the prompt once, every choice's tokens).
nlohmann::ordered_json chat_completion(const std::string& id, int64_t created, const std::string& model,
                                       std::span<const ChatChoice> choices, const Usage& usage);

// One streamed chat chunk. first: the chunk opens the message (delta.role = "assistant", and
// content "" when there is no text yet, as OpenAI's first chunk has). finish_reason: set on the
// last chunk (whose delta is usually empty). include_usage: add "usage": null, as OpenAI does on
// every chunk but the final usage chunk when stream_options.include_usage is set. logprobs: those
// of the tokens this chunk carries, or null. index: the choice it belongs to (n > 1).
nlohmann::ordered_json chat_chunk(const std::string& id, int64_t created, const std::string& model,
                                  const OutputDelta& delta, const std::optional<std::string>& finish_reason,
                                  bool first, bool include_usage = false,
                                  const nlohmann::ordered_json& logprobs = nullptr, int index = 0);

enum class Endpoint { kChat, kCompletion };

// The extra last chunk for stream_options.include_usage: "choices": [] and the usage.
nlohmann::ordered_json usage_chunk(const std::string& id, int64_t created, const std::string& model,
                                   const Usage& usage, Endpoint endpoint = Endpoint::kChat);

// A whole legacy text completion (POST /v1/completions); `text` includes the prompt when echo is set.
// logprobs: completion_logprobs() (logprobs.h), or null.
nlohmann::ordered_json text_completion(const std::string& id, int64_t created, const std::string& model,
                                       const std::string& text, const std::string& finish_reason,
                                       const Usage& usage, const nlohmann::ordered_json& logprobs = nullptr);

// One choice of a text completion with several (n > 1, or an array of prompts).
struct TextChoice {
  std::string text;
  std::string finish_reason;
  nlohmann::ordered_json logprobs;  // null when not requested
};
// choices[i] gets "index": i (OpenAI: prompt_index * n + choice).
nlohmann::ordered_json text_completion(const std::string& id, int64_t created, const std::string& model,
                                       std::span<const TextChoice> choices, const Usage& usage);

// One streamed text-completion chunk (object "text_completion", as OpenAI streams them); index: the
// choice it belongs to.
nlohmann::ordered_json text_chunk(const std::string& id, int64_t created, const std::string& model,
                                  const std::string& text, const std::optional<std::string>& finish_reason,
                                  bool include_usage = false, const nlohmann::ordered_json& logprobs = nullptr,
                                  int index = 0);

// GET /v1/models and GET /v1/models/{id}.
nlohmann::ordered_json model_object(const std::string& model_id, int64_t created);
nlohmann::ordered_json models_list(const std::string& model_id, int64_t created);

// Compact JSON text; invalid UTF-8 becomes U+FFFD.
std::string dump_json(const nlohmann::ordered_json& j);
// "data: {...}\n\n" and the stream terminator "data: [DONE]\n\n".
std::string sse_event(const nlohmann::ordered_json& j);
std::string sse_done();

}  // namespace dseek::server
