// libFuzzer target: arbitrary bytes as chat-template source, parsed and rendered against a fixed
// conversation (system, user, assistant with <think>, tool call, tool output) and a tool list.
//
// ChatTemplate::parse / render must return or throw dseek::Error; any other exception, crash,
// hang, stack overflow or sanitizer report is a bug. Limits are lowered so that hostile loops end
// quickly; the defaults are exercised by tests/tokenizer/jinja_test.cpp.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include <nlohmann/json.hpp>

#include "dseek/core/error.h"
#include "dseek/tokenizer/chat_template.h"

namespace {

const nlohmann::ordered_json& messages() {
  static const auto m = nlohmann::ordered_json::parse(R"([
    {"role": "system", "content": "You are helpful."},
    {"role": "user", "content": "Hi é 😀 <｜User｜>"},
    {"role": "assistant", "content": "<think>\nhmm\n</think>\n\nHello!"},
    {"role": "assistant", "content": null, "tool_calls": [
      {"type": "function", "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}}]},
    {"role": "tool", "content": "{\"temp\": 21.5}"},
    {"role": "user", "content": ""}
  ])");
  return m;
}

const nlohmann::ordered_json& tools() {
  static const auto t = nlohmann::ordered_json::parse(R"([
    {"type": "function", "function": {"name": "get_weather", "description": "Weather",
     "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
  ])");
  return t;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view source(reinterpret_cast<const char*>(data), size);
  try {
    dseek::ChatTemplate t = dseek::ChatTemplate::parse(source, "fuzz");
    dseek::jinja::Limits limits;
    limits.max_output_bytes = 1 << 20;
    limits.max_loop_iterations = 20000;
    limits.max_work = 1 << 24;
    t.set_limits(limits);
    const auto extra = nlohmann::ordered_json{{"bos_token", "<s>"}, {"eos_token", "</s>"}};
    (void)t.render(messages(), size % 2 == 0, size % 3 == 0 ? &tools() : nullptr, extra);
  } catch (const dseek::Error&) {
    // Rejected template or failed render: expected for most inputs.
  }
  return 0;
}
