#include "dseek/server/openai_request.h"

#include <cmath>
#include <limits>
#include <string>
#include <utility>

namespace dseek::server {

namespace {

using Json = nlohmann::ordered_json;

[[noreturn]] void fail(std::string message, std::string param, std::string code = "invalid_value") {
  throw ApiError::invalid_request(std::move(message), std::move(param), std::move(code));
}

std::string quoted(const std::string& param) { return "'" + param + "'"; }

// Calls fn(i) for every byte offset of `body` outside JSON string literals (the quotes
// themselves included); stops early when fn returns false.
template <class Fn>
void for_each_outside_strings(std::string_view body, const Fn& fn) {
  bool in_string = false, escaped = false;
  for (size_t i = 0; i < body.size(); ++i) {
    const char c = body[i];
    if (in_string) {
      if (escaped) {
        escaped = false;
      } else if (c == '\\') {
        escaped = true;
      } else if (c == '"') {
        in_string = false;
      }
    } else if (c == '"') {
      in_string = true;
    } else if (!fn(i)) {
      return;
    }
  }
}

// Refuses nesting deeper than kMaxJsonDepth before nlohmann builds (and later recursively walks)
// the tree. Brackets inside strings do not count.
void check_depth(std::string_view body) {
  int depth = 0;
  for_each_outside_strings(body, [&](size_t i) {
    const char c = body[i];
    if (c == '[' || c == '{') {
      if (++depth > kMaxJsonDepth) {
        fail("JSON body nests deeper than " + std::to_string(kMaxJsonDepth) + " levels at byte " +
                 std::to_string(i),
             "", "invalid_json");
      }
    } else if (c == ']' || c == '}') {
      --depth;
    }
    return true;
  });
}

// Offset of the first occurrence of `token` in `body` that does not start inside a string literal.
size_t find_outside_strings(std::string_view body, std::string_view token) {
  size_t found = std::string_view::npos;
  for_each_outside_strings(body, [&](size_t i) {
    if (body.substr(i, token.size()) != token) return true;
    found = i;
    return false;
  });
  return found;
}

Json parse_body(std::string_view body) {
  check_depth(body);
  Json j;
  try {
    j = Json::parse(body.begin(), body.end());
  } catch (const Json::parse_error& e) {
    // e.what() is "[json.exception.parse_error.101] parse error at line 1, column 9: ..."; keep the
    // part after the tag and lead with the 0-based offset of the offending byte (e.byte counts
    // from 1, like the column).
    std::string detail = e.what();
    if (const size_t tag = detail.find("] "); tag != std::string::npos) detail.erase(0, tag + 2);
    const size_t offset = e.byte > 0 ? e.byte - 1 : 0;
    fail("could not parse the JSON body at byte offset " + std::to_string(offset) + ": " + detail, "",
         "invalid_json");
  } catch (const Json::out_of_range& e) {
    // A number literal beyond double's range ("1e999") is out_of_range 406, which carries no
    // offset; the message quotes the literal, so find it outside strings.
    std::string detail = e.what();
    if (const size_t tag = detail.find("] "); tag != std::string::npos) detail.erase(0, tag + 2);
    std::string where;
    const size_t q = detail.find('\'');
    const size_t q2 = q == std::string::npos ? q : detail.find('\'', q + 1);
    if (q2 != std::string::npos && q2 > q + 1) {
      if (const size_t at = find_outside_strings(body, std::string_view(detail).substr(q + 1, q2 - q - 1));
          at != std::string_view::npos) {
        where = " at byte offset " + std::to_string(at);
      }
    }
    fail("could not parse the JSON body" + where + ": " + detail, "", "invalid_json");
  }
  if (!j.is_object()) fail("the request body must be a JSON object", "", "invalid_type");
  return j;
}

// The member `key` of `obj`, or nullptr when it is absent or null (OpenAI treats both as unset).
const Json* get(const Json& obj, const char* key) {
  const auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return nullptr;
  return &*it;
}

bool as_bool(const Json& v, const std::string& param) {
  if (!v.is_boolean()) fail(quoted(param) + " must be a boolean", param, "invalid_type");
  return v.get<bool>();
}

std::string as_string(const Json& v, const std::string& param) {
  if (!v.is_string()) fail(quoted(param) + " must be a string", param, "invalid_type");
  return v.get<std::string>();
}

// A finite number; `what` completes "'param' must be a number ..." for both a wrong type and a value
// out of [lo, hi] (OpenAI words both the same way).
double as_number(const Json& v, const std::string& param, double lo, double hi, const std::string& what) {
  const std::string message = quoted(param) + " must be a number " + what;
  if (!v.is_number()) fail(message, param, "invalid_type");
  const double x = v.get<double>();
  if (!std::isfinite(x) || x < lo || x > hi) fail(message, param);
  return x;
}

// An integer (a float with an integral value, such as 16.0, counts) within int64.
int64_t as_integer(const Json& v, const std::string& param) {
  const std::string message = quoted(param) + " must be an integer";
  if (v.is_number_unsigned()) {
    const uint64_t u = v.get<uint64_t>();
    if (u > uint64_t(std::numeric_limits<int64_t>::max())) fail(quoted(param) + " is too large", param);
    return int64_t(u);
  }
  if (v.is_number_integer()) return v.get<int64_t>();
  if (v.is_number_float()) {
    const double x = v.get<double>();
    // 2^63 itself is out of range, hence < rather than <=.
    if (std::isfinite(x) && x == std::floor(x) && x >= -0x1p63 && x < 0x1p63) return int64_t(x);
  }
  fail(message, param, "invalid_type");
}

int64_t as_integer_in(const Json& v, const std::string& param, int64_t lo, int64_t hi) {
  const int64_t x = as_integer(v, param);
  if (x < lo || x > hi) {
    fail(quoted(param) + " must be an integer between " + std::to_string(lo) + " and " + std::to_string(hi),
         param);
  }
  return x;
}

void parse_stop(const Json& v, std::vector<std::string>& stop) {
  if (v.is_string()) {
    if (!v.get_ref<const std::string&>().empty()) stop.push_back(v.get<std::string>());
    return;
  }
  if (!v.is_array()) fail("'stop' must be a string or an array of strings", "stop", "invalid_type");
  if (v.size() > 4) fail("'stop' may hold at most 4 sequences", "stop");
  for (size_t i = 0; i < v.size(); ++i) {
    const std::string s = as_string(v[i], "stop[" + std::to_string(i) + "]");
    if (!s.empty()) stop.push_back(s);  // an empty stop string would end every generation at once
  }
}

// Fields shared by both endpoints. `chat` selects the meaning of `logprobs` (a boolean for chat, the
// legacy integer 0..5 for completions).
void parse_common(const Json& body, RequestCommon& r, bool chat) {
  if (const Json* v = get(body, "model")) r.model = as_string(*v, "model");
  if (const Json* v = get(body, "stream")) r.stream = as_bool(*v, "stream");
  if (const Json* v = get(body, "stream_options")) {
    if (!v->is_object()) fail("'stream_options' must be an object", "stream_options", "invalid_type");
    if (!r.stream) {
      fail("'stream_options' is only allowed when 'stream' is true", "stream_options");
    }
    if (const Json* u = get(*v, "include_usage")) r.include_usage = as_bool(*u, "stream_options.include_usage");
  }

  SamplingParams& s = r.sampling;
  if (const Json* v = get(body, "temperature")) {
    s.temperature = float(as_number(*v, "temperature", 0.0, 2.0, "between 0 and 2"));
  }
  if (const Json* v = get(body, "top_p")) s.top_p = float(as_number(*v, "top_p", 0.0, 1.0, "between 0 and 1"));
  if (s.top_p == 0.0f) {
    // OpenAI accepts top_p 0 (keep only the most likely token); Sampler wants (0, 1], and greedy is
    // the same distribution.
    s.temperature = 0.0f;
    s.top_p = 1.0f;
  }
  if (const Json* v = get(body, "frequency_penalty")) {
    s.frequency_penalty = float(as_number(*v, "frequency_penalty", -2.0, 2.0, "between -2 and 2"));
  }
  if (const Json* v = get(body, "presence_penalty")) {
    s.presence_penalty = float(as_number(*v, "presence_penalty", -2.0, 2.0, "between -2 and 2"));
  }
  if (const Json* v = get(body, "top_k")) {
    // -1 is "off" in vLLM's API; 0 is off in ours.
    const int64_t k = as_integer_in(*v, "top_k", -1, std::numeric_limits<int32_t>::max());
    s.top_k = int32_t(k < 0 ? 0 : k);
  }
  if (const Json* v = get(body, "min_p")) {
    s.min_p = float(as_number(*v, "min_p", 0.0, 1.0, "in [0, 1)"));
    if (s.min_p >= 1.0f) fail("'min_p' must be a number in [0, 1)", "min_p");
  }
  if (const Json* v = get(body, "repetition_penalty")) {
    s.repetition_penalty = float(as_number(*v, "repetition_penalty", 0.0, 1e6, "greater than 0"));
    if (!(s.repetition_penalty > 0.0f)) fail("'repetition_penalty' must be a number greater than 0", "repetition_penalty");
  }
  if (const Json* v = get(body, "seed")) {
    if (v->is_number_unsigned()) {
      s.seed = v->get<uint64_t>();  // the full uint64 range is a valid seed too
    } else {
      s.seed = uint64_t(as_integer(*v, "seed"));
    }
    r.has_seed = true;
  }

  // max_completion_tokens replaced max_tokens in OpenAI's chat API; when both come, it wins.
  // Completions may ask for 0 tokens together with echo (checked there): the prompt alone.
  for (const char* key : {"max_tokens", "max_completion_tokens"}) {
    if (const Json* v = get(body, key)) {
      const int64_t n = as_integer(*v, key);
      if (n < (chat ? 1 : 0)) fail(quoted(key) + " must be at least 1", key);
      r.max_tokens = n;
    }
  }
  if (const Json* v = get(body, "n")) r.n = int(as_integer_in(*v, "n", 1, kMaxN));
  if (const Json* v = get(body, "stop")) parse_stop(*v, r.stop);

  if (chat) {
    if (const Json* v = get(body, "logprobs")) r.logprobs = as_bool(*v, "logprobs");
    if (const Json* v = get(body, "top_logprobs")) {
      r.top_logprobs = int(as_integer_in(*v, "top_logprobs", 0, 20));
      if (!r.logprobs) fail("'top_logprobs' needs 'logprobs' set to true", "top_logprobs");
    }
  } else if (const Json* v = get(body, "logprobs")) {
    r.logprobs = true;
    r.top_logprobs = int(as_integer_in(*v, "logprobs", 0, 5));
  }

  if (const Json* v = get(body, "user")) r.user = as_string(*v, "user");
  if (const Json* v = get(body, "logit_bias")) {
    if (!v->is_object()) fail("'logit_bias' must be an object", "logit_bias", "invalid_type");
    if (!v->empty()) fail("'logit_bias' is not supported", "logit_bias", "unsupported_parameter");
  }
}

// A content value: a string, or an array of {type: "text", text} parts joined with "\n".
std::string parse_content(const Json& v, const std::string& param) {
  if (v.is_string()) return v.get<std::string>();
  if (!v.is_array()) fail(quoted(param) + " must be a string or an array of content parts", param, "invalid_type");
  std::string out;
  for (size_t i = 0; i < v.size(); ++i) {
    const std::string p = param + "[" + std::to_string(i) + "]";
    const Json& part = v[i];
    if (!part.is_object()) fail(quoted(p) + " must be an object", p, "invalid_type");
    const Json* type = get(part, "type");
    if (type == nullptr) fail("missing required parameter " + quoted(p + ".type"), p + ".type", "missing_required_parameter");
    const std::string t = as_string(*type, p + ".type");
    if (t != "text") {
      fail("only text content parts are supported; " + quoted(p + ".type") + " is '" + t + "'", p + ".type",
           "unsupported_value");
    }
    const Json* text = get(part, "text");
    if (text == nullptr) fail("missing required parameter " + quoted(p + ".text"), p + ".text", "missing_required_parameter");
    if (i > 0) out += '\n';
    out += as_string(*text, p + ".text");
  }
  return out;
}

Json parse_tool_calls(const Json& v, const std::string& param) {
  if (!v.is_array()) fail(quoted(param) + " must be an array", param, "invalid_type");
  Json out = Json::array();
  for (size_t i = 0; i < v.size(); ++i) {
    const std::string p = param + "[" + std::to_string(i) + "]";
    const Json& call = v[i];
    if (!call.is_object()) fail(quoted(p) + " must be an object", p, "invalid_type");
    const Json* id = get(call, "id");
    if (id == nullptr) fail("missing required parameter " + quoted(p + ".id"), p + ".id", "missing_required_parameter");
    if (const Json* type = get(call, "type"); type != nullptr && as_string(*type, p + ".type") != "function") {
      fail(quoted(p + ".type") + " must be 'function'", p + ".type");
    }
    const Json* fn = get(call, "function");
    if (fn == nullptr) {
      fail("missing required parameter " + quoted(p + ".function"), p + ".function", "missing_required_parameter");
    }
    if (!fn->is_object()) fail(quoted(p + ".function") + " must be an object", p + ".function", "invalid_type");
    const Json* name = get(*fn, "name");
    if (name == nullptr) {
      fail("missing required parameter " + quoted(p + ".function.name"), p + ".function.name",
           "missing_required_parameter");
    }
    std::string arguments;
    if (const Json* args = get(*fn, "arguments")) {
      // The template concatenates arguments into the prompt, so it must be a string; some clients
      // send the object itself.
      if (args->is_string()) {
        arguments = args->get<std::string>();
      } else if (args->is_object()) {
        arguments = args->dump();
      } else {
        fail(quoted(p + ".function.arguments") + " must be a string", p + ".function.arguments", "invalid_type");
      }
    }
    Json f = Json::object();
    f["name"] = as_string(*name, p + ".function.name");
    f["arguments"] = std::move(arguments);
    Json c = Json::object();
    c["id"] = as_string(*id, p + ".id");
    c["type"] = "function";
    c["function"] = std::move(f);
    out.push_back(std::move(c));
  }
  return out;
}

Json parse_messages(const Json& body) {
  const Json* v = get(body, "messages");
  if (v == nullptr) fail("missing required parameter 'messages'", "messages", "missing_required_parameter");
  if (!v->is_array()) fail("'messages' must be an array", "messages", "invalid_type");
  if (v->empty()) fail("'messages' must not be empty", "messages");
  Json out = Json::array();
  for (size_t i = 0; i < v->size(); ++i) {
    const std::string p = "messages[" + std::to_string(i) + "]";
    const Json& m = (*v)[i];
    if (!m.is_object()) fail(quoted(p) + " must be an object", p, "invalid_type");
    const Json* role_v = get(m, "role");
    if (role_v == nullptr) fail("missing required parameter " + quoted(p + ".role"), p + ".role", "missing_required_parameter");
    std::string role = as_string(*role_v, p + ".role");
    if (role == "developer") role = "system";  // OpenAI's newer name for the system role
    if (role != "system" && role != "user" && role != "assistant" && role != "tool") {
      fail(quoted(p + ".role") + " must be one of 'system', 'developer', 'user', 'assistant', 'tool'; got '" + role + "'",
           p + ".role");
    }

    Json msg = Json::object();
    msg["role"] = role;
    const Json* content = get(m, "content");
    Json tool_calls;
    if (role == "assistant") {
      if (const Json* tc = get(m, "tool_calls")) {
        tool_calls = parse_tool_calls(*tc, p + ".tool_calls");
        if (tool_calls.empty()) tool_calls = nullptr;
      }
      const std::string text = content == nullptr ? std::string() : parse_content(*content, p + ".content");
      // The DeepSeek template renders tool calls only for an assistant message whose content is None.
      if (text.empty() && !tool_calls.is_null()) {
        msg["content"] = nullptr;
      } else {
        msg["content"] = text;
      }
    } else {
      if (content == nullptr) {
        fail("missing required parameter " + quoted(p + ".content"), p + ".content", "missing_required_parameter");
      }
      msg["content"] = parse_content(*content, p + ".content");
    }
    if (const Json* name = get(m, "name")) msg["name"] = as_string(*name, p + ".name");
    if (!tool_calls.is_null()) msg["tool_calls"] = std::move(tool_calls);
    if (role == "tool") {
      const Json* id = get(m, "tool_call_id");
      if (id == nullptr) {
        fail("missing required parameter " + quoted(p + ".tool_call_id"), p + ".tool_call_id",
             "missing_required_parameter");
      }
      msg["tool_call_id"] = as_string(*id, p + ".tool_call_id");
    }
    out.push_back(std::move(msg));
  }
  return out;
}

bool valid_function_name(const std::string& name) {
  if (name.empty() || name.size() > 64) return false;
  for (const char c : name) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
    if (!ok) return false;
  }
  return true;
}

Json parse_tools(const Json& body) {
  const Json* v = get(body, "tools");
  if (v == nullptr) return nullptr;
  if (!v->is_array()) fail("'tools' must be an array", "tools", "invalid_type");
  if (v->empty()) return nullptr;
  Json out = Json::array();
  for (size_t i = 0; i < v->size(); ++i) {
    const std::string p = "tools[" + std::to_string(i) + "]";
    const Json& t = (*v)[i];
    if (!t.is_object()) fail(quoted(p) + " must be an object", p, "invalid_type");
    const Json* type = get(t, "type");
    if (type == nullptr) fail("missing required parameter " + quoted(p + ".type"), p + ".type", "missing_required_parameter");
    if (as_string(*type, p + ".type") != "function") fail(quoted(p + ".type") + " must be 'function'", p + ".type");
    const Json* fn = get(t, "function");
    if (fn == nullptr) {
      fail("missing required parameter " + quoted(p + ".function"), p + ".function", "missing_required_parameter");
    }
    if (!fn->is_object()) fail(quoted(p + ".function") + " must be an object", p + ".function", "invalid_type");
    const Json* name_v = get(*fn, "name");
    if (name_v == nullptr) {
      fail("missing required parameter " + quoted(p + ".function.name"), p + ".function.name",
           "missing_required_parameter");
    }
    const std::string name = as_string(*name_v, p + ".function.name");
    if (!valid_function_name(name)) {
      fail(quoted(p + ".function.name") + " must be 1 to 64 characters of a-z, A-Z, 0-9, '_' and '-'",
           p + ".function.name");
    }
    for (const Json& earlier : out) {
      if (earlier.at("function").at("name") == name) fail("duplicate function name '" + name + "' in 'tools'", p + ".function.name");
    }
    Json f = Json::object();
    f["name"] = name;
    if (const Json* d = get(*fn, "description")) f["description"] = as_string(*d, p + ".function.description");
    if (const Json* params = get(*fn, "parameters")) {
      if (!params->is_object()) {
        fail(quoted(p + ".function.parameters") + " must be a JSON Schema object", p + ".function.parameters",
             "invalid_type");
      }
      f["parameters"] = *params;
    }
    Json tool = Json::object();
    tool["type"] = "function";
    tool["function"] = std::move(f);
    out.push_back(std::move(tool));
  }
  return out;
}

std::string parse_tool_choice(const Json& body, const Json& tools) {
  const Json* v = get(body, "tool_choice");
  if (v == nullptr) return "auto";
  std::string choice;
  if (v->is_string()) {
    choice = v->get<std::string>();
    if (choice != "none" && choice != "auto" && choice != "required") {
      fail("'tool_choice' must be 'none', 'auto', 'required' or {\"type\": \"function\", \"function\": {\"name\": ...}}",
           "tool_choice");
    }
    if (choice == "required" && tools.is_null()) {
      fail("'tool_choice' is only allowed when 'tools' are specified", "tool_choice");
    }
    return choice;
  }
  if (!v->is_object()) fail("'tool_choice' must be a string or an object", "tool_choice", "invalid_type");
  if (const Json* type = get(*v, "type"); type == nullptr || as_string(*type, "tool_choice.type") != "function") {
    fail("'tool_choice.type' must be 'function'", "tool_choice.type");
  }
  const Json* fn = get(*v, "function");
  if (fn == nullptr || !fn->is_object()) {
    fail("'tool_choice.function' must be an object with a 'name'", "tool_choice.function", "invalid_type");
  }
  const Json* name = get(*fn, "name");
  if (name == nullptr) {
    fail("missing required parameter 'tool_choice.function.name'", "tool_choice.function.name",
         "missing_required_parameter");
  }
  choice = as_string(*name, "tool_choice.function.name");
  if (tools.is_null()) fail("'tool_choice' is only allowed when 'tools' are specified", "tool_choice");
  for (const Json& t : tools) {
    if (t.at("function").at("name") == choice) return choice;
  }
  fail("'tool_choice' names function '" + choice + "', which is not in 'tools'", "tool_choice.function.name");
}

int32_t as_token(const Json& v, const std::string& param) {
  return int32_t(as_integer_in(v, param, 0, std::numeric_limits<int32_t>::max()));
}

// prompt: "text", [1, 2, 3] (one prompt), ["a", "b"] or [[1, 2], [3]] (one per element).
void parse_prompt(const Json& body, CompletionRequest& r) {
  const Json* v = get(body, "prompt");
  if (v == nullptr) fail("missing required parameter 'prompt'", "prompt", "missing_required_parameter");
  if (v->is_string()) {
    r.prompts.push_back({v->get<std::string>(), {}, "prompt"});
    return;
  }
  const std::string type_message =
      "'prompt' must be a string, an array of token ids, or an array of strings or of token-id arrays";
  if (!v->is_array()) fail(type_message, "prompt", "invalid_type");
  if (v->empty()) fail("'prompt' must not be an empty array", "prompt");
  const Json& first = (*v)[0];
  if (first.is_number()) {
    CompletionPrompt p{{}, {}, "prompt"};
    for (size_t i = 0; i < v->size(); ++i) p.tokens.push_back(as_token((*v)[i], "prompt[" + std::to_string(i) + "]"));
    r.prompts.push_back(std::move(p));
    return;
  }
  if (!first.is_string() && !first.is_array()) fail(type_message, "prompt", "invalid_type");
  if (v->size() > size_t(kMaxPrompts)) {
    fail("'prompt' may hold at most " + std::to_string(kMaxPrompts) + " prompts, got " + std::to_string(v->size()),
         "prompt");
  }
  // Every element of the kind of the first: strings, or arrays of token ids.
  const bool strings = first.is_string();
  for (size_t i = 0; i < v->size(); ++i) {
    const std::string p = "prompt[" + std::to_string(i) + "]";
    const Json& e = (*v)[i];
    CompletionPrompt cp{{}, {}, p};
    if (strings) {
      if (!e.is_string()) fail(quoted(p) + " must be a string, as 'prompt[0]' is", p, "invalid_type");
      cp.text = e.get<std::string>();
      if (cp.text.empty()) fail(quoted(p) + " must not be empty", p);
    } else {
      if (!e.is_array()) fail(quoted(p) + " must be an array of token ids, as 'prompt[0]' is", p, "invalid_type");
      if (e.empty()) fail(quoted(p) + " must not be an empty array", p);
      for (size_t j = 0; j < e.size(); ++j) cp.tokens.push_back(as_token(e[j], p + "[" + std::to_string(j) + "]"));
    }
    r.prompts.push_back(std::move(cp));
  }
}

}  // namespace

ChatRequest parse_chat_request(std::string_view body_text) {
  const Json body = parse_body(body_text);
  ChatRequest r;
  parse_common(body, r, /*chat=*/true);
  r.messages = parse_messages(body);
  r.tools = parse_tools(body);
  r.tool_choice = parse_tool_choice(body, r.tools);
  if (const Json* v = get(body, "parallel_tool_calls")) (void)as_bool(*v, "parallel_tool_calls");
  if (const Json* v = get(body, "add_generation_prompt")) r.add_generation_prompt = as_bool(*v, "add_generation_prompt");
  return r;
}

CompletionRequest parse_completion_request(std::string_view body_text) {
  const Json body = parse_body(body_text);
  CompletionRequest r;
  parse_common(body, r, /*chat=*/false);
  parse_prompt(body, r);
  if (const Json* v = get(body, "echo")) r.echo = as_bool(*v, "echo");
  // With echo, logprobs covers the prompt tokens too (prompt logprobs). max_tokens 0 returns the
  // prompt alone, which is how clients score a text (echo, logprobs, max_tokens 0).
  if (r.max_tokens == 0 && !r.echo) {
    fail("'max_tokens' must be at least 1 (0 is allowed only with 'echo')", "max_tokens");
  }
  if (const Json* v = get(body, "best_of")) {
    if (as_integer(*v, "best_of") != 1) fail("only best_of=1 is supported", "best_of", "unsupported_value");
  }
  if (const Json* v = get(body, "suffix")) {
    if (!as_string(*v, "suffix").empty()) fail("'suffix' is not supported", "suffix", "unsupported_parameter");
  }
  return r;
}

}  // namespace dseek::server
