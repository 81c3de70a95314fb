#include "dseek/server/openai_response.h"

#include <utility>

namespace dseek::server {

namespace {

using Json = nlohmann::ordered_json;

Json head(const std::string& id, const char* object, int64_t created, const std::string& model) {
  Json j = Json::object();
  j["id"] = id;
  j["object"] = object;
  j["created"] = created;
  j["model"] = model;
  return j;
}

// tool_calls of a message (full: every field) or of a chunk delta (with "index"; id, type and
// name only in a call's first delta).
Json tool_calls_json(const std::vector<ToolCallDelta>& calls, bool delta) {
  Json arr = Json::array();
  for (const ToolCallDelta& c : calls) {
    Json t = Json::object();
    if (delta) t["index"] = c.index;
    if (!delta || !c.id.empty()) t["id"] = c.id;
    if (!delta || !c.id.empty() || !c.name.empty()) t["type"] = "function";
    Json f = Json::object();
    if (!delta || !c.name.empty()) f["name"] = c.name;
    f["arguments"] = c.arguments;
    t["function"] = std::move(f);
    arr.push_back(std::move(t));
  }
  return arr;
}

Json finish_json(const std::optional<std::string>& finish_reason) {
  return finish_reason ? Json(*finish_reason) : Json(nullptr);
}

}  // namespace

Json usage_json(const Usage& u) {
  Json j = Json::object();
  j["prompt_tokens"] = u.prompt_tokens;
  j["completion_tokens"] = u.completion_tokens;
  j["total_tokens"] = u.prompt_tokens + u.completion_tokens;
  Json details = Json::object();
  details["cached_tokens"] = u.cached_prompt_tokens;
  j["prompt_tokens_details"] = std::move(details);
  return j;
}

Json chat_completion(const std::string& id, int64_t created, const std::string& model, const OutputDelta& message,
                     const std::string& finish_reason, const Usage& usage, const Json& logprobs) {
  const ChatChoice one{message, finish_reason, logprobs};
  return chat_completion(id, created, model, std::span(&one, 1), usage);
}

Json chat_completion(const std::string& id, int64_t created, const std::string& model,
                     std::span<const ChatChoice> choices, const Usage& usage) {
  Json arr = Json::array();
  for (size_t i = 0; i < choices.size(); ++i) {
    const OutputDelta& message = choices[i].message;
    Json msg = Json::object();
    msg["role"] = "assistant";
    msg["content"] = message.content.empty() && !message.tool_calls.empty() ? Json(nullptr) : Json(message.content);
    if (!message.reasoning.empty()) msg["reasoning_content"] = message.reasoning;
    if (!message.tool_calls.empty()) msg["tool_calls"] = tool_calls_json(message.tool_calls, /*delta=*/false);
    Json choice = Json::object();
    choice["index"] = i;
    choice["message"] = std::move(msg);
    choice["logprobs"] = choices[i].logprobs;
    choice["finish_reason"] = choices[i].finish_reason;
    arr.push_back(std::move(choice));
  }
  Json j = head(id, "chat.completion", created, model);
  j["choices"] = std::move(arr);
  j["usage"] = usage_json(usage);
  return j;
}

Json chat_chunk(const std::string& id, int64_t created, const std::string& model, const OutputDelta& delta,
                const std::optional<std::string>& finish_reason, bool first, bool include_usage,
                const Json& logprobs, int index) {
  Json d = Json::object();
  if (first) d["role"] = "assistant";
  if (!delta.content.empty()) {
    d["content"] = delta.content;
  } else if (first) {
    d["content"] = delta.tool_calls.empty() ? Json("") : Json(nullptr);
  }
  if (!delta.reasoning.empty()) d["reasoning_content"] = delta.reasoning;
  if (!delta.tool_calls.empty()) d["tool_calls"] = tool_calls_json(delta.tool_calls, /*delta=*/true);
  Json choice = Json::object();
  choice["index"] = index;
  choice["delta"] = std::move(d);
  choice["logprobs"] = logprobs;
  choice["finish_reason"] = finish_json(finish_reason);
  Json j = head(id, "chat.completion.chunk", created, model);
  j["choices"] = Json::array({std::move(choice)});
  if (include_usage) j["usage"] = nullptr;
  return j;
}

Json usage_chunk(const std::string& id, int64_t created, const std::string& model, const Usage& usage,
                 Endpoint endpoint) {
  Json j = head(id, endpoint == Endpoint::kChat ? "chat.completion.chunk" : "text_completion", created, model);
  j["choices"] = Json::array();
  j["usage"] = usage_json(usage);
  return j;
}

Json text_completion(const std::string& id, int64_t created, const std::string& model, const std::string& text,
                     const std::string& finish_reason, const Usage& usage, const Json& logprobs) {
  const TextChoice one{text, finish_reason, logprobs};
  return text_completion(id, created, model, std::span(&one, 1), usage);
}

Json text_completion(const std::string& id, int64_t created, const std::string& model,
                     std::span<const TextChoice> choices, const Usage& usage) {
  Json arr = Json::array();
  for (size_t i = 0; i < choices.size(); ++i) {
    Json choice = Json::object();
    choice["text"] = choices[i].text;
    choice["index"] = i;
    choice["logprobs"] = choices[i].logprobs;
    choice["finish_reason"] = choices[i].finish_reason;
    arr.push_back(std::move(choice));
  }
  Json j = head(id, "text_completion", created, model);
  j["choices"] = std::move(arr);
  j["usage"] = usage_json(usage);
  return j;
}

Json text_chunk(const std::string& id, int64_t created, const std::string& model, const std::string& text,
                const std::optional<std::string>& finish_reason, bool include_usage, const Json& logprobs,
                int index) {
  Json choice = Json::object();
  choice["text"] = text;
  choice["index"] = index;
  choice["logprobs"] = logprobs;
  choice["finish_reason"] = finish_json(finish_reason);
  Json j = head(id, "text_completion", created, model);
  j["choices"] = Json::array({std::move(choice)});
  if (include_usage) j["usage"] = nullptr;
  return j;
}

Json model_object(const std::string& model_id, int64_t created) {
  Json m = Json::object();
  m["id"] = model_id;
  m["object"] = "model";
  m["created"] = created;
  m["owned_by"] = "dseek";
  return m;
}

Json models_list(const std::string& model_id, int64_t created) {
  Json j = Json::object();
  j["object"] = "list";
  j["data"] = Json::array({model_object(model_id, created)});
  return j;
}

std::string dump_json(const Json& j) { return j.dump(-1, ' ', false, Json::error_handler_t::replace); }

std::string sse_event(const Json& j) { return "data: " + dump_json(j) + "\n\n"; }

std::string sse_done() { return "data: [DONE]\n\n"; }

}  // namespace dseek::server
