// Request bodies of POST /v1/chat/completions and POST /v1/completions: parsed, validated and
// normalised as OpenAI does (docs/server.md, "OpenAI protocol").
//
// Every error is an ApiError with status 400 whose message and `param` name the field
// ("'temperature' must be a number between 0 and 2", param "temperature"); malformed JSON names the
// byte offset. Unknown fields are ignored, like OpenAI; null means "not given" for every optional
// field. Fields OpenAI has and dseek cannot honour are errors, never silently dropped: n above
// kMaxN, best_of != 1, a non-empty logit_bias or suffix, more than kMaxPrompts prompts, image/audio
// content parts.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "dseek/runtime/sampler.h"
#include "dseek/server/api_error.h"

namespace dseek::server {

// Body nesting deeper than this is refused before parsing (the validators and the template
// interpreter recurse; no honest request comes near it).
inline constexpr int kMaxJsonDepth = 64;
// `n`: choices per prompt, 1..kMaxN (each its own sequence).
inline constexpr int kMaxN = 16;
// Prompts in one /v1/completions `prompt` array (lm-evaluation-harness sends its batch as one).
inline constexpr int kMaxPrompts = 64;

struct RequestCommon {
  std::string model;           // "" when absent (a single-model server need not insist on it)
  bool stream = false;
  bool include_usage = false;  // stream_options.include_usage (stream_options needs stream=true)
  // temperature (default 1; 0 = greedy), top_p (default 1; 0 = greedy), frequency_penalty and
  // presence_penalty in [-2, 2], seed; extensions top_k (>= 0), min_p ([0, 1)),
  // repetition_penalty (> 0). Always valid for Sampler's constructor.
  SamplingParams sampling = default_sampling();
  bool has_seed = false;  // false: sampling.seed is 0 and the server should pick one
  // max_tokens or max_completion_tokens (the latter wins); >= 1, or 0 for a completion with echo.
  std::optional<int64_t> max_tokens;
  std::vector<std::string> stop;      // string or array of up to 4 strings; empty strings dropped
  bool logprobs = false;
  int top_logprobs = 0;  // 0..20 (chat) or the legacy integer `logprobs` 0..5 (completions)
  std::string user;      // accepted and ignored
  int n = 1;             // choices per prompt, 1..kMaxN

  static SamplingParams default_sampling() {
    SamplingParams p;
    p.temperature = 1.0f;  // OpenAI's default; SamplingParams' own default is greedy
    return p;
  }
};

struct ChatRequest : RequestCommon {
  // Non-empty array of {role, content[, name][, tool_calls][, tool_call_id]} as the DeepSeek chat
  // template expects them: role one of system/user/assistant/tool ("developer" becomes "system");
  // content a string (text parts joined with "\n"), or null exactly for an assistant message whose
  // content was empty or absent and that has tool_calls; tool_calls [{id, type: "function",
  // function: {name, arguments}}] with arguments as a string (an object is serialised).
  // Other keys (reasoning_content, refusal, ...) are dropped.
  nlohmann::ordered_json messages;
  // null, or a non-empty array of {type: "function", function: {name[, description][, parameters]}}
  // (names match [A-Za-z0-9_-]{1,64}; parameters is an object). An empty array becomes null.
  nlohmann::ordered_json tools;
  std::string tool_choice = "auto";  // "none" | "auto" | "required" | the name of one of `tools`
  bool add_generation_prompt = true;  // extension (as vLLM): false continues the last message
};

// One prompt of a completion request: text, or token ids.
struct CompletionPrompt {
  std::string text;             // the prompt when it is text
  std::vector<int32_t> tokens;  // non-empty when the prompt is token ids
  std::string param;            // where it came from, for errors: "prompt" or "prompt[2]"
};

struct CompletionRequest : RequestCommon {
  // 1..kMaxPrompts prompts: "text" and [1, 2] are one prompt; ["a", "b"] and [[1, 2], [3]] one per
  // element (every element the same kind, none empty).
  std::vector<CompletionPrompt> prompts;
  bool echo = false;  // with logprobs: the prompt tokens' logprobs too (the first one null)
};

// Throw ApiError (status 400) on a malformed or invalid body.
ChatRequest parse_chat_request(std::string_view body);
CompletionRequest parse_completion_request(std::string_view body);

}  // namespace dseek::server
