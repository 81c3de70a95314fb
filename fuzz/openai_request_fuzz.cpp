// libFuzzer target: arbitrary bytes as an OpenAI request body and as generated model text.
//
// parse_chat_request / parse_completion_request must return or throw ApiError; OutputParser must
// never throw, and its deltas must not depend on how the text is split (two splits are compared
// with the one-shot parse). The response builders then serialise what came out. Any other
// exception, crash, sanitizer report or mismatch is a bug.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "dseek/server/api_error.h"
#include "dseek/server/openai_request.h"
#include "dseek/server/openai_response.h"
#include "dseek/server/output_parser.h"
#include "dseek/server/tool_prompt.h"

namespace {

using dseek::server::OutputDelta;
using dseek::server::OutputParser;

OutputDelta parse_in_pieces(std::string_view text, bool in_reasoning, bool tools, size_t piece) {
  OutputParser p(in_reasoning, tools);
  OutputDelta all;
  for (size_t at = 0; at < text.size(); at += piece) all.append(p.push(text.substr(at, piece)));
  all.append(p.finish());
  for (auto& t : all.tool_calls) t.id.clear();  // random per parser
  return all;
}

bool same(const OutputDelta& a, const OutputDelta& b) {
  if (a.content != b.content || a.reasoning != b.reasoning || a.tool_calls.size() != b.tool_calls.size()) return false;
  for (size_t i = 0; i < a.tool_calls.size(); ++i) {
    const auto &x = a.tool_calls[i], &y = b.tool_calls[i];
    if (x.index != y.index || x.name != y.name || x.arguments != y.arguments) return false;
  }
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  try {
    const dseek::server::ChatRequest r = dseek::server::parse_chat_request(text);
    if (r.tools.is_array()) (void)dseek::server::tool_system_prompt(r.tools, r.tool_choice);
  } catch (const dseek::server::ApiError& e) {
    (void)dseek::server::error_body(e);
  }
  try {
    (void)dseek::server::parse_completion_request(text);
  } catch (const dseek::server::ApiError&) {
  }
  (void)dseek::server::template_mentions_tools(std::string(text));

  const bool in_reasoning = size > 0 && (data[0] & 1);
  const bool tools = size > 0 && (data[0] & 2);
  const OutputDelta once = parse_in_pieces(text, in_reasoning, tools, text.size() + 1);
  for (const size_t piece : {size_t(1), size_t(5)}) {
    if (!same(once, parse_in_pieces(text, in_reasoning, tools, piece))) std::abort();
  }
  (void)dseek::server::sse_event(
      dseek::server::chat_completion("id", 0, "m", once, "stop", dseek::server::Usage{1, 2, 0}));
  return 0;
}
